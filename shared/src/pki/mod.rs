//! X.509 for BRSKI: certificate authorities, issuing from CSRs under a profile, IDevIDs with
//! the serialNumber and MASA URL, and chain verification at a chosen time.

mod ca;
mod chain;
mod csr;
mod idevid;
mod names;
mod profile;
pub(crate) mod signer_adapter;

pub use ca::{create_ca, masa_url_extension, CertificateAuthority};
pub use chain::{verify_chain, ChainError};
pub use csr::{build_csr, Csr, CsrError};
pub use csr::{CHALLENGE_PASSWORD, MAX_CSR_LEN};
pub use idevid::{
    certificate_san, idevid_issuer, masa_url, serial_number, spki_der, subject_key_id,
    subject_key_id_extension, IDEVID_MASA_URL_OID,
};
pub use names::{name_with_serial, parse_name};
pub use profile::{KeyUsageBit, Profile, San, SubjectRule};

use der::{Decode, DecodePem, Encode};
use x509_cert::Certificate;

/// Errors from building or reading certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A certificate or name could not be parsed or encoded.
    #[error("malformed certificate data: {0}")]
    Der(String),
    /// The signing key failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The CA key does not match the CA certificate.
    #[error("the CA key does not match the CA certificate's public key")]
    KeyMismatch,
    /// The request or profile asks for something the profile forbids.
    #[error("profile refused the request: {0}")]
    Refused(String),
}

impl From<der::Error> for PkiError {
    fn from(e: der::Error) -> Self {
        PkiError::Der(e.to_string())
    }
}

/// Parses one certificate from DER.
pub fn cert_from_der(der: &[u8]) -> Result<Certificate, PkiError> {
    Ok(Certificate::from_der(der)?)
}

/// Parses every CERTIFICATE block in a PEM bundle (at least one); other blocks, such as a
/// private key kept in the same file, are skipped.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<Certificate>, PkiError> {
    let text = std::str::from_utf8(pem).map_err(|_| PkiError::Der("PEM input is not text".into()))?;
    let mut certs = Vec::new();
    for block in pem_blocks(text) {
        let (label, der) =
            der::pem::decode_vec(block.as_bytes()).map_err(|e| PkiError::Der(format!("PEM: {e}")))?;
        if label == "CERTIFICATE" {
            certs.push(Certificate::from_der(&der)?);
        }
    }
    if certs.is_empty() {
        return Err(PkiError::Der("no CERTIFICATE block in PEM input".into()));
    }
    Ok(certs)
}

/// Splits text into its `-----BEGIN ...-----` ... `-----END ...-----` blocks.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(b) = current.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
        if line.starts_with("-----END ") {
            blocks.extend(current.take());
        }
    }
    blocks
}

/// Parses one PEM certificate.
pub fn cert_from_pem(pem: &str) -> Result<Certificate, PkiError> {
    Ok(Certificate::from_pem(pem)?)
}

/// Encodes a certificate as DER.
pub fn cert_to_der(cert: &Certificate) -> Result<Vec<u8>, PkiError> {
    Ok(cert.to_der()?)
}

/// Encodes a certificate as PEM.
pub fn cert_to_pem(cert: &Certificate) -> Result<String, PkiError> {
    use der::EncodePem;
    Ok(cert.to_pem(der::pem::LineEnding::LF)?)
}

/// The store record of a certificate this CA issued (serial as lower-case hex of the DER
/// INTEGER contents), ready for [`crate::store::Store::record_certificate`].
pub fn issued_record(cert: &Certificate, profile: &str) -> Result<crate::store::IssuedCertificate, PkiError> {
    let t = cert.tbs_certificate();
    let time = |x: &x509_cert::time::Time| {
        time::OffsetDateTime::from_unix_timestamp(x.to_unix_duration().as_secs() as i64)
            .map_err(|e| PkiError::Der(e.to_string()))
    };
    Ok(crate::store::IssuedCertificate {
        serial_hex: hex::encode(t.serial_number().as_bytes()),
        issuer: t.issuer().to_string(),
        subject: t.subject().to_string(),
        not_before: time(&t.validity().not_before)?,
        not_after: time(&t.validity().not_after)?,
        profile: profile.to_string(),
        der: cert.to_der()?,
        issued_at: time::OffsetDateTime::now_utc(),
    })
}
