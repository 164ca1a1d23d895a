//! The BRSKI handlers: `requestvoucher` (check, policy, registrar voucher-request, MASA),
//! `voucher_status` (and the audit-log check it triggers) and `enrollstatus`. Each refusal is
//! logged, appended to the audit log with its reason, stored in the pledge's record, and
//! answered as an RFC 9457 problem.

use crate::audit::{judge, Verdict};
use crate::config::{Approval, AuditLogPolicy};
use crate::error::RegistrarError;
use crate::pledges::{self, PledgeRecord, PledgeState};
use crate::pvr::{check_pvr, CheckedPvr, PvrContext};
use crate::rvr::sign_registrar_request;
use crate::state::Registrar;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use est::http::{BodyLimits, ConnectionInfo};
use shared::brski::{StatusReport, MAX_JSON_BODY};
use shared::pki::{self, verify_chain};
use shared::signed::{Format, MAX_ARTIFACT_LEN};
use shared::store::{VoucherRecord, WriteBatch};
use shared::voucher::SignedVoucher;
use std::sync::Arc;
use time::OffsetDateTime;
use x509_cert::Certificate;

/// How long a used pledge nonce is remembered (replays within this window are refused).
const NONCE_MEMORY: time::Duration = time::Duration::days(30);

/// POST /.well-known/brski/requestvoucher.
pub(crate) async fn request_voucher(State(reg): State<Arc<Registrar>>, req: Request) -> Response {
    let conn = connection(&req);
    let remote = conn.remote;
    let chain = match client_chain(&conn) {
        Ok(c) => c,
        Err(e) => return refuse(&reg, "unknown", "requestvoucher", e).await,
    };
    let serial = chain.first().and_then(pki::serial_number).unwrap_or_else(|| "unknown".into());
    let started = std::time::Instant::now();
    match voucher_flow(&reg, &chain, req).await {
        Ok(resp) => {
            reg.metrics().issued("voucher", started.elapsed().as_secs_f64());
            if reg.config().approval != crate::config::Approval::Auto {
                reg.refresh_pending_gauge().await;
            }
            tracing::info!(%serial, ?remote, "voucher returned to pledge");
            resp
        }
        Err(e) => refuse(&reg, &serial, "requestvoucher", e).await,
    }
}

/// Logs, audits and records a refusal, then answers it.
async fn refuse(reg: &Registrar, serial: &str, action: &str, e: RegistrarError) -> Response {
    let status = e.status().as_u16();
    if !matches!(e, RegistrarError::Pending { .. }) {
        reg.metrics().refusal(e.code());
    }
    if matches!(e, RegistrarError::Pending { .. }) {
        reg.refresh_pending_gauge().await;
        tracing::info!(%serial, action, "pledge pending approval: 202");
    } else if status >= 500 {
        tracing::error!(%serial, action, status, error = %e, "BRSKI request failed");
    } else {
        tracing::warn!(%serial, action, status, error = %e, "BRSKI request refused");
    }
    let detail = serde_json::json!({ "status": status, "reason": e.to_string(), "code": e.code() });
    pledges::audit(reg.store().as_ref(), "registrar", &format!("{action}.refused"), serial, detail).await;
    e.into_response()
}

