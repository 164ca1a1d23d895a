//! The Agent Credential Request (ACR): a compact JWS signed by the agent's own key, whose
//! `jwk` header is that key. The signature is the proof of possession.

use super::jwk::{jwk_algorithm, jwk_from_spki, spki_from_jwk, thumbprint, Jwk};
use super::jwt::{check_jti, check_window, sign_jwt, Jwt};
use super::{check_owner_id, AgentError, AgentId};
use crate::keys::Signer;
use crate::pki::Csr;
use crate::{b64, Verified};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// JOSE `typ` of an ACR.
pub const ACR_TYP: &str = "agent-credreq+jwt";
/// Media type of the Agent API request body `{"acr": ..., "oa": ...}`.
pub const CREDENTIAL_REQUEST_MEDIA_TYPE: &str = "application/agent-credential-request+json";
/// Longest ACR lifetime without an owner approval (seconds).
pub const ACR_MAX_LIFE: i64 = 60;
/// Longest ACR lifetime in model 1 created offline (bounded again by the OA's `exp`).
pub const ACR_MAX_LIFE_OFFLINE: i64 = 600;
/// The credential formats an agent may ask for.
pub const FORMATS: [&str; 2] = ["x509", "wit"];

/// The issuance model: who vouches for the owner binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// No owner binding.
    None,
    /// Model 1: the owner signed offline over the ACR the agent showed it.
    AgentMediated,
    /// Model 2: the owner's gateway approved after its policy check.
    OwnerMediated,
    /// Model 3: the owner answered the server's challenge.
    ServerMediated,
}

impl Model {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::None => "none",
            Model::AgentMediated => "agent-mediated",
            Model::OwnerMediated => "owner-mediated",
            Model::ServerMediated => "server-mediated",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Model::None, Model::AgentMediated, Model::OwnerMediated, Model::ServerMediated]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `req` claim: what the agent asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialSpec {
    /// The agent id asked for (the server may assign one when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `x509`, `wit`, or both.
    pub formats: Vec<String>,
    /// Requested lifetime in seconds.
    pub ttl: u64,
    /// The owner id, when an owner binding is wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The issuance model.
    pub model: Model,
}

/// The ACR claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcrClaims {
    /// The agent's requested id or local handle.
    pub iss: String,
    /// The trust domain's issuance URI.
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// 128 random bits, base64url.
    pub jti: String,
    /// The nonce from `GET /v1/nonce` (absent only in model 1 created offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// What is asked for.
    pub req: CredentialSpec,
    /// Optional b64url DER PKCS#10 whose key must equal `jwk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

/// A verified ACR with the values later checks bind to.
#[derive(Debug, Clone)]
pub struct Acr {
    /// The claims.
    pub claims: AcrClaims,
    /// The agent's public key as sent.
    pub jwk: Jwk,
    /// The same key as DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// RFC 7638 thumbprint of `jwk` (`agent_jkt`).
    pub jkt: String,
    /// `acr_hash`: b64url(SHA-256(compact ACR)).
    pub hash: String,
    /// The compact ACR.
    pub text: String,
    /// The requested agent id, parsed.
    pub agent_id: Option<AgentId>,
}

/// Signs an ACR with the agent's key; the key's public JWK goes into the header.
pub fn sign_acr(claims: &AcrClaims, agent_key: &dyn Signer) -> Result<String, AgentError> {
    let jwk = jwk_from_spki(&agent_key.public_key_der())?;
    let mut header = Map::new();
    header.insert("jwk".into(), Value::Object(jwk));
    sign_jwt(claims, ACR_TYP, &header, &[], agent_key)
}

/// Builds ACR claims for `spec` with a fresh `jti`, valid for `lifetime` seconds from `now`.
pub fn new_acr_claims(
    iss: &str,
    aud: &str,
    nonce: Option<String>,
    spec: CredentialSpec,
    now: i64,
    lifetime: i64,
) -> Result<AcrClaims, AgentError> {
    Ok(AcrClaims {
        iss: iss.to_string(),
        aud: aud.to_string(),
        iat: now,
        exp: now + lifetime,
        jti: super::jwt::new_jti()?,
        nonce,
        req: spec,
        csr: None,
    })
}

