//! `/cacerts` (RFC 7030 §4.1): the label's CA certificates as a certs-only message.

use super::body::base64_response;
use crate::server::error::EstError;
use crate::server::state::ServerState;
use crate::wire;
use axum::response::Response;

/// The label's CA certificates (503 when there are none).
pub(crate) fn cacerts(st: &ServerState, label: &str) -> Result<Response, EstError> {
    let certs = st.authority.ca_certs(label);
    if certs.is_empty() {
        return Err(EstError::Unavailable(format!("no CA certificates for label '{label}'")));
    }
    let der = wire::certs_only(&certs).map_err(|e| EstError::Internal(e.to_string()))?;
    Ok(base64_response(wire::MEDIA_CACERTS, &der))
}
