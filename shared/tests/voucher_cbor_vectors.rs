//! The cBRSKI CBOR payloads decode to what vectors/README.md says, re-encode byte for byte,
//! and voucher data crosses between JSON and CBOR unchanged.

#[path = "voucher/common.rs"]
mod common;

use ciborium::value::Value;
use common::{cbor, cbor_vector, hex_file, json_vector, CBOR_VECTORS, JSON_VECTORS};
use shared::voucher::{
    decode, encode, from_cbor, to_cbor, Assertion, Encoding, Extension, Kind, Nonce, Strictness, Voucher,
};
use time::macros::datetime;

/// SubjectPublicKeyInfo of cbrski-cose-examples/registrar.crt.pem (openssl x509 -pubkey).
const REGISTRAR_SPKI: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200042030855be8\
46910b3ecb15caf8572d3eb565bdc654a15efaf6edebaa8b9e1608c5c910c93a20868fc8504d370f1b26fa9759f67983\
bb78863eda9acbea5124f6";

fn bytes_nonce(v: &Voucher) -> Vec<u8> {
    let nonce = v.nonce.as_ref().expect("nonce present");
    nonce.as_bytes().expect("CBOR nonce is in byte form").to_vec()
}

#[test]
fn voucher_nonsigned() {
    let v = cbor_vector("cbrski/voucher-nonsigned.hex");
    assert_eq!(v.kind, Kind::Voucher);
    assert_eq!(v.assertion, Some(Assertion::Proximity));
    assert_eq!(v.created_on, Some(datetime!(2022-12-06 20:23:30.708 UTC)));
    assert_eq!(v.domain_cert_revocation_checks, Some(false));
    assert_eq!(bytes_nonce(&v), hex::decode("57EED786AD404907").expect("hex"));
    assert_eq!(v.serial_number.as_deref(), Some("JADA123456789"));
    let cert = v.pinned_domain_cert.expect("pinned-domain-cert");
    assert_eq!((cert.len(), cert[0]), (0x247, 0x30));
}

#[test]
fn pvr_nonsigned() {
    let v = cbor_vector("cbrski/pvr-nonsigned.hex");
    assert_eq!(v.kind, Kind::Request);
    assert_eq!(v.assertion, Some(Assertion::Proximity));
    assert_eq!(bytes_nonce(&v), hex::decode("23BFBBC9C2BCF213").expect("hex"));
    assert_eq!(v.proximity_registrar_pubk, Some(hex::decode(REGISTRAR_SPKI).expect("hex")));
    assert_eq!(v.serial_number.as_deref(), Some("JADA123456789"));
}

#[test]
fn rvr_nonsigned() {
    let v = cbor_vector("cbrski/rvr-nonsigned.hex");
    assert_eq!(v.kind, Kind::Request);
    assert_eq!(v.assertion, Some(Assertion::Proximity));
    assert_eq!(v.created_on, Some(datetime!(2022-12-06 20:04:15.754 UTC)));
    let issuer = hex::decode("041830168014CB8D98CA74C51B58DDE7ACEF869A9443A8D666A6").expect("hex");
    assert_eq!(v.idevid_issuer, Some(issuer));
    assert_eq!(bytes_nonce(&v), hex::decode("23BFBBC9C2BCF213").expect("hex"));
    assert_eq!(v.prior_signed_voucher_request, Some(hex_file("cbrski/pvr.hex")));
    assert_eq!(v.serial_number.as_deref(), Some("JADA123456789"));
}

#[test]
fn the_published_voucher_nonce_is_not_the_pvr_nonce() {
    let voucher = cbor_vector("cbrski/voucher-nonsigned.hex");
    let pvr = cbor_vector("cbrski/pvr-nonsigned.hex");
    assert_ne!(voucher.nonce, pvr.nonce, "examples were generated in separate runs");
}

#[test]
fn cbor_vectors_re_encode_byte_for_byte() {
    for path in CBOR_VECTORS {
        let bytes = hex_file(path);
        let v = from_cbor(&bytes, Strictness::Strict).expect("decodes");
        assert_eq!(hex::encode(to_cbor(&v)), hex::encode(&bytes), "{path}");
    }
}

