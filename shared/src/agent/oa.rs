//! Owner Approval (OA): one compact JWS schema for all three owner models, signed by a key
//! the Identity Server (and relying parties) hold as an owner trust anchor.

use super::jwk::{jwk_from_spki, spki_from_jwk};
use super::jwt::{check_jti, check_window, ct_eq, sign_jwt, Jwt};
use super::{check_owner_id, AgentError, Model};
use crate::keys::Signer;
use crate::pki::spki_der;
use crate::Verified;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use x509_cert::Certificate;

/// JOSE `typ` of an OA.
pub const OA_TYP: &str = "owner-approval+jwt";
/// Default (and largest) grant: renewals with the same key may reuse an approval this long.
pub const DEFAULT_GRANT_SECS: i64 = 30 * 24 * 3600;

/// Constraints the owner puts on what may be issued.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraints {
    /// Largest credential lifetime in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ttl: Option<u64>,
    /// Formats the owner allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<String>>,
}

/// Model 2's organization binding: hashes of the gateway's and the proxy's certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgBinding {
    /// b64url SHA-256 of the gateway's (organization) certificate.
    pub cred: String,
    /// b64url SHA-256 of the proxy's LDevID certificate.
    pub via: String,
}

/// The OA claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OaClaims {
    /// The owner id.
    pub iss: String,
    /// The agent id.
    pub sub: String,
    /// The trust domain.
    pub aud: String,
    /// Issued at.
    pub iat: i64,
    /// Expires at.
    pub exp: i64,
    /// Single use.
    pub jti: String,
    /// The model this approval is for.
    pub model: Model,
    /// RFC 7638 thumbprint of the ACR's jwk.
    pub agent_jkt: String,
    /// Models 1 and 2: the ACR hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr_hash: Option<String>,
    /// Model 3: the challenge hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chal_hash: Option<String>,
    /// Model 3: the challenge nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Renewals with the same agent key may reuse this approval until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_exp: Option<i64>,
    /// What the owner allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Constraints>,
    /// Model 2: the organization binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<OrgBinding>,
}

impl OaClaims {
    /// The grant's end: `grant_exp` capped at `iat + cap`, never before `exp`.
    pub fn grant_until(&self, cap: i64) -> i64 {
        self.grant_exp.unwrap_or(self.exp).min(self.iat + cap).max(self.exp)
    }
}

/// How the OA names its signing key.
#[derive(Debug, Clone)]
pub enum OwnerKeyHeader {
    /// `kid` of a provisioned owner anchor.
    Kid(String),
    /// The public key itself (`jwk`), which must equal a provisioned anchor.
    Jwk,
    /// A certificate chain (`x5c`) whose leaf key must equal a provisioned anchor.
    X5c(Vec<Certificate>),
}

/// Signs an OA with the owner's key.
pub fn sign_oa(
    claims: &OaClaims,
    owner_key: &dyn Signer,
    key: &OwnerKeyHeader,
) -> Result<String, AgentError> {
    let mut header = Map::new();
    let chain: &[Certificate] = match key {
        OwnerKeyHeader::Kid(k) => {
            header.insert("kid".into(), Value::String(k.clone()));
            &[]
        }
        OwnerKeyHeader::Jwk => {
            header.insert("jwk".into(), Value::Object(jwk_from_spki(&owner_key.public_key_der())?));
            &[]
        }
        OwnerKeyHeader::X5c(c) => c,
    };
    sign_jwt(claims, OA_TYP, &header, chain, owner_key)
}

/// A provisioned owner key: which owner ids it may approve for, its `kid`, its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerAnchor {
    /// Owner id (exact, or a prefix pattern ending in `*`).
    pub owner: String,
    /// Key id (for OAs that name the key by `kid`).
    pub kid: String,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

/// The owner trust anchors of a server or relying party.
#[derive(Debug, Clone, Default)]
pub struct OwnerAnchors {
    anchors: Vec<OwnerAnchor>,
}

impl OwnerAnchors {
    /// Anchors from a list.
    pub fn new(anchors: Vec<OwnerAnchor>) -> Self {
        OwnerAnchors { anchors }
    }

