//! Appraisal of good and bad quotes, the TPMS_ATTEST parser against its marshaller, the strict
//! CBOR decoder and the CMW item.

use super::*;
use crate::agent::evidence::MAX_EVIDENCE_LEN;
use crate::agent::AgentError;
use crate::keys::{Algorithm, Signer, SoftwareKey};
use crate::pki;
use crate::pki::{create_ca, name_with_serial, CertificateAuthority, Profile};
use crate::Verified;
use ciborium::Value as Cbor;
use std::collections::BTreeMap;
use std::time::Duration;
use x509_cert::Certificate;

const SERIAL: &str = "proxy-0042";

struct Fixture {
    manufacturer: CertificateAuthority,
    ak: SoftwareKey,
    ak_cert: Certificate,
    nonce: [u8; 32],
    pcrs: BTreeMap<u8, Vec<u8>>,
}

fn ca(name: &str) -> CertificateAuthority {
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let cert = create_ca(name, &key, Duration::from_secs(86400 * 365), None).unwrap();
    CertificateAuthority::new(cert, Box::new(key)).unwrap()
}

fn ak_cert(ca: &CertificateAuthority, key: &SoftwareKey, serial: &str, eku: bool) -> Certificate {
    let mut p = Profile::end_entity(Duration::from_secs(86400));
    if eku {
        p.extended_key_usage = vec![TCG_KP_AIK_CERTIFICATE];
    }
    let spki = <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(&key.public_key_der()).unwrap();
    ca.issue_for_key(spki, name_with_serial("CN=TPM AK", serial).unwrap(), &[], &p).unwrap()
}

fn fixture() -> Fixture {
    let manufacturer = ca("CN=Example TPM Manufacturer CA");
    let ak = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let ak_cert = ak_cert(&manufacturer, &ak, SERIAL, true);
    let nonce = quote_nonce(&[7u8; 32], &[9u8; 32]);
    let pcrs = BTreeMap::from([(0u8, vec![0xa0; 32]), (7, vec![0xa7; 32]), (16, vec![0u8; 32])]);
    Fixture { manufacturer, ak, ak_cert, nonce, pcrs }
}

fn sign(key: &SoftwareKey, attest: &[u8]) -> Vec<u8> {
    crate::crypto::raw_to_der(Algorithm::Es256, &key.sign(attest).unwrap()).unwrap()
}

/// A quote over `attest`, signed by `key`, carrying `pcrs` and `chain`.
fn quote_of(
    key: &SoftwareKey,
    attest: Vec<u8>,
    pcrs: BTreeMap<u8, Vec<u8>>,
    chain: &[&Certificate],
) -> TpmQuote {
    TpmQuote {
        signature: sign(key, &attest),
        attest,
        hash_alg: TPM_ALG_SHA256,
        pcrs,
        ak_chain: chain.iter().map(|c| pki::cert_to_der(c).unwrap()).collect(),
    }
}

fn attest_for(nonce: &[u8], pcrs: &BTreeMap<u8, Vec<u8>>) -> Vec<u8> {
    let indices: Vec<u8> = pcrs.keys().copied().collect();
    marshal_quote_attest(
        b"\x00\x0bsigner-name",
        nonce,
        123_456,
        3,
        1,
        0x2023_0001,
        &indices,
        &pcr_digest(pcrs),
    )
}

fn good(f: &Fixture) -> TpmQuote {
    quote_of(&f.ak, attest_for(&f.nonce, &f.pcrs), f.pcrs.clone(), &[&f.ak_cert])
}

fn policy(f: &Fixture) -> PcrPolicy {
    PcrPolicy { pcrs: BTreeMap::from([(16u8, f.pcrs[&16].clone())]) }
}

fn appraise(f: &Fixture, q: &TpmQuote) -> Result<Verified<AppraisedQuote>, AgentError> {
    let anchors = [f.manufacturer.certificate().clone()];
    appraise_quote(q, &anchors, SERIAL, &f.nonce, &policy(f), time::OffsetDateTime::now_utc())
}

/// The refusal message of an appraisal, which must start with "TPM quote: " and contain `want`.
fn refused(f: &Fixture, q: &TpmQuote, want: &str) {
    let e = appraise(f, q).expect_err(want);
    let AgentError::Evidence(msg) = &e else { panic!("not an evidence error: {e:?}") };
    assert!(msg.starts_with("TPM quote: "), "{msg}");
    assert!(msg.contains(want), "{msg:?} does not say {want:?}");
    assert_eq!(e.reason(), "evidence");
}

