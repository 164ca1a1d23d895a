//! The JSON bodies of `docs/agent-api.md`, typed once: what the Identity Server (registrar),
//! the Identity Proxy's Agent API, the owner gateway, the agent's client and the tests write
//! and read. Member names are the document's; a member the document shows as "or null" is
//! written as `null`, never left out. Problem bodies (RFC 9457) are `est::http::Problem`.
//!
//! Unknown members are ignored (a newer peer may add some) except in the Agent API request
//! `{"acr", "oa"}`, which the proxy has always refused with anything else in it.

use super::acr::Model;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /agent/v1/nonce[?count=N]` (server) and `GET /v1/nonce` (proxy): a server nonce,
/// valid until `exp`, single use; with `count=2..32` also every nonce of the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceReply {
    /// b64url of 32 random bytes.
    pub nonce: String,
    /// When the nonce (and every nonce of the batch) expires, unix seconds.
    pub exp: i64,
    /// With `count=N > 1`: the N nonces, the first being `nonce`; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonces: Option<Vec<String>>,
}

/// `GET /agent/v1/bundle` (server) and `GET /v1/bundle` (proxy): what a relying party needs to
/// verify agent credentials of the trust domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    /// The trust domain.
    pub trust_domain: String,
    /// `wimse://<trust-domain>`, the ACR's `aud`.
    pub issuance_uri: String,
    /// The domain CA certificates (PEM).
    pub ca_pem: String,
    /// The WIT signing keys (a JWK Set, RFC 7517 section 5).
    pub jwks: Value,
}

/// `POST /v1/credentials` on the Agent API (`application/agent-credential-request+json`):
/// what the agent sends; the proxy adds the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentApiRequest {
    /// The compact ACR.
    pub acr: String,
    /// The compact OA (model 1), or null.
    #[serde(default)]
    pub oa: Option<String>,
}

/// `POST /agent/v1/credentials` (server) and `POST /gateway/v1/credentials` (gateway): the
/// agent's request as the proxy forwards it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialRequest {
    /// The compact ACR.
    pub acr: String,
    /// The compact OA, or null (a gateway request always carries null: the gateway signs it).
    #[serde(default)]
    pub oa: Option<String>,
    /// The CMW collection (JSON form). Kept as JSON here and parsed by
    /// [`Cmw::from_value`](super::cmw::Cmw::from_value) where the evidence is checked, so that
    /// a bad collection is refused with `evidence` (403), not `malformed`.
    pub evidence: Value,
    /// The proxy whose LDevID signed the evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyRef>,
}

/// `"proxy": {"ldevid_sha256": ...}` of a [`CredentialRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyRef {
    /// b64url SHA-256 of the proxy's LDevID (DER).
    pub ldevid_sha256: String,
}

/// The 200 answer to a credential request or poll: the agent credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The request id.
    pub id: String,
    /// The agent id (the certificate's one URI SAN, the WIT's `sub`).
    pub agent_id: String,
    /// The issuance model.
    pub model: Model,
    /// The owner id, or null.
    pub owner: Option<String>,
    /// PEM of the agent certificate, or null when not asked for.
    pub x509: Option<String>,
    /// The domain CA (PEM).
    pub ca_pem: String,
    /// The compact WIT, or null when not asked for.
    pub wit: Option<String>,
    /// When the credential expires, unix seconds.
    pub not_after: i64,
    /// When the owner grant ends (renewals until then), unix seconds, or null.
    pub grant_exp: Option<i64>,
}

/// The `status` member of [`Pending`] and [`Answered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The request waits for the owner (202).
    Pending,
    /// The owner's answer was accepted (200 to `POST /owner/v1/challenges/{id}`).
    Approved,
}

/// The 202 body of a credential request that waits for an owner: `{"id", "status": "pending"}`
/// (with `Retry-After` and `Location` headers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The request id, to poll under.
    pub id: String,
    /// Always [`Status::Pending`].
    pub status: Status,
}

impl Pending {
    /// The pending body for request `id`.
    pub fn new(id: impl Into<String>) -> Self {
        Pending { id: id.into(), status: Status::Pending }
    }
}

/// `GET /owner/v1/challenges`: the pending challenges addressed to the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenges {
    /// The challenges, in no particular order.
    pub challenges: Vec<ChallengeItem>,
}

/// One entry of [`Challenges`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeItem {
    /// The request id (answer at `/owner/v1/challenges/{id}`).
    pub id: String,
    /// The compact challenge JWS.
    pub challenge: String,
}

/// The 200 body of `POST /owner/v1/challenges/{id}`: `{"status": "approved"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    /// Always [`Status::Approved`].
    pub status: Status,
}

impl Answered {
    /// The answer body.
    pub fn approved() -> Self {
        Answered { status: Status::Approved }
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
