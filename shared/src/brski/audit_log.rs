//! The MASA audit log (RFC 8995 §5.8.1): what the MASA returns from `requestauditlog`, and
//! the `domainID` that names a domain in it.
//!
//! Parsing is lenient where published examples differ from the CDDL: `version` and the
//! truncation counters may be JSON strings ("1") as in the RFC's own example.

use crate::crypto::sha256;
use crate::pki::{spki_der, subject_key_id_extension};
use serde::{Deserialize, Deserializer, Serialize};
use x509_cert::Certificate;

/// The audit-log version this build writes.
pub const AUDIT_LOG_VERSION: u64 = 1;

/// An audit-log response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLog {
    /// Format version (1; larger versions are compatible supersets).
    #[serde(deserialize_with = "uint_or_string")]
    pub version: u64,
    /// One event per voucher issued for the device (possibly truncated).
    pub events: Vec<LogEvent>,
    /// Counts of events left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<Truncation>,
}

/// One voucher the MASA issued for the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    /// When (RFC 3339 text, kept as sent).
    pub date: String,
    /// The domain the voucher pinned ([`domain_id`]).
    #[serde(rename = "domainID")]
    pub domain_id: String,
    /// The nonce as sent in the request; `null` for a nonceless voucher.
    pub nonce: Option<String>,
    /// The voucher's assertion.
    pub assertion: LogAssertion,
    /// Duplicates folded into this event.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_uint_or_string")]
    pub truncated: Option<u64>,
}

/// The assertion values an audit-log event may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogAssertion {
    /// Ownership verified by the MASA.
    Verified,
    /// Logged only.
    Logged,
    /// The domain proved proximity to the pledge.
    Proximity,
}

/// How many events the MASA left out, by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Truncation {
    /// Nonced duplicates dropped.
    #[serde(
        rename = "nonced duplicates",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_uint_or_string"
    )]
    pub nonced_duplicates: Option<u64>,
    /// Nonceless duplicates dropped.
    #[serde(
        rename = "nonceless duplicates",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_uint_or_string"
    )]
    pub nonceless_duplicates: Option<u64>,
    /// Events dropped arbitrarily.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_uint_or_string")]
    pub arbitrary: Option<u64>,
}

/// Why an audit log was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log is not valid: {0}")]
pub struct AuditLogError(pub String);

impl AuditLog {
    /// Parses an audit-log response.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AuditLogError> {
        serde_json::from_slice(bytes).map_err(|e| AuditLogError(e.to_string()))
    }

    /// The JSON body (numbers as JSON numbers, as the CDDL says).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an audit log always serializes")
    }
}

/// The audit log's `domainID` of a pinned domain certificate (RFC 8995 §5.8.2): base64 of its
/// SubjectKeyIdentifier if it has one, else base64 of SHA-256 over its SubjectPublicKeyInfo.
pub fn domain_id(cert: &Certificate) -> String {
    match subject_key_id_extension(cert) {
        Some(ski) => crate::b64::encode(&ski),
        None => crate::b64::encode(&sha256(&spki_der(cert))),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum UintOrString {
    Uint(u64),
    Text(String),
}

fn to_uint<E: serde::de::Error>(v: UintOrString) -> Result<u64, E> {
    match v {
        UintOrString::Uint(n) => Ok(n),
        UintOrString::Text(s) => {
            s.trim().parse().map_err(|_| E::custom(format!("{s:?} is not an unsigned integer")))
        }
    }
}

fn uint_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    to_uint(UintOrString::deserialize(d)?)
}

fn opt_uint_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<UintOrString>::deserialize(d)?.map(to_uint).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8995 §5.8.1 example (version and counters as strings).
    const RFC_EXAMPLE: &str = r#"{
      "version":"1",
      "events":[
        {"date":"2019-05-15T17:25:55.644-04:00","domainID":"BduJhdHPpfhQLyponf48JzXSGZ8=",
         "nonce":"VOUFT-WwrEv0NuAQEHoV7Q","assertion":"proximity","truncated":"0"},
        {"date":"2017-05-15T17:25:55.644-04:00","domainID":"BduJhdHPpfhQLyponf48JzXSGZ8=",
         "nonce":null,"assertion":"logged","truncated":"1"}
      ],
      "truncation":{"nonced duplicates":"0","nonceless duplicates":"1","arbitrary":"2"}
    }"#;

    #[test]
    fn rfc_example_parses_and_round_trips() {
        let log = AuditLog::from_json(RFC_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(log.version, 1);
        assert_eq!(log.events.len(), 2);
        assert_eq!(log.events[1].nonce, None);
        assert_eq!(log.events[0].assertion, LogAssertion::Proximity);
        assert_eq!(log.truncation.as_ref().unwrap().arbitrary, Some(2));
        assert_eq!(AuditLog::from_json(&log.to_json()).unwrap(), log);
        assert!(String::from_utf8(log.to_json()).unwrap().contains(r#""nonce":null"#));
    }

    #[test]
    fn bad_logs_are_refused() {
        assert!(AuditLog::from_json(br#"{"version":"x","events":[]}"#).is_err());
        assert!(AuditLog::from_json(br#"{"version":1}"#).is_err());
        let bad_assertion =
            r#"{"version":1,"events":[{"date":"d","domainID":"x","nonce":null,"assertion":"maybe"}]}"#;
        assert!(AuditLog::from_json(bad_assertion.as_bytes()).is_err());
    }
}
