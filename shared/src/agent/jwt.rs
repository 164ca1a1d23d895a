//! Compact JWTs as the agent formats use them: every header parameter protected, a fixed
//! `typ` per object, claims a JSON object, signatures ES256 or EdDSA.

use super::AgentError;
use crate::b64;
use crate::crypto::{sha256, PublicKey};
use crate::keys::{Algorithm, Signer};
use crate::signed::jws::{sign_compact, Jws};
use crate::signed::{SignatureError, Trust};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use x509_cert::Certificate;

/// Clock skew tolerated between agent, proxy, owner and server (seconds).
pub const SKEW_SECS: i64 = 30;

/// Longest compact JWT accepted (an OA carrying an `x5c` chain is a few KiB).
pub const MAX_JWT_LEN: usize = 32 * 1024;

/// A parsed, not yet verified, compact JWT.
#[derive(Debug, Clone)]
pub struct Jwt {
    what: &'static str,
    text: String,
    jws: Jws,
    claims: Map<String, Value>,
}

impl Jwt {
    /// Parses `text` as a compact JWT whose `typ` must be `typ`; `what` names the object in
    /// errors.
    pub fn parse(text: &str, what: &'static str, typ: &'static str) -> Result<Self, AgentError> {
        let text = text.trim();
        if text.len() > MAX_JWT_LEN {
            return Err(AgentError::malformed(what, format!("longer than {MAX_JWT_LEN} bytes")));
        }
        let jws = Jws::parse_compact(text).map_err(|e| AgentError::malformed(what, e))?;
        let got = jws.signatures[0].header.get("typ").and_then(Value::as_str).unwrap_or("");
        if !got.eq_ignore_ascii_case(typ) {
            return Err(AgentError::WrongType { expected: typ, got: got.to_string() });
        }
        let claims = serde_json::from_slice::<Value>(jws.unverified_payload())
            .ok()
            .and_then(|v| v.as_object().cloned())
            .ok_or_else(|| AgentError::malformed(what, "claims are not a JSON object"))?;
        Ok(Jwt { what, text: text.to_string(), jws, claims })
    }

    /// The protected header.
    pub fn header(&self) -> &Map<String, Value> {
        &self.jws.signatures[0].header
    }

    /// The signature algorithm.
    pub fn alg(&self) -> Algorithm {
        self.jws.signatures[0].alg
    }

    /// Certificates from `x5c`, signer first.
    pub fn x5c(&self) -> &[Certificate] {
        &self.jws.signatures[0].x5c
    }

    /// The compact serialization, as received.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// b64url(SHA-256(ASCII of the compact JWT)): what owners and evidence bind to.
    pub fn hash(&self) -> String {
        jwt_hash(&self.text)
    }

    /// The unverified claims (for choosing the key to verify with, and for display).
    pub fn unverified_claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// Verifies the signature with a DER SubjectPublicKeyInfo.
    pub fn verify_with_spki(&self, spki_der: &[u8]) -> Result<(), AgentError> {
        let key = PublicKey::from_spki_der(spki_der).map_err(|e| AgentError::malformed("public key", e))?;
        if key.algorithm() != Some(self.alg()) {
            return Err(AgentError::Signature(self.what));
        }
        self.jws.verify_with_key(0, &key).map(|_| ()).map_err(|_| AgentError::Signature(self.what))
    }

    /// Verifies the signature with the `x5c` leaf and that leaf's path to `trust`; returns the
    /// path (signer first).
    pub fn verify_with_trust(&self, trust: &Trust) -> Result<Vec<Certificate>, AgentError> {
        if self.x5c().is_empty() {
            return Err(AgentError::malformed(self.what, "no x5c header"));
        }
        let v = self.jws.verify(trust).map_err(|e| match e {
            SignatureError::Chain(c) => AgentError::Chain(c.to_string()),
            _ => AgentError::Signature(self.what),
        })?;
        Ok(v.signer_chain().to_vec())
    }

    /// Decodes the claims into `T` (after verification).
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T, AgentError> {
        serde_json::from_value(Value::Object(self.claims.clone()))
            .map_err(|e| AgentError::malformed(self.what, e))
    }
}

/// b64url(SHA-256(text)) of a compact JWT.
pub fn jwt_hash(text: &str) -> String {
    b64::encode_url(&sha256(text.trim().as_bytes()))
}

/// Signs `claims` as a compact JWT with `typ`, extra protected header parameters and an
/// optional `x5c` chain.
pub fn sign_jwt<C: Serialize>(
    claims: &C,
    typ: &str,
    extra_header: &Map<String, Value>,
    chain: &[Certificate],
    signer: &dyn Signer,
) -> Result<String, AgentError> {
    let payload = serde_json::to_vec(claims).map_err(|e| AgentError::Sign(e.to_string()))?;
    sign_compact(&payload, signer, chain, Some(typ), extra_header)
        .map_err(|e| AgentError::Sign(e.to_string()))
}

/// Checks `iat`/`exp` against `now`: not issued in the future, not expired, and living at
/// most `max_life` seconds.
pub fn check_window(what: &str, iat: i64, exp: i64, now: i64, max_life: i64) -> Result<(), AgentError> {
    if exp < iat {
        return Err(AgentError::Time(format!("{what} expires before it was issued")));
    }
    if iat > now + SKEW_SECS {
        return Err(AgentError::Time(format!("{what} issued {} s in the future", iat - now)));
    }
    if now > exp + SKEW_SECS {
        return Err(AgentError::Time(format!("{what} expired {} s ago", now - exp)));
    }
    if exp - iat > max_life {
        return Err(AgentError::Time(format!(
            "{what} lives {} s, more than the {max_life} s allowed",
            exp - iat
        )));
    }
    Ok(())
}

/// A `jti` of at least 128 random bits (base64url of 16 or more bytes).
pub fn check_jti(what: &'static str, jti: &str) -> Result<(), AgentError> {
    match b64::decode_url(jti) {
        Ok(b) if b.len() >= 16 && b.len() <= 64 => Ok(()),
        _ => Err(AgentError::malformed(what, "jti must be base64url of 16 to 64 random bytes")),
    }
}

/// A fresh `jti`: base64url of 16 random bytes.
pub fn new_jti() -> Result<String, AgentError> {
    Ok(b64::encode_url(&random::<16>()?))
}

/// `N` random bytes from the operating system.
pub fn random<const N: usize>() -> Result<[u8; N], AgentError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| AgentError::Sign(format!("random source: {e}")))?;
    Ok(b)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Constant-time equality for hashes, nonces and thumbprints.
pub fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
