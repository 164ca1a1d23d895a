//! EST (RFC 7030 as clarified by RFC 8951, with RFC 9266 channel binding).
//!
//! `wire` holds the sans-IO message formats every EST peer shares: base64 bodies, certs-only
//! responses, CSR attributes and the media types.

pub mod authority;
pub mod binding;
pub mod client;
pub mod multipart;
pub mod server;
pub mod tls;
pub mod wire;
