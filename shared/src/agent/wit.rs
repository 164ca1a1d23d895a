//! The Workload Identity Token (WIT, a JWT over the agent's key, `cnf.jwk`) and the Workload
//! Proof Token (WPT) an agent presents with it.

use super::jwk::{spki_from_jwk, Jwk};
use super::jwt::{check_jti, check_window, ct_eq, jwt_hash, new_jti, sign_jwt, Jwt};
use super::{AgentError, AgentId, Model};
use crate::keys::Signer;
use crate::Verified;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// JOSE `typ` of a WIT.
pub const WIT_TYP: &str = "wit+jwt";
/// JOSE `typ` of a WPT.
pub const WPT_TYP: &str = "wpt+jwt";
/// HTTP header carrying the WIT.
pub const WIT_HEADER: &str = "Workload-Identity-Token";
/// HTTP header carrying the WPT.
pub const WPT_HEADER: &str = "Workload-Proof-Token";
/// Longest WIT lifetime (seconds).
pub const WIT_MAX_LIFE: i64 = 3600;
/// Longest WPT lifetime (seconds).
pub const WPT_MAX_LIFE: i64 = 300;
/// The collision-resistant claim name of the owner binding.
pub const OWNER_CLAIM: &str = "urn:brski:owner";

/// `cnf`: the confirmation key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The agent's public key (with `alg`).
    pub jwk: Jwk,
}

/// The owner binding carried in a WIT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerClaim {
    /// Owner id.
    pub id: String,
    /// The agent key's thumbprint the OA bound.
    pub jkt: String,
    /// The model.
    pub model: Model,
    /// The grant's end.
    pub grant_exp: i64,
    /// The compact OA, re-verifiable offline.
    pub oa: String,
}

/// WIT claims.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WitClaims {
    /// The trust domain's issuer.
    pub iss: String,
    /// The agent id (never the owner).
    pub sub: String,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires at (<= 1 h after iat).
    pub exp: i64,
    /// Audited id.
    pub jti: String,
    /// The agent's key.
    pub cnf: Confirmation,
    /// The owner binding, if any.
    #[serde(default, rename = "urn:brski:owner", skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerClaim>,
}

/// A WIT signing key as published in the trust bundle (JWKS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitKey {
    /// Key id.
    pub kid: String,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

/// Signs a WIT with the trust domain's WIT key.
pub fn sign_wit(claims: &WitClaims, key: &dyn Signer, kid: &str) -> Result<String, AgentError> {
    let mut header = Map::new();
    header.insert("kid".into(), Value::String(kid.to_string()));
    sign_jwt(claims, WIT_TYP, &header, &[], key)
}

/// Verifies a WIT: `typ`, signature by the key its `kid` names in `keys`, no `aud`, the time
/// window (<= 1 h), `jti`, `sub` a valid agent id, and `cnf.jwk` a usable key.
pub fn verify_wit(text: &str, keys: &[WitKey], now: i64) -> Result<Verified<WitClaims>, AgentError> {
    let jwt = Jwt::parse(text, "WIT", WIT_TYP)?;
    let kid = jwt.header().get("kid").and_then(Value::as_str).unwrap_or_default();
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| AgentError::Chain(format!("no trusted WIT key with kid {kid:?}")))?;
    jwt.verify_with_spki(&key.spki_der)?;
    if jwt.unverified_claims().contains_key("aud") {
        return Err(AgentError::malformed("WIT", "a WIT carries no aud"));
    }
    let claims: WitClaims = jwt.claims_as()?;
    check_window("WIT", claims.iat, claims.exp, now, WIT_MAX_LIFE)?;
    if claims.nbf > now + super::jwt::SKEW_SECS {
        return Err(AgentError::Time("WIT not yet valid".into()));
    }
    check_jti("WIT", &claims.jti)?;
    AgentId::parse(&claims.sub)?;
    spki_from_jwk(&claims.cnf.jwk)?;
    Ok(Verified::new(claims, Vec::new()))
}

/// WPT claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WptClaims {
    /// The service the proof is for.
    pub aud: String,
    /// Expires at.
    pub exp: i64,
    /// Single use at the receiver.
    pub jti: String,
    /// b64url(SHA-256(WIT)).
    pub wth: String,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

/// Signs a WPT for `wit` and audience `aud` with the agent's key, valid `lifetime` seconds.
pub fn sign_wpt(
    wit: &str,
    aud: &str,
    agent_key: &dyn Signer,
    now: i64,
    lifetime: i64,
) -> Result<String, AgentError> {
    let claims = WptClaims {
        aud: aud.to_string(),
        exp: now + lifetime,
        jti: new_jti()?,
        wth: jwt_hash(wit),
        iat: Some(now),
    };
    sign_jwt(&claims, WPT_TYP, &Map::new(), &[], agent_key)
}

/// Verifies a WPT against a verified WIT: signature by `cnf.jwk`, `wth` = hash of the WIT,
/// `aud`, `exp` (at most 5 minutes ahead). The `jti` single use is the receiver's check.
pub fn verify_wpt(
    wpt: &str,
    wit_text: &str,
    wit: &Verified<WitClaims>,
    audience: &str,
    now: i64,
) -> Result<WptClaims, AgentError> {
    let jwt = Jwt::parse(wpt, "WPT", WPT_TYP)?;
    jwt.verify_with_spki(&spki_from_jwk(&wit.cnf.jwk)?)?;
    let claims: WptClaims = jwt.claims_as()?;
    if !ct_eq(&claims.wth, &jwt_hash(wit_text)) {
        return Err(AgentError::Binding("WPT wth is not the hash of this WIT".into()));
    }
    if claims.aud != audience {
        return Err(AgentError::Audience { expected: audience.to_string(), got: claims.aud });
    }
    check_window("WPT", claims.iat.unwrap_or(now), claims.exp, now, WPT_MAX_LIFE)?;
    check_jti("WPT", &claims.jti)?;
    Ok(claims)
}

/// The JWKS of WIT keys (for `GET /v1/bundle`).
pub fn jwks(keys: &[WitKey]) -> Result<Value, AgentError> {
    let list = keys
        .iter()
        .map(|k| {
            let mut jwk = super::jwk::jwk_from_spki(&k.spki_der)?;
            jwk.insert("kid".into(), json!(k.kid));
            jwk.insert("use".into(), json!("sig"));
            Ok(Value::Object(jwk))
        })
        .collect::<Result<Vec<_>, AgentError>>()?;
    Ok(json!({ "keys": list }))
}

/// WIT keys from a JWKS document.
pub fn keys_from_jwks(jwks: &Value) -> Result<Vec<WitKey>, AgentError> {
    let list = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| AgentError::malformed("JWKS", "no keys array"))?;
    list.iter()
        .map(|k| {
            let obj = k.as_object().ok_or_else(|| AgentError::malformed("JWKS", "key is not an object"))?;
            let kid = obj.get("kid").and_then(Value::as_str).unwrap_or_default().to_string();
            Ok(WitKey { kid, spki_der: spki_from_jwk(obj)? })
        })
        .collect()
}
