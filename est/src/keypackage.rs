//! Server-generated keys encrypted to the client (RFC 7030 §4.4.1.1, §4.4.1.2, §4.4.2), sans-IO:
//! the CSR attributes a client sends to ask for it, the CMS structure the server answers with,
//! and opening that structure on the client.
//!
//! # The structure, and why this nesting
//!
//! RFC 7030 §4.4.2: "the private key is placed inside of a CMS SignedData. The SignedData is
//! signed by the party that generated the private key [...]. The SignedData is further protected
//! by placing it inside of a CMS EnvelopedData, as described in Section 4 of \[RFC5958\]." RFC 5958
//! §2 defines the content (the AsymmetricKeyPackage content type, id-ct-KP-aKeyPackage) and §4
//! signing it with SignedData, then encrypting with EnvelopedData. So the key part of the
//! multipart answer (`application/pkcs7-mime; smime-type=server-generated-key`) is, from the
//! outside in:
//!
//! ```text
//! ContentInfo { id-envelopedData (1.2.840.113549.1.7.3),
//!   EnvelopedData {
//!     recipientInfos: one kari (EC client key), ktri (RSA client key) or kekri (shared key),
//!     encryptedContentInfo {
//!       contentType: id-signedData (1.2.840.113549.1.7.2),
//!       contentEncryptionAlgorithm: id-aes256-CBC (or the strongest AES-CBC the client lists),
//!       encryptedContent: AES-CBC( DER SignedData {
//!         encapContentInfo { eContentType: id-ct-KP-aKeyPackage (2.16.840.1.101.2.1.2.78.5),
//!                            eContent: AsymmetricKeyPackage ::= SEQUENCE OF OneAsymmetricKey
//!                                      (exactly one: the PKCS#8 key) },
//!         signerInfos: signed by the key generator (the EST CA key for `LocalCa`), with
//!                      contentType, messageDigest and signingTime attributes,
//!         certificates: the signer's certificate and the chain above it } ) } } }
//! ```
//!
//! The content of the EnvelopedData is the SignedData itself (RFC 5652 §6.1: the content is the
//! DER of the type its contentType names), not a second ContentInfo, so
//! `openssl cms -decrypt` outputs the DER SignedData.
//!
//! # Recipients
//!
//! * **kari** (EC P-256 / P-384 client key, RFC 5753 ephemeral-static ECDH): a fresh ephemeral key
//!   in `originatorKey` (id-ecPublicKey, parameters absent as RFC 5753 §7.1.2 recommends), no ukm,
//!   keyEncryptionAlgorithm `dhSinglePass-stdDH-sha{256,384,512}kdf-scheme` whose parameter is
//!   the key-wrap algorithm (`id-aes{128,192,256}-wrap`, RFC 3394), KEK = ANSI X9.63 KDF over the
//!   shared secret and the DER ECC-CMS-SharedInfo (RFC 5753 §7.2). The recipient is named by
//!   issuerAndSerialNumber of the certificate that carries the key (RFC 7030 §4.4.2 allows it or
//!   the key identifier; issuerAndSerialNumber is what `openssl cms -decrypt -recip` matches
//!   whether or not the certificate has a subjectKeyIdentifier extension).
//!   The `cms` crate's own `KeyAgreeRecipientInfoBuilder` (0.3.0-rc.0) wraps the CEK under an
//!   all-zero KEK (it derives into the output buffer, then wraps with a default key), so this
//!   module builds the kari from `p256`/`p384` ECDH, `ansi-x963-kdf` and `aes-kw` itself.
//! * **ktri** (RSA client key): `cms`'s `KeyTransRecipientInfoBuilder`, rsaEncryption (PKCS#1
//!   v1.5), recipient by issuerAndSerialNumber.
//! * **kekri** (a shared AES key the server holds under the client's DecryptKeyIdentifier,
//!   RFC 7030 §4.4.1.1): version 4, kekid = the identifier, keyEncryptionAlgorithm the AES key
//!   wrap of the shared key's size.
//!
//! The key-wrap algorithm (and, when listed, the KDF and content cipher) are chosen from the
//! client's SMIMECapabilities attribute; without one the server picks id-aes256-wrap and
//! AES-256-CBC. The content is always encrypted with AES-CBC (RFC 5753 §8 and OpenSSL 3.0
//! `cms -decrypt` both handle it; AES-GCM would need AuthEnvelopedData, another content type).

