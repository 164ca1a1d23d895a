//! How an agent-issuance request is refused: a stable [`Reason`] (which fixes the status) and a
//! detail, answered as an RFC 9457 problem with a `reason` member through the one mapping
//! `impl From<&Refusal> for Problem`. Agent-object refusals ([`AgentError`]) take their reason
//! from the table in `est::http`, shared with the Identity Proxy and the owner gateway.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use est::http::{Problem, Reason};
use shared::agent::AgentError;

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable reason code (its status is [`Reason::status`]).
    pub reason: Reason,
    /// What happened, for the client and the log.
    pub detail: String,
}

impl Refusal {
    /// A refusal for `reason`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Refusal { reason, detail: detail.into() }
    }

    /// The HTTP status of this refusal.
    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }

    /// 401: no acceptable TLS client certificate.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(Reason::Unauthorized, detail)
    }

    /// 403 for policy.
    pub fn policy(detail: impl Into<String>) -> Self {
        Self::new(Reason::Policy, detail)
    }

    /// 400 for malformed input.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(Reason::Malformed, detail)
    }

    /// 500.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(Reason::Internal, detail.to_string())
    }
}

impl From<AgentError> for Refusal {
    fn from(e: AgentError) -> Self {
        Refusal { reason: Reason::from(&e), detail: e.to_string() }
    }
}

impl From<shared::store::StoreError> for Refusal {
    fn from(e: shared::store::StoreError) -> Self {
        Refusal::internal(format!("store: {e}"))
    }
}

/// The one mapping from an agent-issuance refusal to HTTP.
impl From<&Refusal> for Problem {
    fn from(r: &Refusal) -> Self {
        Problem::agent(r.reason, r.detail.clone())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        Problem::from(&self).into_response()
    }
}
