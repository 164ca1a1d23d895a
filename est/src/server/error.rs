//! Every way an EST request can fail: one enum, [`EstError`], and its single mapping to HTTP
//! (`impl From<&EstError> for Problem`: status, RFC 9457 problem body, `WWW-Authenticate` /
//! `Allow`).

use crate::authority::AuthorityError;
use crate::http::{Area, Problem};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// `WWW-Authenticate` value sent with every 401.
pub const WWW_AUTHENTICATE_BASIC: &str = "Basic realm=\"est\"";

/// Every way an EST request can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EstError {
    /// No such CA label.
    #[error("there is no EST CA label '{0}' on this server")]
    UnknownLabel(String),
    /// No such resource.
    #[error("unknown EST resource '{0}'")]
    NotFound(String),
    /// Wrong HTTP method for the operation.
    #[error("method {method} is not allowed on /{op}; use {allow}")]
    MethodNotAllowed {
        /// The method received.
        method: String,
        /// The operation.
        op: &'static str,
        /// The method to use.
        allow: &'static str,
    },
    /// Content-Type is not application/pkcs10.
    #[error("Content-Type must be application/pkcs10 (RFC 7030), got '{0}'")]
    UnsupportedMediaType(String),
    /// The body is over the limit.
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The body did not arrive in time.
    #[error("timed out waiting for the request body")]
    BodyTimeout,
    /// The body could not be read.
    #[error("cannot read the request body: {0}")]
    BodyRead(String),
    /// Not base64.
    #[error("request body is not base64 (RFC 8951: EST bodies are base64 of DER)")]
    BadBase64,
    /// The CSR is malformed or its signature does not verify.
    #[error("{0}")]
    BadCsr(String),
    /// The CSR's key is the CA's own key.
    #[error("the CSR's public key is this CA's own key; generate a new key for the client")]
    CaKeyReuse,
    /// The CSR's key algorithm is not allowed here.
    #[error("key algorithm {0} is not allowed for this label")]
    KeyAlgorithm(String),
    /// Channel binding required but absent.
    #[error(
        "channel binding is required: put base64 of this TLS connection's tls-exporter \
         (RFC 9266, label EXPORTER-Channel-Binding, 32 bytes) into the CSR's challengePassword"
    )]
    BindingRequired,
    /// Channel binding present but this connection has no exporter value.
    #[error("this TLS connection offers no tls-exporter value to check the challengePassword against")]
    BindingUnavailable,
    /// Channel binding present and wrong.
    #[error(
        "the CSR's challengePassword does not match this TLS connection's channel binding \
         (tls-exporter); build the CSR on the connection that sends it"
    )]
    BindingMismatch,
    /// simplereenroll changed subject or subjectAltName.
    #[error("simplereenroll must keep the current certificate's names: {0}")]
    NameChanged(String),
    /// HTTP authentication needed or failed (401 + WWW-Authenticate).
    #[error("authentication required: {0}")]
    AuthRequired(String),
    /// A TLS client certificate is needed.
    #[error("{0}")]
    ClientCertRequired(String),
    /// The TLS client certificate was refused.
    #[error("client certificate refused: {0}")]
    ClientCertRejected(String),
    /// The authority refused the request.
    #[error("request denied: {0}")]
    Denied(String),
    /// serverkeygen asked for key encryption that cannot be done as asked (unknown key
    /// identifier, no client certificate, unusable key, no acceptable algorithm).
    #[error("cannot encrypt the server-generated key as requested: {0}")]
    KeyEncryption(String),
    /// The operation or option is not implemented / offered.
    #[error("{0}")]
    NotImplemented(String),
    /// The authority or its store is unavailable; nothing was issued.
    #[error("the certificate authority is unavailable: {0}")]
    Unavailable(String),
    /// The request took longer than allowed.
    #[error("the request took too long to process")]
    Timeout,
    /// Too many failed authentications from this address or for this user name (429).
    #[error("{0}")]
    TooManyFailures(#[from] crate::http::TooManyFailures),
    /// No slot for the password check within the wait (503).
    #[error("{0}")]
    Busy(#[from] crate::http::Busy),
    /// A bug or a failure the client cannot fix (details only in the server log).
    #[error("internal error: {0}")]
    Internal(String),
}

impl EstError {
    /// HTTP status, problem type slug and title: the one mapping from errors to HTTP.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use EstError::*;
        match self {
            UnknownLabel(_) => (StatusCode::NOT_FOUND, "unknown-label", "Unknown CA label"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Unknown EST resource"),
            MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed")
            }
            UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Request body too large")
            }
            BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "body-timeout", "Request body timeout"),
            BodyRead(_) => (StatusCode::BAD_REQUEST, "body-read", "Unreadable request body"),
            BadBase64 => (StatusCode::BAD_REQUEST, "bad-base64", "Body is not base64"),
            BadCsr(_) => (StatusCode::BAD_REQUEST, "bad-csr", "Invalid certification request"),
            CaKeyReuse => (StatusCode::BAD_REQUEST, "ca-key-reuse", "CSR uses the CA's key"),
            KeyAlgorithm(_) => (StatusCode::BAD_REQUEST, "key-algorithm", "Key algorithm not allowed"),
            BindingRequired => (StatusCode::BAD_REQUEST, "binding-required", "Channel binding required"),
            BindingUnavailable => {
                (StatusCode::BAD_REQUEST, "binding-unavailable", "No channel binding available")
            }
            BindingMismatch => (StatusCode::BAD_REQUEST, "binding-mismatch", "Channel binding mismatch"),
            NameChanged(_) => (StatusCode::BAD_REQUEST, "name-changed", "Re-enrollment changed the names"),
            AuthRequired(_) => {
                (StatusCode::UNAUTHORIZED, "authentication-required", "Authentication required")
            }
            ClientCertRequired(_) => {
                (StatusCode::FORBIDDEN, "client-certificate-required", "Client certificate required")
            }
            ClientCertRejected(_) => {
                (StatusCode::FORBIDDEN, "client-certificate-rejected", "Client certificate refused")
            }
            Denied(_) => (StatusCode::FORBIDDEN, "denied", "Request denied"),
            KeyEncryption(_) => (StatusCode::BAD_REQUEST, "key-encryption", "Key encryption request refused"),
            NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "not-implemented", "Not implemented"),
            Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Certificate authority unavailable")
            }
            Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout", "Request processing timed out"),
            TooManyFailures(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "too-many-failures", "Too many failed authentications")
            }
            Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy", "Server busy"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal server error"),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The RFC 9457 problem `type` URI of this error.
    pub fn problem_type(&self) -> String {
        Problem::from(self).type_uri()
    }

    /// The problem `detail` shown to the client (internal details stay in the log).
    fn detail(&self) -> String {
        match self {
            EstError::Internal(_) => "internal error; the server log has the details".to_string(),
            EstError::Unavailable(_) => {
                "the certificate authority is unavailable; nothing was issued, retry later".to_string()
            }
            other => other.to_string(),
        }
    }
}

