//! Why an Agent API exchange, or keeping its answer, failed: [`AgentClientError`].

use std::time::Duration;

/// Why an Agent API exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentClientError {
    /// The proxy cannot be reached.
    #[error("cannot reach the Identity Proxy at {endpoint}: {detail}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        detail: String,
    },
    /// No answer in time.
    #[error("the Identity Proxy did not answer within {0:?}")]
    Timeout(Duration),
    /// HTTP failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The proxy or server refused the request.
    #[error("refused ({status}, {reason}): {detail}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The problem's `reason`.
        reason: String,
        /// The problem's `detail`.
        detail: String,
    },
    /// An answer of an unexpected shape, or a credential that does not fit the request.
    #[error("{0}")]
    Invalid(String),
    /// Still pending after the maximum wait.
    #[error("still pending after {0:?} (request {1}); the owner has not decided")]
    PendingTooLong(Duration, String),
    /// The agent's files could not be written or read.
    #[error("{0}")]
    Files(String),
}
