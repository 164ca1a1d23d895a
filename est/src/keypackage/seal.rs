//! Sealing a generated key for the client (server side, RFC 7030 §4.4.2): the signed
//! AsymmetricKeyPackage enveloped for one recipient.

use super::algorithms::{Algorithms, Rng};
use super::error::{build_err, KeyPackageError};
use super::kari::KariBuilder;
use super::kekri::KekriBuilder;
use super::ktri::ktri_builder;
use super::oids::{ID_ENVELOPED_DATA, ID_SIGNED_DATA};
use super::package::signed_package;
use super::recipient::{client_key, issuer_and_serial, ClientKey, Recipient};
use cms::builder::EnvelopedDataBuilder;
use cms::content_info::ContentInfo;
use cms::enveloped_data::KeyAgreeRecipientIdentifier;
use der::{Any, Encode};
use getrandom::rand_core::UnwrapErr;
use getrandom::SysRng;
use shared::keys::Signer;
use x509_cert::Certificate;

/// Builds the key part of an encrypted serverkeygen answer (see the module docs): `pkcs8` in an
/// AsymmetricKeyPackage, signed by `signer` (certificate `chain[0]`, the rest for path
/// building), enveloped for `recipient` with `algs`. Returns DER ContentInfo(EnvelopedData).
pub fn seal(
    pkcs8: &[u8],
    signer: &dyn Signer,
    chain: &[Certificate],
    recipient: &Recipient,
    algs: &Algorithms,
) -> Result<Vec<u8>, KeyPackageError> {
    let signed_data = signed_package(pkcs8, signer, chain)?;
    let mut builder =
        EnvelopedDataBuilder::<Rng>::new(None, &signed_data, algs.content.cms(), None).map_err(build_err)?;
    add_recipient(&mut builder, recipient, algs)?;
    let mut enveloped = builder.build_with_rng(&mut UnwrapErr(SysRng)).map_err(build_err)?;
    // The builder labels the content id-data; RFC 7030 §4.4.2 nests a SignedData.
    enveloped.encrypted_content.content_type = ID_SIGNED_DATA;
    let ci = ContentInfo {
        content_type: ID_ENVELOPED_DATA,
        content: Any::encode_from(&enveloped).map_err(build_err)?,
    };
    ci.to_der().map_err(build_err)
}

/// Adds the one RecipientInfo for `recipient`: kekri (shared key), ktri (RSA) or kari (EC).
fn add_recipient(
    builder: &mut EnvelopedDataBuilder<'_, Rng>,
    recipient: &Recipient,
    algs: &Algorithms,
) -> Result<(), KeyPackageError> {
    match recipient {
        Recipient::Shared(k) => builder.add_recipient_info(KekriBuilder { key: k.clone() }),
        Recipient::Certificate(cert) => match client_key(cert)? {
            ClientKey::Rsa(pk) => builder.add_recipient_info(ktri_builder(cert, pk)?),
            key => builder.add_recipient_info(KariBuilder {
                key,
                rid: KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(issuer_and_serial(cert)),
                algs: *algs,
            }),
        },
    }
    .map_err(build_err)?;
    Ok(())
}
