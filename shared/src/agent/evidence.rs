//! Evidence from the Identity Proxy: an EAT (RFC 9711) as a CWT in a COSE_Sign1 (tag 18),
//! signed with the proxy's LDevID key (or TPM attestation key), the chain in `x5chain`, and
//! wrapped in a CMW collection (JSON form). `eat_nonce` = [server nonce, acr_hash] binds it to
//! one request; a submodule per agent carries what the kernel told the proxy about the caller.
//!
//! Claim keys beyond RFC 9711 (private use, recorded in `docs/agent-issuance.md`):
//! -75100 executable digest `[-16, h'sha256']`, -75101 caller uid, -75102 caller pid, and the
//! EAT-AI keys -75000 ai_model_id, -75001 ai_model_hash, -75010 capabilities, -75011 allowed_apis.

use super::AgentError;
use crate::b64;
use crate::keys::Signer;
use crate::signed::cose::{CoseSigned, X5CHAIN};
use crate::Verified;
use ciborium::Value as Cbor;
use coset::{CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use der::Encode;
use serde_json::{json, Value};
use x509_cert::Certificate;

/// Media type of the EAT in the CMW collection.
pub const EAT_MEDIA_TYPE: &str = "application/eat+cwt";
/// The EAT profile this proxy emits.
pub const EAT_PROFILE: &str = "tag:brski.dev,2026:agent-proxy-evidence-v1";
/// CMW indicator "evidence" (RFC 9193 / draft-ietf-rats-msg-wrap).
pub const CMW_EVIDENCE: u64 = 4;
/// Largest evidence accepted.
pub const MAX_EVIDENCE_LEN: usize = 64 * 1024;

const EAT_NONCE: i64 = 10;
const IAT: i64 = 6;
const UEID: i64 = 256;
const OEMBOOT: i64 = 262;
const DBGSTAT: i64 = 263;
const PROFILE: i64 = 265;
const SUBMODS: i64 = 266;
const SWNAME: i64 = 270;
const SWVERSION: i64 = 271;
const EXE_DIGEST: i64 = -75100;
const CALLER_UID: i64 = -75101;
const CALLER_PID: i64 = -75102;
const AI_MODEL_ID: i64 = -75000;
const AI_MODEL_HASH: i64 = -75001;
const CAPABILITIES: i64 = -75010;
const ALLOWED_APIS: i64 = -75011;
/// COSE algorithm id of SHA-256 (for digests).
const COSE_SHA256: i64 = -16;

/// What the proxy knows about one calling agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentSubmodule {
    /// The agent id (the submodule's key).
    pub agent_id: String,
    /// Executable path or name.
    pub swname: Option<String>,
    /// Version, when known.
    pub swversion: Option<String>,
    /// SHA-256 of the executable the kernel reports for the caller's pid.
    pub exe_sha256: Option<Vec<u8>>,
    /// Caller uid (SO_PEERCRED).
    pub uid: Option<u32>,
    /// Caller pid (SO_PEERCRED).
    pub pid: Option<u32>,
    /// EAT-AI: model id.
    pub ai_model_id: Option<String>,
    /// EAT-AI: model hash.
    pub ai_model_hash: Option<Vec<u8>>,
    /// EAT-AI: capabilities.
    pub capabilities: Vec<String>,
    /// EAT-AI: allowed APIs.
    pub allowed_apis: Vec<String>,
}

/// The EAT claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvidenceClaims {
    /// `eat_nonce`: [server nonce, acr_hash] (raw bytes).
    pub nonces: Vec<Vec<u8>>,
    /// Issued at.
    pub iat: i64,
    /// The proxy's UEID.
    pub ueid: Vec<u8>,
    /// OEM-authorized boot, when the platform reports it.
    pub oemboot: Option<bool>,
    /// Debug status, when the platform reports it.
    pub dbgstat: Option<u64>,
    /// The EAT profile.
    pub profile: String,
    /// One submodule per agent.
    pub submods: Vec<AgentSubmodule>,
}

fn text(s: &str) -> Cbor {
    Cbor::Text(s.to_string())
}