    /// Adds an anchor.
    pub fn push(&mut self, anchor: OwnerAnchor) {
        self.anchors.push(anchor);
    }

    /// Every anchor.
    pub fn iter(&self) -> impl Iterator<Item = &OwnerAnchor> {
        self.anchors.iter()
    }

    /// Whether `spki_der` is an anchor of owner `owner`.
    pub fn contains(&self, owner: &str, spki_der: &[u8]) -> bool {
        self.anchors.iter().any(|a| owner_matches(&a.owner, owner) && a.spki_der == spki_der)
    }

    /// The keys of `owner` an OA may be signed with, the one it names first: by `kid` (a
    /// relying party may file the key under another kid, so the owner's other keys follow), by
    /// `jwk` or by `x5c` leaf (those must match exactly). The signature decides.
    fn candidates(&self, owner: &str, jwt: &Jwt) -> Result<Vec<&OwnerAnchor>, AgentError> {
        let mine: Vec<&OwnerAnchor> =
            self.anchors.iter().filter(|a| owner_matches(&a.owner, owner)).collect();
        let header = jwt.header();
        let found: Vec<&OwnerAnchor> = if let Some(kid) = header.get("kid").and_then(Value::as_str) {
            let (named, others): (Vec<_>, Vec<_>) = mine.into_iter().partition(|a| a.kid == kid);
            named.into_iter().chain(others).collect()
        } else if let Some(jwk) = header.get("jwk").and_then(Value::as_object) {
            let spki = spki_from_jwk(jwk)?;
            mine.into_iter().filter(|a| a.spki_der == spki).collect()
        } else if let Some(leaf) = jwt.x5c().first() {
            let spki = spki_der(leaf);
            mine.into_iter().filter(|a| a.spki_der == spki).collect()
        } else {
            return Err(AgentError::malformed("OA", "header names no key (kid, jwk or x5c)"));
        };
        if found.is_empty() {
            return Err(AgentError::UnknownOwner(format!(
                "no provisioned key of owner {owner} matches the OA"
            )));
        }
        Ok(found)
    }