async fn voucher_flow(
    reg: &Registrar,
    chain: &[Certificate],
    req: Request,
) -> Result<Response, RegistrarError> {
    let content_type = header_text(req.headers(), header::CONTENT_TYPE);
    let accept = header_text(req.headers(), header::ACCEPT);
    let body = read_body(req, MAX_ARTIFACT_LEN).await?;
    let cx = PvrContext {
        client_chain: chain,
        own_cert: reg.certificate(),
        manufacturers: &reg.config().manufacturers,
        at: OffsetDateTime::now_utc(),
    };
    let pvr = check_pvr(&body, &content_type, &cx)?;
    let mut record = pledges::get(reg.store().as_ref(), &pvr.serial)
        .await
        .map_err(store_err)?
        .unwrap_or_else(|| PledgeRecord::new(&pvr.serial, PledgeState::Pending));
    record.manufacturer = Some(reg.config().manufacturers[pvr.manufacturer].name.clone());
    record.idevid_sha256 = Some(fingerprint(&pvr.idevid));
    if let Err(e) = approve(reg, &mut record, &body).await {
        record.reason = Some(e.to_string());
        pledges::put(reg.store().as_ref(), &mut record).await.map_err(store_err)?;
        return Err(e);
    }
    consume_nonce(reg, &pvr).await?;
    let rvr = sign_registrar_request(&pvr, reg.key().as_ref(), reg.chain())?;
    let m = &reg.config().manufacturers[pvr.manufacturer];
    let accept = accepted_formats(&accept, pvr.format);
    let result = reg.masa().request_voucher(m, &pvr.idevid, &rvr, pvr.format, &accept).await;
    let voucher = match result {
        Ok(v) => v,
        Err(e) => {
            record.reason = Some(e.to_string());
            pledges::put(reg.store().as_ref(), &mut record).await.map_err(store_err)?;
            return Err(e);
        }
    };
    // approve() refused a denied pledge above, so this step is legal.
    record
        .voucher_issued(&rvr, &pvr.format.to_string(), pvr.nonce.json_text())
        .map_err(|e| RegistrarError::NotAuthorized(e.to_string()))?;
    let detail = serde_json::json!({ "nonce": pvr.nonce.json_text(), "format": pvr.format.to_string() });
    // The voucher, the record and the audit event: one transaction, committed before the
    // voucher is answered.
    let event = pledges::event("registrar", "requestvoucher.voucher", &pvr.serial, detail);
    let batch = WriteBatch::new().voucher(voucher_record(&pvr, &voucher.bytes)).audit(event);
    pledges::put_with(reg.store().as_ref(), &mut record, batch).await.map_err(store_err)?;
    let mut resp = (StatusCode::OK, voucher.bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&voucher.content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

/// Applies the approval policy; a pending pledge is recorded with the hash of its request
/// (a retry must send the identical request, RFC 8995 §5.6).
async fn approve(reg: &Registrar, record: &mut PledgeRecord, body: &[u8]) -> Result<(), RegistrarError> {
    let cfg = reg.config();
    match record.state() {
        PledgeState::Denied => {
            return Err(RegistrarError::NotAuthorized(format!(
                "pledge {} was denied by an operator",
                record.serial
            )))
        }
        PledgeState::Pending => {}
        _ => return Ok(()),
    }
    match cfg.approval {
        Approval::Auto => Ok(()),
        Approval::Allowlist if cfg.allowlist.contains(&record.serial) => Ok(()),
        Approval::Allowlist => Err(RegistrarError::NotAuthorized(format!(
            "serial {} is not on the allow-list (approve it with `brski registrar approve {}`)",
            record.serial, record.serial
        ))),
        Approval::Manual => {
            record.pending_request_sha256 = Some(hex::encode(shared::crypto::sha256(body)));
            let event =
                pledges::event("registrar", "requestvoucher.pending", &record.serial, serde_json::json!({}));
            pledges::put_with(reg.store().as_ref(), record, WriteBatch::new().audit(event))
                .await
                .map_err(store_err)?;
            Err(RegistrarError::Pending { retry_after: cfg.retry_after.as_secs() })
        }
    }
}

/// Refuses a request whose nonce was already forwarded (a replayed pledge request).
async fn consume_nonce(reg: &Registrar, pvr: &CheckedPvr) -> Result<(), RegistrarError> {
    let value = pvr.nonce.json_text();
    let scope = format!("registrar.pvr-nonce.{}", pvr.serial);
    let expires = OffsetDateTime::now_utc() + NONCE_MEMORY;
    match reg.store().consume_once(&scope, value.as_bytes(), expires).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(RegistrarError::Replay),
        Err(e) => Err(store_err(e)),
    }
}

/// The voucher as received, for the store; the registrar's own inspection (unverified, for
/// the record).
fn voucher_record(pvr: &CheckedPvr, bytes: &[u8]) -> VoucherRecord {
    let inspected = SignedVoucher::parse(bytes).ok().and_then(|s| s.inspect_unverified().ok());
    let domain = inspected
        .as_ref()
        .and_then(|v| v.pinned_domain_cert.as_deref())
        .and_then(|d| pki::cert_from_der(d).ok())
        .map(|c| shared::brski::domain_id(&c))
        .unwrap_or_default();
    let assertion =
        inspected.as_ref().and_then(|v| v.assertion).map(|a| a.name().to_string()).unwrap_or_default();
    VoucherRecord {
        serial_number: pvr.serial.clone(),
        domain,
        assertion,
        nonce: Some(pvr.nonce.json_text().into_bytes()),
        format: pvr.format.to_string(),
        bytes: bytes.to_vec(),
        created_at: OffsetDateTime::now_utc(),
    }
}

/// POST /.well-known/brski/voucher_status: records the report; on success checks the MASA
/// audit log as the policy says.
pub(crate) async fn voucher_status(State(reg): State<Arc<Registrar>>, req: Request) -> Response {
    let chain = match client_chain(&connection(&req)) {
        Ok(c) => c,
        Err(e) => return refuse(&reg, "unknown", "voucher_status", e).await,
    };
    let serial = chain.first().and_then(pki::serial_number).unwrap_or_else(|| "unknown".into());
    match voucher_status_flow(&reg, &chain, req).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => refuse(&reg, &serial, "voucher_status", e).await,
    }
}

