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
//!
//! # Layout
//!
//! Split the way RustCrypto `cms` splits its builder, one recipient kind per module; each module
//! imports only modules above it in this list, never its importer:
//!
//! * `oids`: the object identifiers of RFC 4108, RFC 5958, RFC 7030, RFC 8551 used here;
//! * `error`: [`KeyPackageError`];
//! * `algorithms`: the AES key wraps, ECDH KDF schemes and content ciphers ([`Algorithms`]);
//! * `attributes`: the CSR attributes that ask for an encrypted key ([`request_attributes`]) and
//!   reading them back ([`encryption_request`]);
//! * `kekri`: a shared AES key-encryption key ([`SharedKey`]) and its KEKRecipientInfo;
//! * `recipient`: whom a package is encrypted for ([`Recipient`]) and the checks on a client
//!   certificate ([`check_recipient_certificate`], [`key_id_matches`]);
//! * `choose`: picking the algorithms from the client's SMIMECapabilities ([`choose_algorithms`]);
//! * `kari`: the EC recipient (RFC 5753 ephemeral-static ECDH), both directions;
//! * `ktri`: the RSA recipient (key transport through `cms`'s builder);
//! * `package`: the AsymmetricKeyPackage (RFC 5958 §2) holding the one generated key;
//! * `seal`: the server side, building the EnvelopedData(SignedData(AsymmetricKeyPackage)) ([`seal`]);
//! * `open`: the client side, decrypting and verifying it ([`open`]).

mod algorithms;
mod attributes;
mod choose;
mod error;
mod kari;
mod kekri;
mod ktri;
mod oids;
mod open;
mod package;
mod recipient;
mod seal;

pub use algorithms::{Algorithms, ContentCipher, KdfScheme, KeyWrap};
pub use attributes::{
    encryption_request, request_attributes, smime_capabilities_attribute, EncryptionRequest, RequestedKey,
};
pub use choose::choose_algorithms;
pub use error::KeyPackageError;
pub use kekri::SharedKey;
pub use oids::{ASYMM_DECRYPT_KEY_ID, DECRYPT_KEY_ID, ID_CT_KP_AKEY_PACKAGE, SMIME_CAPABILITIES};
pub use open::{open, Decryptor};
pub use package::OpenedKey;
pub use recipient::{check_recipient_certificate, key_id_matches, Recipient};
pub use seal::seal;

#[cfg(test)]
mod tests;
