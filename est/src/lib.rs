//! EST (RFC 7030 as clarified by RFC 8951, with RFC 9266 channel binding): a library first,
//! served on its own by `brski est serve` and later by the registrar.
//!
//! - [`wire`]: the sans-IO message formats every EST peer shares (base64 bodies, certs-only,
//!   CSR attributes, media types); [`multipart`]: serverkeygen responses.
//! - [`authority`]: the one seam for issuing ([`authority::Authority`]) and a local CA over the
//!   shared PKI and Store.
//! - [`server`]: the axum router, authentication, channel binding and the TLS accept loop.
//! - [`client`] and [`tls`]: the client and its server-trust modes and TLS identity.
//! - [`binding`]: the RFC 9266 tls-exporter value and CSRs that carry it.

pub mod authority;
pub mod binding;
pub mod client;
pub mod multipart;
pub mod server;
pub mod tls;
pub mod wire;
