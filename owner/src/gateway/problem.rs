//! The gateway's refusals: RFC 9457 `application/problem+json` with a stable `reason`, built
//! in this one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::agent::AgentError;

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable reason code.
    pub reason: &'static str,
    /// A sentence a person can act on.
    pub detail: String,
    /// Retry-After in seconds (429, 503).
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A refusal with an explicit status.
    pub fn new(status: StatusCode, reason: &'static str, detail: impl Into<String>) -> Self {
        Problem { status, reason, detail: detail.into(), retry_after: None }
    }

    /// 400 malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed", detail)
    }

    /// 401: no acceptable proxy certificate.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403 policy.
    pub fn policy(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "policy", detail)
    }

    /// 502: the Identity Server could not be reached or answered nonsense.
    pub fn upstream(detail: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream", detail.to_string())
    }

    /// 500.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail.to_string())
    }

    /// Adds Retry-After.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
}

impl From<AgentError> for Problem {
    fn from(e: AgentError) -> Self {
        let status = match e {
            AgentError::Malformed { .. } | AgentError::WrongType { .. } | AgentError::KeyMismatch(_) => {
                StatusCode::BAD_REQUEST
            }
            AgentError::Sign(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::FORBIDDEN,
        };
        Problem::new(status, e.reason(), e.to_string())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": format!("https://brski.dev/problems/agent/{}", self.reason),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "reason": self.reason,
        });
        let mut resp = (self.status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}