use cms::builder::{
    ContentEncryptionAlgorithm, EnvelopedDataBuilder, KeyEncryptionInfo, KeyTransRecipientInfoBuilder,
    RecipientInfoBuilder, RecipientInfoType,
};
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::{
    EnvelopedData, KekIdentifier, KekRecipientInfo, KeyAgreeRecipientIdentifier, KeyAgreeRecipientInfo,
    OriginatorIdentifierOrKey, OriginatorPublicKey, RecipientEncryptedKey, RecipientIdentifier,
    RecipientInfo,
};
use const_oid::ObjectIdentifier;
use der::asn1::{BitString, OctetString, SetOfVec};
use der::{Any, Decode, Encode, Sequence};
use getrandom::rand_core::UnwrapErr;
use getrandom::SysRng;
use shared::keys::{Signer, SoftwareKey};
use shared::pki::Csr;
use shared::signed::cms::CmsSigned;
use shared::signed::{SignatureError, Trust};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::{KeyUsage, KeyUsages};
use x509_cert::Certificate;
use zeroize::Zeroizing;

/// id-aa-decryptKeyID (RFC 4108): the CSR names a shared symmetric key to encrypt with.
pub const DECRYPT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.37");
/// id-aa-asymmDecryptKeyID (RFC 7030 §4.4.1.2): the CSR names a client public key to encrypt to.
pub const ASYMM_DECRYPT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.54");
/// smimeCapabilities (RFC 8551 §2.5.2): the algorithms the client accepts.
pub const SMIME_CAPABILITIES: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.15");
/// id-ct-KP-aKeyPackage (RFC 5958 §2): eContentType of the signed key package.
pub const ID_CT_KP_AKEY_PACKAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.2.1.2.78.5");

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_ENVELOPED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_RSAES_OAEP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.7");
const ID_AES128_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.2");
const ID_AES192_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.22");
const ID_AES256_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");

/// The random source the CMS builder draws the content key and IV from.
type Rng = UnwrapErr<SysRng>;

/// Why a key package could not be requested, built or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPackageError {
    /// The client's request cannot be served (unknown key identifier, unusable key, no
    /// acceptable algorithm): a client error.
    #[error("{0}")]
    Request(String),
    /// The structure is not what RFC 7030 §4.4.2 describes, or uses unsupported algorithms.
    #[error("encrypted key package: {0}")]
    Malformed(String),
    /// No RecipientInfo of the package can be decrypted with the given key.
    #[error("encrypted key package: {0}")]
    NoRecipient(String),
    /// The inner SignedData does not verify against the trust anchors.
    #[error("encrypted key package signature: {0}")]
    Signature(#[from] SignatureError),
    /// Building failed (encoding, randomness, signing).
    #[error("building the encrypted key package failed: {0}")]
    Build(String),
}

fn malformed(e: impl std::fmt::Display) -> KeyPackageError {
    KeyPackageError::Malformed(e.to_string())
}

fn build_err(e: impl std::fmt::Display) -> KeyPackageError {
    KeyPackageError::Build(e.to_string())
}

