//! Agent issuance at the Identity Server (the registrar): the agent endpoints of
//! `docs/agent-api.md`, the policy file, the check order of `docs/agent-issuance.md`,
//! issuance of the X.509 agent certificate and the WIT over the same key, model 3 owner
//! challenges, grants for renewals, and revocation.
//!
//! Modules: `model` (the data the others share: caller, approved request), `callers` (the
//! caller cache), `policy` (the TOML policy), `service` (state: WIT key, nonces, pending), `caller`
//! (who is on the TLS connection), `flow` (the check order), `issue` (certificates, WITs,
//! audit, grants), `pending` (model 3), `grants` (grants and revocation), `nonces`, `webhook` (model 3 delivery), `error`
//! (problem bodies), `handlers` (the routes).

pub(crate) mod caller;
mod callers;
pub(crate) mod error;
pub(crate) mod flow;
pub(crate) mod grants;
mod handlers;
pub(crate) mod issue;
pub(crate) mod model;
pub(crate) mod nonces;
pub(crate) mod pending;
pub(crate) mod policy;
pub(crate) mod service;
pub(crate) mod webhook;

pub(crate) use handlers::routes;
pub use policy::{AgentPolicy, PolicyError};
pub use service::AgentService;