async fn voucher_status_flow(
    reg: &Registrar,
    chain: &[Certificate],
    req: Request,
) -> Result<(), RegistrarError> {
    let (report, mut record, _) = read_status(reg, chain, req).await?;
    let idevid = &chain[0];
    tracing::info!(serial = %record.serial, status = report.status, reason = ?report.reason, "voucher_status");
    warn_unknown(&report, &record.serial);
    if report.status {
        // A voucher_status repeated by an enrolled pledge leaves it enrolled.
        if let Err(e) = record.imprinted() {
            tracing::debug!(serial = %record.serial, "voucher_status: {e}");
        }
        check_audit_log(reg, &mut record, idevid).await;
    } else {
        record.reason = Some(format!(
            "the pledge rejected the voucher: {}",
            report.reason.as_deref().unwrap_or("no reason given")
        ));
    }
    let detail = serde_json::to_value(&report).unwrap_or_default();
    record.voucher_status = Some(report);
    let event = pledges::event("pledge", "voucher_status", &record.serial, detail);
    pledges::put_with(reg.store().as_ref(), &mut record, WriteBatch::new().audit(event))
        .await
        .map_err(store_err)
}

/// Fetches the audit log with the last registrar voucher-request and judges it; a violation
/// under the enforce policy marks the pledge refused (EST is then refused, RFC 8995 §5.8.3).
async fn check_audit_log(reg: &Registrar, record: &mut PledgeRecord, idevid: &Certificate) {
    let policy = reg.config().audit_log;
    if policy == AuditLogPolicy::Ignore {
        return;
    }
    let (Some(rvr), Some(fmt)) = (record.last_rvr.as_deref(), record.last_rvr_format.as_deref()) else {
        return;
    };
    let (Ok(rvr), Some(format)) = (shared::b64::decode_lenient(rvr), Format::from_name(fmt)) else { return };
    let m = reg.config().manufacturers.iter().find(|m| Some(&m.name) == record.manufacturer.as_ref());
    let Some(m) = m else { return };
    let verdict = match reg.masa().request_audit_log(m, idevid, &rvr, format).await {
        Ok(log) => judge(&log, reg.own_domain_ids(), record.last_nonce.as_deref()),
        Err(e) => Verdict::Violation(format!("the audit log could not be fetched: {e}")),
    };
    match verdict {
        Verdict::Ok(text) => record.audit_log = Some(format!("ok: {text}")),
        Verdict::Violation(text) => {
            tracing::warn!(serial = %record.serial, "audit log: {text}");
            record.audit_log = Some(format!("violation: {text}"));
            if policy == AuditLogPolicy::Enforce {
                if let Err(e) = record.refuse(format!("audit log: {text}")) {
                    tracing::warn!(serial = %record.serial, "audit log violation: {e}");
                }
            }
        }
    }
}

/// POST /.well-known/brski/enrollstatus: records the report and which certificate it came
/// with (RFC 8995 §5.9.4: the registrar logs whether it came with a matching client cert).
pub(crate) async fn enroll_status(State(reg): State<Arc<Registrar>>, req: Request) -> Response {
    let chain = match client_chain(&connection(&req)) {
        Ok(c) => c,
        Err(e) => return refuse(&reg, "unknown", "enrollstatus", e).await,
    };
    let serial = chain.first().and_then(pki::serial_number).unwrap_or_else(|| "unknown".into());
    match enroll_status_flow(&reg, &chain, req).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => refuse(&reg, &serial, "enrollstatus", e).await,
    }
}

