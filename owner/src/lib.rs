//! The agent **owner** (docs/agent-issuance.md): a person, HSM or policy engine whose public
//! key the Identity Server holds as an owner trust anchor (`[[owner]]` in its agent policy).
//!
//! - `init` ([`init()`]): the owner directory: `owner.key` (0600) or an existing key named by a key URI
//!   (`pkcs11:` for a key in a token), a self-signed `owner.pem` carrying the owner id as URI
//!   SAN, `owner-public.pem` to provision at the server, and `owner.toml`.
//! - `sign` ([`review`], [`sign()`]): model 1 (agent-mediated): review an ACR the agent shows and sign an OA over it.
//! - `respond` ([`respond()`]): model 3 (server-mediated): poll the server's challenges over mTLS, verify
//!   each against the domain CA, and answer with an OA.
//! - `gateway` ([`serve_gateway`]): model 2 (owner-mediated): an mTLS service for proxies that applies the
//!   owner's rules, rate limits and optional human approval, signs an OA with the gateway
//!   certificate in `x5c`, submits to the server and relays its answer.
//!
//! Floor 3, a role beside the MASA, registrar, pledge and agent, importing only `shared` and
//! `est`. What it does not do: issue credentials (the Identity Server does, after verifying the
//! owner's approval), or see an agent's private key.
//!
//! Layout of the owner directory:
//!
//! ```text
//! owner.toml         configuration (commented; written by `brski owner init`)
//! owner.key          the owner's private key, PKCS#8 PEM, mode 0600 (absent when `key` in
//!                    owner.toml names another key, e.g. a `pkcs11:` URI)
//! owner.pem          self-signed certificate: TLS client certificate and gateway x5c
//! owner-public.pem   SubjectPublicKeyInfo PEM, to provision at the Identity Server
//! gateway/pending/   model 2 requests waiting for `brski owner gateway approve|deny`
//! ```

mod config;
mod error;
mod gateway;
mod identity;
mod init;
mod respond;
mod sign;

// The one public face: what the `brski owner` verbs, the lab and the cross-role suites use.
pub use config::{GatewaySection, OwnerConfig, CERT_FILE, CONFIG_FILE, KEY_FILE, PUBLIC_FILE};
pub use error::OwnerError;
pub use gateway::{serve as serve_gateway, GatewayOptions, PendingDir, PendingRecord, CREDENTIALS_PATH};
pub use identity::OwnerIdentity;
pub use init::{init, InitOptions, InitReport};
pub use respond::{
    respond, summary as challenge_summary, Decider, Decision, Outcome, OutcomeKind, RespondOptions, Responder,
};
pub use sign::{constraints, review, sign, summary as approval_summary, SignOptions};
