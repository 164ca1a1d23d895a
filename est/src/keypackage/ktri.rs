//! The ktri recipient (RFC 5652 §6.2.1) for an RSA client key: `cms`'s own
//! `KeyTransRecipientInfoBuilder`, rsaEncryption (PKCS #1 v1.5), the recipient named by
//! issuerAndSerialNumber.

use super::algorithms::Rng;
use super::error::{build_err, KeyPackageError};
use super::recipient::issuer_and_serial;
use cms::builder::{KeyEncryptionInfo, KeyTransRecipientInfoBuilder};
use cms::enveloped_data::RecipientIdentifier;
use x509_cert::Certificate;

/// The ktri builder for `cert`, whose RSA key is `pk`.
pub(super) fn ktri_builder(
    cert: &Certificate,
    pk: rsa::PublicKey,
) -> Result<KeyTransRecipientInfoBuilder<Rng>, KeyPackageError> {
    KeyTransRecipientInfoBuilder::<Rng>::new(
        RecipientIdentifier::IssuerAndSerialNumber(issuer_and_serial(cert)),
        KeyEncryptionInfo::Rsa(pk),
    )
    .map_err(build_err)
}
