//! The registrar's judgement of the MASA audit log (RFC 8995 §5.8.3): the log must show the
//! voucher just issued to this domain; a nonceless voucher issued to another domain is a
//! takeover risk and a violation; earlier nonced vouchers for other domains (a resold device)
//! are recorded but accepted.

use shared::brski::AuditLog;

/// The verdict on an audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Acceptable; the text says what was seen.
    Ok(String),
    /// A violation: EST must be refused (under the enforce policy).
    Violation(String),
}

/// Judges `log` for a domain known by any of `own_domain_ids`, whose voucher carried `nonce`
/// (its JSON text form).
pub(crate) fn judge(log: &AuditLog, own_domain_ids: &[String], nonce: Option<&str>) -> Verdict {
    let ours = |id: &str| own_domain_ids.iter().any(|o| o == id);
    let ours_logged =
        log.events.iter().any(|e| ours(&e.domain_id) && (nonce.is_none() || e.nonce.as_deref() == nonce));
    if !ours_logged {
        return Verdict::Violation(
            "the MASA audit log does not show the voucher issued to this domain".into(),
        );
    }
    let foreign: Vec<_> = log.events.iter().filter(|e| !ours(&e.domain_id)).collect();
    if let Some(e) = foreign.iter().find(|e| e.nonce.is_none()) {
        return Verdict::Violation(format!(
            "the MASA issued a nonceless voucher to another domain ({}) on {}: takeover risk",
            e.domain_id, e.date
        ));
    }
    if foreign.is_empty() {
        Verdict::Ok(format!("{} event(s), all for this domain", log.events.len()))
    } else {
        Verdict::Ok(format!(
            "{} event(s), {} for other domains (nonced: earlier owners)",
            log.events.len(),
            foreign.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::brski::{LogAssertion, LogEvent};

    fn event(domain: &str, nonce: Option<&str>) -> LogEvent {
        LogEvent {
            date: "2026-11-26T00:00:00Z".into(),
            domain_id: domain.into(),
            nonce: nonce.map(str::to_string),
            assertion: LogAssertion::Proximity,
            truncated: None,
        }
    }

    #[test]
    fn verdicts() {
        let ours = vec!["D1".to_string()];
        let log = |events| AuditLog { version: 1, events, truncation: None };
        assert!(matches!(judge(&log(vec![event("D1", Some("n"))]), &ours, Some("n")), Verdict::Ok(_)));
        assert!(matches!(judge(&log(vec![event("D1", Some("x"))]), &ours, Some("n")), Verdict::Violation(_)));
        assert!(matches!(judge(&log(vec![]), &ours, None), Verdict::Violation(_)));
        let resold = log(vec![event("D0", Some("old")), event("D1", Some("n"))]);
        assert!(matches!(judge(&resold, &ours, Some("n")), Verdict::Ok(t) if t.contains("other domains")));
        let takeover = log(vec![event("D9", None), event("D1", Some("n"))]);
        assert!(
            matches!(judge(&takeover, &ours, Some("n")), Verdict::Violation(t) if t.contains("nonceless"))
        );
    }
}
