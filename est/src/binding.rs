//! TLS channel binding for EST (RFC 7030 §3.5 with RFC 9266 `tls-exporter`): the value both
//! ends compute, its challengePassword text form, and a CSR builder that carries it.

use der::asn1::{BitString, PrintableString, SetOfVec};
use der::{Any, Decode, Encode};
use shared::keys::Signer;
use shared::pki::{build_csr, San, CHALLENGE_PASSWORD};
use x509_cert::attr::Attribute;
use x509_cert::name::Name;
use x509_cert::request::CertReq;

/// The RFC 9266 exporter label (no trailing NUL).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
/// Length of the `tls-exporter` channel binding.
pub const EXPORTER_LEN: usize = 32;

/// Computes the RFC 9266 `tls-exporter` value of a rustls connection (client or server side):
/// 32 bytes, label `EXPORTER-Channel-Binding`, no context. `None` before the handshake is done.
pub fn exporter_value<D>(conn: &rustls::ConnectionCommon<D>) -> Option<[u8; EXPORTER_LEN]> {
    conn.export_keying_material([0u8; EXPORTER_LEN], EXPORTER_LABEL, None).ok()
}

/// The challengePassword text EST clients put into the CSR: base64 (RFC 4648 §4) of the
/// channel binding value.
pub fn challenge_password_for(exporter: &[u8]) -> String {
    shared::b64::encode(exporter)
}

/// Why a CSR could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// Encoding or signing failed.
    #[error("cannot build the CSR: {0}")]
    Build(String),
}

fn err(e: impl std::fmt::Display) -> BindingError {
    BindingError::Build(e.to_string())
}

/// Builds a DER PKCS#10 request for `signer`'s key with `subject`, the `san` entries (as an
/// extensionRequest) and a challengePassword attribute holding `password` (PrintableString;
/// base64 text always fits).
pub fn csr_with_challenge_password(
    subject: &Name,
    san: &[San],
    signer: &dyn Signer,
    password: &str,
) -> Result<Vec<u8>, BindingError> {
    csr_with_binding(subject, san, signer, Some(password), Vec::new())
}

/// The challengePassword attribute holding `password` (PrintableString).
pub fn challenge_password_attribute(password: &str) -> Result<Attribute, BindingError> {
    let value = Any::encode_from(&PrintableString::new(password).map_err(err)?).map_err(err)?;
    Ok(Attribute { oid: CHALLENGE_PASSWORD, values: SetOfVec::try_from(vec![value]).map_err(err)? })
}

/// Builds a DER PKCS#10 request with a challengePassword holding `password` when one is given
/// (the channel binding) and the `extra` attributes, e.g. a serverkeygen request for key
/// encryption ([`crate::keypackage::request_attributes`]: SMIMECapabilities and
/// AsymmetricDecryptKeyIdentifier or DecryptKeyIdentifier).
pub fn csr_with_binding(
    subject: &Name,
    san: &[San],
    signer: &dyn Signer,
    password: Option<&str>,
    mut extra: Vec<Attribute>,
) -> Result<Vec<u8>, BindingError> {
    if let Some(pw) = password {
        extra.insert(0, challenge_password_attribute(pw)?);
    }
    csr_with_attributes(subject, san, signer, extra)
}

/// Builds a DER PKCS#10 request like [`shared::pki::build_csr`] plus further attributes
/// (an attribute of the same type as one already present replaces it), signed by `signer`.
pub fn csr_with_attributes(
    subject: &Name,
    san: &[San],
    signer: &dyn Signer,
    extra: Vec<Attribute>,
) -> Result<Vec<u8>, BindingError> {
    let base = build_csr(subject, san, signer).map_err(err)?;
    let mut req = CertReq::from_der(&base).map_err(err)?;
    let mut attrs: Vec<Attribute> =
        req.info.attributes.iter().filter(|a| extra.iter().all(|e| e.oid != a.oid)).cloned().collect();
    attrs.extend(extra);
    req.info.attributes = SetOfVec::try_from(attrs).map_err(err)?;
    let tbs = req.info.to_der().map_err(err)?;
    let raw = signer.sign(&tbs).map_err(err)?;
    let sig = shared::crypto::raw_to_der(signer.algorithm(), &raw).map_err(err)?;
    req.signature = BitString::from_bytes(&sig).map_err(err)?;
    req.to_der().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::keys::{Algorithm, SoftwareKey};
    use shared::pki::{parse_name, Csr};

    #[test]
    fn csr_carries_password_and_verifies() {
        let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let pw = challenge_password_for(&[7u8; 32]);
        let der = csr_with_challenge_password(
            &parse_name("CN=dev-1").unwrap(),
            &[San::Dns("dev-1.example".into())],
            &key,
            &pw,
        )
        .unwrap();
        let csr = Csr::verify_der(&der).unwrap();
        assert_eq!(csr.challenge_password().as_deref(), Some(pw.as_str()));
        assert_eq!(csr.requested_san(), vec![San::Dns("dev-1.example".into())]);
    }

    #[test]
    fn csr_with_binding_and_key_encryption_request() {
        use crate::keypackage::{encryption_request, request_attributes, KeyWrap, RequestedKey};
        let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let extra = request_attributes(&RequestedKey::Asymmetric(vec![9; 20]), &[KeyWrap::Aes256]).unwrap();
        let der =
            csr_with_binding(&parse_name("CN=dev-2").unwrap(), &[], &key, Some("cGFzcw=="), extra).unwrap();
        let csr = Csr::verify_der(&der).unwrap();
        assert_eq!(csr.challenge_password().as_deref(), Some("cGFzcw=="));
        assert_eq!(encryption_request(&csr).unwrap().unwrap().key, RequestedKey::Asymmetric(vec![9; 20]));
    }
}