#[test]
fn json_vectors_round_trip_through_cbor() {
    for path in JSON_VECTORS {
        let v = json_vector(path);
        let back = decode(&encode(&v, Encoding::Cbor), Encoding::Cbor, Strictness::Strict)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        // The legacy PRM key has no SID, and ignored leaves are not re-emitted.
        let expect = Voucher { legacy_prm_key: false, ignored_leaves: vec![], ..v };
        assert_eq!(back, expect, "{path}");
    }
}

#[test]
fn cbor_vectors_round_trip_through_json() {
    for path in CBOR_VECTORS {
        let v = cbor_vector(path);
        let back = decode(&encode(&v, Encoding::Json), Encoding::Json, Strictness::Strict).expect("decodes");
        assert_eq!(back, v, "{path}");
        let nonce = back.nonce.expect("nonce");
        assert!(nonce.as_text().is_some(), "JSON nonce is text: {nonce:?}");
    }
}

#[test]
fn generated_voucher_crosses_formats_with_a_bytes_nonce() {
    let mut v = Voucher::new(Kind::Voucher);
    v.assertion = Some(Assertion::Logged);
    v.created_on = Some(datetime!(2026-01-02 03:04:05.678 +01:00));
    v.expires_on = Some(datetime!(2026-02-02 03:04:05 UTC));
    v.nonce = Some(Nonce::from_bytes(&[0xfb, 0xf5, 0xc4, 0xf7, 0x32, 0xbd, 0xab, 0xc2]));
    v.serial_number = Some("JADA123456789".into());
    v.pinned_domain_pubk_sha256 = Some(vec![7; 32]);
    v.est_domain = Some("https://est.example.com".into());
    v.manufacturer_proprietary = Some(vec![0xa0]);
    let json = encode(&v, Encoding::Json);
    assert!(String::from_utf8(json.clone()).expect("utf8").contains("\"nonce\":\"+/XE9zK9q8I=\""));
    let from_json = decode(&json, Encoding::Json, Strictness::Strict).expect("json");
    let cbor = encode(&from_json, Encoding::Cbor);
    let from_cbor = decode(&cbor, Encoding::Cbor, Strictness::Strict).expect("cbor");
    assert_eq!(from_cbor, v);
    assert_eq!(
        from_cbor.nonce.as_ref().and_then(Nonce::as_bytes),
        v.nonce.as_ref().and_then(Nonce::as_bytes)
    );
    assert_eq!(from_cbor.created_on.map(|t| t.offset().whole_hours()), Some(1));
}

#[test]
fn names_and_sids_may_be_mixed() {
    // {"ietf-voucher-request:voucher": {"assertion": "proximity", 13: "JADA", 47(2508): h'0102'}}
    let inner = Value::Map(vec![
        (Value::Text("assertion".into()), Value::Text("proximity".into())),
        (Value::from(13u64), Value::Text("JADA".into())),
        (Value::Tag(47, Box::new(Value::from(2508u64))), Value::Bytes(vec![1, 2])),
    ]);
    let top = Value::Map(vec![(Value::Text("ietf-voucher-request:voucher".into()), inner)]);
    let buf = cbor(&top);
    let v = from_cbor(&buf, Strictness::Strict).expect("mixed keys decode");
    assert_eq!(v.kind, Kind::Request);
    assert_eq!(v.assertion, Some(Assertion::Proximity));
    assert_eq!(v.serial_number.as_deref(), Some("JADA"));
    assert_eq!(v.nonce, Some(Nonce::from_bytes(&[1, 2])));
}

#[test]
fn extension_sub_maps_are_kept() {
    let ext = Value::Map(vec![(Value::from(1u64), Value::Text("my-ext-leaf1-data".into()))]);
    let inner = Value::Map(vec![
        (Value::from(11u64), Value::Text("JADA123456789".into())),
        (Value::from(15u64), Value::Array(vec![Value::from(305_823_299_950u64)])),
        (Value::Tag(47, Box::new(Value::from(305_823_299_950u64))), ext.clone()),
    ]);
    let top = Value::Map(vec![(Value::from(2451u64), inner)]);
    let buf = cbor(&top);
    let v = from_cbor(&buf, Strictness::Strict).expect("extension decodes");
    assert_eq!(v.extensions, Some(vec![Extension::Sid(305_823_299_950)]));
    assert_eq!(v.cbor_extension_data.get(&Extension::Sid(305_823_299_950)), Some(&ext));
    assert_eq!(to_cbor(&v), buf, "deterministic re-encoding");
}
