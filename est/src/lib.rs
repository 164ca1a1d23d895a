//! Floor 2: EST (RFC 7030 as clarified by RFC 8951, with RFC 9266 channel binding), a library
//! first, served on its own by `brski est serve` and by the registrar; and the house's HTTPS
//! plumbing every brski server shares.
//!
//! - [`http`]: the one RFC 9457 `Problem` (one `type` URI scheme, one `IntoResponse`) and the
//!   agent-surface `Reason` table, so the same refusal answers the same at every server.
//! - [`wire`]: the sans-IO message formats every EST peer shares (base64 bodies, certs-only,
//!   CSR attributes, media types); [`multipart`]: serverkeygen responses.
//! - [`keypackage`]: serverkeygen with the key encrypted to the client (RFC 7030 §4.4.1-§4.4.2):
//!   the CSR attributes that ask for it (SMIMECapabilities + AsymmetricDecryptKeyIdentifier or
//!   DecryptKeyIdentifier) and the EnvelopedData(SignedData(AsymmetricKeyPackage)) answer,
//!   built for an EC (kari), RSA (ktri) or shared AES (kekri) recipient and opened by the client.
//! - [`authority`]: the one seam for issuing ([`authority::Authority`]) and a local CA over the
//!   shared PKI and Store.
//! - [`server`]: the axum router, authentication, channel binding and the TLS accept loop.
//! - [`client`] and [`tls`]: the client and its server-trust modes and TLS identity.
//! - [`binding`]: the RFC 9266 tls-exporter value and CSRs that carry it.
//!
//! What it does not do: BRSKI, vouchers or agent policy (the roles decide; EST asks an
//! [`authority::Authority`] to issue), or keep state of its own beyond what the authority stores.
//! - [`http`]: the house's HTTP plumbing shared by every role: the one RFC 9457 problem type
//!   ([`http::Problem`]) and the agent surface's `reason` list ([`http::Reason`]).

pub mod authority;
pub mod binding;
pub mod client;
pub mod http;
pub mod keypackage;
pub mod multipart;
pub mod server;
pub mod tls;
pub mod wire;
