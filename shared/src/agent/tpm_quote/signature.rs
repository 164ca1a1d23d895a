//! Appraisal steps 1 and 2: the attestation key (AK) certificate chains to a manufacturer
//! anchor, is an AK certificate (tcg-kp-AIKCertificate) for the proxy's device, and its P-256 key
//! signed the attest bytes.

use super::wire::TpmQuote;
use super::{err, TCG_KP_AIK_CERTIFICATE};
use crate::agent::AgentError;
use crate::crypto::{Hash, PublicKey, SigForm};
use crate::pki;
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::Certificate;

/// The attestation key's certificate once step 1 accepted it.
pub(super) struct AttestationKey {
    /// The AK certificate (`ak_chain[0]`).
    pub(super) cert: Certificate,
    /// Its verified path, AK first, anchor last.
    pub(super) path: Vec<Certificate>,
    /// The subject serialNumber: the device the TPM is in.
    pub(super) serial: String,
}

/// Step 1: `ak_chain[0]` parses, chains (intermediates = the rest) to one of `anchors` at `now`,
/// carries the EKU [`TCG_KP_AIK_CERTIFICATE`], and its subject serialNumber is `device_serial`.
pub(super) fn attestation_key(
    quote: &TpmQuote,
    anchors: &[Certificate],
    device_serial: &str,
    now: time::OffsetDateTime,
) -> Result<AttestationKey, AgentError> {
    let (ak_der, intermediates) =
        quote.ak_chain.split_first().ok_or_else(|| err("no attestation key certificate"))?;
    let ak = pki::cert_from_der(ak_der)
        .map_err(|e| err(format!("the attestation key certificate does not parse: {e}")))?;
    let intermediates = intermediates
        .iter()
        .enumerate()
        .map(|(i, d)| {
            pki::cert_from_der(d).map_err(|e| err(format!("ak_chain[{}] does not parse: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let path = pki::verify_chain(&ak, &intermediates, anchors, now)
        .map_err(|e| err(format!("attestation key certificate path: {e}")))?;
    check_aik_eku(&ak)?;
    let serial = pki::serial_number(&ak)
        .ok_or_else(|| err("the attestation key certificate's subject has no serialNumber"))?;
    if serial != device_serial {
        return Err(err(format!(
            "the attestation key certificate is for device {serial:?}, not the proxy's {device_serial:?}"
        )));
    }
    Ok(AttestationKey { cert: ak, path, serial })
}

/// The AK certificate carries the extendedKeyUsage tcg-kp-AIKCertificate.
fn check_aik_eku(ak: &Certificate) -> Result<(), AgentError> {
    let eku: Option<ExtendedKeyUsage> = ak
        .tbs_certificate()
        .get_extension()
        .map_err(|e| err(format!("the attestation key certificate's extendedKeyUsage is malformed: {e}")))?
        .map(|(_, eku)| eku);
    if !eku.is_some_and(|e| e.0.contains(&TCG_KP_AIK_CERTIFICATE)) {
        return Err(err(format!(
            "the attestation key certificate lacks the EKU tcg-kp-AIKCertificate ({TCG_KP_AIK_CERTIFICATE})"
        )));
    }
    Ok(())
}

/// Step 2: `signature` verifies with the AK certificate's P-256 key over SHA-256(`attest`).
pub(super) fn check_signature(ak: &Certificate, quote: &TpmQuote) -> Result<(), AgentError> {
    let key =
        PublicKey::from_spki_der(&pki::spki_der(ak)).map_err(|e| err(format!("the attestation key: {e}")))?;
    if !matches!(key, PublicKey::P256(_)) {
        return Err(err("the attestation key is not an ECDSA P-256 key"));
    }
    key.verify_ecdsa(Hash::Sha256, SigForm::Der, &quote.attest, &quote.signature)
        .map_err(|e| err(format!("the signature over attest does not verify with the attestation key: {e}")))
}
