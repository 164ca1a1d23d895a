//! JWS (RFC 7515): the General JSON serialization used by JWS vouchers
//! (draft-ietf-anima-jws-voucher) and BRSKI-PRM, also the flattened form, and compact JWS for
//! the agent formats. Signatures are ES256 / ES384 / EdDSA; `x5c` carries the signer chain in
//! standard base64 DER.

use super::{check_size, resolve_signer, verified, SignatureError, Trust};
use crate::b64;
use crate::crypto::PublicKey;
use crate::keys::{Algorithm, Signer};
use crate::Verified;
use der::{Decode, Encode};
use serde_json::{json, Map, Value};
use x509_cert::Certificate;

/// Header parameters listed in `crit` that this implementation understands (PRM `created-on`).
const UNDERSTOOD_CRIT: [&str; 1] = ["created-on"];

/// One signature of a JWS with its decoded headers.
#[derive(Debug, Clone)]
pub struct JwsSignature {
    protected_b64: String,
    /// The merged header (protected parameters win over unprotected ones).
    pub header: Map<String, Value>,
    /// The algorithm from the protected header.
    pub alg: Algorithm,
    /// Certificates from `x5c`, signer first.
    pub x5c: Vec<Certificate>,
    signature: Vec<u8>,
}

/// A parsed, not yet verified, JWS.
#[derive(Debug, Clone)]
pub struct Jws {
    payload_b64: String,
    payload: Vec<u8>,
    /// The signatures (one for most objects; two for a registrar-countersigned voucher).
    pub signatures: Vec<JwsSignature>,
}

fn protected_header(
    signer: &dyn Signer,
    chain: &[Certificate],
    typ: Option<&str>,
    extra: &Map<String, Value>,
) -> Result<Map<String, Value>, SignatureError> {
    let mut h = Map::new();
    h.insert("alg".into(), json!(signer.algorithm().jose_name()));
    if let Some(t) = typ {
        h.insert("typ".into(), json!(t));
    }
    if !chain.is_empty() {
        let x5c = chain.iter().map(|c| c.to_der().map(|d| b64::encode(&d))).collect::<Result<Vec<_>, _>>()?;
        h.insert("x5c".into(), json!(x5c));
    }
    for (k, v) in extra {
        h.insert(k.clone(), v.clone());
    }
    Ok(h)
}

fn sign_parts(
    payload: &[u8],
    header: &Map<String, Value>,
    signer: &dyn Signer,
) -> Result<(String, String, String), SignatureError> {
    let protected_b64 = b64::encode_url(
        serde_json::to_string(header).map_err(|e| SignatureError::Sign(e.to_string()))?.as_bytes(),
    );
    let payload_b64 = b64::encode_url(payload);
    let input = format!("{protected_b64}.{payload_b64}");
    let sig = signer.sign(input.as_bytes()).map_err(|e| SignatureError::Sign(e.to_string()))?;
    Ok((protected_b64, payload_b64, b64::encode_url(&sig)))
}

/// Signs `payload` in the General JSON serialization. `chain` (signer first) goes into `x5c`;
/// `typ` and `extra` protected header parameters are added as given.
pub fn sign_general(
    payload: &[u8],
    signer: &dyn Signer,
    chain: &[Certificate],
    typ: Option<&str>,
    extra: &Map<String, Value>,
) -> Result<Vec<u8>, SignatureError> {
    let header = protected_header(signer, chain, typ, extra)?;
    let (protected, payload_b64, signature) = sign_parts(payload, &header, signer)?;
    let jws =
        json!({"payload": payload_b64, "signatures": [{"protected": protected, "signature": signature}]});
    serde_json::to_vec(&jws).map_err(|e| SignatureError::Sign(e.to_string()))
}

/// Signs `payload` as a compact JWS (`header.payload.signature`).
pub fn sign_compact(
    payload: &[u8],
    signer: &dyn Signer,
    chain: &[Certificate],
    typ: Option<&str>,
    extra: &Map<String, Value>,
) -> Result<String, SignatureError> {
    let header = protected_header(signer, chain, typ, extra)?;
    let (protected, payload_b64, signature) = sign_parts(payload, &header, signer)?;
    Ok(format!("{protected}.{payload_b64}.{signature}"))
}

