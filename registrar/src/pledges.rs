//! What the registrar knows about each pledge, kept in the store (settings key
//! `registrar.pledge.<serial>`, JSON) so that `brski registrar list|approve|deny` can read and
//! change it while the server runs, and every request's outcome is also appended to the
//! store's audit log (subject = the serial number).
//!
//! A record's [`PledgeState`] is private: it changes only through the transition methods of
//! [`PledgeRecord`] (after quinn-proto's connection state), each of which refuses a step the
//! flow does not allow with an [`IllegalStep`] and leaves the record unchanged:
//!
//! ```text
//!  Pending ──decide──▶ Approved / Denied        (an operator, any time)
//!  Pending | Approved | VoucherIssued | Imprinted | Enrolled | Refused
//!          ──voucher_issued──▶ VoucherIssued    (never from Denied)
//!  VoucherIssued | Imprinted ──imprinted──▶ Imprinted
//!  VoucherIssued | Imprinted | Enrolled ──refuse──▶ Refused    (e.g. the MASA audit log)
//!  VoucherIssued | Imprinted | Enrolled ──enrolled──▶ Enrolled
//! ```

use serde::{Deserialize, Serialize};
use shared::brski::StatusReport;
use shared::store::{AuditEvent, Store, StoreError, StoreExt, WriteBatch};
use time::OffsetDateTime;

const PREFIX: &str = "registrar.pledge.";

/// Where a pledge is in the registrar's view of the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PledgeState {
    /// Seen, waiting for an operator's approval.
    Pending,
    /// Approved (by an operator or the allow-list), no voucher yet.
    Approved,
    /// Refused by an operator.
    Denied,
    /// A voucher was obtained from the MASA and returned.
    VoucherIssued,
    /// The pledge reported that it accepted the voucher.
    Imprinted,
    /// The pledge reported a successful enrollment.
    Enrolled,
    /// Refused by policy after the voucher (e.g. the MASA audit log); EST is refused.
    Refused,
}

impl PledgeState {
    /// The name used in `list` and the config.
    pub fn name(self) -> &'static str {
        match self {
            PledgeState::Pending => "pending",
            PledgeState::Approved => "approved",
            PledgeState::Denied => "denied",
            PledgeState::VoucherIssued => "voucher-issued",
            PledgeState::Imprinted => "imprinted",
            PledgeState::Enrolled => "enrolled",
            PledgeState::Refused => "refused",
        }
    }

    /// True once a voucher has been handed out and nothing refused the pledge since: the
    /// states in which EST enrollment with the IDevID is allowed.
    pub fn holds_voucher(self) -> bool {
        matches!(self, PledgeState::VoucherIssued | PledgeState::Imprinted | PledgeState::Enrolled)
    }
}

/// A transition the pledge flow does not allow from the record's state; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pledge {serial}: no step from {} to {}", from.name(), to.name())]
pub struct IllegalStep {
    /// The pledge's serial number.
    pub serial: String,
    /// Its state, unchanged.
    pub from: PledgeState,
    /// The state the step would have reached.
    pub to: PledgeState,
}

/// The registrar's record of one pledge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PledgeRecord {
    /// X520SerialNumber of the IDevID.
    pub serial: String,
    /// Current state: read with [`PledgeRecord::state`], changed only by the transitions.
    state: PledgeState,
    /// Manufacturer name (from the config), once seen.
    #[serde(default)]
    pub manufacturer: Option<String>,
    /// SHA-256 (hex) of the IDevID certificate last seen.
    #[serde(default)]
    pub idevid_sha256: Option<String>,
    /// SHA-256 (hex) of the voucher-request waiting for approval (a retry must be identical).
    #[serde(default)]
    pub pending_request_sha256: Option<String>,
    /// The signed registrar voucher-request sent to the MASA (base64), for the audit log.
    #[serde(default)]
    pub last_rvr: Option<String>,
    /// Its format name (`cms`, `jws`, `cose`).
    #[serde(default)]
    pub last_rvr_format: Option<String>,
    /// The nonce of the last voucher (JSON text form).
    #[serde(default)]
    pub last_nonce: Option<String>,
    /// The pledge's voucher_status report.
    #[serde(default)]
    pub voucher_status: Option<StatusReport>,
    /// The pledge's enrollstatus report.
    #[serde(default)]
    pub enroll_status: Option<StatusReport>,
    /// Which certificate the enrollstatus came with (`ldevid`, `idevid`).
    #[serde(default)]
    pub enroll_status_via: Option<String>,
    /// The audit-log verdict.
    #[serde(default)]
    pub audit_log: Option<String>,
    /// Why the last request was refused, if it was.
    #[serde(default)]
    pub reason: Option<String>,
    /// Last change (RFC 3339).
    pub updated: String,
}

