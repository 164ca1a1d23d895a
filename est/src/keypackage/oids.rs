//! The object identifiers of the encrypted serverkeygen exchange (RFC 7030 §4.4.1-§4.4.2) and of
//! the CMS structures and algorithms it is built from (RFC 5652, RFC 5753, RFC 5958, RFC 3565).

use const_oid::ObjectIdentifier;

/// id-aa-decryptKeyID (RFC 4108): the CSR names a shared symmetric key to encrypt with.
pub const DECRYPT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.37");
/// id-aa-asymmDecryptKeyID (RFC 7030 §4.4.1.2): the CSR names a client public key to encrypt to.
pub const ASYMM_DECRYPT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.54");
/// smimeCapabilities (RFC 8551 §2.5.2): the algorithms the client accepts.
pub const SMIME_CAPABILITIES: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.15");
/// id-ct-KP-aKeyPackage (RFC 5958 §2): eContentType of the signed key package.
pub const ID_CT_KP_AKEY_PACKAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.2.1.2.78.5");

/// id-signedData (RFC 5652 §5): the content type inside the EnvelopedData.
pub(super) const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// id-envelopedData (RFC 5652 §6): the outer ContentInfo of the key part.
pub(super) const ID_ENVELOPED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
/// id-ecPublicKey (RFC 5480): the algorithm of the kari originatorKey.
pub(super) const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 (P-256) named curve.
pub(super) const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1 (P-384) named curve.
pub(super) const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// rsaEncryption (PKCS #1 v1.5), the key transport this server uses for ktri.
pub(super) const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-RSAES-OAEP, a key transport a client may list that this server does not use.
pub(super) const ID_RSAES_OAEP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.7");
/// id-aes128-CBC (RFC 3565).
pub(super) const ID_AES128_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.2");
/// id-aes192-CBC (RFC 3565).
pub(super) const ID_AES192_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.22");
/// id-aes256-CBC (RFC 3565).
pub(super) const ID_AES256_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");
