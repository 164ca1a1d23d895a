//! Opening a key package (client side, RFC 7030 §4.4.2): find the RecipientInfo for our key,
//! recover the content key, decrypt the SignedData and verify it.

use super::algorithms::ContentCipher;
use super::error::{malformed, KeyPackageError};
use super::kari::cek_from_kari;
use super::kekri::{cek_from_kekri, SharedKey};
use super::oids::{ID_ENVELOPED_DATA, ID_SIGNED_DATA};
use super::package::{verify_package, OpenedKey};
use cms::content_info::ContentInfo;
use cms::enveloped_data::{EnvelopedData, RecipientInfo};
use der::asn1::OctetString;
use der::Decode;
use shared::keys::SoftwareKey;
use shared::signed::Trust;
use spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

/// The key a client decrypts a key package with.
#[derive(Debug, Clone, Copy)]
pub enum Decryptor<'a> {
    /// The private key of the client certificate it named in AsymmetricDecryptKeyIdentifier
    /// (EC P-256 / P-384: kari).
    Key(&'a SoftwareKey),
    /// The shared key it named in DecryptKeyIdentifier (kekri).
    Shared(&'a SharedKey),
}

/// Decrypts the EnvelopedData of an encrypted serverkeygen key part (DER ContentInfo), verifies
/// the SignedData inside against `trust` (the key generator's path must reach an anchor) and
/// returns the single key of its AsymmetricKeyPackage.
pub fn open(der: &[u8], decryptor: &Decryptor<'_>, trust: &Trust) -> Result<OpenedKey, KeyPackageError> {
    let ed = enveloped_data(der)?;
    let eci = &ed.encrypted_content;
    let ciphertext = eci.encrypted_content.as_ref().ok_or_else(|| malformed("no encryptedContent"))?;
    let cek = recover_cek(&ed, decryptor)?;
    let signed_data = decrypt_content(&eci.content_enc_alg, &cek, ciphertext.as_bytes())?;
    verify_package(&signed_data, trust)
}

/// The EnvelopedData of `der`, which must be a ContentInfo(EnvelopedData) whose encrypted
/// content is a SignedData (RFC 7030 §4.4.2).
fn enveloped_data(der: &[u8]) -> Result<EnvelopedData, KeyPackageError> {
    // DER, or BER as streaming CMS encoders write it (indefinite lengths, chunked strings).
    let ci = match ContentInfo::from_der(der) {
        Ok(ci) => ci,
        Err(_) => {
            let flat = shared::signed::ber::to_der(der).map_err(malformed)?;
            ContentInfo::from_der(&flat).map_err(malformed)?
        }
    };
    if ci.content_type != ID_ENVELOPED_DATA {
        return Err(KeyPackageError::Malformed(format!(
            "ContentInfo type {} is not envelopedData (RFC 7030 §4.4.2)",
            ci.content_type
        )));
    }
    let ed: EnvelopedData = ci.content.decode_as().map_err(malformed)?;
    if ed.encrypted_content.content_type != ID_SIGNED_DATA {
        return Err(KeyPackageError::Malformed(format!(
            "the EnvelopedData carries {} instead of a SignedData (RFC 7030 §4.4.2)",
            ed.encrypted_content.content_type
        )));
    }
    Ok(ed)
}

/// The content-encryption key from the first RecipientInfo `decryptor` can open.
fn recover_cek(ed: &EnvelopedData, decryptor: &Decryptor<'_>) -> Result<Zeroizing<Vec<u8>>, KeyPackageError> {
    for ri in ed.recip_infos.0.iter() {
        let cek = match (ri, decryptor) {
            (RecipientInfo::Kari(kari), Decryptor::Key(key)) => cek_from_kari(kari, key)?,
            (RecipientInfo::Kekri(kekri), Decryptor::Shared(shared)) => cek_from_kekri(kekri, shared)?,
            _ => None,
        };
        if let Some(cek) = cek {
            return Ok(cek);
        }
    }
    Err(KeyPackageError::NoRecipient(match decryptor {
        Decryptor::Key(k) => {
            format!("no RecipientInfo can be decrypted with this {} key", shared::keys::Signer::algorithm(*k))
        }
        Decryptor::Shared(s) => format!("no kekri for key identifier {}", hex::encode(s.id())),
    }))
}

/// Decrypts the AES-CBC `ciphertext` with the content key `cek` and the IV of `alg`.
fn decrypt_content(
    alg: &AlgorithmIdentifierOwned,
    cek: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyPackageError> {
    use cbc::cipher::{block_padding::Pkcs7, BlockModeDecrypt, KeyIvInit};
    let cipher = ContentCipher::from_oid(&alg.oid)
        .ok_or_else(|| KeyPackageError::Malformed(format!("unsupported content encryption {}", alg.oid)))?;
    let iv = alg
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<OctetString>().ok())
        .ok_or_else(|| malformed("AES-CBC without an IV parameter"))?;
    let bad_key = |_| malformed("content key or IV of the wrong size");
    let bad_pad = |_| malformed("content decryption failed (padding)");
    let iv = iv.as_bytes();
    let plain = match cipher {
        ContentCipher::Aes128Cbc => cbc::Decryptor::<aes::Aes128>::new_from_slices(cek, iv)
            .map_err(bad_key)?
            .decrypt_padded_vec::<Pkcs7>(ciphertext)
            .map_err(bad_pad)?,
        ContentCipher::Aes192Cbc => cbc::Decryptor::<aes::Aes192>::new_from_slices(cek, iv)
            .map_err(bad_key)?
            .decrypt_padded_vec::<Pkcs7>(ciphertext)
            .map_err(bad_pad)?,
        ContentCipher::Aes256Cbc => cbc::Decryptor::<aes::Aes256>::new_from_slices(cek, iv)
            .map_err(bad_key)?
            .decrypt_padded_vec::<Pkcs7>(ciphertext)
            .map_err(bad_pad)?,
    };
    Ok(Zeroizing::new(plain))
}