/// Verifies an ACR: `typ`, the signature with its own `jwk` (proof of possession), `aud`,
/// the time window, `jti`, the request's shape, the nonce's presence, and that a CSR (if any)
/// carries the same key. Whether the nonce was issued and unused, and the `jti` single use,
/// are the caller's checks against its state.
pub fn verify_acr(text: &str, audience: &str, now: i64) -> Result<Verified<Acr>, AgentError> {
    let jwt = Jwt::parse(text, "ACR", ACR_TYP)?;
    let jwk = jwt
        .header()
        .get("jwk")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| AgentError::malformed("ACR", "no jwk header"))?;
    if jwk_algorithm(&jwk)? != jwt.alg() {
        return Err(AgentError::KeyMismatch("header alg does not fit the jwk's key type".into()));
    }
    if jwk.get("alg").and_then(Value::as_str).is_some_and(|a| a != jwt.alg().jose_name()) {
        return Err(AgentError::KeyMismatch("jwk alg differs from the header alg".into()));
    }
    let spki_der = spki_from_jwk(&jwk)?;
    jwt.verify_with_spki(&spki_der)?;
    let claims: AcrClaims = jwt.claims_as()?;
    check_claims(&claims, audience, now)?;
    if let Some(csr) = &claims.csr {
        check_csr_key(csr, &spki_der)?;
    }
    let agent_id = claims.req.id.as_deref().map(AgentId::parse).transpose()?;
    let acr = Acr {
        jkt: thumbprint(&jwk)?,
        hash: jwt.hash(),
        text: jwt.text().to_string(),
        claims,
        jwk,
        spki_der,
        agent_id,
    };
    Ok(Verified::new(acr, Vec::new()))
}

fn check_claims(c: &AcrClaims, audience: &str, now: i64) -> Result<(), AgentError> {
    if c.aud != audience {
        return Err(AgentError::Audience { expected: audience.to_string(), got: c.aud.clone() });
    }
    let offline = c.nonce.is_none() && c.req.model == Model::AgentMediated;
    check_window("ACR", c.iat, c.exp, now, if offline { ACR_MAX_LIFE_OFFLINE } else { ACR_MAX_LIFE })?;
    check_jti("ACR", &c.jti)?;
    if c.nonce.is_none() && c.req.model != Model::AgentMediated {
        return Err(AgentError::Nonce(
            "the ACR carries no nonce (only an offline model 1 request may omit it)".into(),
        ));
    }
    check_spec(&c.req)
}

fn check_spec(req: &CredentialSpec) -> Result<(), AgentError> {
    if req.formats.is_empty() || req.formats.iter().any(|f| !FORMATS.contains(&f.as_str())) {
        return Err(AgentError::malformed(
            "ACR",
            "req.formats must be a non-empty subset of [\"x509\",\"wit\"]",
        ));
    }
    if req.ttl == 0 {
        return Err(AgentError::malformed("ACR", "req.ttl must be positive"));
    }
    match (&req.owner, req.model) {
        (Some(_), Model::None) => {
            Err(AgentError::malformed("ACR", "an owner needs a model other than \"none\""))
        }
        (None, m) if m != Model::None => {
            Err(AgentError::malformed("ACR", format!("model {m} needs req.owner")))
        }
        (Some(o), _) => check_owner_id(o),
        (None, _) => Ok(()),
    }
}

fn check_csr_key(csr_b64: &str, spki_der: &[u8]) -> Result<(), AgentError> {
    let der = b64::decode_url(csr_b64).map_err(|e| AgentError::malformed("ACR csr", e))?;
    let csr = Csr::verify_der(&der).map_err(|e| AgentError::malformed("ACR csr", e))?;
    if csr.public_key_der() != spki_der {
        return Err(AgentError::KeyMismatch("the CSR's key is not the ACR's jwk".into()));
    }
    Ok(())
}
