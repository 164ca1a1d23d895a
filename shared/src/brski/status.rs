//! The pledge's telemetry (RFC 8995 §5.7 voucher_status, §5.9.4 enrollstatus): one JSON
//! object `{"version": 1, "status": bool, "reason"?: text, "reason-context"?: {..}}`.

use serde::{Deserialize, Serialize};

/// The status-report version this build writes and fully understands.
pub const STATUS_VERSION: u64 = 1;

/// A `voucher_status` or `enrollstatus` POST body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Format version (1).
    pub version: u64,
    /// Whether the step succeeded.
    pub status: bool,
    /// Human-readable reason (should be present on failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Free-form details.
    #[serde(rename = "reason-context", default, skip_serializing_if = "Option::is_none")]
    pub reason_context: Option<serde_json::Value>,
    /// Keys this build does not know (logged and ignored, as §5.7 says).
    #[serde(flatten, skip_serializing)]
    pub unknown: serde_json::Map<String, serde_json::Value>,
}

/// Why a status report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// Not JSON, or `version` / `status` missing or of the wrong type.
    #[error("status report is not valid: {0}")]
    Malformed(String),
}

impl StatusReport {
    /// A success report.
    pub fn success() -> Self {
        StatusReport {
            version: STATUS_VERSION,
            status: true,
            reason: None,
            reason_context: None,
            unknown: Default::default(),
        }
    }

    /// A failure report with a reason (which must not help an attacker).
    pub fn failure(reason: impl Into<String>) -> Self {
        StatusReport { status: false, reason: Some(reason.into()), ..StatusReport::success() }
    }

    /// Parses a report; `version` and `status` are required, other keys are kept in
    /// [`StatusReport::unknown`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, StatusError> {
        let r: StatusReport =
            serde_json::from_slice(bytes).map_err(|e| StatusError::Malformed(e.to_string()))?;
        if r.reason_context.as_ref().is_some_and(|c| !c.is_object()) {
            return Err(StatusError::Malformed("reason-context must be a JSON object".into()));
        }
        Ok(r)
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a status report always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8995_examples_parse() {
        let ok = StatusReport::from_json(br#"{"version":1,"status":true}"#).unwrap();
        assert!(ok.status && ok.reason.is_none());
        let bad = StatusReport::from_json(
            br#"{"version":1,"status":false,"reason":"Informative human readable message",
                 "reason-context":{"additional":"JSON"},"x-vendor":3}"#,
        )
        .unwrap();
        assert_eq!(bad.reason.as_deref(), Some("Informative human readable message"));
        assert!(bad.unknown.contains_key("x-vendor"));
        assert_eq!(StatusReport::from_json(&bad.to_json()).unwrap().reason, bad.reason);
    }

    #[test]
    fn required_keys_and_types() {
        for body in
            [&br#"{"status":true}"#[..], br#"{"version":1}"#, br#"{"version":1,"status":"yes"}"#, b"[]", b"{"]
        {
            assert!(StatusReport::from_json(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        assert!(StatusReport::from_json(br#"{"version":1,"status":true,"reason-context":"x"}"#).is_err());
    }
}
