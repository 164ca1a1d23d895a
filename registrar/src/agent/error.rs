//! How an agent-issuance request is refused: a status, a stable reason code and a detail,
//! answered as an RFC 9457 problem with a `reason` member.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::agent::AgentError;

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable reason code.
    pub reason: &'static str,
    /// What happened, for the client and the log.
    pub detail: String,
}

impl Refusal {
    /// A refusal with an explicit status.
    pub fn new(status: StatusCode, reason: &'static str, detail: impl Into<String>) -> Self {
        Refusal { status, reason, detail: detail.into() }
    }

    /// 401: no acceptable TLS client certificate.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403 for policy.
    pub fn policy(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "policy", detail)
    }

    /// 400 for malformed input.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed", detail)
    }

    /// 500.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail.to_string())
    }
}

impl From<AgentError> for Refusal {
    fn from(e: AgentError) -> Self {
        let status = match e {
            AgentError::Malformed { .. } | AgentError::WrongType { .. } | AgentError::KeyMismatch(_) => {
                StatusCode::BAD_REQUEST
            }
            AgentError::Sign(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::FORBIDDEN,
        };
        Refusal { status, reason: e.reason(), detail: e.to_string() }
    }
}

impl From<shared::store::StoreError> for Refusal {
    fn from(e: shared::store::StoreError) -> Self {
        Refusal::internal(format!("store: {e}"))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": format!("https://brski.dev/problems/agent/{}", self.reason),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "reason": self.reason,
        });
        let mut resp = (self.status, body.to_string()).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        resp
    }
}
