//! The MASA's two audit trails: the store's hash-chained audit events (every voucher issued
//! and every refusal, with its reason), and the per-device audit log that registrars fetch
//! from `requestauditlog` (RFC 8995 §5.8), built from the recorded vouchers.

use crate::error::MasaError;
use crate::request::{require_device, verify_rvr, Approved, Seen, VerifiedRvr};
use crate::state::Masa;
use shared::brski::audit_log::AUDIT_LOG_VERSION;
use shared::brski::{domain_id, AuditLog, LogAssertion, LogEvent};
use shared::rfc3339;
use shared::signed::Format;
use shared::store::{AuditEvent, VoucherRecord};
use time::OffsetDateTime;

/// Audit action of an issued voucher.
pub(crate) const ACTION_ISSUED: &str = "masa.voucher.issued";
/// Audit action of a refused voucher request.
pub(crate) const ACTION_REFUSED: &str = "masa.voucher.refused";
/// Audit action of a refused audit-log request.
pub(crate) const ACTION_AUDIT_LOG_REFUSED: &str = "masa.auditlog.refused";

/// The store's name of a voucher encoding.
pub(crate) fn format_name(format: Format) -> &'static str {
    match format {
        Format::Cms => "cms-json",
        Format::Jws => "jws-json",
        Format::Cose => "cose",
    }
}

/// The audit event of an issued voucher (committed with the voucher record, see
/// [`crate::voucher::issue`]).
pub(crate) fn issued_event(a: &Approved, v: &VoucherRecord, actor: &str) -> AuditEvent {
    AuditEvent {
        actor: actor.to_string(),
        action: ACTION_ISSUED.into(),
        subject: a.serial.clone(),
        detail: serde_json::json!({
            "assertion": v.assertion,
            "domainID": v.domain,
            "format": v.format,
            "nonce": a.nonce.as_ref().map(|n| n.json_text()),
            "expires-on": a.expires_on.as_ref().map(rfc3339::format),
            "registrar": a.registrar.tbs_certificate().subject().to_string(),
        }),
        at: v.created_at,
    }
}

/// Appends the audit event of a refusal. Never fails: a store error is logged, the refusal
/// is answered anyway.
pub(crate) async fn record_refusal(
    masa: &Masa,
    action: &str,
    seen: &Seen,
    remote: Option<String>,
    e: &MasaError,
) {
    let event = AuditEvent {
        actor: seen.registrar.clone().or(remote.clone()).unwrap_or_else(|| "unknown".into()),
        action: action.to_string(),
        subject: seen.serial.clone().unwrap_or_default(),
        detail: serde_json::json!({
            "status": e.status().as_u16(),
            "reason": e.to_string(),
            "serial-verified": seen.serial_verified,
            "remote": remote,
        }),
        at: OffsetDateTime::now_utc(),
    };
    if let Err(err) = masa.store().append_audit(&event).await {
        tracing::error!(error = %err, "cannot record a refusal in the audit log");
    }
}

/// The RFC 8995 §5.8.1 audit log of one device, from its recorded vouchers (oldest first).
pub(crate) fn audit_log(records: &[VoucherRecord]) -> AuditLog {
    let events = records
        .iter()
        .map(|r| LogEvent {
            date: rfc3339::format(&r.created_at),
            domain_id: r.domain.clone(),
            nonce: r.nonce.as_ref().map(|n| String::from_utf8_lossy(n).into_owned()),
            assertion: match r.assertion.as_str() {
                "verified" => LogAssertion::Verified,
                "proximity" => LogAssertion::Proximity,
                _ => LogAssertion::Logged,
            },
            truncated: None,
        })
        .collect();
    AuditLog { version: AUDIT_LOG_VERSION, events, truncation: None }
}

/// Answers `requestauditlog`: the RVR must verify as for a voucher (signature, id-kp-cmcRA,
/// serial-number); the device must be known; the requesting domain (any certificate of the RVR
/// signer chain) must appear in the log or be the current owner (404 otherwise, RFC 8995 §5.8).
pub(crate) async fn check_audit_log_request(
    masa: &Masa,
    body: &[u8],
    format: Format,
    seen: &mut Seen,
) -> Result<AuditLog, MasaError> {
    let at = OffsetDateTime::now_utc();
    let rvr = verify_rvr(body, format, at, seen)?;
    let log = audit_log(&masa.store().vouchers_for(&rvr.serial).await?);
    if log.events.is_empty() {
        // Vouchers are only recorded for minted devices: an empty log may be an unknown one.
        require_device(masa, &rvr.serial).await?;
    }
    let ids: Vec<String> = rvr.request.signer_chain().iter().map(domain_id).collect();
    let in_log = log.events.iter().any(|e| ids.contains(&e.domain_id));
    if !in_log && !is_current_owner(masa, &rvr, at).await? {
        return Err(MasaError::AuditLogDenied(rvr.serial));
    }
    Ok(log)
}

/// Whether the RVR's signer is the device's current owner (only asked when the requesting
/// domain is not in the log).
async fn is_current_owner(masa: &Masa, rvr: &VerifiedRvr, at: OffsetDateTime) -> Result<bool, MasaError> {
    let record = masa.owner_record(&rvr.serial).await?;
    Ok(record
        .filter(|r| r.is_current(at))
        .is_some_and(|r| r.matches(rvr.request.signer_chain(), &rvr.carried, at).is_some()))
}
