//! Signed vouchers end to end: every published signed vector through `Signed<Voucher>`, the
//! must-fail vectors with their reasons, sign/verify in all formats and algorithms, and bad
//! input with distinct errors.

mod common;
use common::*;
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki::*;
use shared::signed::{Format, SignatureError, SignedError, Trust};
use shared::voucher::*;
use std::time::Duration;
use x509_cert::Certificate;

fn trust(anchors: Vec<Certificate>, when: &str) -> Trust {
    Trust { anchors, at: at(when) }
}

fn verify(bytes: &[u8], t: &Trust) -> Result<shared::Verified<Voucher>, SignedError<VoucherError>> {
    SignedVoucher::parse(bytes)?.verify(t)
}

fn cert_der(rel: &str) -> Certificate {
    use der::Decode;
    Certificate::from_der(&read(rel)).unwrap()
}

const RFC8995_AT: &str = "2021-04-14T00:00:00Z";

#[test]
fn rfc8995_pledge_accepts_voucher_and_registrar() {
    let vendor = certs("rfc8995-appendix-c/vendor-ca.crt.pem");
    let t = trust(vendor.clone(), RFC8995_AT);
    let pvr = verify(&read("rfc8995-appendix-c/pledge-voucher-request.cms.der"), &t).unwrap();
    assert_eq!(pvr.kind, Kind::Request);
    let voucher = verify(&read("rfc8995-appendix-c/voucher.cms.b64"), &t).unwrap();
    let idevid = &certs("rfc8995-appendix-c/pvr-embedded-idevid.crt.pem")[0];
    let expect = Expectations {
        nonce: pvr.nonce.clone(),
        serial_number: serial_number(idevid),
        now: Some(at(RFC8995_AT)),
        require_nonce: true,
        ..Default::default()
    };
    check_voucher(&voucher, &expect).unwrap();
    let registrar = certs("rfc8995-appendix-c/registrar.crt.pem");
    check_registrar_pin(&voucher, &registrar, at(RFC8995_AT)).unwrap();
    // A registrar with another certificate is not the pinned one.
    let other = certs("rfc8995-appendix-c/registrar-ca.crt.pem");
    assert!(matches!(check_registrar_pin(&voucher, &other, at(RFC8995_AT)), Err(PinError::Chain(_))));
}

#[test]
fn rfc8995_rvr_carries_the_exact_pvr() {
    let t = trust(certs("rfc8995-appendix-c/registrar-ca.crt.pem"), RFC8995_AT);
    let rvr = verify(&read("rfc8995-appendix-c/registrar-voucher-request.cms.der"), &t).unwrap();
    assert_eq!(
        rvr.prior_signed_voucher_request.as_deref(),
        Some(read("rfc8995-appendix-c/pledge-voucher-request.cms.der").as_slice())
    );
}

#[test]
fn rfc8366bis_cms_examples_verify_and_stale_vendor_ca_fails() {
    let t = trust(certs("rfc8995-appendix-c/vendor-ca.crt.pem"), "2022-07-11T00:00:00Z");
    let vr = verify(&read("rfc8366bis-examples/vr_00-D0-E5-F2-00-02.pkcs"), &t).unwrap();
    let v = verify(&read("rfc8366bis-examples/voucher_00-D0-E5-F2-00-02.b64"), &t).unwrap();
    assert_eq!(v.nonce, vr.nonce);
    let stale = trust(certs("rfc8366bis-examples/vendor-00-D0-E5-F2-00-02.crt"), "2022-07-11T00:00:00Z");
    let err = verify(&read("rfc8366bis-examples/voucher_00-D0-E5-F2-00-02.pkcs"), &stale).unwrap_err();
    assert!(
        matches!(err, SignedError::Signature(SignatureError::Chain(ChainError::UntrustedIssuer { .. }))),
        "{err}"
    );
}

