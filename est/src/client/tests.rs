//! Unit tests of the EST client helpers.

use super::operations::{is_server_generated_key, smime_type};
use super::*;

#[test]
fn retry_after_both_forms() {
    assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
    let later = std::time::SystemTime::now() + Duration::from_secs(90);
    let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
    assert!(d > Duration::from_secs(80) && d <= Duration::from_secs(90), "{d:?}");
    assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("soon"), None);
}

#[test]
fn problem_details_are_extracted() {
    assert_eq!(
        problem_detail(
            crate::http::MEDIA_PROBLEM,
            br#"{"title":"Bad","detail":"CSR signature does not verify"}"#
        ),
        "CSR signature does not verify"
    );
    assert_eq!(problem_detail("text/plain", b"plain reason\n"), "plain reason");
}

#[test]
fn smime_types_tell_key_from_certificates() {
    assert!(is_server_generated_key("application/pkcs7-mime; smime-type=server-generated-key"));
    assert!(is_server_generated_key("application/pkcs7-mime;smime-type=\"server-generated-key\""));
    assert!(!is_server_generated_key("application/pkcs7-mime; smime-type=certs-only"));
    assert!(!is_server_generated_key("application/pkcs8"));
    assert_eq!(smime_type("application/pkcs7-mime"), None);
}

#[test]
fn urls_and_labels() {
    let tls = crate::tls::client_config(&crate::tls::ServerTrust::InsecureBootstrap, None).unwrap();
    let c = EstClient::new("https://127.0.0.1:8443", Some("ldevid"), tls.clone()).unwrap();
    assert_eq!(
        (c.host.as_str(), c.port, c.base_path.as_str()),
        ("127.0.0.1", 8443, "/.well-known/est/ldevid")
    );
    let c = EstClient::new("https://est.example", None, tls.clone()).unwrap();
    assert_eq!((c.port, c.base_path.as_str()), (443, "/.well-known/est"));
    assert!(matches!(EstClient::new("http://est.example", None, tls), Err(ClientError::Url(_))));
}