fn submodule_map(a: &AgentSubmodule) -> Cbor {
    let mut m: Vec<(Cbor, Cbor)> = Vec::new();
    let mut put = |k: i64, v: Cbor| m.push((Cbor::Integer(k.into()), v));
    if let Some(s) = &a.swname {
        put(SWNAME, text(s));
    }
    if let Some(s) = &a.swversion {
        put(SWVERSION, text(s));
    }
    if let Some(d) = &a.exe_sha256 {
        put(EXE_DIGEST, Cbor::Array(vec![Cbor::Integer(COSE_SHA256.into()), Cbor::Bytes(d.clone())]));
    }
    if let Some(u) = a.uid {
        put(CALLER_UID, Cbor::Integer(u.into()));
    }
    if let Some(p) = a.pid {
        put(CALLER_PID, Cbor::Integer(p.into()));
    }
    if let Some(s) = &a.ai_model_id {
        put(AI_MODEL_ID, text(s));
    }
    if let Some(h) = &a.ai_model_hash {
        put(AI_MODEL_HASH, Cbor::Bytes(h.clone()));
    }
    if !a.capabilities.is_empty() {
        put(CAPABILITIES, Cbor::Array(a.capabilities.iter().map(|c| text(c)).collect()));
    }
    if !a.allowed_apis.is_empty() {
        put(ALLOWED_APIS, Cbor::Array(a.allowed_apis.iter().map(|c| text(c)).collect()));
    }
    Cbor::Map(m)
}

fn claims_map(c: &EvidenceClaims) -> Cbor {
    let mut m: Vec<(Cbor, Cbor)> = Vec::new();
    let mut put = |k: i64, v: Cbor| m.push((Cbor::Integer(k.into()), v));
    put(EAT_NONCE, Cbor::Array(c.nonces.iter().map(|n| Cbor::Bytes(n.clone())).collect()));
    put(IAT, Cbor::Integer(c.iat.into()));
    put(UEID, Cbor::Bytes(c.ueid.clone()));
    if let Some(b) = c.oemboot {
        put(OEMBOOT, Cbor::Bool(b));
    }
    if let Some(d) = c.dbgstat {
        put(DBGSTAT, Cbor::Integer(d.into()));
    }
    put(PROFILE, text(&c.profile));
    let subs = c.submods.iter().map(|a| (text(&a.agent_id), submodule_map(a))).collect();
    put(SUBMODS, Cbor::Map(subs));
    Cbor::Map(m)
}

/// Signs the EAT as a tagged COSE_Sign1 with `x5chain` (signer first) in the protected header.
pub fn sign_eat(
    claims: &EvidenceClaims,
    signer: &dyn Signer,
    x5chain: &[Certificate],
) -> Result<Vec<u8>, AgentError> {
    let mut payload = Vec::new();
    ciborium::into_writer(&claims_map(claims), &mut payload).map_err(|e| AgentError::Sign(e.to_string()))?;
    let chain = x5chain
        .iter()
        .map(|c| c.to_der().map(Cbor::Bytes))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AgentError::Sign(e.to_string()))?;
    let chain_value =
        if chain.len() == 1 { chain.into_iter().next().unwrap_or(Cbor::Null) } else { Cbor::Array(chain) };
    let protected = HeaderBuilder::new()
        .algorithm(signer.algorithm().cose())
        .content_type(EAT_MEDIA_TYPE.to_string())
        .value(X5CHAIN, chain_value)
        .build();
    let mut err = None;
    let s1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .create_signature(b"", |tbs| {
            signer.sign(tbs).unwrap_or_else(|e| {
                err = Some(e);
                Vec::new()
            })
        })
        .build();
    if let Some(e) = err {
        return Err(AgentError::Sign(e.to_string()));
    }
    s1.to_tagged_vec().map_err(|e| AgentError::Sign(e.to_string()))
}

/// Verifies an EAT signed by the proxy whose certificate is `proxy_cert` (the LDevID it
/// authenticated with): the signature with that key, and, when `x5chain` is present, its leaf
/// must be that certificate. Returns the decoded claims.
pub fn verify_eat(bytes: &[u8], proxy_cert: &Certificate) -> Result<Verified<EvidenceClaims>, AgentError> {
    if bytes.len() > MAX_EVIDENCE_LEN {
        return Err(AgentError::Evidence(format!("larger than {MAX_EVIDENCE_LEN} bytes")));
    }
    let cose = CoseSigned::parse(bytes).map_err(|e| AgentError::Evidence(e.to_string()))?;
    let certs = cose.certificates().map_err(|e| AgentError::Evidence(e.to_string()))?;
    if certs.first().is_some_and(|leaf| leaf != proxy_cert) {
        return Err(AgentError::Evidence("x5chain names another signer than the proxy's LDevID".into()));
    }
    let payload = cose
        .verify_with_spki(&crate::pki::spki_der(proxy_cert))
        .map_err(|_| AgentError::Evidence("EAT signature does not verify with the proxy's key".into()))?;
    payload.try_map(|p| parse_claims(&p))
}

fn int_key(k: &Cbor) -> Option<i64> {
    k.as_integer().and_then(|i| i64::try_from(i).ok())
}

