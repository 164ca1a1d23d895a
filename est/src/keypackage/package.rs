//! The signed AsymmetricKeyPackage (RFC 5958 §2, §4): the one generated key as a
//! OneAsymmetricKey in an AsymmetricKeyPackage, signed with CMS SignedData by the key generator
//! (RFC 7030 §4.4.2), and verifying it after decryption.

use super::error::{build_err, malformed, KeyPackageError};
use super::oids::{ID_CT_KP_AKEY_PACKAGE, ID_SIGNED_DATA};
use cms::content_info::ContentInfo;
use der::{Any, Decode, Encode};
use shared::keys::Signer;
use shared::signed::cms::CmsSigned;
use shared::signed::Trust;
use x509_cert::Certificate;
use zeroize::Zeroizing;

/// A key package opened and verified.
#[derive(Debug, Clone)]
pub struct OpenedKey {
    /// The OneAsymmetricKey (PKCS#8) of the generated key.
    pub pkcs8: Zeroizing<Vec<u8>>,
    /// The verified signer path of the key package (key generator first, anchor last).
    pub signer_chain: Vec<Certificate>,
}

/// The AsymmetricKeyPackage (RFC 5958 §2) holding one OneAsymmetricKey: `pkcs8`.
fn key_package(pkcs8: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyPackageError> {
    let key = Any::from_der(pkcs8).map_err(|e| KeyPackageError::Build(format!("PKCS#8 key: {e}")))?;
    Ok(Zeroizing::new(vec![key].to_der().map_err(build_err)?))
}

/// `pkcs8` in an AsymmetricKeyPackage signed by `signer` (certificate `chain[0]`, the rest for
/// path building): the DER SignedData itself, which is what the EnvelopedData encrypts
/// (RFC 5652 §6.1), not its ContentInfo.
pub(super) fn signed_package(
    pkcs8: &[u8],
    signer: &dyn Signer,
    chain: &[Certificate],
) -> Result<Zeroizing<Vec<u8>>, KeyPackageError> {
    let package = key_package(pkcs8)?;
    let signed_ci = Zeroizing::new(
        shared::signed::cms::sign(ID_CT_KP_AKEY_PACKAGE, &package, signer, chain).map_err(build_err)?,
    );
    // The EnvelopedData's content is the SignedData itself (RFC 5652 §6.1), not its ContentInfo.
    Ok(Zeroizing::new(
        ContentInfo::from_der(&signed_ci).and_then(|ci| ci.content.to_der()).map_err(build_err)?,
    ))
}

/// Verifies the decrypted DER SignedData against `trust` (the key generator's path must reach an
/// anchor) and returns the single key of its AsymmetricKeyPackage.
pub(super) fn verify_package(signed_data: &[u8], trust: &Trust) -> Result<OpenedKey, KeyPackageError> {
    let inner = Any::from_der(signed_data).map_err(malformed)?;
    let signed_ci = Zeroizing::new(
        ContentInfo { content_type: ID_SIGNED_DATA, content: inner }.to_der().map_err(malformed)?,
    );
    let verified = CmsSigned::parse(&signed_ci)?.verify(trust, &[ID_CT_KP_AKEY_PACKAGE])?;
    let keys = Vec::<Any>::from_der(verified.value())
        .map_err(|e| KeyPackageError::Malformed(format!("eContent is not an AsymmetricKeyPackage: {e}")))?;
    let [key] = keys.as_slice() else {
        return Err(KeyPackageError::Malformed(format!(
            "the AsymmetricKeyPackage holds {} keys, expected exactly one",
            keys.len()
        )));
    };
    Ok(OpenedKey {
        pkcs8: Zeroizing::new(key.to_der().map_err(malformed)?),
        signer_chain: verified.signer_chain().to_vec(),
    })
}
