//! COSE_Sign1 (RFC 9052) via `coset`, as constrained vouchers use it
//! (`application/voucher+cose`): alg in the protected header, certificates in `x5bag` (32) or
//! `x5chain` (33) per RFC 9360, or none when the verifier holds the key.

use super::{check_size, resolve_signer, verified, SignatureError, Trust};
use crate::keys::{Algorithm, Signer};
use crate::Verified;
use coset::{
    CborSerializable, CoseSign1, CoseSign1Builder, Header, HeaderBuilder, Label, RegisteredLabelWithPrivate,
    TaggedCborSerializable,
};
use der::{Decode, Encode};
use x509_cert::Certificate;

/// COSE header label of `x5bag` (RFC 9360).
pub const X5BAG: i64 = 32;
/// COSE header label of `x5chain` (RFC 9360).
pub const X5CHAIN: i64 = 33;

/// A parsed, not yet verified, COSE_Sign1.
#[derive(Debug, Clone)]
pub struct CoseSigned {
    sign1: CoseSign1,
}

/// Signs `payload` as a tagged COSE_Sign1. `x5bag` certificates (the signer's chain) go into
/// the unprotected header, as a MASA voucher carries them; `kid` is optional.
pub fn sign(
    payload: &[u8],
    signer: &dyn Signer,
    content_type: Option<&str>,
    x5bag: &[Certificate],
    kid: Option<&[u8]>,
) -> Result<Vec<u8>, SignatureError> {
    let mut protected = HeaderBuilder::new().algorithm(signer.algorithm().cose());
    if let Some(ct) = content_type {
        protected = protected.content_type(ct.to_string());
    }
    let mut unprotected = HeaderBuilder::new();
    if let Some(k) = kid {
        unprotected = unprotected.key_id(k.to_vec());
    }
    if !x5bag.is_empty() {
        unprotected = unprotected.value(X5BAG, cert_list_value(x5bag)?);
    }
    let mut err = None;
    let s1 = CoseSign1Builder::new()
        .protected(protected.build())
        .unprotected(unprotected.build())
        .payload(payload.to_vec())
        .create_signature(b"", |tbs| match signer.sign(tbs) {
            Ok(s) => s,
            Err(e) => {
                err = Some(e);
                Vec::new()
            }
        })
        .build();
    if let Some(e) = err {
        return Err(SignatureError::Sign(e.to_string()));
    }
    s1.to_tagged_vec().map_err(|e| SignatureError::Sign(e.to_string()))
}

fn cert_list_value(certs: &[Certificate]) -> Result<ciborium::Value, SignatureError> {
    let ders = certs.iter().map(|c| c.to_der().map(ciborium::Value::Bytes)).collect::<Result<Vec<_>, _>>()?;
    Ok(if ders.len() == 1 {
        ders.into_iter().next().unwrap_or(ciborium::Value::Null)
    } else {
        ciborium::Value::Array(ders)
    })
}

impl CoseSigned {
    /// Parses a COSE_Sign1, tagged (18) or untagged.
    pub fn parse(bytes: &[u8]) -> Result<Self, SignatureError> {
        check_size(bytes.len())?;
        let sign1 = CoseSign1::from_tagged_slice(bytes).or_else(|_| CoseSign1::from_slice(bytes)).map_err(
            |e| match e {
                coset::CoseError::ExtraneousData => SignatureError::TrailingData,
                coset::CoseError::DecodeFailed(ciborium::de::Error::Io(_)) => SignatureError::Truncated,
                other => SignatureError::Malformed(format!("COSE_Sign1: {other}")),
            },
        )?;
        if sign1.payload.is_none() {
            return Err(SignatureError::NoContent);
        }
        Ok(CoseSigned { sign1 })
    }

    /// The algorithm from the protected header.
    pub fn algorithm(&self) -> Result<Algorithm, SignatureError> {
        match &self.sign1.protected.header.alg {
            Some(RegisteredLabelWithPrivate::Assigned(a)) => {
                Algorithm::from_cose(*a).ok_or_else(|| SignatureError::Unsupported(format!("COSE alg {a:?}")))
            }
            Some(other) => Err(SignatureError::Unsupported(format!("COSE alg {other:?}"))),
            None => Err(SignatureError::Header("alg missing from the protected header".into())),
        }
    }

    /// The payload bytes, unverified: for display only.
    pub fn unverified_payload(&self) -> &[u8] {
        self.sign1.payload.as_deref().unwrap_or_default()
    }

    /// Certificates from x5chain and x5bag, protected and unprotected (x5chain first).
    pub fn certificates(&self) -> Result<Vec<Certificate>, SignatureError> {
        let mut out = Vec::new();
        for label in [X5CHAIN, X5BAG] {
            for h in [&self.sign1.protected.header, &self.sign1.unprotected] {
                out.extend(certs_in(h, label)?);
            }
        }
        Ok(out)
    }

    /// The `kid` header (protected or unprotected), if any.
    pub fn key_id(&self) -> Option<&[u8]> {
        [&self.sign1.protected.header, &self.sign1.unprotected]
            .into_iter()
            .map(|h| h.key_id.as_slice())
            .find(|k| !k.is_empty())
    }

    /// Verifies the signature with a carried or trusted certificate and its path.
    pub fn verify(&self, trust: &Trust) -> Result<Verified<Vec<u8>>, SignatureError> {
        let alg = self.algorithm()?;
        let certs = self.certificates()?;
        let path = resolve_signer(&certs, &certs, trust, |k| {
            self.sign1.verify_signature(b"", |sig, tbs| k.verify_raw(alg, tbs, sig))
        })?;
        Ok(verified(self.unverified_payload().to_vec(), path))
    }

    /// Verifies the signature with a known public key (DER SubjectPublicKeyInfo), such as the
    /// key of the TLS client that sent the object; returns the payload.
    pub fn verify_with_spki(&self, spki_der: &[u8]) -> Result<Verified<Vec<u8>>, SignatureError> {
        let alg = self.algorithm()?;
        let key = crate::crypto::PublicKey::from_spki_der(spki_der)
            .map_err(|e| SignatureError::Malformed(format!("public key: {e}")))?;
        self.sign1
            .verify_signature(b"", |sig, tbs| key.verify_raw(alg, tbs, sig))
            .map_err(|_| SignatureError::BadSignature)?;
        Ok(verified(self.unverified_payload().to_vec(), Vec::new()))
    }

    /// Removes unprotected x5bag / x5chain (a registrar does this before forwarding a MASA
    /// voucher to a pledge) and re-encodes.
    pub fn without_unprotected_certs(&self) -> Result<Vec<u8>, SignatureError> {
        let mut s = self.sign1.clone();
        s.unprotected.rest.retain(|(l, _)| !matches!(l, Label::Int(X5BAG) | Label::Int(X5CHAIN)));
        s.to_tagged_vec().map_err(|e| SignatureError::Malformed(e.to_string()))
    }
}

fn certs_in(h: &Header, label: i64) -> Result<Vec<Certificate>, SignatureError> {
    let Some((_, v)) = h.rest.iter().find(|(l, _)| *l == Label::Int(label)) else { return Ok(Vec::new()) };
    let items: Vec<&ciborium::Value> = match v {
        ciborium::Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    items
        .into_iter()
        .map(|i| {
            let b = i.as_bytes().ok_or_else(|| {
                SignatureError::Header(format!("COSE header {label} entry is not a byte string"))
            })?;
            Certificate::from_der(b)
                .map_err(|e| SignatureError::Header(format!("COSE header {label} certificate: {e}")))
        })
        .collect()
}