async fn enroll_status_flow(
    reg: &Registrar,
    chain: &[Certificate],
    req: Request,
) -> Result<(), RegistrarError> {
    let (report, mut record, via) = read_status(reg, chain, req).await?;
    tracing::info!(serial = %record.serial, status = report.status, via, reason = ?report.reason, "enrollstatus");
    warn_unknown(&report, &record.serial);
    if report.status {
        if let Err(e) = record.enrolled() {
            tracing::info!(serial = %record.serial, "enrollstatus: {e}");
        }
    }
    if !report.status {
        record.reason =
            Some(format!("enrollment failed: {}", report.reason.as_deref().unwrap_or("no reason given")));
    }
    let mut detail = serde_json::to_value(&report).unwrap_or_default();
    detail["via"] = via.into();
    record.enroll_status = Some(report);
    record.enroll_status_via = Some(via.to_string());
    let event = pledges::event("pledge", "enrollstatus", &record.serial, detail);
    pledges::put_with(reg.store().as_ref(), &mut record, WriteBatch::new().audit(event))
        .await
        .map_err(store_err)
}

/// Reads a status report from a pledge: JSON body, a client certificate that is this pledge's
/// IDevID or an LDevID of the domain CA, and a known pledge. Returns which one it was.
async fn read_status(
    reg: &Registrar,
    chain: &[Certificate],
    req: Request,
) -> Result<(StatusReport, PledgeRecord, &'static str), RegistrarError> {
    let ct = header_text(req.headers(), header::CONTENT_TYPE);
    if shared::brski::media::essence(&ct) != "application/json" {
        return Err(RegistrarError::UnsupportedMediaType(ct));
    }
    let body = read_body(req, MAX_JSON_BODY).await?;
    let report = StatusReport::from_json(&body).map_err(|e| RegistrarError::BadRequest(e.to_string()))?;
    let (leaf, rest) = chain.split_first().ok_or(RegistrarError::NoClientCert)?;
    let serial = pki::serial_number(leaf).ok_or(RegistrarError::NoSerial)?;
    let record = pledges::get(reg.store().as_ref(), &serial)
        .await
        .map_err(store_err)?
        .ok_or(RegistrarError::UnknownPledge)?;
    let now = OffsetDateTime::now_utc();
    let via = if verify_chain(leaf, rest, std::slice::from_ref(reg.domain_ca()), now).is_ok() {
        "ldevid"
    } else if record.idevid_sha256.as_deref() == Some(fingerprint(leaf).as_str()) {
        "idevid"
    } else {
        return Err(RegistrarError::UnknownManufacturer(
            "the client certificate is neither this pledge's IDevID nor an LDevID of this domain".into(),
        ));
    };
    Ok((report, record, via))
}

fn warn_unknown(report: &StatusReport, serial: &str) {
    if report.version > shared::brski::status::STATUS_VERSION {
        tracing::warn!(%serial, version = report.version, "status report of a newer version");
    }
    for k in report.unknown.keys() {
        tracing::info!(%serial, key = %k, "status report carries an unknown key (ignored)");
    }
}

fn connection(req: &Request) -> Arc<ConnectionInfo> {
    req.extensions().get::<Arc<ConnectionInfo>>().cloned().unwrap_or_default()
}

/// The TLS client chain, parsed by the one rule of every server (whole or refused).
fn client_chain(conn: &ConnectionInfo) -> Result<Vec<Certificate>, RegistrarError> {
    conn.peer_chain().map_err(|e| RegistrarError::ClientCertRejected(e.to_string()))
}

fn fingerprint(cert: &Certificate) -> String {
    hex::encode(shared::crypto::sha256(&pki::cert_to_der(cert).unwrap_or_default()))
}

fn header_text(h: &HeaderMap, name: header::HeaderName) -> String {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// The voucher formats the pledge accepts, most preferred first (RFC 9110 §12.5.1 quality
/// values, `q=0` refused; ties: header order, then the request's format first), forwarded to
/// the MASA as its `Accept`. When the header is absent or accepts no voucher format, the
/// header is disregarded (RFC 9110 §12.5.1 allows it) and the request's own format is asked for.
fn accepted_formats(accept: &str, request_format: Format) -> Vec<Format> {
    let mut offered = vec![request_format];
    offered.extend([Format::Cms, Format::Jws, Format::Cose].into_iter().filter(|&f| f != request_format));
    let formats = shared::brski::media::voucher_formats(accept, &offered);
    if formats.is_empty() {
        vec![request_format]
    } else {
        formats
    }
}

/// Reads the body with a size limit and the default timeout (the one reader of every server).
async fn read_body(req: Request, limit: usize) -> Result<Bytes, RegistrarError> {
    est::http::read_body(req.into_body(), BodyLimits::new(limit)).await.map_err(|e| RegistrarError::from(&e))
}

fn store_err(e: shared::store::StoreError) -> RegistrarError {
    RegistrarError::Store(e.to_string())
}

#[cfg(test)]
mod tests;
