//! Agent identity (WIMSE "AI agent identity"), sans-IO: the wire formats of
//! `spec/agent-issuance.md` (ACR, OA, owner challenge, WIT/WPT, evidence, the AgentOwnerBinding
//! certificate extension), their signing and their verification, and the relying-party checks.
//!
//! `wire` types every JSON body of `docs/agent-api.md` once; `cmw` parses the evidence
//! collection once. Servers and proxies move these bytes; every decision takes a `Verified<T>` made here.

pub mod acr;
pub mod binding;
pub mod cert;
pub mod challenge;
pub mod cmw;
mod error;
pub mod evidence;
pub mod id;
pub mod jwk;
pub mod jwt;
pub mod oa;
pub mod relying;
pub mod tpm_quote;
pub mod wire;
pub mod wit;

pub use acr::{sign_acr, verify_acr, Acr, AcrClaims, CredentialSpec, Model};
pub use error::AgentError;
pub use id::{check_owner_id, check_trust_domain, id_matches, AgentId};
pub use oa::{sign_oa, verify_oa, OaClaims, OwnerAnchor, OwnerAnchors, OwnerApproval, OwnerKeyHeader};
pub use relying::{verify_agent_certificate, verify_wit_credential, AgentIdentity, OwnerInfo, RelyingTrust};
pub use wit::{sign_wit, verify_wit, WitClaims, WitKey};

/// HTTP header every Agent API request must carry (SSRF hardening).
pub const AGENT_API_HEADER: &str = "Agent-Identity-Api";
