//! Whom a key package is encrypted for (RFC 7030 §4.4.1.1, §4.4.1.2): the key of a client
//! certificate (EC for kari, RSA for ktri) or a shared AES key (kekri), and the checks that a
//! certificate's key may receive the generated key.

use super::error::KeyPackageError;
use super::kekri::SharedKey;
use cms::cert::IssuerAndSerialNumber;
use x509_cert::ext::pkix::{KeyUsage, KeyUsages};
use x509_cert::Certificate;

/// A client public key the generated key can be encrypted to.
#[derive(Debug, Clone)]
pub(super) enum ClientKey {
    /// EC P-256: kari.
    P256(p256::PublicKey),
    /// EC P-384: kari.
    P384(p384::PublicKey),
    /// RSA: ktri.
    Rsa(rsa::PublicKey),
}

/// Whom the key package is encrypted for.
#[derive(Debug, Clone)]
pub enum Recipient {
    /// The public key of a certificate (EC: kari, RSA: ktri), named by issuerAndSerialNumber.
    Certificate(Box<Certificate>),
    /// A shared AES key (kekri).
    Shared(SharedKey),
}

/// True when `id` identifies `cert`'s key: its subjectKeyIdentifier extension, or SHA-1 of its
/// subjectPublicKey (RFC 5280 §4.2.1.2 method 1) when the client computed it that way.
pub fn key_id_matches(cert: &Certificate, id: &[u8]) -> bool {
    use sha1::Digest;
    let bits = cert.tbs_certificate().subject_public_key_info().subject_public_key.raw_bytes();
    let method1 = sha1::Sha1::digest(bits);
    shared::pki::subject_key_id_extension(cert).as_deref() == Some(id) || method1.as_slice() == id
}

/// The key of `cert` as a recipient key, or why it cannot be one.
pub(super) fn client_key(cert: &Certificate) -> Result<ClientKey, KeyPackageError> {
    use pkcs8::DecodePublicKey;
    let spki = shared::pki::spki_der(cert);
    if let Ok(k) = p256::PublicKey::from_public_key_der(&spki) {
        return Ok(ClientKey::P256(k));
    }
    if let Ok(k) = p384::PublicKey::from_public_key_der(&spki) {
        return Ok(ClientKey::P384(k));
    }
    if let Ok(k) = rsa::PublicKey::from_public_key_der(&spki) {
        return Ok(ClientKey::Rsa(k));
    }
    let alg = cert.tbs_certificate().subject_public_key_info().algorithm.oid;
    Err(KeyPackageError::Request(format!(
        "the client certificate's key ({alg}) cannot receive an encrypted key: \
         use an EC P-256/P-384 key (key agreement) or an RSA key (key transport)"
    )))
}

/// Checks that the generated key can be encrypted to `cert`'s key (RFC 7030 §4.4.1.2): a key
/// type this server supports, and a keyUsage (if the certificate restricts it) that allows
/// keyAgreement (EC) or keyEncipherment (RSA).
pub fn check_recipient_certificate(cert: &Certificate) -> Result<(), KeyPackageError> {
    let key = client_key(cert)?;
    let ku = cert.tbs_certificate().get_extension::<KeyUsage>().ok().flatten().map(|(_, ku)| ku);
    let (needed, name) = match key {
        ClientKey::Rsa(_) => (KeyUsages::KeyEncipherment, "keyEncipherment"),
        _ => (KeyUsages::KeyAgreement, "keyAgreement"),
    };
    match ku {
        Some(ku) if !ku.0.contains(needed) => Err(KeyPackageError::Request(format!(
            "the client certificate's keyUsage does not allow {name}, so its key may not receive \
             the encrypted server-generated key (RFC 7030 §4.4.1.2)"
        ))),
        _ => Ok(()),
    }
}

/// The issuerAndSerialNumber naming `cert` as a kari or ktri recipient (RFC 5652 §6.2.1).
pub(super) fn issuer_and_serial(cert: &Certificate) -> IssuerAndSerialNumber {
    IssuerAndSerialNumber {
        issuer: cert.tbs_certificate().issuer().clone(),
        serial_number: cert.tbs_certificate().serial_number().clone(),
    }
}
