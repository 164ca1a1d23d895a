//! The CSR attributes that ask for the server-generated key to be encrypted (RFC 7030 §4.4.1.1,
//! §4.4.1.2): SMIMECapabilities (RFC 8551 §2.5.2) and DecryptKeyIdentifier (RFC 4108) or
//! AsymmetricDecryptKeyIdentifier. The client builds them; the server reads them back.

use super::algorithms::KeyWrap;
use super::error::{build_err, KeyPackageError};
use super::oids::{ASYMM_DECRYPT_KEY_ID, DECRYPT_KEY_ID, ID_AES256_CBC, SMIME_CAPABILITIES};
use const_oid::ObjectIdentifier;
use der::asn1::{OctetString, SetOfVec};
use der::{Any, Decode};
use shared::pki::Csr;
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;

/// Which key the client asked the server to encrypt the generated key with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedKey {
    /// DecryptKeyIdentifier: a shared symmetric key.
    Symmetric(Vec<u8>),
    /// AsymmetricDecryptKeyIdentifier: a client public key (its key identifier).
    Asymmetric(Vec<u8>),
}

/// A request for additional encryption read from a CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionRequest {
    /// The key to encrypt with.
    pub key: RequestedKey,
    /// The SMIMECapabilities the client listed (`None`: attribute absent).
    pub capabilities: Option<Vec<AlgorithmIdentifierOwned>>,
}

/// A single-valued attribute whose value is the OCTET STRING `value`.
fn octet_string_attribute(oid: ObjectIdentifier, value: &[u8]) -> Result<Attribute, KeyPackageError> {
    let v = Any::encode_from(&OctetString::new(value).map_err(build_err)?).map_err(build_err)?;
    Ok(Attribute { oid, values: SetOfVec::try_from(vec![v]).map_err(build_err)? })
}

/// The SMIMECapabilities attribute (SEQUENCE OF SMIMECapability) listing the key wraps `wraps`
/// in the order given, then id-aes256-CBC as the content encryption this client accepts.
pub fn smime_capabilities_attribute(wraps: &[KeyWrap]) -> Result<Attribute, KeyPackageError> {
    let mut caps: Vec<AlgorithmIdentifierOwned> = wraps.iter().map(|w| w.algorithm_identifier()).collect();
    caps.push(AlgorithmIdentifierOwned { oid: ID_AES256_CBC, parameters: None });
    let v = Any::encode_from(&caps).map_err(build_err)?;
    Ok(Attribute { oid: SMIME_CAPABILITIES, values: SetOfVec::try_from(vec![v]).map_err(build_err)? })
}

/// The CSR attributes asking for encryption with `key`: SMIMECapabilities (`wraps`, MUST be
/// present when encryption is requested) and DecryptKeyIdentifier or
/// AsymmetricDecryptKeyIdentifier.
pub fn request_attributes(key: &RequestedKey, wraps: &[KeyWrap]) -> Result<Vec<Attribute>, KeyPackageError> {
    let id_attr = match key {
        RequestedKey::Symmetric(id) => octet_string_attribute(DECRYPT_KEY_ID, id)?,
        RequestedKey::Asymmetric(id) => octet_string_attribute(ASYMM_DECRYPT_KEY_ID, id)?,
    };
    Ok(vec![smime_capabilities_attribute(wraps)?, id_attr])
}

/// Reads the encryption request of a serverkeygen CSR: `None` when it asks for none.
pub fn encryption_request(csr: &Csr) -> Result<Option<EncryptionRequest>, KeyPackageError> {
    let read_id = |oid, name: &str| -> Result<Option<Vec<u8>>, KeyPackageError> {
        let Some(raw) = csr.attribute(oid) else { return Ok(None) };
        let id = OctetString::from_der(&raw)
            .map_err(|_| KeyPackageError::Request(format!("{name} must be an OCTET STRING")))?;
        if id.as_bytes().is_empty() {
            return Err(KeyPackageError::Request(format!("{name} is empty")));
        }
        Ok(Some(id.as_bytes().to_vec()))
    };
    let sym = read_id(DECRYPT_KEY_ID, "DecryptKeyIdentifier")?;
    let asym = read_id(ASYMM_DECRYPT_KEY_ID, "AsymmetricDecryptKeyIdentifier")?;
    let key = match (sym, asym) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(KeyPackageError::Request(
                "the CSR carries both DecryptKeyIdentifier and AsymmetricDecryptKeyIdentifier; send one"
                    .into(),
            ))
        }
        (Some(id), None) => RequestedKey::Symmetric(id),
        (None, Some(id)) => RequestedKey::Asymmetric(id),
    };
    let capabilities = match csr.attribute(SMIME_CAPABILITIES) {
        None => None,
        Some(raw) => Some(Vec::<AlgorithmIdentifierOwned>::from_der(&raw).map_err(|e| {
            KeyPackageError::Request(format!("SMIMECapabilities is not a SEQUENCE OF SMIMECapability: {e}"))
        })?),
    };
    Ok(Some(EncryptionRequest { key, capabilities }))
}
