//! Format details: compact JWS, JWS crit handling, COSE x5chain / x5bag / kid, and the
//! registrar's stripping of unprotected certificates before forwarding a COSE voucher.

use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki::*;
use shared::signed::cose::{self, CoseSigned};
use shared::signed::jws::{self, Jws};
use shared::signed::{SignatureError, Trust};
use std::time::Duration;
use x509_cert::Certificate;

fn signer_and_ca() -> (SoftwareKey, Certificate, Certificate) {
    let ca_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let ca = CertificateAuthority::new(
        create_ca("CN=Fmt CA", &ca_key, Duration::from_secs(86400), None).unwrap(),
        Box::new(ca_key),
    )
    .unwrap();
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let csr = Csr::verify_der(&build_csr(&parse_name("CN=Fmt signer").unwrap(), &[], &key).unwrap()).unwrap();
    let cert = ca.issue(&csr, &Profile::end_entity(Duration::from_secs(86400))).unwrap();
    (key, cert, ca.certificate().clone())
}

#[test]
fn compact_jws_round_trip_and_tamper() {
    let (key, cert, ca) = signer_and_ca();
    let token = jws::sign_compact(
        b"{\"sub\":\"agent-1\"}",
        &key,
        std::slice::from_ref(&cert),
        Some("JWT"),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(token.split('.').count(), 3);
    let parsed = Jws::parse_compact(&token).unwrap();
    let v = parsed.verify(&Trust::now(vec![ca.clone()])).unwrap();
    assert_eq!(v.value().as_slice(), b"{\"sub\":\"agent-1\"}");
    // Swap in another payload: the signature no longer covers it.
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], shared::b64::encode_url(b"{\"sub\":\"root\"}"), parts[2]);
    assert_eq!(
        Jws::parse_compact(&forged).unwrap().verify(&Trust::now(vec![ca])).unwrap_err(),
        SignatureError::BadSignature
    );
    assert!(matches!(Jws::parse_compact("a.b"), Err(SignatureError::Malformed(_))));
}

#[test]
fn jws_unknown_crit_is_refused_created_on_is_understood() {
    let (key, cert, _) = signer_and_ca();
    let mut extra = serde_json::Map::new();
    extra.insert("crit".into(), serde_json::json!(["exp-policy"]));
    extra.insert("exp-policy".into(), serde_json::json!(1));
    let bad = jws::sign_general(b"{}", &key, std::slice::from_ref(&cert), None, &extra).unwrap();
    assert!(matches!(Jws::parse_json(&bad), Err(SignatureError::Header(_))));
    let mut ok = serde_json::Map::new();
    ok.insert("crit".into(), serde_json::json!(["created-on"]));
    ok.insert("created-on".into(), serde_json::json!("2026-11-26T00:00:00Z"));
    let good = jws::sign_general(b"{}", &key, std::slice::from_ref(&cert), None, &ok).unwrap();
    assert!(Jws::parse_json(&good).is_ok());
}

#[test]
fn cose_x5bag_kid_and_stripping() {
    let (key, cert, ca) = signer_and_ca();
    let bytes = cose::sign(b"\xa0", &key, None, &[cert.clone(), ca.clone()], Some(b"kid-1")).unwrap();
    let parsed = CoseSigned::parse(&bytes).unwrap();
    assert_eq!(parsed.key_id(), Some(&b"kid-1"[..]));
    assert_eq!(parsed.certificates().unwrap(), vec![cert.clone(), ca.clone()]);
    assert!(parsed.verify(&Trust::now(vec![ca.clone()])).is_ok());
    // The registrar strips the unprotected x5bag; the signature still verifies when the
    // verifier holds the signer certificate (as a pledge pinned to it would).
    let stripped = CoseSigned::parse(&parsed.without_unprotected_certs().unwrap()).unwrap();
    assert!(stripped.certificates().unwrap().is_empty());
    assert_eq!(stripped.verify(&Trust::now(vec![ca])).unwrap_err(), SignatureError::BadSignature);
    assert!(stripped.verify(&Trust::now(vec![cert])).is_ok());
    assert_eq!(key.algorithm(), Algorithm::Es256);
}

#[test]
fn cose_bad_input() {
    let (key, cert, _) = signer_and_ca();
    let bytes = cose::sign(b"\xa0", &key, None, &[cert], None).unwrap();
    assert_eq!(CoseSigned::parse(&bytes[..bytes.len() - 3]).unwrap_err(), SignatureError::Truncated);
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(CoseSigned::parse(&trailing).unwrap_err(), SignatureError::TrailingData);
    assert!(matches!(
        CoseSigned::parse(&[0xd2, 0x84, 0x40, 0xa0, 0xf6, 0x40]),
        Err(SignatureError::NoContent)
    ));
}