// ------------------------------------------------------------------------------------------
// Algorithms
// ------------------------------------------------------------------------------------------

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

    fn algorithm_identifier(self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned { oid: self.oid(), parameters: None }
    }

    fn wrap(self, kek: &[u8], cek: &[u8]) -> Result<Vec<u8>, KeyPackageError> {
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
    fn unwrap(self, kek: &[u8], wrapped: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
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
    const ALL: [KdfScheme; 3] = [KdfScheme::Sha256, KdfScheme::Sha384, KdfScheme::Sha512];

    /// The key agreement algorithm OID.
    pub fn oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            KdfScheme::Sha256 => "1.3.132.1.11.1",
            KdfScheme::Sha384 => "1.3.132.1.11.2",
            KdfScheme::Sha512 => "1.3.132.1.11.3",
        })
    }

    fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.oid() == *oid)
    }

    fn derive(self, z: &[u8], shared_info: &[u8], out: &mut [u8]) -> Result<(), KeyPackageError> {
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
    fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        match *oid {
            o if o == ID_AES128_CBC => Some(ContentCipher::Aes128Cbc),
            o if o == ID_AES192_CBC => Some(ContentCipher::Aes192Cbc),
            o if o == ID_AES256_CBC => Some(ContentCipher::Aes256Cbc),
            _ => None,
        }
    }

    fn cms(self) -> ContentEncryptionAlgorithm {
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

// ------------------------------------------------------------------------------------------
// Request attributes (client side builds them, server side reads them)
// ------------------------------------------------------------------------------------------

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

// ------------------------------------------------------------------------------------------
// Recipients (server side)
// ------------------------------------------------------------------------------------------

/// A client public key the generated key can be encrypted to.
#[derive(Debug, Clone)]
enum ClientKey {
    P256(p256::PublicKey),
    P384(p384::PublicKey),
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

fn client_key(cert: &Certificate) -> Result<ClientKey, KeyPackageError> {
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

/// Chooses the algorithms for `recipient` from the client's SMIMECapabilities (`None`: absent).
///
/// Key wrap: the strongest AES wrap the client lists (kari), or the wrap of the shared key's size,
/// which the client must list (kekri); without the attribute id-aes256-wrap. KDF: a listed
/// dhSinglePass-stdDH scheme, else SHA-256 for P-256 and SHA-384 for P-384. Content: the strongest
/// listed AES-CBC, else AES-256-CBC.
pub fn choose_algorithms(
    recipient: &Recipient,
    capabilities: Option<&[AlgorithmIdentifierOwned]>,
) -> Result<Algorithms, KeyPackageError> {
    let caps = capabilities.unwrap_or_default();
    // Wraps listed directly, or as the parameter of a listed ECDH scheme.
    let mut wraps: Vec<KeyWrap> = caps.iter().filter_map(|c| KeyWrap::from_oid(&c.oid)).collect();
    let mut kdfs = Vec::new();
    for c in caps {
        if let Some(k) = KdfScheme::from_oid(&c.oid) {
            kdfs.push(k);
            if let Some(w) =
                c.parameters.as_ref().and_then(|p| p.decode_as::<AlgorithmIdentifierOwned>().ok())
            {
                wraps.extend(KeyWrap::from_oid(&w.oid));
            }
        }
    }
    let content = caps
        .iter()
        .filter_map(|c| ContentCipher::from_oid(&c.oid))
        .max_by_key(|c| *c as u8)
        .unwrap_or(ContentCipher::Aes256Cbc);
    let listed = capabilities.is_some();
    let none_listed = || {
        KeyPackageError::Request(
            "SMIMECapabilities lists none of the key-wrap algorithms this server supports \
             (id-aes128-wrap, id-aes192-wrap, id-aes256-wrap)"
                .into(),
        )
    };
    match recipient {
        Recipient::Shared(k) => {
            let wrap = k.wrap();
            if listed && !wraps.contains(&wrap) {
                return Err(KeyPackageError::Request(format!(
                    "the shared key named by DecryptKeyIdentifier is used with {} ({:?}), which the \
                     CSR's SMIMECapabilities does not list",
                    wrap.oid(),
                    wrap
                )));
            }
            Ok(Algorithms { wrap, kdf: KdfScheme::Sha256, content })
        }
        Recipient::Certificate(cert) => {
            let key = client_key(cert)?;
            if let ClientKey::Rsa(_) = key {
                let transport: Vec<_> =
                    caps.iter().filter(|c| c.oid == RSA_ENCRYPTION || c.oid == ID_RSAES_OAEP).collect();
                if !transport.is_empty() && !transport.iter().any(|c| c.oid == RSA_ENCRYPTION) {
                    return Err(KeyPackageError::Request(
                        "SMIMECapabilities lists only RSAES-OAEP; this server transports keys with \
                         rsaEncryption (PKCS #1 v1.5)"
                            .into(),
                    ));
                }
                return Ok(Algorithms { wrap: KeyWrap::Aes256, kdf: KdfScheme::Sha256, content });
            }
            let wrap = match wraps.iter().max() {
                Some(w) => *w,
                None if listed => return Err(none_listed()),
                None => KeyWrap::Aes256,
            };
            let preferred = match key {
                ClientKey::P384(_) => KdfScheme::Sha384,
                _ => KdfScheme::Sha256,
            };
            let kdf = if kdfs.is_empty() || kdfs.contains(&preferred) { preferred } else { kdfs[0] };
            Ok(Algorithms { wrap, kdf, content })
        }
    }
}

/// ECC-CMS-SharedInfo (RFC 5753 §7.2), the X9.63 KDF's SharedInfo.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EccCmsSharedInfo {
    key_info: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    entity_u_info: Option<OctetString>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    supp_pub_info: OctetString,
}

/// The KEK of a kari: X9.63 KDF(Z, DER ECC-CMS-SharedInfo) of the wrap's key length.
fn derive_kek(
    kdf: KdfScheme,
    z: &[u8],
    wrap_alg: &AlgorithmIdentifierOwned,
    ukm: Option<&OctetString>,
    wrap: KeyWrap,
) -> Result<Zeroizing<Vec<u8>>, KeyPackageError> {
    let bits = (wrap.key_len() as u32) * 8;
    let info = EccCmsSharedInfo {
        key_info: wrap_alg.clone(),
        entity_u_info: ukm.cloned(),
        supp_pub_info: OctetString::new(bits.to_be_bytes()).map_err(build_err)?,
    };
    let info_der = info.to_der().map_err(build_err)?;
    let mut kek = Zeroizing::new(vec![0u8; wrap.key_len()]);
    kdf.derive(z, &info_der, &mut kek)?;
    Ok(kek)
}

/// A kari for one EC recipient (RFC 5753 §3.1.2, ephemeral-static ECDH).
struct KariBuilder {
    key: ClientKey,
    rid: KeyAgreeRecipientIdentifier,
    algs: Algorithms,
}

/// Ephemeral key pair and ECDH with `$pk`: (uncompressed ephemeral point, Z).
macro_rules! ephemeral_ecdh {
    ($curve:ident, $pk:expr) => {{
        use $curve::elliptic_curve::{sec1::ToSec1Point, Generate};
        let eph = $curve::ecdh::EphemeralSecret::try_generate().map_err(build_err)?;
        // Uncompressed: RFC 5753 §3.1.1 makes it the form every implementation supports.
        let point = eph.public_key().to_sec1_point(false).as_bytes().to_vec();
        let shared = eph.diffie_hellman($pk);
        (point, Zeroizing::new(shared.raw_secret_bytes().to_vec()))
    }};
}

/// A fresh ephemeral key agreed with the recipient's key: (uncompressed ephemeral point, Z).
fn agree(key: &ClientKey) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), KeyPackageError> {
    Ok(match key {
        ClientKey::P256(pk) => ephemeral_ecdh!(p256, pk),
        ClientKey::P384(pk) => ephemeral_ecdh!(p384, pk),
        ClientKey::Rsa(_) => {
            return Err(KeyPackageError::Build("an RSA key cannot be used in a kari".into()))
        }
    })
}

impl RecipientInfoBuilder for KariBuilder {
    type Rng = Rng;

    fn recipient_info_type(&self) -> RecipientInfoType {
        RecipientInfoType::Kari
    }

    fn recipient_info_version(&self) -> CmsVersion {
        CmsVersion::V3
    }

    fn build_with_rng(&mut self, cek: &[u8], _rng: &mut Rng) -> Result<RecipientInfo, cms::builder::Error> {
        let cms_err = |e: KeyPackageError| cms::builder::Error::Builder(e.to_string());
        let (point, z) = agree(&self.key).map_err(cms_err)?;
        let wrap_alg = self.algs.wrap.algorithm_identifier();
        let kek = derive_kek(self.algs.kdf, &z, &wrap_alg, None, self.algs.wrap).map_err(cms_err)?;
        let wrapped = self.algs.wrap.wrap(&kek, cek).map_err(cms_err)?;
        Ok(RecipientInfo::Kari(KeyAgreeRecipientInfo {
            version: CmsVersion::V3,
            originator: OriginatorIdentifierOrKey::OriginatorKey(OriginatorPublicKey {
                // RFC 5753 §7.1.2: implementations SHOULD generate absent parameters here.
                algorithm: AlgorithmIdentifierOwned { oid: ID_EC_PUBLIC_KEY, parameters: None },
                public_key: BitString::from_bytes(&point)?,
            }),
            ukm: None,
            key_enc_alg: AlgorithmIdentifierOwned {
                oid: self.algs.kdf.oid(),
                parameters: Some(Any::encode_from(&wrap_alg)?),
            },
            recipient_enc_keys: vec![RecipientEncryptedKey {
                rid: self.rid.clone(),
                enc_key: OctetString::new(wrapped)?,
            }],
        }))
    }
}

/// A kekri for a shared key (RFC 5652 §6.2.3).
struct KekriBuilder {
    key: SharedKey,
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

fn issuer_and_serial(cert: &Certificate) -> IssuerAndSerialNumber {
    IssuerAndSerialNumber {
        issuer: cert.tbs_certificate().issuer().clone(),
        serial_number: cert.tbs_certificate().serial_number().clone(),
    }
}

/// The AsymmetricKeyPackage (RFC 5958 §2) holding one OneAsymmetricKey: `pkcs8`.
fn key_package(pkcs8: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyPackageError> {
    let key = Any::from_der(pkcs8).map_err(|e| KeyPackageError::Build(format!("PKCS#8 key: {e}")))?;
    Ok(Zeroizing::new(vec![key].to_der().map_err(build_err)?))
}

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
    let package = key_package(pkcs8)?;
    let signed_ci = Zeroizing::new(
        shared::signed::cms::sign(ID_CT_KP_AKEY_PACKAGE, &package, signer, chain).map_err(build_err)?,
    );
    // The EnvelopedData's content is the SignedData itself (RFC 5652 §6.1), not its ContentInfo.
    let signed_data = Zeroizing::new(
        ContentInfo::from_der(&signed_ci).and_then(|ci| ci.content.to_der()).map_err(build_err)?,
    );
    let mut builder =
        EnvelopedDataBuilder::<Rng>::new(None, &signed_data, algs.content.cms(), None).map_err(build_err)?;
    match recipient {
        Recipient::Shared(k) => builder.add_recipient_info(KekriBuilder { key: k.clone() }),
        Recipient::Certificate(cert) => match client_key(cert)? {
            ClientKey::Rsa(pk) => builder.add_recipient_info(
                KeyTransRecipientInfoBuilder::<Rng>::new(
                    RecipientIdentifier::IssuerAndSerialNumber(issuer_and_serial(cert)),
                    KeyEncryptionInfo::Rsa(pk),
                )
                .map_err(build_err)?,
            ),
            key => builder.add_recipient_info(KariBuilder {
                key,
                rid: KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(issuer_and_serial(cert)),
                algs: *algs,
            }),
        },
    }
    .map_err(build_err)?;
    let mut enveloped = builder.build_with_rng(&mut UnwrapErr(SysRng)).map_err(build_err)?;
    // The builder labels the content id-data; RFC 7030 §4.4.2 nests a SignedData.
    enveloped.encrypted_content.content_type = ID_SIGNED_DATA;
    let ci = ContentInfo {
        content_type: ID_ENVELOPED_DATA,
        content: Any::encode_from(&enveloped).map_err(build_err)?,
    };
    ci.to_der().map_err(build_err)
}

// ------------------------------------------------------------------------------------------
// Opening (client side)
// ------------------------------------------------------------------------------------------

/// The key a client decrypts a key package with.
#[derive(Debug, Clone, Copy)]
pub enum Decryptor<'a> {
    /// The private key of the client certificate it named in AsymmetricDecryptKeyIdentifier
    /// (EC P-256 / P-384: kari).
    Key(&'a SoftwareKey),
    /// The shared key it named in DecryptKeyIdentifier (kekri).
    Shared(&'a SharedKey),
}

/// A key package opened and verified.
#[derive(Debug, Clone)]
pub struct OpenedKey {
    /// The OneAsymmetricKey (PKCS#8) of the generated key.
    pub pkcs8: Zeroizing<Vec<u8>>,
    /// The verified signer path of the key package (key generator first, anchor last).
    pub signer_chain: Vec<Certificate>,
}

/// Agreement on the client side: Z from our static key and the originator's ephemeral point.
macro_rules! static_ecdh {
    ($curve:ident, $sk:expr, $point:expr) => {{
        let Ok(pk) = $curve::PublicKey::from_sec1_bytes($point) else { return Ok(None) };
        let shared = $curve::ecdh::diffie_hellman($sk.as_nonzero_scalar(), pk.as_affine());
        Zeroizing::new(shared.raw_secret_bytes().to_vec())
    }};
}

/// The CEK from one kari, if it is for `key`; `Ok(None)` when it is not (another curve,
/// another recipient).
fn cek_from_kari(
    kari: &KeyAgreeRecipientInfo,
    key: &SoftwareKey,
) -> Result<Option<Zeroizing<Vec<u8>>>, KeyPackageError> {
    let kdf = KdfScheme::from_oid(&kari.key_enc_alg.oid).ok_or_else(|| {
        KeyPackageError::Malformed(format!("unsupported key agreement algorithm {}", kari.key_enc_alg.oid))
    })?;
    let wrap_alg: AlgorithmIdentifierOwned = kari
        .key_enc_alg
        .parameters
        .as_ref()
        .ok_or_else(|| malformed("the key agreement algorithm has no key-wrap parameter"))?
        .decode_as()
        .map_err(malformed)?;
    let wrap = KeyWrap::from_oid(&wrap_alg.oid)
        .ok_or_else(|| KeyPackageError::Malformed(format!("unsupported key wrap {}", wrap_alg.oid)))?;
    let OriginatorIdentifierOrKey::OriginatorKey(originator) = &kari.originator else {
        return Err(malformed("kari originator is not an ephemeral originatorKey (RFC 5753 §3.1.1)"));
    };
    if originator.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(malformed("kari originatorKey is not id-ecPublicKey"));
    }
    let curve = originator.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    let point = originator.public_key.raw_bytes();
    let z = match key {
        SoftwareKey::P256(sk) if curve.is_none_or(|c| c == SECP256R1) => static_ecdh!(p256, sk, point),
        SoftwareKey::P384(sk) if curve.is_none_or(|c| c == SECP384R1) => static_ecdh!(p384, sk, point),
        _ => return Ok(None),
    };
    let kek = derive_kek(kdf, &z, &wrap_alg, kari.ukm.as_ref(), wrap)?;
    Ok(kari.recipient_enc_keys.iter().find_map(|rek| wrap.unwrap(&kek, rek.enc_key.as_bytes())))
}

fn recover_cek(ed: &EnvelopedData, decryptor: &Decryptor<'_>) -> Result<Zeroizing<Vec<u8>>, KeyPackageError> {
    for ri in ed.recip_infos.0.iter() {
        match (ri, decryptor) {
            (RecipientInfo::Kari(kari), Decryptor::Key(key)) => {
                if let Some(cek) = cek_from_kari(kari, key)? {
                    return Ok(cek);
                }
            }
            (RecipientInfo::Kekri(kekri), Decryptor::Shared(shared)) => {
                if kekri.kek_id.kek_identifier.as_bytes() != shared.id() {
                    continue;
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
                return wrap.unwrap(&shared.key, kekri.encrypted_key.as_bytes()).ok_or_else(|| {
                    KeyPackageError::NoRecipient("the shared key does not unwrap the content key".into())
                });
            }
            _ => {}
        }
    }
    Err(KeyPackageError::NoRecipient(match decryptor {
        Decryptor::Key(k) => {
            format!("no RecipientInfo can be decrypted with this {} key", shared::keys::Signer::algorithm(*k))
        }
        Decryptor::Shared(s) => format!("no kekri for key identifier {}", hex::encode(s.id())),
    }))
}

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

/// Decrypts the EnvelopedData of an encrypted serverkeygen key part (DER ContentInfo), verifies
/// the SignedData inside against `trust` (the key generator's path must reach an anchor) and
/// returns the single key of its AsymmetricKeyPackage.
pub fn open(der: &[u8], decryptor: &Decryptor<'_>, trust: &Trust) -> Result<OpenedKey, KeyPackageError> {
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
    let eci = &ed.encrypted_content;
    if eci.content_type != ID_SIGNED_DATA {
        return Err(KeyPackageError::Malformed(format!(
            "the EnvelopedData carries {} instead of a SignedData (RFC 7030 §4.4.2)",
            eci.content_type
        )));
    }
    let ciphertext = eci.encrypted_content.as_ref().ok_or_else(|| malformed("no encryptedContent"))?;
    let cek = recover_cek(&ed, decryptor)?;
    let signed_data = decrypt_content(&eci.content_enc_alg, &cek, ciphertext.as_bytes())?;
    let inner = Any::from_der(&signed_data).map_err(malformed)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use shared::keys::Algorithm;
    use shared::pki::{build_csr, create_ca, parse_name, CertificateAuthority, KeyUsageBit, Profile};
    use std::time::Duration;

    fn new_ca() -> (CertificateAuthority, Certificate) {
        let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let cert = create_ca("CN=KP CA", &key, Duration::from_secs(86400), None).unwrap();
        (CertificateAuthority::new(cert.clone(), Box::new(key)).unwrap(), cert)
    }

    fn client_cert(ca: &CertificateAuthority, key: &SoftwareKey, ku: Vec<KeyUsageBit>) -> Certificate {
        let csr = Csr::verify_der(&build_csr(&parse_name("CN=client").unwrap(), &[], key).unwrap()).unwrap();
        let mut p = Profile::end_entity(Duration::from_secs(86400));
        p.key_usage = ku;
        ca.issue(&csr, &p).unwrap()
    }

    fn round_trip(alg: Algorithm, caps: Option<Vec<AlgorithmIdentifierOwned>>) -> Algorithms {
        let (ca, ca_cert) = new_ca();
        let client = SoftwareKey::generate(alg).unwrap();
        let cert = client_cert(&ca, &client, vec![KeyUsageBit::DigitalSignature, KeyUsageBit::KeyAgreement]);
        check_recipient_certificate(&cert).unwrap();
        let generated = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let pkcs8 = generated.to_pkcs8_der().unwrap();
        let recipient = Recipient::Certificate(Box::new(cert));
        let algs = choose_algorithms(&recipient, caps.as_deref()).unwrap();
        let der = seal(&pkcs8, ca.signer(), std::slice::from_ref(&ca_cert), &recipient, &algs).unwrap();
        let opened = open(&der, &Decryptor::Key(&client), &Trust::now(vec![ca_cert.clone()])).unwrap();
        assert_eq!(opened.pkcs8.as_slice(), pkcs8.as_slice());
        assert_eq!(opened.signer_chain[0], ca_cert);
        // Another key of the same curve cannot open it.
        let other = SoftwareKey::generate(alg).unwrap();
        assert!(matches!(
            open(&der, &Decryptor::Key(&other), &Trust::now(vec![ca_cert.clone()])),
            Err(KeyPackageError::NoRecipient(_))
        ));
        // A package from an untrusted signer is refused.
        let (_, stranger) = new_ca();
        assert!(matches!(
            open(&der, &Decryptor::Key(&client), &Trust::now(vec![stranger])),
            Err(KeyPackageError::Signature(_))
        ));
        algs
    }

    #[test]
    fn kari_p256_and_p384_round_trip() {
        let a = round_trip(Algorithm::Es256, None);
        assert_eq!(
            (a.wrap, a.kdf, a.content),
            (KeyWrap::Aes256, KdfScheme::Sha256, ContentCipher::Aes256Cbc)
        );
        let caps = vec![KeyWrap::Aes128.algorithm_identifier(), KeyWrap::Aes192.algorithm_identifier()];
        let a = round_trip(Algorithm::Es384, Some(caps));
        assert_eq!((a.wrap, a.kdf), (KeyWrap::Aes192, KdfScheme::Sha384));
    }

    #[test]
    fn kekri_round_trip_and_wrong_key() {
        let (ca, ca_cert) = new_ca();
        let shared = SharedKey::new(b"kek-1".to_vec(), vec![7u8; 16]).unwrap();
        let pkcs8 = SoftwareKey::generate(Algorithm::Es256).unwrap().to_pkcs8_der().unwrap();
        let recipient = Recipient::Shared(shared.clone());
        let caps = vec![KeyWrap::Aes128.algorithm_identifier()];
        let algs = choose_algorithms(&recipient, Some(&caps)).unwrap();
        let der = seal(&pkcs8, ca.signer(), std::slice::from_ref(&ca_cert), &recipient, &algs).unwrap();
        let trust = Trust::now(vec![ca_cert]);
        assert_eq!(
            open(&der, &Decryptor::Shared(&shared), &trust).unwrap().pkcs8.as_slice(),
            pkcs8.as_slice()
        );
        let wrong = SharedKey::new(b"kek-1".to_vec(), vec![8u8; 16]).unwrap();
        assert!(matches!(
            open(&der, &Decryptor::Shared(&wrong), &trust),
            Err(KeyPackageError::NoRecipient(_))
        ));
        // The shared key's wrap must be among the listed capabilities.
        let only256 = vec![KeyWrap::Aes256.algorithm_identifier()];
        assert!(matches!(choose_algorithms(&recipient, Some(&only256)), Err(KeyPackageError::Request(_))));
    }

    #[test]
    fn recipient_checks() {
        let (ca, _) = new_ca();
        let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let signing_only = client_cert(&ca, &key, vec![KeyUsageBit::DigitalSignature]);
        assert!(check_recipient_certificate(&signing_only).unwrap_err().to_string().contains("keyAgreement"));
        let unrestricted = client_cert(&ca, &key, vec![]);
        check_recipient_certificate(&unrestricted).unwrap();
        let ed = SoftwareKey::generate(Algorithm::EdDsa).unwrap();
        let ed_cert = client_cert(&ca, &ed, vec![]);
        assert!(check_recipient_certificate(&ed_cert).is_err());
        assert!(key_id_matches(&unrestricted, &shared::pki::subject_key_id(&unrestricted)));
        assert!(!key_id_matches(&unrestricted, b"nope"));
        let recipient = Recipient::Certificate(Box::new(unrestricted));
        let none = vec![AlgorithmIdentifierOwned { oid: ID_AES256_CBC, parameters: None }];
        assert!(matches!(choose_algorithms(&recipient, Some(&none)), Err(KeyPackageError::Request(_))));
    }

    #[test]
    fn request_attributes_are_read_back() {
        let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let attrs =
            request_attributes(&RequestedKey::Asymmetric(vec![1, 2, 3]), &[KeyWrap::Aes256, KeyWrap::Aes128])
                .unwrap();
        let der =
            crate::binding::csr_with_attributes(&parse_name("CN=x").unwrap(), &[], &key, attrs).unwrap();
        let csr = Csr::verify_der(&der).unwrap();
        let req = encryption_request(&csr).unwrap().unwrap();
        assert_eq!(req.key, RequestedKey::Asymmetric(vec![1, 2, 3]));
        let caps = req.capabilities.unwrap();
        assert_eq!(caps[0].oid, KeyWrap::Aes256.oid());
        assert_eq!(caps.len(), 3);
        let plain = build_csr(&parse_name("CN=x").unwrap(), &[], &key).unwrap();
        assert_eq!(encryption_request(&Csr::verify_der(&plain).unwrap()).unwrap(), None);
    }
}
