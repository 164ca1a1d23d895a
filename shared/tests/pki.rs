//! X.509: CAs, issuing from CSRs under profiles, IDevID fields, chain validation at a time.

mod common;
use common::at;
use der::{Decode, Encode};
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki::*;
use std::time::Duration;
use x509_cert::Certificate;

const YEAR: Duration = Duration::from_secs(365 * 86400);

fn ca(alg: Algorithm, name: &str) -> CertificateAuthority {
    let key = SoftwareKey::generate(alg).unwrap();
    let cert = create_ca(name, &key, YEAR * 10, None).unwrap();
    CertificateAuthority::new(cert, Box::new(key)).unwrap()
}

fn csr(alg: Algorithm, subject: &str, san: &[San]) -> (SoftwareKey, shared::Verified<Csr>) {
    let key = SoftwareKey::generate(alg).unwrap();
    let der = build_csr(&parse_name(subject).unwrap(), san, &key).unwrap();
    (key, Csr::verify_der(&der).unwrap())
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

#[test]
fn issue_from_csr_chains_to_ca_for_every_algorithm() {
    for ca_alg in [Algorithm::Es256, Algorithm::Es384, Algorithm::EdDsa] {
        let ca = ca(ca_alg, "CN=Test CA,O=brski");
        let (key, req) = csr(Algorithm::Es256, "CN=device-1", &[San::Dns("device-1.example".into())]);
        let cert = ca.issue(&req, &Profile::end_entity(YEAR)).unwrap();
        assert_eq!(spki_der(&cert), key.public_key_der());
        assert_eq!(cert.tbs_certificate().subject().to_string(), "CN=device-1");
        let path = verify_chain(&cert, &[], &[ca.certificate().clone()], now()).unwrap();
        assert_eq!(path.len(), 2, "{ca_alg}");
    }
}

#[test]
fn serials_are_random_and_at_least_64_bits() {
    let ca = ca(Algorithm::Es256, "CN=Serial CA");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let (_, req) = csr(Algorithm::Es256, "CN=x", &[]);
        let cert = ca.issue(&req, &Profile::end_entity(YEAR)).unwrap();
        let serial = cert.tbs_certificate().serial_number().as_bytes().to_vec();
        assert!(serial.len() * 8 >= 64, "serial too short: {serial:?}");
        assert!(seen.insert(serial), "duplicate serial");
    }
}

#[test]
fn aki_equals_issuer_ski() {
    let ca = ca(Algorithm::Es384, "CN=AKI CA");
    let (_, req) = csr(Algorithm::Es256, "CN=leaf", &[]);
    let cert = ca.issue(&req, &Profile::end_entity(YEAR)).unwrap();
    let (_, aki): (bool, x509_cert::ext::pkix::AuthorityKeyIdentifier) =
        cert.tbs_certificate().get_extension().unwrap().unwrap();
    assert_eq!(aki.key_identifier.unwrap().as_bytes(), subject_key_id(ca.certificate()).as_slice());
}

#[test]
fn profile_subject_template_eku_and_san() {
    let ca = ca(Algorithm::Es256, "CN=Profile CA");
    let (_, req) = csr(Algorithm::Es256, "CN=pump-7", &[San::Uri("urn:x:1".into())]);
    let mut p = Profile::end_entity(YEAR);
    p.subject = SubjectRule::Template("CN={cn},O=Campus".into());
    p.extended_key_usage = vec![const_oid::db::rfc5280::ID_KP_CLIENT_AUTH];
    p.san = vec![San::Dns("pump-7.campus".into())];
    let cert = ca.issue(&req, &p).unwrap();
    assert_eq!(cert.tbs_certificate().subject().to_string(), "CN=pump-7,O=Campus");
    let (_, eku): (bool, x509_cert::ext::pkix::ExtendedKeyUsage) =
        cert.tbs_certificate().get_extension().unwrap().unwrap();
    assert_eq!(eku.0, vec![const_oid::db::rfc5280::ID_KP_CLIENT_AUTH]);
    let (_, san): (bool, x509_cert::ext::pkix::SubjectAltName) =
        cert.tbs_certificate().get_extension().unwrap().unwrap();
    assert_eq!(san.0.len(), 2, "CSR SAN copied plus profile SAN");
    p.subject = SubjectRule::Template("CN={serialNumber}".into());
    assert!(matches!(ca.issue(&req, &p), Err(PkiError::Refused(_))));
}

