//! PKCS#10 certification requests: parse, check the self-signature (the proof of possession),
//! and read what the requester asked for.

use super::profile::San;
use crate::crypto::PublicKey;
use crate::verified::Verified;
use const_oid::db::rfc5912::{ID_CE_SUBJECT_ALT_NAME, ID_EXTENSION_REQ};
use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::Extensions;
use x509_cert::name::Name;
use x509_cert::request::CertReq;

/// The challengePassword attribute (PKCS#9), where EST carries channel-binding values.
pub const CHALLENGE_PASSWORD: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.7");

/// Largest CSR accepted, in bytes: generous for RSA-4096 with many extensions.
pub const MAX_CSR_LEN: usize = 16 * 1024;

/// Why a CSR was refused.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// The bytes are not a DER PKCS#10 request.
    #[error("malformed CSR: {0}")]
    Malformed(String),
    /// Bigger than [`MAX_CSR_LEN`].
    #[error("CSR of {0} bytes exceeds the {MAX_CSR_LEN}-byte limit")]
    TooLarge(usize),
    /// Bytes after the request.
    #[error("trailing data after the CSR")]
    TrailingData,
    /// The key type is not supported.
    #[error("CSR public key: {0}")]
    PublicKey(String),
    /// The signature algorithm is not supported (e.g. SHA-1).
    #[error("CSR signature algorithm not supported: {0}")]
    UnsupportedAlgorithm(String),
    /// The self-signature does not verify: no proof of possession.
    #[error("CSR signature does not verify (no proof of possession of the private key): {0}")]
    BadSignature(String),
}

/// A parsed certification request.
#[derive(Debug, Clone)]
pub struct Csr {
    req: CertReq,
    der: Vec<u8>,
}

impl Csr {
    /// Parses a DER CSR and verifies its self-signature.
    pub fn verify_der(der: &[u8]) -> Result<Verified<Csr>, CsrError> {
        if der.len() > MAX_CSR_LEN {
            return Err(CsrError::TooLarge(der.len()));
        }
        let req = CertReq::from_der(der).map_err(|e| match e.kind() {
            der::ErrorKind::TrailingData { .. } => CsrError::TrailingData,
            _ => CsrError::Malformed(e.to_string()),
        })?;
        let spki = req.info.public_key.to_der().map_err(|e| CsrError::Malformed(e.to_string()))?;
        let key = PublicKey::from_spki_der(&spki).map_err(|e| CsrError::PublicKey(e.to_string()))?;
        let tbs = req.info.to_der().map_err(|e| CsrError::Malformed(e.to_string()))?;
        let sig = req
            .signature
            .as_bytes()
            .ok_or_else(|| CsrError::Malformed("signature has unused bits".into()))?;
        key.verify_x509(&req.algorithm.oid, &tbs, sig).map_err(|e| match e {
            crate::crypto::CryptoError::Algorithm(a) => CsrError::UnsupportedAlgorithm(a),
            other => CsrError::BadSignature(other.to_string()),
        })?;
        Ok(Verified::new(Csr { req, der: der.to_vec() }, Vec::new()))
    }

    /// Parses a PEM (`CERTIFICATE REQUEST`) or bare base64 CSR and verifies it.
    pub fn verify_pem_or_base64(text: &str) -> Result<Verified<Csr>, CsrError> {
        let der = if text.contains("-----BEGIN") {
            der::pem::decode_vec(text.trim().as_bytes()).map_err(|e| CsrError::Malformed(e.to_string()))?.1
        } else {
            crate::b64::decode_lenient(text).map_err(CsrError::Malformed)?
        };
        Self::verify_der(&der)
    }

    /// The request as parsed.
    pub fn request(&self) -> &CertReq {
        &self.req
    }

    /// The DER bytes as received.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The requested subject.
    pub fn subject(&self) -> &Name {
        &self.req.info.subject
    }

    /// The requested public key, DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.req.info.public_key.to_der().unwrap_or_default()
    }

    /// The value of a single-valued attribute (raw DER of the value), if present.
    pub fn attribute(&self, oid: ObjectIdentifier) -> Option<Vec<u8>> {
        let attr = self.req.info.attributes.iter().find(|a| a.oid == oid)?;
        attr.values.iter().next().and_then(|v| v.to_der().ok())
    }

    /// The challengePassword as text, if present (EST channel binding).
    pub fn challenge_password(&self) -> Option<String> {
        let attr = self.req.info.attributes.iter().find(|a| a.oid == CHALLENGE_PASSWORD)?;
        let v = attr.values.iter().next()?;
        std::str::from_utf8(v.value()).ok().map(str::to_string)
    }

    /// Extensions requested through the extensionRequest attribute.
    pub fn requested_extensions(&self) -> Extensions {
        let Some(attr) = self.req.info.attributes.iter().find(|a| a.oid == ID_EXTENSION_REQ) else {
            return Vec::new();
        };
        attr.values.iter().next().and_then(|v| v.decode_as::<Extensions>().ok()).unwrap_or_default()
    }

    /// subjectAltName entries requested (DNS, URI, IP, email; other forms are dropped).
    pub fn requested_san(&self) -> Vec<San> {
        let exts = self.requested_extensions();
        let Some(ext) = exts.iter().find(|e| e.extn_id == ID_CE_SUBJECT_ALT_NAME) else {
            return Vec::new();
        };
        let Ok(san) = SubjectAltName::from_der(ext.extn_value.as_bytes()) else {
            return Vec::new();
        };
        san.0.iter().filter_map(San::from_general_name).collect()
    }
}

/// Builds a DER PKCS#10 request for `signer`'s key with `subject` and, if any, a
/// subjectAltName extension request. The signature is the proof of possession.
pub fn build_csr(
    subject: &Name,
    san: &[San],
    signer: &dyn crate::keys::Signer,
) -> Result<Vec<u8>, super::PkiError> {
    use super::signer_adapter::{DerSig, X509Signer};
    use x509_cert::builder::{Builder, RequestBuilder};
    let mut b = RequestBuilder::new(subject.clone()).map_err(|e| super::PkiError::Der(e.to_string()))?;
    if !san.is_empty() {
        let names = san.iter().map(San::to_general_name).collect::<Result<Vec<_>, _>>()?;
        b.add_extension(&SubjectAltName(names))?;
    }
    let req = b.build::<_, DerSig>(&X509Signer(signer)).map_err(|e| super::PkiError::Sign(e.to_string()))?;
    Ok(req.to_der()?)
}