#[test]
fn tpm_quote_good_quote_appraises() {
    let f = fixture();
    let v = appraise(&f, &good(&f)).expect("a good quote appraises");
    assert_eq!(v.device_serial, SERIAL);
    assert_eq!(v.pcrs, f.pcrs);
    assert_eq!((v.clock, v.reset_count, v.restart_count), (123_456, 3, 1));
    assert_eq!(v.signer(), Some(&f.ak_cert), "the verified signer is the AK certificate");
    assert_eq!(v.signer_chain().last(), Some(f.manufacturer.certificate()));
    // An empty policy accepts any quoted values.
    let anchors = [f.manufacturer.certificate().clone()];
    let now = time::OffsetDateTime::now_utc();
    assert!(appraise_quote(&good(&f), &anchors, SERIAL, &f.nonce, &PcrPolicy::default(), now).is_ok());
}

#[test]
fn tpm_quote_with_an_intermediate_appraises() {
    let f = fixture();
    let ik = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let spki = <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(&ik.public_key_der()).unwrap();
    let p = Profile::certificate_authority(Duration::from_secs(86400), Some(0));
    let inter_cert =
        f.manufacturer.issue_for_key(spki, pki::parse_name("CN=AK Intermediate").unwrap(), &[], &p).unwrap();
    let inter = CertificateAuthority::new(inter_cert.clone(), Box::new(ik)).unwrap();
    let ak_cert = ak_cert(&inter, &f.ak, SERIAL, true);
    let q = quote_of(&f.ak, attest_for(&f.nonce, &f.pcrs), f.pcrs.clone(), &[&ak_cert, &inter_cert]);
    let v = appraise(&f, &q).expect("AK under an intermediate appraises");
    assert_eq!(v.signer_chain().len(), 3);
    // Without the intermediate the path does not validate.
    let q = quote_of(&f.ak, attest_for(&f.nonce, &f.pcrs), f.pcrs.clone(), &[&ak_cert]);
    refused(&f, &q, "attestation key certificate path");
}

#[test]
fn tpm_quote_wrong_nonce_is_refused() {
    let f = fixture();
    let other = quote_nonce(&[8u8; 32], &[9u8; 32]);
    let q = quote_of(&f.ak, attest_for(&other, &f.pcrs), f.pcrs.clone(), &[&f.ak_cert]);
    refused(&f, &q, "extraData does not bind this request");
    // A prefix of the right nonce is not the nonce.
    let q = quote_of(&f.ak, attest_for(&f.nonce[..16], &f.pcrs), f.pcrs.clone(), &[&f.ak_cert]);
    refused(&f, &q, "extraData does not bind this request");
}

#[test]
fn tpm_quote_changed_pcr_value_does_not_match_the_digest() {
    let f = fixture();
    let mut q = good(&f);
    q.pcrs.insert(7, vec![0xbb; 32]);
    refused(&f, &q, "pcrDigest does not match the PCR values carried");
    // A value of the wrong length.
    let mut q = good(&f);
    q.pcrs.insert(16, vec![0u8; 31]);
    refused(&f, &q, "PCR 16 value is 31 bytes, not 32");
    // Values for PCRs the quote did not select.
    let mut q = good(&f);
    q.pcrs.insert(9, vec![0u8; 32]);
    refused(&f, &q, "the quote selects PCRs [0, 7, 16] but the values carried are for [0, 7, 9, 16]");
}

#[test]
fn tpm_quote_policy_mismatch_is_refused() {
    let f = fixture();
    let mut pcrs = f.pcrs.clone();
    pcrs.insert(16, vec![0x3f; 32]);
    let q = quote_of(&f.ak, attest_for(&f.nonce, &pcrs), pcrs, &[&f.ak_cert]);
    refused(&f, &q, &format!("PCR 16 is {} where policy wants {}", "3f".repeat(32), "00".repeat(32)));
    // A policy PCR the quote does not cover.
    let pcrs = BTreeMap::from([(0u8, vec![0xa0; 32])]);
    let q = quote_of(&f.ak, attest_for(&f.nonce, &pcrs), pcrs, &[&f.ak_cert]);
    refused(&f, &q, "policy wants PCR 16, which the quote does not cover");
}