#[test]
fn idevid_serial_masa_url_and_issuer() {
    let ca = ca(Algorithm::Es256, "CN=Manufacturer CA");
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let mut p = Profile::end_entity(YEAR * 20);
    p.extra_extensions.push(masa_url_extension("https://masa.example.com:9443").unwrap());
    let subject = name_with_serial("CN=Widget", "SN-0042").unwrap();
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(&key.public_key_der()).unwrap();
    let cert = ca.issue_for_key(spki, subject, &[], &p).unwrap();
    assert_eq!(serial_number(&cert).as_deref(), Some("SN-0042"));
    assert_eq!(masa_url(&cert).as_deref(), Some("https://masa.example.com:9443"));
    let issuer = idevid_issuer(&cert);
    assert_eq!(&issuer[..6], &[0x04, 0x18, 0x30, 0x16, 0x80, 0x14]);
    assert_eq!(&issuer[6..], subject_key_id(ca.certificate()).as_slice());
}

#[test]
fn published_idevid_fields() {
    let c = common::certs("rfc8995-appendix-c/pvr-embedded-idevid.crt.pem").remove(0);
    assert_eq!(serial_number(&c).as_deref(), Some("00-D0-E5-F2-00-02"));
    assert_eq!(masa_url(&c).as_deref(), Some("https://highway-test.example.com:9443"));
    let cisco = common::certs("rfc8366bis-examples/idevid1-example.pem").remove(0);
    assert!(serial_number(&cisco).unwrap().contains("SN:"));
    assert_eq!(idevid_issuer(&cisco).len(), 26);
}

#[test]
fn chain_errors_are_distinct() {
    let root = ca(Algorithm::Es256, "CN=Root");
    let other = ca(Algorithm::Es256, "CN=Root");
    let (_, req) = csr(Algorithm::Es256, "CN=leaf", &[]);
    let leaf = root.issue(&req, &Profile::end_entity(Duration::from_secs(3600))).unwrap();
    let anchors = [root.certificate().clone()];
    let later = now() + time::Duration::days(2);
    assert!(matches!(verify_chain(&leaf, &[], &anchors, later), Err(ChainError::Expired { .. })));
    let earlier = now() - time::Duration::days(2);
    assert!(matches!(verify_chain(&leaf, &[], &anchors, earlier), Err(ChainError::NotYetValid { .. })));
    // Same name, different key: not trusted.
    let wrong = [other.certificate().clone()];
    assert!(matches!(verify_chain(&leaf, &[], &wrong, now()), Err(ChainError::UntrustedIssuer { .. })));
    // An end-entity certificate cannot issue.
    let ee_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let (_, ee_req) = csr(Algorithm::Es256, "CN=not-a-ca", &[]);
    let _ = ee_req;
    let ee_cert = root
        .issue(
            &Csr::verify_der(&build_csr(&parse_name("CN=not-a-ca").unwrap(), &[], &ee_key).unwrap()).unwrap(),
            &Profile::end_entity(YEAR),
        )
        .unwrap();
    let fake_ca = CertificateAuthority::new(ee_cert.clone(), Box::new(ee_key)).unwrap();
    let (_, req2) = csr(Algorithm::Es256, "CN=victim", &[]);
    let victim = fake_ca.issue(&req2, &Profile::end_entity(YEAR)).unwrap();
    assert!(matches!(verify_chain(&victim, &[ee_cert], &anchors, now()), Err(ChainError::NotCa(_))));
}

#[test]
fn intermediate_path_and_unknown_critical_extension() {
    let root = ca(Algorithm::Es384, "CN=Root");
    let int_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let int_req =
        Csr::verify_der(&build_csr(&parse_name("CN=Intermediate").unwrap(), &[], &int_key).unwrap()).unwrap();
    let int_cert = root.issue(&int_req, &Profile::certificate_authority(YEAR, Some(0))).unwrap();
    let int = CertificateAuthority::new(int_cert.clone(), Box::new(int_key)).unwrap();
    let (_, req) = csr(Algorithm::Es256, "CN=leaf", &[]);
    let leaf = int.issue(&req, &Profile::end_entity(YEAR)).unwrap();
    let path =
        verify_chain(&leaf, std::slice::from_ref(&int_cert), &[root.certificate().clone()], now()).unwrap();
    assert_eq!(path.len(), 3);
    let mut p = Profile::end_entity(YEAR);
    p.extra_extensions.push(x509_cert::ext::Extension {
        extn_id: const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1"),
        critical: true,
        extn_value: der::asn1::OctetString::new(vec![0x05, 0x00]).unwrap(),
    });
    let odd = int.issue(&req, &p).unwrap();
    let err = verify_chain(&odd, &[int_cert], &[root.certificate().clone()], now()).unwrap_err();
    assert!(
        matches!(err, ChainError::UnknownCriticalExtension { ref oid, .. } if oid == "1.3.6.1.4.1.99999.1"),
        "{err}"
    );
}

