//! The kekri recipient (RFC 5652 §6.2.3): a shared AES key-encryption key the server holds under
//! the identifier a client names in DecryptKeyIdentifier (RFC 7030 §4.4.1.1), wrapping the content
//! key (server side) and unwrapping it (client side).

use super::algorithms::{KeyWrap, Rng};
use super::error::KeyPackageError;
use cms::builder::{RecipientInfoBuilder, RecipientInfoType};
use cms::content_info::CmsVersion;
use cms::enveloped_data::{KekIdentifier, KekRecipientInfo, RecipientInfo};
use der::asn1::OctetString;
use zeroize::Zeroizing;

/// A shared key-encryption key (RFC 7030 §4.4.1.1) and the identifier the client sends for it
/// in DecryptKeyIdentifier. `Debug` shows the identifier and the size only.
#[derive(Clone)]
pub struct SharedKey {
    id: Vec<u8>,
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedKey(id {}, AES-{})", hex::encode(&self.id), self.key.len() * 8)
    }
}

impl SharedKey {
    /// An AES key (16, 24 or 32 bytes) known as `id`.
    pub fn new(id: Vec<u8>, key: Vec<u8>) -> Result<Self, KeyPackageError> {
        let key = Zeroizing::new(key);
        if id.is_empty() {
            return Err(KeyPackageError::Request("a shared key needs a non-empty identifier".into()));
        }
        if KeyWrap::for_key_len(key.len()).is_none() {
            return Err(KeyPackageError::Request(format!(
                "a shared key-encryption key must be 16, 24 or 32 bytes (AES), not {}",
                key.len()
            )));
        }
        Ok(SharedKey { id, key })
    }

    /// The identifier (the DecryptKeyIdentifier value).
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// The AES key wrap this key is used with.
    pub fn wrap(&self) -> KeyWrap {
        KeyWrap::for_key_len(self.key.len()).unwrap_or(KeyWrap::Aes256)
    }
}

/// A kekri for a shared key (RFC 5652 §6.2.3).
pub(super) struct KekriBuilder {
    /// The shared key the content key is wrapped under.
    pub(super) key: SharedKey,
}

impl RecipientInfoBuilder for KekriBuilder {
    type Rng = Rng;

    fn recipient_info_type(&self) -> RecipientInfoType {
        RecipientInfoType::Kekri
    }

    fn recipient_info_version(&self) -> CmsVersion {
        CmsVersion::V4
    }

    fn build_with_rng(&mut self, cek: &[u8], _rng: &mut Rng) -> Result<RecipientInfo, cms::builder::Error> {
        let wrap = self.key.wrap();
        let wrapped =
            wrap.wrap(&self.key.key, cek).map_err(|e| cms::builder::Error::Builder(e.to_string()))?;
        Ok(RecipientInfo::Kekri(KekRecipientInfo {
            version: CmsVersion::V4,
            kek_id: KekIdentifier {
                kek_identifier: OctetString::new(self.key.id.clone())?,
                date: None,
                other: None,
            },
            key_enc_alg: wrap.algorithm_identifier(),
            encrypted_key: OctetString::new(wrapped)?,
        }))
    }
}

/// The content-encryption key from one kekri, if it is for `shared` (client side): `Ok(None)`
/// when it names another key identifier, an error when it names this one but does not unwrap.
pub(super) fn cek_from_kekri(
    kekri: &KekRecipientInfo,
    shared: &SharedKey,
) -> Result<Option<Zeroizing<Vec<u8>>>, KeyPackageError> {
    if kekri.kek_id.kek_identifier.as_bytes() != shared.id() {
        return Ok(None);
    }
    let wrap = KeyWrap::from_oid(&kekri.key_enc_alg.oid).ok_or_else(|| {
        KeyPackageError::Malformed(format!("unsupported key wrap {}", kekri.key_enc_alg.oid))
    })?;
    if wrap.key_len() != shared.key.len() {
        return Err(KeyPackageError::NoRecipient(format!(
            "the kekri for this key identifier uses {wrap:?}, not the AES-{} shared key",
            shared.key.len() * 8
        )));
    }
    wrap.unwrap(&shared.key, kekri.encrypted_key.as_bytes())
        .map(Some)
        .ok_or_else(|| KeyPackageError::NoRecipient("the shared key does not unwrap the content key".into()))
}