#[test]
fn tpm_quote_ak_certificate_checks() {
    let f = fixture();
    let attest = attest_for(&f.nonce, &f.pcrs);
    // Without the EKU.
    let no_eku = ak_cert(&f.manufacturer, &f.ak, SERIAL, false);
    refused(
        &f,
        &quote_of(&f.ak, attest.clone(), f.pcrs.clone(), &[&no_eku]),
        "lacks the EKU tcg-kp-AIKCertificate",
    );
    // Of another device.
    let other = ak_cert(&f.manufacturer, &f.ak, "proxy-0043", true);
    refused(
        &f,
        &quote_of(&f.ak, attest.clone(), f.pcrs.clone(), &[&other]),
        "is for device \"proxy-0043\", not the proxy's \"proxy-0042\"",
    );
    // From a CA that is not an anchor.
    let rogue = ca("CN=Example TPM Manufacturer CA");
    let foreign = ak_cert(&rogue, &f.ak, SERIAL, true);
    refused(
        &f,
        &quote_of(&f.ak, attest.clone(), f.pcrs.clone(), &[&foreign]),
        "attestation key certificate path",
    );
    // None at all, or garbage.
    refused(&f, &quote_of(&f.ak, attest.clone(), f.pcrs.clone(), &[]), "no attestation key certificate");
    let mut q = good(&f);
    q.ak_chain = vec![vec![0x30, 0x03, 0x02, 0x01]];
    refused(&f, &q, "the attestation key certificate does not parse");
    // Expired at appraisal time.
    let anchors = [f.manufacturer.certificate().clone()];
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(2);
    let e = appraise_quote(&good(&f), &anchors, SERIAL, &f.nonce, &policy(&f), later).unwrap_err();
    assert!(e.to_string().contains("TPM quote: attestation key certificate path"), "{e}");
}

#[test]
fn tpm_quote_bad_signature_is_refused() {
    let f = fixture();
    // Signed by another key than the certified AK.
    let stranger = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let q = quote_of(&stranger, attest_for(&f.nonce, &f.pcrs), f.pcrs.clone(), &[&f.ak_cert]);
    refused(&f, &q, "the signature over attest does not verify");
    // Attest changed after signing.
    let mut q = good(&f);
    let last = q.attest.len() - 1;
    q.attest[last] ^= 1;
    refused(&f, &q, "the signature over attest does not verify");
    // Not a signature.
    let mut q = good(&f);
    q.signature = vec![1, 2, 3];
    refused(&f, &q, "the signature over attest does not verify");
}

#[test]
fn tpm_quote_malformed_attest_is_refused() {
    let f = fixture();
    let signed = |attest: Vec<u8>| quote_of(&f.ak, attest, f.pcrs.clone(), &[&f.ak_cert]);
    let attest = attest_for(&f.nonce, &f.pcrs);
    // Bad magic.
    let mut bad = attest.clone();
    bad[0] = 0;
    refused(&f, &signed(bad), "magic 0x00544347 is not TPM_GENERATED_VALUE");
    // Another attestation type (TPM_ST_ATTEST_CERTIFY).
    let mut bad = attest.clone();
    bad[5] = 0x17;
    refused(&f, &signed(bad), "type 0x8017 is not TPM_ST_ATTEST_QUOTE");
    // Truncated anywhere.
    for n in [0, 3, 5, 10, attest.len() - 33, attest.len() - 1] {
        let q = signed(attest[..n].to_vec());
        let e = appraise(&f, &q).unwrap_err().to_string();
        assert!(e.contains("TPM quote: attest truncated in"), "{n}: {e}");
    }
    // Trailing bytes.
    let mut bad = attest.clone();
    bad.extend_from_slice(&[0, 0]);
    refused(&f, &signed(bad), "2 trailing bytes after TPMS_ATTEST");
    // Two selections (sha256 twice, the second empty).
    let mut two = Vec::new();
    let count_at = attest.len() - (2 + 32) - 4 - (2 + 1 + 3);
    two.extend_from_slice(&attest[..count_at]);
    two.extend_from_slice(&2u32.to_be_bytes());
    two.extend_from_slice(&attest[count_at + 4..attest.len() - 34]);
    two.extend_from_slice(&[0x00, 0x0b, 3, 0, 0, 0]);
    two.extend_from_slice(&attest[attest.len() - 34..]);
    let parsed = parse_quote_attest(&two).unwrap();
    assert_eq!(parsed.selections.len(), 2);
    refused(&f, &signed(two), "the quote selects 2 PCR banks; exactly one (sha256) is accepted");
    // A huge selection count in a short input.
    let mut bad = attest[..count_at].to_vec();
    bad.extend_from_slice(&u32::MAX.to_be_bytes());
    refused(&f, &signed(bad), "attest truncated in pcrSelect[0]");
}

#[test]
fn tpm_quote_bank_must_be_sha256() {
    let f = fixture();
    let mut q = good(&f);
    q.hash_alg = 0x0004;
    refused(&f, &q, "hash_alg 0x0004 is not TPM_ALG_SHA256 (0x000b)");
    // A sha1 bank quoted while hash_alg says sha256.
    let mut attest = attest_for(&f.nonce, &f.pcrs);
    let at = attest.len() - 34 - 4 - 2;
    attest[at..at + 2].copy_from_slice(&[0x00, 0x04]);
    refused(&f, &quote_of(&f.ak, attest, f.pcrs.clone(), &[&f.ak_cert]), "the quoted bank is 0x0004");
}

