//! [`KeyPackageError`]: why an encrypted key package (RFC 7030 §4.4.2) could not be requested,
//! built or opened.

use shared::signed::SignatureError;

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

/// A [`KeyPackageError::Malformed`] saying `e`.
pub(super) fn malformed(e: impl std::fmt::Display) -> KeyPackageError {
    KeyPackageError::Malformed(e.to_string())
}

/// A [`KeyPackageError::Build`] saying `e`.
pub(super) fn build_err(e: impl std::fmt::Display) -> KeyPackageError {
    KeyPackageError::Build(e.to_string())
}
