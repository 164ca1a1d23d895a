//! `/csrattrs` (RFC 7030 §4.5, RFC 8951): the attributes a CSR should carry, with
//! challengePassword first when the label requires channel binding.

use super::body::base64_response;
use crate::server::config::{BindingPolicy, LabelPolicy};
use crate::server::error::EstError;
use crate::server::state::ServerState;
use crate::wire::{self, CsrAttr};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The label's CSR attributes (204 when there are none).
pub(crate) fn csrattrs(st: &ServerState, policy: &LabelPolicy, label: &str) -> Result<Response, EstError> {
    let mut attrs = st.authority.csr_attrs(label);
    let cp = CsrAttr::Oid(shared::pki::CHALLENGE_PASSWORD);
    if policy.binding == BindingPolicy::Require && !attrs.contains(&cp) {
        attrs.insert(0, cp);
    }
    if attrs.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let der = wire::encode_csrattrs(&attrs).map_err(|e| EstError::Internal(e.to_string()))?;
    Ok(base64_response(wire::MEDIA_CSRATTRS, &der))
}