#[test]
fn tpm_quote_parser_reads_what_marshal_writes() {
    let pcrs = [0u8, 7, 16, 23, 30];
    let a = marshal_quote_attest(b"name", b"nonce", 1, 2, 3, 4, &pcrs, &[5u8; 32]);
    let p = parse_quote_attest(&a).unwrap();
    assert_eq!(p.qualified_signer, b"name");
    assert_eq!(p.extra_data, b"nonce");
    assert_eq!((p.clock, p.reset_count, p.restart_count, p.safe, p.firmware_version), (1, 2, 3, true, 4));
    assert_eq!(p.selections, vec![PcrSelection { hash: TPM_ALG_SHA256, indices: vec![0, 7, 16, 23, 30] }]);
    assert_eq!(p.pcr_digest, vec![5u8; 32]);
    // Every prefix is refused without panicking.
    for n in 0..a.len() {
        assert!(parse_quote_attest(&a[..n]).is_err(), "prefix {n}");
    }
}

#[test]
fn tpm_quote_cbor_round_trip_and_strictness() {
    let f = fixture();
    let q = good(&f);
    let bytes = q.to_cbor();
    assert_eq!(TpmQuote::from_cbor(&bytes).unwrap(), q);
    let bad = |b: &[u8], want: &str| {
        let e = TpmQuote::from_cbor(b).unwrap_err().to_string();
        assert!(e.contains("TPM quote: ") && e.contains(want), "{e:?} does not say {want:?}");
    };
    let mut trailing = bytes.clone();
    trailing.push(0);
    bad(&trailing, "1 bytes after the CBOR map");
    bad(&bytes[..bytes.len() - 1], "not CBOR");
    bad(&[0x80], "not a CBOR map");
    bad(&vec![0u8; MAX_EVIDENCE_LEN + 1], "larger than");
    let enc = |v: Cbor| {
        let mut out = Vec::new();
        ciborium::into_writer(&v, &mut out).unwrap();
        out
    };
    let decoded: Cbor = ciborium::from_reader(bytes.as_slice()).unwrap();
    let Cbor::Map(entries) = decoded else { panic!() };
    let without = |k: i128| {
        Cbor::Map(
            entries.iter().filter(|(x, _)| x.as_integer().map(i128::from) != Some(k)).cloned().collect(),
        )
    };
    bad(&enc(without(5)), "no ak_chain (5)");
    let mut extra = entries.clone();
    extra.push((Cbor::Integer(6.into()), Cbor::Null));
    bad(&enc(Cbor::Map(extra)), "unknown key 6");
    let mut dup = entries.clone();
    dup.push(entries[0].clone());
    bad(&enc(Cbor::Map(dup)), "key 1 occurs twice");
    let mut wrong = entries.clone();
    wrong[2].1 = Cbor::Integer(70000.into());
    bad(&enc(Cbor::Map(wrong)), "hash_alg is not a TPM_ALG_ID");
    let mut wrong = entries.clone();
    wrong[3].1 = Cbor::Map(vec![(Cbor::Integer(300.into()), Cbor::Bytes(vec![]))]);
    bad(&enc(Cbor::Map(wrong)), "a PCR index is not an integer 0-255");
    let mut wrong = entries.clone();
    wrong[0].1 = Cbor::Text("attest".into());
    bad(&enc(Cbor::Map(wrong)), "attest is not a byte string");
}

#[test]
fn tpm_quote_cmw_item() {
    let f = fixture();
    let q = good(&f);
    let cbor = q.to_cbor();
    let cmw = crate::agent::evidence::cmw_collection(b"eat", Some((TPM_QUOTE_MEDIA_TYPE, &cbor)));
    assert_eq!(tpm_quote_from_cmw(&cmw).unwrap(), Some(q));
    let plain = crate::agent::evidence::cmw_collection(b"eat", None);
    assert_eq!(tpm_quote_from_cmw(&plain).unwrap(), None);
    let other = crate::agent::evidence::cmw_collection(b"eat", Some(("application/octet-stream", &cbor)));
    let e = tpm_quote_from_cmw(&other).unwrap_err().to_string();
    assert!(e.contains("TPM quote: the tpm item is not application/vnd.brski.tpm-quote+cbor"), "{e}");
    let mut wrong = cmw.clone();
    wrong["tpm"][2] = serde_json::json!(3);
    assert!(tpm_quote_from_cmw(&wrong).unwrap_err().to_string().contains("indicator"));
    wrong["tpm"] = serde_json::json!({"x": 1});
    assert!(tpm_quote_from_cmw(&wrong).is_err());
    wrong["tpm"] = serde_json::json!([TPM_QUOTE_MEDIA_TYPE, "***", 4]);
    assert!(tpm_quote_from_cmw(&wrong).unwrap_err().to_string().contains("not base64url"));
}
