//! Private keys behind one seam: the [`Signer`] trait.
//!
//! Every private key in brski (a MASA voucher key, a CA key, a pledge IDevID key) is reached
//! through [`Signer`], addressed by a key URI: `file:` always, `pkcs11:` (RFC 7512) with the
//! `pkcs11` feature (`Pkcs11Signer`), `tpm:` with the `tpm` feature (`crate::tpm::TpmSigner`). Signatures come
//! back in the fixed-size "raw" form used by JOSE and COSE (ECDSA `r || s`, Ed25519 64 bytes);
//! [`crate::crypto::raw_to_der`] converts for X.509/CMS.

mod file;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
mod software;
mod uri;

pub use file::{generate_key_file, load_key_file, write_key_file, write_private, Existing};
#[cfg(feature = "pkcs11")]
pub use pkcs11::Pkcs11Signer;
pub use software::SoftwareKey;
pub use uri::{
    load_signer, redact_pin, KeyUri, PinSource, Pkcs11Uri, TpmUri, DEFAULT_PKCS11_MODULE, DEFAULT_TCTI,
};

use const_oid::ObjectIdentifier;

/// Signature algorithms brski signs with (and the JOSE / COSE / X.509 names of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256 (JOSE `ES256`, COSE -7).
    Es256,
    /// ECDSA on P-384 with SHA-384 (JOSE `ES384`, COSE -35).
    Es384,
    /// Ed25519 (JOSE / COSE `EdDSA`, COSE -8).
    EdDsa,
}

impl Algorithm {
    /// The JOSE `alg` header value.
    pub fn jose_name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// Parses a JOSE `alg` value.
    pub fn from_jose_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Algorithm::Es256),
            "ES384" => Some(Algorithm::Es384),
            "EdDSA" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }

    /// The COSE algorithm identifier (RFC 9053).
    pub fn cose(self) -> coset::iana::Algorithm {
        match self {
            Algorithm::Es256 => coset::iana::Algorithm::ES256,
            Algorithm::Es384 => coset::iana::Algorithm::ES384,
            Algorithm::EdDsa => coset::iana::Algorithm::EdDSA,
        }
    }

    /// Maps a COSE algorithm identifier back.
    pub fn from_cose(alg: coset::iana::Algorithm) -> Option<Self> {
        match alg {
            coset::iana::Algorithm::ES256 => Some(Algorithm::Es256),
            coset::iana::Algorithm::ES384 => Some(Algorithm::Es384),
            coset::iana::Algorithm::EdDSA => Some(Algorithm::EdDsa),
            _ => None,
        }
    }

    /// The X.509 / CMS signatureAlgorithm OID (ecdsa-with-SHA256, ecdsa-with-SHA384, id-Ed25519).
    pub fn x509_oid(self) -> ObjectIdentifier {
        match self {
            Algorithm::Es256 => const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
            Algorithm::Es384 => const_oid::db::rfc5912::ECDSA_WITH_SHA_384,
            Algorithm::EdDsa => const_oid::db::rfc8410::ID_ED_25519,
        }
    }

    /// The CMS digest algorithm that goes with this signature algorithm.
    pub fn digest_oid(self) -> ObjectIdentifier {
        match self {
            Algorithm::Es256 => const_oid::db::rfc5912::ID_SHA_256,
            Algorithm::Es384 => const_oid::db::rfc5912::ID_SHA_384,
            Algorithm::EdDsa => const_oid::db::rfc5912::ID_SHA_512,
        }
    }

    /// Parses the names users type on the command line (`p256`, `es256`, `ed25519`, ...).
    pub fn from_cli_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "es256" => Some(Algorithm::Es256),
            "p384" | "p-384" | "es384" => Some(Algorithm::Es384),
            "ed25519" | "eddsa" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.jose_name())
    }
}

/// Errors from loading, generating or using private keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key URI scheme is not one brski knows.
    #[error("unsupported key URI '{0}': use file:<path>, pkcs11:<RFC 7512 URI> or tpm:handle=<0x81......>")]
    UnsupportedUri(String),
    /// A private key file may be read by other users.
    #[error("private key {path} is accessible by group or others (mode {mode:o}); run: chmod 600 {path}")]
    InsecurePermissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Refusing to overwrite an existing key.
    #[error("key file {0} already exists; refusing to overwrite a private key")]
    Exists(String),
    /// File system error.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The key bytes are not a PKCS#8 key brski supports.
    #[error("not a supported PKCS#8 private key (P-256, P-384 or Ed25519): {0}")]
    Format(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// A PKCS#11 key could not be opened or used (`uri` never shows the PIN).
    #[error("PKCS#11 key {uri}: {detail}")]
    Pkcs11 {
        /// The key URI, PIN redacted.
        uri: String,
        /// What went wrong.
        detail: String,
    },
    /// A TPM key could not be created, opened or used.
    #[error("TPM key {uri}: {detail}")]
    Tpm {
        /// The key URI.
        uri: String,
        /// What went wrong.
        detail: String,
    },
}

/// A private key that can sign: the one seam for file, TPM and PKCS#11 keys.
///
/// `sign` returns the raw signature form (ECDSA `r || s`, Ed25519 64 bytes), which is what
/// JWS and COSE carry; X.509 and CMS callers convert with [`crate::crypto::raw_to_der`].
pub trait Signer: Send + Sync {
    /// The algorithm this key signs with.
    fn algorithm(&self) -> Algorithm;
    /// The DER SubjectPublicKeyInfo of the public half.
    fn public_key_der(&self) -> Vec<u8>;
    /// Signs `message` (the implementation hashes it as the algorithm requires).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError>;
}

impl<T: Signer + ?Sized> Signer for std::sync::Arc<T> {
    fn algorithm(&self) -> Algorithm {
        (**self).algorithm()
    }
    fn public_key_der(&self) -> Vec<u8> {
        (**self).public_key_der()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        (**self).sign(message)
    }
}

impl<T: Signer + ?Sized> Signer for Box<T> {
    fn algorithm(&self) -> Algorithm {
        (**self).algorithm()
    }
    fn public_key_der(&self) -> Vec<u8> {
        (**self).public_key_der()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        (**self).sign(message)
    }
}
