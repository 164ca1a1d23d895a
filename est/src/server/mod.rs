//! The EST server (RFC 7030 as clarified by RFC 8951, RFC 9266 channel binding): per-label
//! policy, the axum router for `/.well-known/est[/<label>]/<operation>`, the TLS
//! configuration, and an accept loop that hands each request its connection's TLS facts.
//!
//! Every refusal is an [`EstError`], turned into HTTP in one place (`impl From<&EstError> for
//! crate::http::Problem`): the precise status, an RFC 9457 problem body, and any header the
//! status needs (`WWW-Authenticate`, `Allow`).
//!
//! Layout, one concept per module (each imports only modules below it, never its importer):
//!
//! * `config`: label policies and limits ([`EstServerConfig`], [`LabelPolicy`]);
//! * `file_config`: the TOML file of a standalone server ([`EstFileConfig`]);
//! * `password`: argon2 PHC hashes for HTTP Basic users ([`hash_password`]);
//! * `error`: [`EstError`] and its single mapping to a [`crate::http::Problem`];
//! * `credential_cache`: recently verified Basic credentials, so argon2 runs once per TTL;
//! * `state`: what every handler shares (configuration, authority, credential cache);
//! * `auth`: HTTP Basic and TLS client-certificate authentication;
//! * `handlers`: one module per EST operation, plus request/response bodies and CSR checks;
//! * `routes`: [`router`], path splitting and dispatch to the handlers.
//!
//! The accept loop, TLS configuration, body reader and `/metrics` plumbing every server shares
//! live in [`crate::http`].

mod auth;
mod config;
mod credential_cache;
mod error;
mod file_config;
mod handlers;
mod password;
mod routes;
mod state;

pub use config::{
    AuthRequirement, BindingPolicy, ConfigError, EstServerConfig, LabelPolicy, DEFAULT_BODY_LIMIT,
    DEFAULT_MAX_SANS, OPERATIONS,
};
pub use error::{EstError, WWW_AUTHENTICATE_BASIC};
pub use file_config::{CaSection, EstFileConfig, LabelSection, LimitsSection, TlsSection};
pub use handlers::serverkeygen::{ASYMM_DECRYPT_KEY_ID, DECRYPT_KEY_ID};
pub use password::{hash_password, verify_password};
pub use routes::router;
