//! The gateway's refusals: a [`Refusal`] carries a stable [`Reason`] (which fixes the status)
//! and a sentence, and becomes an RFC 9457 problem with a `reason` member in this one place
//! (`impl From<&Refusal> for Problem`). Refusals of agent objects ([`AgentError`]) take their
//! reason from the table in `est::http`, shared with the Identity Proxy and the Identity Server.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use est::http::{Problem, Reason};
use shared::agent::AgentError;

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable reason code (its status is [`Reason::status`]).
    pub reason: Reason,
    /// A sentence a person can act on.
    pub detail: String,
    /// Retry-After in seconds (429, 503).
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// A refusal for `reason`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Refusal { reason, detail: detail.into(), retry_after: None }
    }

    /// The HTTP status of this refusal.
    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }

    /// 400 malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(Reason::Malformed, detail)
    }

    /// 401: no acceptable proxy certificate.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(Reason::Unauthorized, detail)
    }

    /// 403 policy.
    pub fn policy(detail: impl Into<String>) -> Self {
        Self::new(Reason::Policy, detail)
    }

    /// 502: the Identity Server could not be reached or answered nonsense.
    pub fn upstream(detail: impl std::fmt::Display) -> Self {
        Self::new(Reason::Upstream, detail.to_string())
    }

    /// 500.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(Reason::Internal, detail.to_string())
    }

    /// Adds Retry-After.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
}

impl From<AgentError> for Refusal {
    fn from(e: AgentError) -> Self {
        Refusal::new(Reason::from(&e), e.to_string())
    }
}

/// The one mapping from a gateway refusal to HTTP.
impl From<&Refusal> for Problem {
    fn from(r: &Refusal) -> Self {
        let p = Problem::agent(r.reason, r.detail.clone());
        match r.retry_after {
            Some(secs) => p.with_retry_after(secs),
            None => p,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        Problem::from(&self).into_response()
    }
}