fn parse_claims(payload: &[u8]) -> Result<EvidenceClaims, AgentError> {
    let bad = |d: &str| AgentError::Evidence(format!("EAT claims: {d}"));
    let v: Cbor = ciborium::from_reader(payload).map_err(|e| bad(&e.to_string()))?;
    let map = v.as_map().ok_or_else(|| bad("not a map"))?;
    let mut c = EvidenceClaims::default();
    for (k, v) in map {
        match int_key(k) {
            Some(EAT_NONCE) => {
                c.nonces = match v {
                    Cbor::Bytes(b) => vec![b.clone()],
                    Cbor::Array(a) => a.iter().filter_map(|n| n.as_bytes().cloned()).collect(),
                    _ => return Err(bad("eat_nonce is not bytes")),
                }
            }
            Some(IAT) => {
                c.iat = v.as_integer().and_then(|i| i64::try_from(i).ok()).ok_or_else(|| bad("iat"))?
            }
            Some(UEID) => c.ueid = v.as_bytes().cloned().ok_or_else(|| bad("ueid"))?,
            Some(OEMBOOT) => c.oemboot = v.as_bool(),
            Some(DBGSTAT) => c.dbgstat = v.as_integer().and_then(|i| u64::try_from(i).ok()),
            Some(PROFILE) => c.profile = v.as_text().unwrap_or_default().to_string(),
            Some(SUBMODS) => c.submods = parse_submods(v)?,
            _ => {}
        }
    }
    Ok(c)
}

fn parse_submods(v: &Cbor) -> Result<Vec<AgentSubmodule>, AgentError> {
    let map = v.as_map().ok_or_else(|| AgentError::Evidence("submods is not a map".into()))?;
    let mut out = Vec::new();
    for (k, m) in map {
        let mut a =
            AgentSubmodule { agent_id: k.as_text().unwrap_or_default().to_string(), ..Default::default() };
        for (sk, sv) in m.as_map().map(Vec::as_slice).unwrap_or_default() {
            let texts =
                || sv.as_array().map(|a| a.iter().filter_map(|t| t.as_text().map(str::to_string)).collect());
            match int_key(sk) {
                Some(SWNAME) => a.swname = sv.as_text().map(str::to_string),
                Some(SWVERSION) => a.swversion = sv.as_text().map(str::to_string),
                Some(EXE_DIGEST) => {
                    a.exe_sha256 = sv.as_array().and_then(|d| d.get(1)).and_then(|b| b.as_bytes().cloned())
                }
                Some(CALLER_UID) => a.uid = sv.as_integer().and_then(|i| u32::try_from(i).ok()),
                Some(CALLER_PID) => a.pid = sv.as_integer().and_then(|i| u32::try_from(i).ok()),
                Some(AI_MODEL_ID) => a.ai_model_id = sv.as_text().map(str::to_string),
                Some(AI_MODEL_HASH) => a.ai_model_hash = sv.as_bytes().cloned(),
                Some(CAPABILITIES) => a.capabilities = texts().unwrap_or_default(),
                Some(ALLOWED_APIS) => a.allowed_apis = texts().unwrap_or_default(),
                _ => {}
            }
        }
        out.push(a);
    }
    Ok(out)
}

impl EvidenceClaims {
    /// Whether `eat_nonce` holds both the server nonce and the ACR hash (raw bytes), compared
    /// in constant time.
    pub fn binds(&self, server_nonce: &[u8], acr_hash: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let has =
            |want: &[u8]| self.nonces.iter().any(|n| n.len() == want.len() && bool::from(n.ct_eq(want)));
        has(server_nonce) && has(acr_hash)
    }
}

/// Wraps evidence items in a CMW collection (JSON form): `{"eat": [media type, b64url, 4]}`,
/// plus a TPM quote item when present.
pub fn cmw_collection(eat: &[u8], tpm_quote: Option<(&str, &[u8])>) -> Value {
    let mut v = json!({ "eat": [EAT_MEDIA_TYPE, b64::encode_url(eat), CMW_EVIDENCE] });
    if let Some((media_type, quote)) = tpm_quote {
        v["tpm"] = json!([media_type, b64::encode_url(quote), CMW_EVIDENCE]);
    }
    v
}

/// The EAT bytes from a CMW collection.
pub fn eat_from_cmw(cmw: &Value) -> Result<Vec<u8>, AgentError> {
    let item =
        cmw.get("eat").and_then(Value::as_array).ok_or_else(|| AgentError::Evidence("no eat item".into()))?;
    if item.first().and_then(Value::as_str) != Some(EAT_MEDIA_TYPE) {
        return Err(AgentError::Evidence(format!("eat item is not {EAT_MEDIA_TYPE}")));
    }
    let data = item
        .get(1)
        .and_then(Value::as_str)
        .ok_or_else(|| AgentError::Evidence("eat item has no value".into()))?;
    b64::decode_url(data).map_err(|e| AgentError::Evidence(format!("eat item: {e}")))
}
