//! Model 3's Owner Challenge: a compact JWS the Identity Server signs and the owner verifies
//! against the trust domain's anchors before answering with an OA.

use super::jwt::{check_jti, check_window, sign_jwt, Jwt};
use super::AgentError;
use crate::keys::Signer;
use crate::signed::Trust;
use crate::Verified;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use x509_cert::Certificate;

/// JOSE `typ` of a challenge.
pub const CHALLENGE_TYP: &str = "owner-challenge+jwt";
/// Longest challenge lifetime (seconds).
pub const CHALLENGE_MAX_LIFE: i64 = 300;

/// The appraisal result the owner is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationStatus {
    /// `affirming`, `warning`, `contraindicated` or `none`.
    pub status: String,
}

/// What the credential will be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requested {
    /// Lifetime in seconds.
    pub ttl: u64,
    /// Formats.
    pub formats: Vec<String>,
}

/// The challenge claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeClaims {
    /// The server.
    pub iss: String,
    /// The owner id.
    pub aud: String,
    /// The agent id.
    pub sub: String,
    /// Issued at.
    pub iat: i64,
    /// Expires at (<= iat + 300).
    pub exp: i64,
    /// Single use.
    pub jti: String,
    /// 32 random bytes, base64url.
    pub nonce: String,
    /// The ACR hash.
    pub acr_hash: String,
    /// The agent key's thumbprint.
    pub agent_jkt: String,
    /// b64url SHA-256 of the proxy's LDevID certificate.
    pub proxy: String,
    /// The appraisal of the evidence.
    pub attestation: AttestationStatus,
    /// What will be issued.
    pub requested: Requested,
    /// Short human text.
    pub binding_message: String,
    /// Where the owner posts its OA.
    pub response_uri: String,
}

/// A verified challenge and its hash (`chal_hash`).
#[derive(Debug, Clone)]
pub struct Challenge {
    /// The claims.
    pub claims: ChallengeClaims,
    /// b64url(SHA-256(compact challenge)).
    pub hash: String,
    /// The compact challenge.
    pub text: String,
}

/// Signs a challenge with the server's key; `chain` (server certificate first) goes in `x5c`.
pub fn sign_challenge(
    claims: &ChallengeClaims,
    server_key: &dyn Signer,
    chain: &[Certificate],
    kid: &str,
) -> Result<String, AgentError> {
    let mut header = Map::new();
    header.insert("kid".into(), Value::String(kid.to_string()));
    sign_jwt(claims, CHALLENGE_TYP, &header, chain, server_key)
}

/// Verifies a challenge: `typ`, the server's signature and certificate path to the trust
/// domain's anchors, the time window (<= 300 s) and `jti`.
pub fn verify_challenge(text: &str, trust: &Trust, now: i64) -> Result<Verified<Challenge>, AgentError> {
    let jwt = Jwt::parse(text, "challenge", CHALLENGE_TYP)?;
    let path = jwt.verify_with_trust(trust)?;
    let claims: ChallengeClaims = jwt.claims_as()?;
    check_window("challenge", claims.iat, claims.exp, now, CHALLENGE_MAX_LIFE)?;
    check_jti("challenge", &claims.jti)?;
    Ok(Verified::new(Challenge { claims, hash: jwt.hash(), text: jwt.text().to_string() }, path))
}
