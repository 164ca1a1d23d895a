//! Signed artifacts, sans-IO: CMS SignedData (RFC 5652), JWS (RFC 7515, General JSON and
//! compact) and COSE_Sign1 (RFC 9052). Each parses bytes into an unverified form and only
//! hands out the payload as [`Verified`] after the signature and the signer's certificate
//! path check out against a [`Trust`].

pub mod ber;
pub mod cms;
pub mod cose;
pub mod envelope;
pub mod jws;

pub use envelope::{Envelope, Format, Signed, SignedError, SignedPayload};

use crate::crypto::{CryptoError, PublicKey};
use crate::pki::{spki_der, verify_chain, ChainError};
use crate::Verified;
use time::OffsetDateTime;
use x509_cert::Certificate;

/// Largest signed artifact accepted (a registrar voucher-request carrying the pledge's request
/// and two certificate chains is a few KiB).
pub const MAX_ARTIFACT_LEN: usize = 128 * 1024;

/// What a verifier trusts: anchors and the time at which certificates must be valid.
#[derive(Debug, Clone)]
pub struct Trust {
    /// Trust anchors (CA certificates, or pinned end-entity certificates).
    pub anchors: Vec<Certificate>,
    /// Verification time (now, or an explicit time for old vectors and clockless devices).
    pub at: OffsetDateTime,
}

impl Trust {
    /// Trust `anchors` as of now.
    pub fn now(anchors: Vec<Certificate>) -> Self {
        Trust { anchors, at: OffsetDateTime::now_utc() }
    }
}

/// Why a signed artifact was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Input larger than [`MAX_ARTIFACT_LEN`].
    #[error("signed object of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Input ends early.
    #[error("truncated signed object")]
    Truncated,
    /// Bytes after the object.
    #[error("trailing data after the signed object")]
    TrailingData,
    /// The structure cannot be parsed.
    #[error("malformed signed object: {0}")]
    Malformed(String),
    /// The object is not of the expected content type.
    #[error("wrong content type: {0}")]
    WrongContentType(String),
    /// The payload is missing (detached signature).
    #[error("signed object carries no content")]
    NoContent,
    /// Not exactly one signer where exactly one is required.
    #[error("expected exactly one signer, found {0}")]
    SignerCount(usize),
    /// CMS messageDigest does not match the content.
    #[error("messageDigest attribute does not match the content")]
    DigestMismatch,
    /// CMS contentType attribute does not match eContentType.
    #[error("contentType attribute does not match eContentType")]
    ContentTypeMismatch,
    /// CMS signed attributes are required but absent.
    #[error("signed attributes are required for this content type but absent")]
    MissingSignedAttrs,
    /// Unsupported algorithm or key.
    #[error("unsupported algorithm: {0}")]
    Unsupported(String),
    /// A header parameter is missing or invalid.
    #[error("invalid header: {0}")]
    Header(String),
    /// No candidate key verifies the signature.
    #[error("signature does not verify with the signer certificate or any trusted key")]
    BadSignature,
    /// The signature verifies but the signer does not chain to a trust anchor.
    #[error("signer not trusted: {0}")]
    Chain(ChainError),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

impl From<ChainError> for SignatureError {
    fn from(e: ChainError) -> Self {
        SignatureError::Chain(e)
    }
}

impl From<der::Error> for SignatureError {
    fn from(e: der::Error) -> Self {
        match e.kind() {
            der::ErrorKind::TrailingData { .. } => SignatureError::TrailingData,
            der::ErrorKind::Incomplete { .. } => SignatureError::Truncated,
            _ => SignatureError::Malformed(e.to_string()),
        }
    }
}

pub(crate) fn check_size(len: usize) -> Result<(), SignatureError> {
    if len > MAX_ARTIFACT_LEN {
        return Err(SignatureError::TooLarge { len, max: MAX_ARTIFACT_LEN });
    }
    Ok(())
}

/// Finds the signer among `candidates` (then among the trust anchors, for objects signed
/// directly by an anchor key): the first whose key passes `check`, then validates its path to
/// the anchors using `pool` as intermediates. Returns the path, signer first.
pub(crate) fn resolve_signer(
    candidates: &[Certificate],
    pool: &[Certificate],
    trust: &Trust,
    check: impl Fn(&PublicKey) -> Result<(), CryptoError>,
) -> Result<Vec<Certificate>, SignatureError> {
    let mut unsupported = None;
    let mut any_supported = false;
    let mut chain_err = None;
    for cert in candidates.iter().chain(trust.anchors.iter()) {
        let Ok(key) = PublicKey::from_spki_der(&spki_der(cert)) else { continue };
        match check(&key) {
            // The key verifies; the object is trusted if this certificate chains to an anchor.
            // Keep looking otherwise: a re-issued certificate for the same key may be trusted.
            Ok(()) => match verify_chain(cert, pool, &trust.anchors, trust.at) {
                Ok(path) => return Ok(path),
                Err(e) => {
                    chain_err.get_or_insert(e);
                }
            },
            Err(CryptoError::Algorithm(a)) => unsupported = Some(a),
            Err(_) => any_supported = true,
        }
    }
    match (chain_err, unsupported) {
        (Some(e), _) => Err(SignatureError::Chain(e)),
        (None, Some(a)) if !any_supported => Err(SignatureError::Unsupported(a)),
        _ => Err(SignatureError::BadSignature),
    }
}

/// Wraps a verified payload with the signer path.
pub(crate) fn verified(payload: Vec<u8>, path: Vec<Certificate>) -> Verified<Vec<u8>> {
    Verified::new(payload, path)
}