    /// The owner key whose signature over `jwt` verifies.
    fn resolve(&self, owner: &str, jwt: &Jwt) -> Result<&OwnerAnchor, AgentError> {
        let candidates = self.candidates(owner, jwt)?;
        let mut last = AgentError::Signature("OA");
        for a in candidates {
            match jwt.verify_with_spki(&a.spki_der) {
                Ok(()) => return Ok(a),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

fn owner_matches(pattern: &str, owner: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => owner.starts_with(prefix),
        None => pattern == owner,
    }
}

/// What an OA must bind to.
#[derive(Debug, Clone, Copy)]
pub enum OaBinding<'a> {
    /// Models 1 and 2: the ACR hash.
    Acr(&'a str),
    /// Model 3: the challenge hash and the challenge nonce.
    Challenge {
        /// b64url SHA-256 of the compact challenge.
        chal_hash: &'a str,
        /// The challenge's nonce.
        nonce: &'a str,
    },
}

/// The request an OA is checked against.
#[derive(Debug, Clone, Copy)]
pub struct OaCheck<'a> {
    /// The trust domain (`aud`).
    pub audience: &'a str,
    /// Now (Unix seconds).
    pub now: i64,
    /// The agent id the credential will carry.
    pub agent_id: &'a str,
    /// The ACR key's thumbprint.
    pub agent_jkt: &'a str,
    /// The model the request names.
    pub model: Model,
    /// The owner the request names.
    pub owner: &'a str,
    /// What it must bind.
    pub binding: OaBinding<'a>,
}

/// A verified OA.
#[derive(Debug, Clone)]
pub struct OwnerApproval {
    /// The claims.
    pub claims: OaClaims,
    /// The owner key that signed it.
    pub owner_key: OwnerAnchor,
    /// The compact OA (embedded in credentials for offline re-verification).
    pub text: String,
    /// The `x5c` chain, if the OA carried one (model 2: the gateway certificate first).
    pub x5c: Vec<Certificate>,
}

/// Longest OA lifetime per model (seconds).
pub fn oa_max_life(model: Model) -> i64 {
    match model {
        Model::AgentMediated => 600,
        Model::OwnerMediated => 60,
        Model::ServerMediated | Model::None => 300,
    }
}

/// Verifies an OA in the spec's order: owner anchor, signature, `aud`, time, model, `sub`,
/// `agent_jkt`, `acr_hash` or `chal_hash` + `nonce`. The `jti` single use and model 2's
/// gateway identity are the caller's checks.
pub fn verify_oa(
    text: &str,
    anchors: &OwnerAnchors,
    check: &OaCheck,
) -> Result<Verified<OwnerApproval>, AgentError> {
    let jwt = Jwt::parse(text, "OA", OA_TYP)?;
    let iss = jwt.unverified_claims().get("iss").and_then(Value::as_str).unwrap_or_default().to_string();
    check_owner_id(&iss)?;
    if iss != check.owner {
        return Err(AgentError::Binding(format!(
            "OA issuer {iss} is not the requested owner {}",
            check.owner
        )));
    }
    let anchor = anchors.resolve(&iss, &jwt)?.clone();
    let claims: OaClaims = jwt.claims_as()?;
    if claims.aud != check.audience {
        return Err(AgentError::Audience { expected: check.audience.to_string(), got: claims.aud });
    }
    check_window("OA", claims.iat, claims.exp, check.now, oa_max_life(claims.model))?;
    check_jti("OA", &claims.jti)?;
    check_binding(&claims, check)?;
    let oa =
        OwnerApproval { claims, owner_key: anchor, text: jwt.text().to_string(), x5c: jwt.x5c().to_vec() };
    Ok(Verified::new(oa, Vec::new()))
}

fn check_binding(c: &OaClaims, check: &OaCheck) -> Result<(), AgentError> {
    if c.model != check.model {
        return Err(AgentError::Binding(format!(
            "OA is for model {}, the request is {}",
            c.model, check.model
        )));
    }
    if c.sub != check.agent_id {
        return Err(AgentError::Binding(format!("OA sub {} is not the agent id {}", c.sub, check.agent_id)));
    }
    if !ct_eq(&c.agent_jkt, check.agent_jkt) {
        return Err(AgentError::Binding("agent_jkt is not the thumbprint of the ACR's key".into()));
    }
    match check.binding {
        OaBinding::Acr(h) if !c.acr_hash.as_deref().is_some_and(|a| ct_eq(a, h)) => {
            Err(AgentError::Binding("acr_hash does not match this ACR".into()))
        }
        OaBinding::Challenge { chal_hash, nonce } => {
            if !c.chal_hash.as_deref().is_some_and(|a| ct_eq(a, chal_hash)) {
                return Err(AgentError::Binding("chal_hash does not match the challenge".into()));
            }
            if !c.nonce.as_deref().is_some_and(|a| ct_eq(a, nonce)) {
                return Err(AgentError::Binding("nonce does not match the challenge".into()));
            }
            Ok(())
        }
        OaBinding::Acr(_) => Ok(()),
    }
}

/// Re-verifies an OA embedded in a credential, offline: `typ` and the signature with
/// `owner_spki`; the caller checks what it binds. Time is not checked (the OA was valid when
/// the credential was issued; the credential's own validity governs).
pub fn verify_oa_signature(text: &str, owner_spki: &[u8]) -> Result<OaClaims, AgentError> {
    let jwt = Jwt::parse(text, "OA", OA_TYP)?;
    jwt.verify_with_spki(owner_spki)?;
    jwt.claims_as()
}

/// Re-verifies an embedded OA whose key is found among `anchors` (for WITs, which carry the
/// OA but not the owner key).
pub fn verify_oa_with_anchors(
    text: &str,
    anchors: &OwnerAnchors,
) -> Result<(OaClaims, OwnerAnchor), AgentError> {
    let jwt = Jwt::parse(text, "OA", OA_TYP)?;
    let iss = jwt.unverified_claims().get("iss").and_then(Value::as_str).unwrap_or_default().to_string();
    let anchor = anchors.resolve(&iss, &jwt)?.clone();
    Ok((jwt.claims_as()?, anchor))
}
