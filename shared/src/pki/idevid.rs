//! Reading what BRSKI needs out of certificates: the IDevID's serialNumber, its MASA URL,
//! its idevid-issuer value, and key identifiers.

use const_oid::db::rfc4519::SERIAL_NUMBER;
use const_oid::db::rfc5280::{ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_SUBJECT_KEY_IDENTIFIER};
use const_oid::ObjectIdentifier;
use der::asn1::{Ia5String, OctetString};
use der::{Decode, Encode};
use sha1::Digest;
use x509_cert::ext::pkix::name::DirectoryString;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectKeyIdentifier};
use x509_cert::Certificate;

/// id-pe-masa-url (RFC 8995 §2.3.2): IA5String with the MASA's authority or full URI.
pub const IDEVID_MASA_URL_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.32");

fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&[u8]> {
    cert.tbs_certificate().extensions()?.iter().find(|e| e.extn_id == oid).map(|e| e.extn_value.as_bytes())
}

/// The device serial number: the subject's serialNumber attribute (2.5.4.5), not the
/// certificate serial.
pub fn serial_number(cert: &Certificate) -> Option<String> {
    let v: DirectoryString = cert.tbs_certificate().subject().by_oid(SERIAL_NUMBER).ok().flatten()?;
    Some(v.value().to_string())
}

/// The MASA URL from id-pe-masa-url, normalised to a full `https://` URI (RFC 8995 allows the
/// extension to hold only an authority such as `masa.example.com:9443`).
pub fn masa_url(cert: &Certificate) -> Option<String> {
    let raw = extension(cert, IDEVID_MASA_URL_OID)?;
    let s = Ia5String::from_der(raw).ok()?.to_string();
    Some(if s.contains("://") { s } else { format!("https://{s}") })
}

/// The DER SubjectPublicKeyInfo of a certificate.
pub fn spki_der(cert: &Certificate) -> Vec<u8> {
    cert.tbs_certificate().subject_public_key_info().to_der().unwrap_or_default()
}

/// The subjectKeyIdentifier, or SHA-1 of the subjectPublicKey bits (RFC 5280 method 1) when
/// the certificate has none.
pub fn subject_key_id(cert: &Certificate) -> Vec<u8> {
    subject_key_id_extension(cert).unwrap_or_else(|| key_id_of(cert))
}

/// The subjectKeyIdentifier extension's key id, if the certificate has one.
pub fn subject_key_id_extension(cert: &Certificate) -> Option<Vec<u8>> {
    extension(cert, ID_CE_SUBJECT_KEY_IDENTIFIER)
        .and_then(|b| SubjectKeyIdentifier::from_der(b).ok())
        .map(|ski| ski.0.as_bytes().to_vec())
}

pub(crate) fn key_id_of(cert: &Certificate) -> Vec<u8> {
    let bits = cert.tbs_certificate().subject_public_key_info().subject_public_key.raw_bytes();
    sha1::Sha1::digest(bits).to_vec()
}

/// The `idevid-issuer` voucher-request value (rfc8366bis §6.3): the complete
/// AuthorityKeyIdentifier extnValue, DER `04 18 30 16 80 14 <key id>`. Without an AKI the
/// same structure is built from SHA-1 of the certificate's public key.
pub fn idevid_issuer(cert: &Certificate) -> Vec<u8> {
    let aki_der = match extension(cert, ID_CE_AUTHORITY_KEY_IDENTIFIER) {
        Some(b) => b.to_vec(),
        None => {
            let key_id = OctetString::new(key_id_of(cert)).ok();
            let aki = AuthorityKeyIdentifier { key_identifier: key_id, ..Default::default() };
            aki.to_der().unwrap_or_default()
        }
    };
    OctetString::new(aki_der).and_then(|o| o.to_der()).unwrap_or_default()
}

/// The subjectAltName entries of a certificate, in the [`super::San`] forms a CSR can request
/// (re-enrollment must repeat them exactly).
pub fn certificate_san(cert: &Certificate) -> Vec<super::San> {
    let Ok(Some((_, san))) = cert.tbs_certificate().get_extension::<x509_cert::ext::pkix::SubjectAltName>()
    else {
        return Vec::new();
    };
    san.0.iter().filter_map(super::San::from_general_name).collect()
}
