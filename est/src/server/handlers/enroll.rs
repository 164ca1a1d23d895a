//! simpleenroll, simplereenroll and serverkeygen (RFC 7030 §4.2, §4.4): authenticate, read and
//! check the CSR, ask the authority, then issue (or hand over to serverkeygen).

use super::body::{base64_response, parse_csr, read_request_body};
use super::csr_checks::{check_binding, check_key, check_same_names};
use super::serverkeygen;
use crate::authority::{Decision, EnrollContext, Operation};
use crate::http::ConnectionInfo;
use crate::server::auth::{authenticate_enroll, authenticate_reenroll, serial_hex};
use crate::server::config::LabelPolicy;
use crate::server::error::EstError;
use crate::server::state::ServerState;
use crate::wire;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Who is asking: the client certificate being renewed (simplereenroll), or the label's
/// credentials; with the current certificate for re-enrollment.
async fn authenticate(
    st: &ServerState,
    policy: &LabelPolicy,
    conn: &ConnectionInfo,
    label: &str,
    operation: Operation,
    headers: &axum::http::HeaderMap,
) -> Result<(crate::authority::Identity, Option<x509_cert::Certificate>), EstError> {
    Ok(match operation {
        Operation::Reenroll => {
            let (id, cur) = authenticate_reenroll(st, conn, label).await?;
            (id, Some(cur))
        }
        _ => (authenticate_enroll(st, policy, label, conn, headers).await?, None),
    })
}

/// simpleenroll, simplereenroll and serverkeygen.
pub(crate) async fn enroll(
    st: &ServerState,
    policy: &LabelPolicy,
    conn: &ConnectionInfo,
    label: &str,
    operation: Operation,
    req: Request,
) -> Result<Response, EstError> {
    let (parts, body) = req.into_parts();
    let body = read_request_body(st, body).await?;
    let (identity, current) = authenticate(st, policy, conn, label, operation, &parts.headers).await?;
    let csr = parse_csr(&parts.headers, &body)?;
    let delivery = if operation == Operation::ServerKeygen {
        Some(serverkeygen::check_request(st, policy, label, &csr, conn)?)
    } else {
        check_key(st, policy, label, &csr)?;
        None
    };
    check_binding(policy.binding, &csr, conn)?;
    if let Some(cur) = &current {
        check_same_names(&csr, cur)?;
    }
    let ctx = EnrollContext {
        label,
        operation,
        identity: &identity,
        csr: &csr,
        request_key: EnrollContext::request_key_for(label, operation, &csr),
    };
    match st.authority.authorize(&ctx).await {
        Decision::Approve => {}
        Decision::Pending { retry_after_secs } => {
            let (op, who) = (operation.as_str(), identity.describe());
            tracing::info!(label, op, %who, retry_after_secs, "EST request pending");
            let text = format!(
                "request accepted and pending approval; \
                 send the same request again in {retry_after_secs} seconds\n"
            );
            let headers = [
                (header::RETRY_AFTER, retry_after_secs.to_string()),
                (header::CONTENT_TYPE, "text/plain".to_string()),
            ];
            return Ok((StatusCode::ACCEPTED, headers, text).into_response());
        }
        Decision::Deny(reason) => return Err(EstError::Denied(reason)),
    }
    if let Some(delivery) = &delivery {
        return serverkeygen::serverkeygen(st, label, &csr, &identity, delivery).await;
    }
    let cert = st.authority.issue(label, &csr).await?;
    let (op, who, serial) = (operation.as_str(), identity.describe(), serial_hex(&cert));
    tracing::info!(label, op, %who, %serial, "certificate issued");
    let der = wire::certs_only(&[cert]).map_err(|e| EstError::Internal(e.to_string()))?;
    Ok(base64_response(wire::MEDIA_CERTS_ONLY, &der))
}
