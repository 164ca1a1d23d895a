//! The algorithms of an encrypted key package (RFC 7030 §4.4.2): the AES key wrap of kari and
//! kekri (RFC 3394 / RFC 3565), the ECDH KDF scheme of kari (RFC 5753 §7.1.4) and the AES-CBC
//! content cipher of the EnvelopedData.

use super::error::{build_err, KeyPackageError};
use super::oids::{ID_AES128_CBC, ID_AES192_CBC, ID_AES256_CBC};
use cms::builder::ContentEncryptionAlgorithm;
use const_oid::ObjectIdentifier;
use getrandom::rand_core::UnwrapErr;
use getrandom::SysRng;
use spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

/// The random source the CMS builder draws the content key and IV from.
pub(super) type Rng = UnwrapErr<SysRng>;

/// AES key wrap (RFC 3394 / RFC 3565), the key-encryption algorithm of kari and kekri.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyWrap {
    /// id-aes128-wrap.
    Aes128,
    /// id-aes192-wrap.
    Aes192,
    /// id-aes256-wrap.
    Aes256,
}

impl KeyWrap {
    /// All supported wraps, strongest first.
    pub const ALL: [KeyWrap; 3] = [KeyWrap::Aes256, KeyWrap::Aes192, KeyWrap::Aes128];

    /// The algorithm OID (parameters absent, RFC 3565 §2.3.2).
    pub fn oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            KeyWrap::Aes128 => "2.16.840.1.101.3.4.1.5",
            KeyWrap::Aes192 => "2.16.840.1.101.3.4.1.25",
            KeyWrap::Aes256 => "2.16.840.1.101.3.4.1.45",
        })
    }

    /// The wrap an OID names.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.oid() == *oid)
    }

    /// The wrap for a key-encryption key of `len` bytes.
    pub fn for_key_len(len: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.key_len() == len)
    }

    /// KEK length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            KeyWrap::Aes128 => 16,
            KeyWrap::Aes192 => 24,
            KeyWrap::Aes256 => 32,
        }
    }

    /// The AlgorithmIdentifier (parameters absent, RFC 3565 §2.3.2).
    pub(super) fn algorithm_identifier(self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned { oid: self.oid(), parameters: None }
    }

    /// Wraps the content-encryption key `cek` under `kek` (RFC 3394).
    pub(super) fn wrap(self, kek: &[u8], cek: &[u8]) -> Result<Vec<u8>, KeyPackageError> {
        use aes_kw::KeyInit;
        let mut out = vec![0u8; cek.len() + aes_kw::IV_LEN];
        let r = match self {
            KeyWrap::Aes128 => {
                aes_kw::KwAes128::new_from_slice(kek).map_err(build_err)?.wrap_key(cek, &mut out)
            }
            KeyWrap::Aes192 => {
                aes_kw::KwAes192::new_from_slice(kek).map_err(build_err)?.wrap_key(cek, &mut out)
            }
            KeyWrap::Aes256 => {
                aes_kw::KwAes256::new_from_slice(kek).map_err(build_err)?.wrap_key(cek, &mut out)
            }
        };
        r.map_err(build_err)?;
        Ok(out)
    }

    /// Unwraps; `None` when the integrity check fails (wrong key).
    pub(super) fn unwrap(self, kek: &[u8], wrapped: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        use aes_kw::KeyInit;
        let mut out = Zeroizing::new(vec![0u8; wrapped.len().checked_sub(aes_kw::IV_LEN)?]);
        let ok = match self {
            KeyWrap::Aes128 => {
                aes_kw::KwAes128::new_from_slice(kek).ok()?.unwrap_key(wrapped, &mut out).is_ok()
            }
            KeyWrap::Aes192 => {
                aes_kw::KwAes192::new_from_slice(kek).ok()?.unwrap_key(wrapped, &mut out).is_ok()
            }
            KeyWrap::Aes256 => {
                aes_kw::KwAes256::new_from_slice(kek).ok()?.unwrap_key(wrapped, &mut out).is_ok()
            }
        };
        ok.then_some(out)
    }
}

/// The RFC 5753 ephemeral-static ECDH schemes (ANSI X9.63 KDF with this hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfScheme {
    /// dhSinglePass-stdDH-sha256kdf-scheme (RFC 5753 MUST).
    Sha256,
    /// dhSinglePass-stdDH-sha384kdf-scheme.
    Sha384,
    /// dhSinglePass-stdDH-sha512kdf-scheme.
    Sha512,
}

impl KdfScheme {
    /// All supported schemes, the RFC 5753 MUST first.
    pub(super) const ALL: [KdfScheme; 3] = [KdfScheme::Sha256, KdfScheme::Sha384, KdfScheme::Sha512];

    /// The key agreement algorithm OID.
    pub fn oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            KdfScheme::Sha256 => "1.3.132.1.11.1",
            KdfScheme::Sha384 => "1.3.132.1.11.2",
            KdfScheme::Sha512 => "1.3.132.1.11.3",
        })
    }

    /// The scheme an OID names.
    pub(super) fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.oid() == *oid)
    }

    /// ANSI X9.63 KDF: fills `out` from the shared secret `z` and the DER `shared_info`.
    pub(super) fn derive(self, z: &[u8], shared_info: &[u8], out: &mut [u8]) -> Result<(), KeyPackageError> {
        let r = match self {
            KdfScheme::Sha256 => ansi_x963_kdf::derive_key_into::<sha2::Sha256>(z, shared_info, out),
            KdfScheme::Sha384 => ansi_x963_kdf::derive_key_into::<sha2::Sha384>(z, shared_info, out),
            KdfScheme::Sha512 => ansi_x963_kdf::derive_key_into::<sha2::Sha512>(z, shared_info, out),
        };
        r.map_err(|e| KeyPackageError::Build(format!("X9.63 KDF: {e:?}")))
    }
}

/// The content-encryption algorithm (AES-CBC with a random IV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCipher {
    /// id-aes128-CBC.
    Aes128Cbc,
    /// id-aes192-CBC.
    Aes192Cbc,
    /// id-aes256-CBC.
    Aes256Cbc,
}

impl ContentCipher {
    /// The cipher an OID names.
    pub(super) fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        match *oid {
            o if o == ID_AES128_CBC => Some(ContentCipher::Aes128Cbc),
            o if o == ID_AES192_CBC => Some(ContentCipher::Aes192Cbc),
            o if o == ID_AES256_CBC => Some(ContentCipher::Aes256Cbc),
            _ => None,
        }
    }

    /// The same cipher as the `cms` builder names it.
    pub(super) fn cms(self) -> ContentEncryptionAlgorithm {
        match self {
            ContentCipher::Aes128Cbc => ContentEncryptionAlgorithm::Aes128Cbc,
            ContentCipher::Aes192Cbc => ContentEncryptionAlgorithm::Aes192Cbc,
            ContentCipher::Aes256Cbc => ContentEncryptionAlgorithm::Aes256Cbc,
        }
    }
}

/// The algorithms of one key package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Algorithms {
    /// Key wrap (kari, kekri; unused for ktri).
    pub wrap: KeyWrap,
    /// ECDH KDF scheme (kari only).
    pub kdf: KdfScheme,
    /// Content encryption.
    pub content: ContentCipher,
}
