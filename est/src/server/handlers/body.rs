//! Request and response bodies: reading a body within the size and time limits, a base64 CSR, and
//! answering base64 DER (RFC 8951).

use crate::http::{read_body, BodyError, BodyLimits};
use crate::server::error::EstError;
use crate::server::state::ServerState;
use crate::wire;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::pki::Csr;
use shared::Verified;

/// A 200 response of base64 `der` with `content_type`.
pub(crate) fn base64_response(content_type: &'static str, der: &[u8]) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], wire::encode_body(der)).into_response()
}

/// Reads the request body within the limit and the timeout. Enrollment handlers read it before
/// they refuse anything else, so a client that sent a body without credentials (and retries
/// after the 401, as EST clients do) reads the 401 rather than a reset connection.
pub(crate) async fn read_request_body(st: &ServerState, body: Body) -> Result<Bytes, EstError> {
    let limits = BodyLimits::new(st.config.body_limit).with_timeout(st.config.body_timeout);
    read_body(body, limits).await.map_err(|e| match e {
        BodyError::TooLarge(n) => EstError::PayloadTooLarge(n),
        BodyError::Timeout(_) => EstError::BodyTimeout,
        BodyError::Read(r) => EstError::BodyRead(r),
    })
}

/// Checks Content-Type, decodes the base64 body and verifies the CSR.
pub(crate) fn parse_csr(headers: &HeaderMap, body: &[u8]) -> Result<Verified<Csr>, EstError> {
    let ct = headers.get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).to_string());
    let essence = ct.as_deref().map(shared::brski::media::essence);
    if essence.as_deref() != Some(wire::MEDIA_PKCS10) {
        return Err(EstError::UnsupportedMediaType(ct.unwrap_or_else(|| "(none)".into())));
    }
    let der = wire::decode_body(body).map_err(|_| EstError::BadBase64)?;
    Csr::verify_der(&der).map_err(|e| match e {
        shared::pki::CsrError::TooLarge(n) => EstError::PayloadTooLarge(n.min(shared::pki::MAX_CSR_LEN)),
        other => EstError::BadCsr(other.to_string()),
    })
}