#[test]
fn jws_examples_verify_and_bis_appendix_jws() {
    for (obj, signer) in [
        ("jws-voucher/voucher.jws.json", "jws-voucher/voucher-signer.pem"),
        ("jws-voucher/pvr.jws.json", "jws-voucher/pvr-signer.pem"),
        ("jws-voucher/rvr.jws.json", "jws-voucher/rvr-signer.pem"),
    ] {
        let ca = certs(signer).pop().unwrap();
        let v = verify(&read(obj), &trust(vec![ca], "2024-12-01T00:00:00Z"))
            .unwrap_or_else(|e| panic!("{obj}: {e}"));
        assert_eq!(
            v.serial_number.as_deref(),
            Some(if obj.contains("rvr") || obj.contains("pvr") || obj.contains("voucher") {
                "kit-987654321"
            } else {
                ""
            })
        );
    }
    let masa = certs("rfc8995-appendix-c/masa.crt.pem");
    let v = verify(
        &read("rfc8366bis-examples/jws-voucher-example.jws.json"),
        &trust(masa, "2021-06-01T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(v.serial_number.as_deref(), Some("caffe-98745"));
    assert_eq!(v.assertion, Some(Assertion::Proximity));
}

#[test]
fn jws_voucher_pins_the_pvr_registrar_ca() {
    let ca = certs("jws-voucher/voucher-signer.pem").pop().unwrap();
    let v = verify(&read("jws-voucher/voucher.jws.json"), &trust(vec![ca.clone()], "2024-12-01T00:00:00Z"))
        .unwrap();
    let pvr = verify(
        &read("jws-voucher/pvr.jws.json"),
        &trust(certs("jws-voucher/pvr-signer.pem")[1..].to_vec(), "2024-12-01T00:00:00Z"),
    )
    .unwrap();
    let registrar = Certificate::from_der_bytes(pvr.proximity_registrar_cert.as_deref().unwrap());
    check_registrar_pin(&v, &[registrar], at("2024-12-01T00:00:00Z")).unwrap();
}

trait FromDerBytes {
    fn from_der_bytes(b: &[u8]) -> Certificate;
}
impl FromDerBytes for Certificate {
    fn from_der_bytes(b: &[u8]) -> Certificate {
        <Certificate as der::Decode>::from_der(b).unwrap()
    }
}

#[test]
fn prm_objects_verify_and_mismatched_voucher_is_rejected() {
    let when = "2024-06-25T00:00:00Z";
    let pvr_env = SignedVoucher::parse(&read("brski-prm-examples/pvr.jws.json")).unwrap();
    let idevid = pvr_env.envelope().certificates().remove(0);
    let pvr = pvr_env.verify(&trust(vec![idevid], when)).unwrap();
    assert_eq!(pvr.assertion, Some(Assertion::AgentProximity));
    assert!(pvr.legacy_prm_key);
    let voucher_env = SignedVoucher::parse(&read("brski-prm-examples/voucher.jws.json")).unwrap();
    let masa = voucher_env.envelope().certificates().remove(0);
    let voucher = voucher_env.verify(&trust(vec![masa.clone()], when)).unwrap();
    let expect = Expectations {
        nonce: pvr.nonce.clone(),
        serial_number: pvr.serial_number.clone(),
        ..Default::default()
    };
    assert_eq!(check_voucher(&voucher, &expect), Err(VoucherError::NonceMismatch));
    // The countersigned voucher carries the right nonce and two verifying signatures.
    let cs_env = SignedVoucher::parse(&read("brski-prm-examples/voucher-countersigned.jws.json")).unwrap();
    let cs = cs_env.verify(&trust(vec![masa], when)).unwrap();
    check_voucher(&cs, &expect).unwrap();
    let registrar = cs_env.envelope().certificates().pop().unwrap();
    assert!(cs_env.verify(&trust(vec![registrar], when)).is_ok(), "registrar countersignature verifies too");
    let rvr_env = SignedVoucher::parse(&read("brski-prm-examples/rvr.jws.json")).unwrap();
    let test_ca = Certificate::from_der_bytes(voucher.pinned_domain_cert.as_deref().unwrap());
    let rvr = rvr_env.verify(&trust(vec![test_ca], when)).unwrap();
    assert_eq!(rvr.nonce, pvr.nonce);
}

#[test]
fn prm_agent_signed_data_verifies_with_the_agent_cert() {
    let jws =
        shared::signed::jws::Jws::parse_json(&read("brski-prm-examples/agent-signed-data.jws.json")).unwrap();
    let agent = cert_der("brski-prm-examples/registrar-agent.crt.der");
    let kid = jws.signatures[0].header["kid"].as_str().unwrap().to_string();
    assert_eq!(shared::b64::decode_lenient(&kid).unwrap(), subject_key_id(&agent));
    let key = shared::crypto::PublicKey::from_spki_der(&spki_der(&agent)).unwrap();
    assert!(jws.verify_with_key(0, &key).is_ok());
}

#[test]
fn cbrski_cose_objects_and_nonce_mismatch() {
    let when = "2023-01-01T00:00:00Z";
    let pvr = verify(
        &read_hex("cbrski-cose-examples/pvr.hex"),
        &trust(certs("cbrski-cose-examples/pledge.crt.pem"), when),
    )
    .unwrap();
    let rvr = verify(
        &read_hex("cbrski-cose-examples/rvr.hex"),
        &trust(certs("cbrski-cose-examples/registrar.crt.pem"), when),
    )
    .unwrap();
    assert_eq!(rvr.nonce, pvr.nonce);
    let voucher = verify(
        &read("cbrski-cose-examples/voucher.hex"),
        &trust(certs("cbrski-cose-examples/masa_ca.crt.pem"), when),
    )
    .unwrap();
    let expect = Expectations {
        nonce: pvr.nonce.clone(),
        serial_number: Some("JADA123456789".into()),
        ..Default::default()
    };
    assert_eq!(check_voucher(&voucher, &expect), Err(VoucherError::NonceMismatch));
    // Signed by the MASA CA key, not the pledge: a pledge trusting only itself refuses it.
    let err = verify(
        &read("cbrski-cose-examples/voucher.hex"),
        &trust(certs("cbrski-cose-examples/pledge.crt.pem"), when),
    )
    .unwrap_err();
    assert!(matches!(err, SignedError::Signature(SignatureError::BadSignature)), "{err}");
}

struct Masa {
    ca: Certificate,
    key: SoftwareKey,
    cert: Certificate,
}

fn masa(alg: Algorithm, validity: Duration) -> Masa {
    let ca_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let ca = CertificateAuthority::new(
        create_ca("CN=Test Vendor CA", &ca_key, Duration::from_secs(86400 * 30), None).unwrap(),
        Box::new(ca_key),
    )
    .unwrap();
    let key = SoftwareKey::generate(alg).unwrap();
    let csr = Csr::verify_der(&build_csr(&parse_name("CN=Test MASA").unwrap(), &[], &key).unwrap()).unwrap();
    let cert = ca.issue(&csr, &Profile::end_entity(validity)).unwrap();
    Masa { ca: ca.certificate().clone(), key, cert }
}

fn sample_voucher() -> Voucher {
    let mut v = Voucher::new(Kind::Voucher);
    v.assertion = Some(Assertion::Logged);
    v.serial_number = Some("SN-42".into());
    v.nonce = Some(Nonce::from_bytes(&[7; 16]));
    v.created_on = Some(time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap());
    v.pinned_domain_cert = Some(vec![0x30, 0x00]);
    v
}

#[test]
fn sign_and_verify_every_format_and_algorithm() {
    for alg in [Algorithm::Es256, Algorithm::Es384, Algorithm::EdDsa] {
        let m = masa(alg, Duration::from_secs(86400));
        for format in [Format::Cms, Format::Jws, Format::Cose] {
            let v = sample_voucher();
            let signed = sign_voucher(&v, format, &m.key, std::slice::from_ref(&m.cert)).unwrap();
            assert_eq!(signed.format(), format);
            let ok = signed
                .verify(&Trust::now(vec![m.ca.clone()]))
                .unwrap_or_else(|e| panic!("{alg} {format}: {e}"));
            assert_eq!(ok.value(), &v, "{alg} {format}");
            assert_eq!(ok.signer(), Some(&m.cert));
            // Base64-wrapped input is detected too.
            let wrapped = shared::b64::encode_wrapped(signed.bytes(), 64);
            assert!(SignedVoucher::parse(wrapped.as_bytes())
                .unwrap()
                .verify(&Trust::now(vec![m.ca.clone()]))
                .is_ok());
        }
    }
}

#[test]
fn bad_signed_input_gets_distinct_errors() {
    let m = masa(Algorithm::Es256, Duration::from_secs(3600));
    let t = Trust::now(vec![m.ca.clone()]);
    let cms = sign_voucher(&sample_voucher(), Format::Cms, &m.key, std::slice::from_ref(&m.cert)).unwrap();
    let der = cms.bytes().to_vec();
    let sig_err = |b: &[u8]| match verify(b, &t) {
        Err(SignedError::Signature(e)) => e,
        other => panic!("expected a signature error, got {other:?}"),
    };
    assert_eq!(sig_err(&der[..der.len() / 2]), SignatureError::Truncated);
    let mut trailing = der.clone();
    trailing.extend_from_slice(b"garbage");
    assert_eq!(sig_err(&trailing), SignatureError::TrailingData);
    assert!(matches!(sig_err(&vec![0x30; 600_000]), SignatureError::TooLarge { .. }));
    // Wrong eContentType.
    let odd = shared::signed::cms::sign(
        const_oid::ObjectIdentifier::new_unwrap("1.2.3.4"),
        &to_json(&sample_voucher()),
        &m.key,
        std::slice::from_ref(&m.cert),
    )
    .unwrap();
    assert!(matches!(sig_err(&odd), SignatureError::WrongContentType(_)));
    // Signed by another key while claiming the MASA certificate.
    let other = SoftwareKey::generate(Algorithm::Es256).unwrap();
    for format in [Format::Cms, Format::Jws, Format::Cose] {
        let forged = sign_voucher(&sample_voucher(), format, &other, std::slice::from_ref(&m.cert)).unwrap();
        assert_eq!(sig_err(forged.bytes()), SignatureError::BadSignature, "{format}");
    }
    // Signer certificate expired at the verification time.
    let later =
        Trust { anchors: vec![m.ca.clone()], at: time::OffsetDateTime::now_utc() + time::Duration::days(2) };
    match verify(&der, &later) {
        Err(SignedError::Signature(SignatureError::Chain(ChainError::Expired { .. }))) => {}
        other => panic!("expected expiry, got {other:?}"),
    }
    // A payload that is not voucher JSON.
    let junk = shared::signed::cms::sign(
        shared::signed::cms::ID_CT_ANIMA_JSON_VOUCHER,
        b"{\"x\":1}",
        &m.key,
        std::slice::from_ref(&m.cert),
    )
    .unwrap();
    assert!(matches!(verify(&junk, &t), Err(SignedError::Payload(VoucherError::WrongTopLevel(_)))));
    // JWS with a foreign typ.
    let jws = shared::signed::jws::sign_general(
        &to_json(&sample_voucher()),
        &m.key,
        std::slice::from_ref(&m.cert),
        Some("JWT"),
        &Default::default(),
    )
    .unwrap();
    assert!(matches!(SignedVoucher::parse(&jws), Err(SignatureError::Header(_))));
    // Not a signed object at all.
    assert!(matches!(SignedVoucher::parse(b"\x01\x02\x03"), Err(SignatureError::Malformed(_))));
}

#[test]
fn strict_mode_refuses_unknown_leaves_lenient_records_them() {
    let m = masa(Algorithm::Es256, Duration::from_secs(3600));
    let json = br#"{"ietf-voucher:voucher":{"assertion":"logged","serial-number":"SN-1","nonce":"AAAA","pinned-domain-cert":"MAA=","shiny-new-leaf":1}}"#;
    let signed = shared::signed::cms::sign(
        shared::signed::cms::ID_CT_ANIMA_JSON_VOUCHER,
        json,
        &m.key,
        std::slice::from_ref(&m.cert),
    )
    .unwrap();
    let v = verify(&signed, &Trust::now(vec![m.ca.clone()])).unwrap();
    assert_eq!(v.unknown_leaves, vec!["shiny-new-leaf".to_string()]);
    assert_eq!(refuse_unknown_leaves(&v), Err(VoucherError::UnknownLeaf("shiny-new-leaf".into())));
    let _ = m.key.algorithm();
}