/// The one mapping from an EST error to HTTP.
impl From<&EstError> for Problem {
    fn from(e: &EstError) -> Self {
        let (status, slug, title) = e.parts();
        let p = Problem::new(Area::Est, slug, status, e.detail()).with_title(title);
        match e {
            EstError::AuthRequired(_) => p.with_www_authenticate(WWW_AUTHENTICATE_BASIC),
            EstError::TooManyFailures(t) => p.with_retry_after(t.retry_after),
            EstError::Busy(b) => p.with_retry_after(b.retry_after),
            EstError::MethodNotAllowed { allow, .. } => p.with_allow(allow),
            _ => p,
        }
    }
}

impl IntoResponse for EstError {
    fn into_response(self) -> Response {
        Problem::from(&self).into_response()
    }
}

impl From<AuthorityError> for EstError {
    fn from(e: AuthorityError) -> Self {
        match e {
            AuthorityError::UnknownLabel(l) => EstError::UnknownLabel(l),
            AuthorityError::Refused(r) => {
                EstError::BadCsr(format!("the issuance profile refused the CSR: {r}"))
            }
            AuthorityError::Issue(r) => EstError::Internal(r),
            AuthorityError::Store(s) => EstError::Unavailable(s.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::MEDIA_PROBLEM;
    use axum::http::header;

    #[test]
    fn every_error_maps_to_a_problem() {
        let e = EstError::AuthRequired("x".into());
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], WWW_AUTHENTICATE_BASIC);
        assert_eq!(r.headers()[header::CONTENT_TYPE], MEDIA_PROBLEM);
        let e = EstError::MethodNotAllowed { method: "GET".into(), op: "simpleenroll", allow: "POST" };
        assert_eq!(e.problem_type(), "tag:brski.dev,2026:problem/est/method-not-allowed");
        assert_eq!(e.into_response().headers()[header::ALLOW], "POST");
    }
}
