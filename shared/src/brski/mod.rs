//! BRSKI (RFC 8995) wire objects other than vouchers, sans-IO: the pledge's status reports
//! (`voucher_status`, `enrollstatus`), the MASA audit log, the audit log's `domainID`, and
//! the protocol's paths and constants, and content negotiation ([`media`]).

pub mod audit_log;
pub mod media;
pub mod status;

pub use audit_log::{domain_id, AuditLog, LogAssertion, LogEvent, Truncation};
pub use status::StatusReport;

use const_oid::ObjectIdentifier;

/// id-kp-cmcRA (RFC 6402): a registrar's certificate must carry it (RFC 8995 §5.5.4).
pub const ID_KP_CMC_RA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.28");

/// `/.well-known/brski/requestvoucher` (pledge -> registrar, registrar -> MASA).
pub const PATH_REQUEST_VOUCHER: &str = "/.well-known/brski/requestvoucher";
/// `/.well-known/brski/voucher_status` (pledge -> registrar).
pub const PATH_VOUCHER_STATUS: &str = "/.well-known/brski/voucher_status";
/// `/.well-known/brski/enrollstatus` (pledge -> registrar).
pub const PATH_ENROLL_STATUS: &str = "/.well-known/brski/enrollstatus";
/// `/.well-known/brski/requestauditlog` (registrar -> MASA).
pub const PATH_REQUEST_AUDIT_LOG: &str = "/.well-known/brski/requestauditlog";

/// Largest BRSKI JSON body (status report, audit log) accepted.
pub const MAX_JSON_BODY: usize = 256 * 1024;

/// The MASA base URL for an id-pe-masa-url value (RFC 8995 §2.3.2): an authority
/// (`host[:port]`, no `/`) means `https://<authority>/.well-known/brski`; a full URI keeps its
/// authority and path but the scheme is always `https`.
pub fn masa_base_url(masa_url: &str) -> String {
    let rest = masa_url.split_once("://").map_or(masa_url, |(_, r)| r);
    if rest.contains('/') {
        format!("https://{}", rest.trim_end_matches('/'))
    } else {
        format!("https://{rest}/.well-known/brski")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masa_urls_per_rfc8995_2_3_2() {
        assert_eq!(masa_base_url("masa.example:9443"), "https://masa.example:9443/.well-known/brski");
        assert_eq!(masa_base_url("http://masa.example/brski/"), "https://masa.example/brski");
        assert_eq!(masa_base_url("https://m.example/x"), "https://m.example/x");
    }
}
