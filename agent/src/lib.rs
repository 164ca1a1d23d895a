//! The AI agent's side of agent identity (floor 3, beside the other roles): what `brski agent
//! request` runs inside the agent's own process.
//!
//! The agent generates its key here and never lets it leave the process (except into its own
//! key file, mode 0600); it builds and signs its Agent Credential Request (ACR) with that key,
//! submits it to the local Identity Proxy's Agent API (a Unix socket, or loopback TCP), polls a
//! pending (202) request within a bounded wait, checks that what comes back certifies its own
//! key, and keeps the files an agent keeps (key, credential, trust bundle).
//!
//! What it does not do: talk to the Identity Server, attest, or decide policy. The proxy
//! (`pledge`) adds evidence and forwards; the server (`registrar`) appraises and issues.
//!
//! Layout, one concept per module (each imports only those above it): `error`
//! ([`AgentClientError`]); `api` (the Agent API client, [`AgentApiClient`]); `acr` (building
//! the request, checking the answer); `files` (what the agent keeps).

mod acr;
mod api;
mod error;
mod files;

pub use acr::{build_acr, check_credential, ACR_LIFETIME};
pub use api::{
    AgentApiClient, ApiReply, Bundle, Credential, Endpoint, Submitted, IDLE_RULES, MAX_POLL_INTERVAL,
};
pub use error::AgentClientError;
pub use files::{renew_at, save_bundle, save_credential, save_new_key, AgentFiles};

#[cfg(test)]
mod tests;