impl PledgeRecord {
    /// A new record in `state`.
    pub fn new(serial: &str, state: PledgeState) -> Self {
        PledgeRecord {
            serial: serial.to_string(),
            state,
            manufacturer: None,
            idevid_sha256: None,
            pending_request_sha256: None,
            last_rvr: None,
            last_rvr_format: None,
            last_nonce: None,
            voucher_status: None,
            enroll_status: None,
            enroll_status_via: None,
            audit_log: None,
            reason: None,
            updated: now_text(),
        }
    }

    /// Where the pledge is in the flow.
    pub fn state(&self) -> PledgeState {
        self.state
    }

    /// Moves to `to` when `allowed` holds for the current state, else refuses the step.
    fn step(&mut self, to: PledgeState, allowed: impl Fn(PledgeState) -> bool) -> Result<(), IllegalStep> {
        if !allowed(self.state) {
            return Err(IllegalStep { serial: self.serial.clone(), from: self.state, to });
        }
        self.state = to;
        Ok(())
    }

    /// An operator's decision (`brski registrar approve|deny`), allowed in every state: a
    /// denial also ends an enrolled pledge's right to enroll again.
    pub fn decide(&mut self, approve: bool, operator: &str) {
        self.state = if approve { PledgeState::Approved } else { PledgeState::Denied };
        self.reason = (!approve).then(|| format!("denied by {operator}"));
    }

    /// A voucher was obtained for `rvr` (the registrar voucher-request sent to the MASA, kept
    /// for the audit log) and is being returned; never for a denied pledge.
    pub fn voucher_issued(&mut self, rvr: &[u8], format: &str, nonce: String) -> Result<(), IllegalStep> {
        self.step(PledgeState::VoucherIssued, |s| s != PledgeState::Denied)?;
        self.reason = None;
        self.pending_request_sha256 = None;
        self.last_rvr = Some(shared::b64::encode(rvr));
        self.last_rvr_format = Some(format.to_string());
        self.last_nonce = Some(nonce);
        Ok(())
    }

    /// The pledge reported (voucher_status) that it accepted the voucher.
    pub fn imprinted(&mut self) -> Result<(), IllegalStep> {
        self.step(PledgeState::Imprinted, |s| {
            matches!(s, PledgeState::VoucherIssued | PledgeState::Imprinted)
        })
    }

    /// Refused by policy after the voucher (RFC 8995 §5.8.3: the audit log); EST is refused.
    pub fn refuse(&mut self, reason: String) -> Result<(), IllegalStep> {
        self.step(PledgeState::Refused, PledgeState::holds_voucher)?;
        self.reason = Some(reason);
        Ok(())
    }

    /// The pledge reported (enrollstatus) a successful enrollment.
    pub fn enrolled(&mut self) -> Result<(), IllegalStep> {
        self.step(PledgeState::Enrolled, PledgeState::holds_voucher)
    }
}

fn now_text() -> String {
    shared::rfc3339::format(&OffsetDateTime::now_utc())
}

/// The record of `serial`, if any.
pub(crate) async fn get(store: &dyn Store, serial: &str) -> Result<Option<PledgeRecord>, StoreError> {
    store.get_setting_json(&format!("{PREFIX}{serial}")).await
}

/// Writes `record` (stamping `updated`).
pub(crate) async fn put(store: &dyn Store, record: &mut PledgeRecord) -> Result<(), StoreError> {
    record.updated = now_text();
    store.put_setting_json(&format!("{PREFIX}{}", record.serial), record).await
}

/// Every record, by serial.
pub async fn list(store: &dyn Store) -> Result<Vec<PledgeRecord>, StoreError> {
    let mut out = Vec::new();
    for (key, value) in store.settings_with_prefix(PREFIX).await? {
        let r: PledgeRecord = serde_json::from_str(&value)
            .map_err(|e| StoreError::Corrupt { what: format!("setting `{key}`: {e}") })?;
        out.push(r);
    }
    Ok(out)
}