#[test]
fn csr_tampering_and_bad_input() {
    let (_, req) = csr(Algorithm::Es256, "CN=ok", &[]);
    let mut der = req.der().to_vec();
    // Flip a byte inside the subject: the self-signature no longer verifies.
    let pos = der.windows(2).position(|w| w == b"ok").unwrap();
    der[pos] = b'x';
    assert!(matches!(Csr::verify_der(&der), Err(CsrError::BadSignature(_))));
    let good = req.der();
    assert!(matches!(Csr::verify_der(&good[..good.len() - 5]), Err(CsrError::Malformed(_))));
    let mut trailing = good.to_vec();
    trailing.extend_from_slice(b"xx");
    assert!(matches!(Csr::verify_der(&trailing), Err(CsrError::TrailingData)));
    assert!(matches!(Csr::verify_der(&vec![0x30; 20_000]), Err(CsrError::TooLarge(20_000))));
}

#[test]
fn rfc7030_sha1_rsa_csr_is_refused_as_unsupported_algorithm() {
    let der = common::read("rfc7030-appendix-a/simpleenroll-request.der");
    // RFC 7030's example is signed sha1WithRSAEncryption: refused as an algorithm, not as a
    // bad signature, so the operator sees why.
    let err = Csr::verify_der(&der).unwrap_err();
    assert!(matches!(err, CsrError::UnsupportedAlgorithm(ref a) if a == "1.2.840.113549.1.1.5"), "{err}");
}

#[test]
fn pem_round_trip() {
    let ca = ca(Algorithm::Es256, "CN=PEM CA");
    let pem = cert_to_pem(ca.certificate()).unwrap();
    assert_eq!(&cert_from_pem(&pem).unwrap(), ca.certificate());
    assert_eq!(
        Certificate::from_der(&cert_to_der(ca.certificate()).unwrap()).unwrap().to_der().unwrap(),
        cert_to_der(ca.certificate()).unwrap()
    );
    let _ = at("2020-01-01T00:00:00Z");
}

/// Verified certificate signatures are remembered (servers check the same certificates
/// repeatedly): a remembered success must never vouch for a changed signature, other signed
/// bytes, or another issuer key of the same name, and validity is still checked every time.
#[test]
fn remembered_signatures_vouch_only_for_the_same_certificate_and_key() {
    let root = ca(Algorithm::Es256, "CN=Remembering Root");
    let twin = ca(Algorithm::Es256, "CN=Remembering Root");
    let (_, req) = csr(Algorithm::Es256, "CN=remembered-leaf", &[]);
    let leaf = root.issue(&req, &Profile::end_entity(Duration::from_secs(3600))).unwrap();
    let anchors = [root.certificate().clone()];
    for _ in 0..3 {
        assert_eq!(verify_chain(&leaf, &[], &anchors, now()).unwrap().len(), 2);
    }
    // Same name, another key: refused although the certificate verified a moment ago.
    let twin_anchor = [twin.certificate().clone()];
    assert!(matches!(verify_chain(&leaf, &[], &twin_anchor, now()), Err(ChainError::UntrustedIssuer { .. })));
    // One bit of the signature flipped: refused.
    let mut der = leaf.to_der().unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let bad_sig = Certificate::from_der(&der).unwrap();
    assert!(matches!(verify_chain(&bad_sig, &[], &anchors, now()), Err(ChainError::UntrustedIssuer { .. })));
    // Other signed bytes under the original signature: refused.
    let (_, req2) = csr(Algorithm::Es256, "CN=remembered-leaf", &[]);
    let other = root.issue(&req2, &Profile::end_entity(Duration::from_secs(3600))).unwrap();
    let mut body = other.tbs_certificate().to_der().unwrap();
    body.extend(leaf.signature_algorithm().to_der().unwrap());
    body.extend(leaf.signature().to_der().unwrap());
    let mut spliced = vec![0x30, 0x82, (body.len() >> 8) as u8, body.len() as u8];
    spliced.extend(body);
    let spliced = Certificate::from_der(&spliced).unwrap();
    assert!(matches!(verify_chain(&spliced, &[], &anchors, now()), Err(ChainError::UntrustedIssuer { .. })));
    // Remembered or not, an expired certificate is expired.
    let later = now() + time::Duration::days(2);
    assert!(matches!(verify_chain(&leaf, &[], &anchors, later), Err(ChainError::Expired { .. })));
}
