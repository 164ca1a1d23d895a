//! Why an owner operation failed.

use shared::agent::AgentError;

/// An owner-side failure.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// The owner directory or its configuration is not usable.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A private key could not be generated, loaded or used.
    #[error(transparent)]
    Key(#[from] shared::keys::KeyError),
    /// A certificate could not be built or read.
    #[error("certificate: {0}")]
    Pki(#[from] shared::pki::PkiError),
    /// An ACR, challenge or OA is not acceptable.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The owner refuses this request (wrong model, another owner, a rule).
    #[error("refused: {0}")]
    Refused(String),
    /// Talking to the Identity Server failed.
    #[error("Identity Server: {0}")]
    Client(#[from] est::client::ClientError),
    /// The TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// The Identity Server answered with an error.
    #[error("Identity Server answered {status}: {detail}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Its problem detail.
        detail: String,
    },
}

impl OwnerError {
    /// An [`OwnerError::Io`] for `path`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> OwnerError + '_ {
        move |source| OwnerError::Io { path: path.display().to_string(), source }
    }
}