/// Writes `record` (stamping `updated`) together with the rest of `batch` (its audit events,
/// a voucher) in one transaction: the record never changes without its audit trail, and the
/// change costs one commit.
pub(crate) async fn put_with(
    store: &dyn Store,
    record: &mut PledgeRecord,
    batch: WriteBatch,
) -> Result<(), StoreError> {
    record.updated = now_text();
    let batch = batch.setting_json(&format!("{PREFIX}{}", record.serial), record)?;
    store.write_batch(&batch).await.map(|_| ())
}

/// The audit event `action` by `actor` about pledge `serial`.
pub(crate) fn event(actor: &str, action: &str, serial: &str, detail: serde_json::Value) -> AuditEvent {
    AuditEvent {
        actor: actor.to_string(),
        action: action.to_string(),
        subject: serial.to_string(),
        detail,
        at: OffsetDateTime::now_utc(),
    }
}

/// Appends an audit event about pledge `serial`.
pub(crate) async fn audit(
    store: &dyn Store,
    actor: &str,
    action: &str,
    serial: &str,
    detail: serde_json::Value,
) {
    if let Err(e) = store.append_audit(&event(actor, action, serial, detail)).await {
        tracing::error!(%serial, action, error = %e, "cannot append to the audit log");
    }
}

/// Operator decision (`brski registrar approve|deny`): sets the state, creating the record for
/// a serial not seen yet (pre-approval). Returns the updated record.
pub async fn decide(
    store: &dyn Store,
    serial: &str,
    approve: bool,
    operator: &str,
) -> Result<PledgeRecord, StoreError> {
    let mut r = get(store, serial).await?.unwrap_or_else(|| PledgeRecord::new(serial, PledgeState::Pending));
    r.decide(approve, operator);
    let action = if approve { "pledge.approved" } else { "pledge.denied" };
    let batch = WriteBatch::new().audit(event(operator, action, serial, serde_json::json!({})));
    put_with(store, &mut r, batch).await?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::SqliteStore;

    #[tokio::test]
    async fn records_round_trip_and_decisions_apply() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let mut r = PledgeRecord::new("SN-1", PledgeState::Pending);
        put(&store, &mut r).await.unwrap();
        assert_eq!(get(&store, "SN-1").await.unwrap().unwrap().state, PledgeState::Pending);
        assert_eq!(decide(&store, "SN-1", true, "op").await.unwrap().state, PledgeState::Approved);
        assert_eq!(decide(&store, "SN-2", false, "op").await.unwrap().state, PledgeState::Denied);
        let all = list(&store).await.unwrap();
        assert_eq!(all.iter().map(|r| r.serial.as_str()).collect::<Vec<_>>(), ["SN-1", "SN-2"]);
        let events = store.audit_events(Some("SN-2"), 0, 10).await.unwrap();
        assert_eq!(events[0].event.action, "pledge.denied");
    }

    #[test]
    fn illegal_steps_are_refused_and_change_nothing() {
        let mut r = PledgeRecord::new("SN-3", PledgeState::Pending);
        r.decide(false, "op");
        let before = r.clone();
        let err = r.voucher_issued(b"rvr", "cms", "n".into()).unwrap_err();
        assert_eq!((err.from, err.to), (PledgeState::Denied, PledgeState::VoucherIssued));
        assert_eq!(r, before, "a refused step leaves the record as it was");
        assert!(r.enrolled().is_err() && r.imprinted().is_err() && r.refuse("x".into()).is_err());
        let mut p = PledgeRecord::new("SN-4", PledgeState::Pending);
        assert!(p.enrolled().is_err(), "no enrollment without a voucher");
        assert!(p.imprinted().is_err());
        p.voucher_issued(b"rvr", "jws", "n".into()).unwrap();
        assert_eq!((p.state(), p.last_rvr_format.as_deref()), (PledgeState::VoucherIssued, Some("jws")));
        p.imprinted().unwrap();
        p.enrolled().unwrap();
        assert!(p.imprinted().is_err(), "an enrolled pledge does not go back to imprinted");
        p.refuse("audit log".into()).unwrap();
        assert_eq!(p.state(), PledgeState::Refused);
        assert!(p.enrolled().is_err(), "a refused pledge does not enroll");
        p.voucher_issued(b"rvr2", "cms", "m".into()).unwrap();
        assert_eq!(p.state(), PledgeState::VoucherIssued, "a refused pledge may bootstrap again");
    }
}
