//! The Agent Credential Request built and signed in this process with the agent's own key
//! ([`build_acr`]), and the check that what comes back certifies that key ([`check_credential`]).

use crate::api::Credential;
use crate::error::AgentClientError;

use serde_json::Value;
use shared::agent::acr::new_acr_claims;
use shared::agent::jwk::spki_thumbprint;
use shared::agent::jwt::unix_now;
use shared::agent::{sign_acr, CredentialSpec};
use shared::keys::Signer;
use shared::pki;

/// Lifetime of an ACR made for immediate submission (the server allows 60 s).
pub const ACR_LIFETIME: i64 = 60;

/// Builds and signs an ACR with `key` for audience `aud`, valid `lifetime` seconds.
pub fn build_acr(
    key: &dyn Signer,
    aud: &str,
    nonce: Option<String>,
    spec: CredentialSpec,
    lifetime: i64,
) -> Result<String, AgentClientError> {
    let iss = spec.id.clone().unwrap_or_else(|| "local-agent".into());
    let claims = new_acr_claims(&iss, aud, nonce, spec, unix_now(), lifetime)
        .map_err(|e| AgentClientError::Invalid(e.to_string()))?;
    sign_acr(&claims, key).map_err(|e| AgentClientError::Invalid(e.to_string()))
}

/// Checks that an issued credential is for `key` (the certificate's key and the WIT's
/// `cnf.jwk`) and carries the formats asked for.
pub fn check_credential(
    c: &Credential,
    key: &dyn Signer,
    formats: &[String],
) -> Result<(), AgentClientError> {
    let bad = |d: String| AgentClientError::Invalid(format!("the issued credential {d}"));
    let spki = key.public_key_der();
    if formats.iter().any(|f| f == "x509") && c.x509.is_none() {
        return Err(bad("has no certificate".into()));
    }
    if formats.iter().any(|f| f == "wit") && c.wit.is_none() {
        return Err(bad("has no WIT".into()));
    }
    if let Some(pem) = &c.x509 {
        let certs = pki::certs_from_pem(pem.as_bytes()).map_err(|e| bad(format!("certificate: {e}")))?;
        let leaf = certs.first().ok_or_else(|| bad("certificate is empty".into()))?;
        if pki::spki_der(leaf) != spki {
            return Err(bad("certificate is not for this agent's key".into()));
        }
    }
    if let Some(wit) = &c.wit {
        let jkt = spki_thumbprint(&spki).map_err(|e| bad(e.to_string()))?;
        let claims = wit
            .split('.')
            .nth(1)
            .and_then(|p| shared::b64::decode_url(p).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .ok_or_else(|| bad("WIT cannot be read".into()))?;
        let cnf = claims
            .pointer("/cnf/jwk")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("WIT has no cnf.jwk".into()))?;
        if shared::agent::jwk::thumbprint(cnf).ok().as_deref() != Some(jkt.as_str()) {
            return Err(bad("WIT is not for this agent's key".into()));
        }
    }
    Ok(())
}