impl Jws {
    /// Parses the General or flattened JSON serialization.
    pub fn parse_json(bytes: &[u8]) -> Result<Self, SignatureError> {
        check_size(bytes.len())?;
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| SignatureError::Malformed(format!("JWS JSON: {e}")))?;
        let obj =
            v.as_object().ok_or_else(|| SignatureError::Malformed("JWS is not a JSON object".into()))?;
        let payload_b64 = str_member(obj, "payload")?.to_string();
        let entries: Vec<&Map<String, Value>> = match obj.get("signatures") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| {
                    s.as_object()
                        .ok_or_else(|| SignatureError::Malformed("signature entry is not an object".into()))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(SignatureError::Malformed("'signatures' is not an array".into())),
            None => vec![obj],
        };
        if entries.is_empty() {
            return Err(SignatureError::SignerCount(0));
        }
        let signatures = entries.into_iter().map(parse_signature).collect::<Result<Vec<_>, _>>()?;
        Self::assemble(payload_b64, signatures)
    }

    /// Parses a compact JWS.
    pub fn parse_compact(text: &str) -> Result<Self, SignatureError> {
        check_size(text.len())?;
        let parts: Vec<&str> = text.trim().split('.').collect();
        let [h, p, s] = parts.as_slice() else {
            return Err(SignatureError::Malformed(format!(
                "compact JWS has {} parts, expected 3",
                parts.len()
            )));
        };
        let mut entry = Map::new();
        entry.insert("protected".into(), json!(h));
        entry.insert("signature".into(), json!(s));
        Self::assemble(p.to_string(), vec![parse_signature(&entry)?])
    }

    fn assemble(payload_b64: String, signatures: Vec<JwsSignature>) -> Result<Self, SignatureError> {
        let payload =
            b64::decode_url(&payload_b64).map_err(|e| SignatureError::Malformed(format!("payload: {e}")))?;
        Ok(Jws { payload_b64, payload, signatures })
    }

    /// The payload bytes, unverified: for display only.
    pub fn unverified_payload(&self) -> &[u8] {
        &self.payload
    }

    /// Verifies: the first signature whose key verifies and whose signer chains to the trust
    /// anchors wins (a countersigned voucher has a MASA and a registrar signature).
    pub fn verify(&self, trust: &Trust) -> Result<Verified<Vec<u8>>, SignatureError> {
        let mut first_err = None;
        for s in &self.signatures {
            match self.verify_one(s, trust) {
                Ok(path) => return Ok(verified(self.payload.clone(), path)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(SignatureError::SignerCount(0)))
    }

    fn verify_one(&self, s: &JwsSignature, trust: &Trust) -> Result<Vec<Certificate>, SignatureError> {
        let input = self.signing_input(s);
        let candidates: Vec<Certificate> = s.x5c.first().cloned().into_iter().collect();
        resolve_signer(&candidates, &s.x5c, trust, |k| k.verify_raw(s.alg, input.as_bytes(), &s.signature))
    }

    /// Verifies signature `index` with a known public key (e.g. a PRM agent found by `kid`).
    pub fn verify_with_key(
        &self,
        index: usize,
        key: &PublicKey,
    ) -> Result<Verified<Vec<u8>>, SignatureError> {
        let s = self.signatures.get(index).ok_or(SignatureError::SignerCount(self.signatures.len()))?;
        key.verify_raw(s.alg, self.signing_input(s).as_bytes(), &s.signature)
            .map_err(|_| SignatureError::BadSignature)?;
        Ok(verified(self.payload.clone(), Vec::new()))
    }

    fn signing_input(&self, s: &JwsSignature) -> String {
        format!("{}.{}", s.protected_b64, self.payload_b64)
    }
}

fn str_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, SignatureError> {
    obj.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| SignatureError::Malformed(format!("JWS member '{name}' missing or not a string")))
}

fn parse_signature(entry: &Map<String, Value>) -> Result<JwsSignature, SignatureError> {
    let protected_b64 = str_member(entry, "protected")?.to_string();
    let raw =
        b64::decode_url(&protected_b64).map_err(|e| SignatureError::Header(format!("protected: {e}")))?;
    let protected: Map<String, Value> = serde_json::from_slice(&raw)
        .map_err(|e| SignatureError::Header(format!("protected header JSON: {e}")))?;
    let alg_name = protected
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| SignatureError::Header("'alg' missing from the protected header".into()))?;
    let alg = Algorithm::from_jose_name(alg_name)
        .ok_or_else(|| SignatureError::Unsupported(format!("JWS alg {alg_name}")))?;
    check_crit(&protected)?;
    let mut header = entry.get("header").and_then(Value::as_object).cloned().unwrap_or_default();
    header.extend(protected);
    let x5c = parse_x5c(header.get("x5c"))?;
    let signature = b64::decode_url(str_member(entry, "signature")?)
        .map_err(|e| SignatureError::Malformed(format!("signature: {e}")))?;
    Ok(JwsSignature { protected_b64, header, alg, x5c, signature })
}

fn check_crit(protected: &Map<String, Value>) -> Result<(), SignatureError> {
    let Some(crit) = protected.get("crit") else { return Ok(()) };
    let names = crit.as_array().ok_or_else(|| SignatureError::Header("'crit' is not an array".into()))?;
    for n in names {
        let n = n.as_str().ok_or_else(|| SignatureError::Header("'crit' entry is not a string".into()))?;
        if !UNDERSTOOD_CRIT.contains(&n) || !protected.contains_key(n) {
            return Err(SignatureError::Header(format!(
                "critical header parameter '{n}' is not understood or absent"
            )));
        }
    }
    Ok(())
}

fn parse_x5c(v: Option<&Value>) -> Result<Vec<Certificate>, SignatureError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let arr = v.as_array().ok_or_else(|| SignatureError::Header("'x5c' is not an array".into()))?;
    arr.iter()
        .map(|c| {
            let s = c.as_str().ok_or_else(|| SignatureError::Header("'x5c' entry is not a string".into()))?;
            let der = b64::decode_lenient(s).map_err(|e| SignatureError::Header(format!("x5c: {e}")))?;
            Certificate::from_der(&der).map_err(|e| SignatureError::Header(format!("x5c certificate: {e}")))
        })
        .collect()
}
