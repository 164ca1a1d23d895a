//! Malformed or hostile input: each kind of problem gets its own `VoucherError`.

#[path = "voucher/common.rs"]
mod common;

use ciborium::value::Value;
use common::{cbor, hex_file};
use shared::voucher::{from_cbor, from_json, Kind, Strictness, VoucherError, MAX_PAYLOAD_LEN};

use Strictness::{Lenient, Strict};

fn json(text: &str, s: Strictness) -> Result<shared::voucher::Voucher, VoucherError> {
    from_json(text.as_bytes(), s)
}

fn voucher_json(members: &str) -> String {
    format!(r#"{{"ietf-voucher:voucher":{{"serial-number":"JADA123456789"{members}}}}}"#)
}

fn wrong_type(leaf: &str, expected: &'static str) -> VoucherError {
    VoucherError::WrongType { leaf: leaf.into(), expected }
}

#[test]
fn unknown_leaf_is_an_error_when_strict_and_recorded_when_lenient() {
    let text = voucher_json(r#","frobnicate":{"x":1},"assertion":"logged""#);
    assert_eq!(json(&text, Strict), Err(VoucherError::UnknownLeaf("frobnicate".into())));
    let v = json(&text, Lenient).expect("lenient decode");
    assert_eq!(v.unknown_leaves, ["frobnicate"]);
    assert_eq!(v.serial_number.as_deref(), Some("JADA123456789"));
    assert!(v.assertion.is_some());
    let msg = json(&text, Strict).expect_err("strict").to_string();
    assert_eq!(msg, "unknown leaf \"frobnicate\"");
}

#[test]
fn request_only_leaf_is_unknown_in_a_voucher() {
    let text = voucher_json(r#","proximity-registrar-cert":"AQID""#);
    let err = json(&text, Strict);
    assert_eq!(err, Err(VoucherError::UnknownLeaf("proximity-registrar-cert".into())));
    let v = json(&text, Lenient).expect("lenient");
    assert_eq!(v.unknown_leaves, ["proximity-registrar-cert"]);
    assert_eq!(v.proximity_registrar_cert, None);
}

#[test]
fn duplicated_member_is_refused_in_both_modes() {
    let text = voucher_json(r#","nonce":"AAAAAAAAAAA=","nonce":"BBBBBBBBBBB=""#);
    for mode in [Strict, Lenient] {
        assert_eq!(json(&text, mode), Err(VoucherError::DuplicateLeaf("nonce".into())));
    }
    let top = r#"{"ietf-voucher:voucher":{},"ietf-voucher:voucher":{}}"#;
    assert_eq!(json(top, Lenient), Err(VoucherError::DuplicateLeaf("ietf-voucher:voucher".into())));
}

#[test]
fn top_level_must_be_one_known_member() {
    let two = r#"{"ietf-voucher:voucher":{},"ietf-voucher-request:voucher":{}}"#;
    assert_eq!(json(two, Lenient), Err(VoucherError::TopLevelCount(2)));
    assert_eq!(json("{}", Lenient), Err(VoucherError::TopLevelCount(0)));
    let wrong = r#"{"ietf-voucher:voucher-request":{}}"#;
    assert_eq!(
        json(wrong, Lenient),
        Err(VoucherError::WrongTopLevel("\"ietf-voucher:voucher-request\"".into()))
    );
    assert_eq!(json("[]", Lenient), Err(wrong_type("(top level)", "object")));
    let not_object = r#"{"ietf-voucher:voucher":"x"}"#;
    assert_eq!(json(not_object, Lenient), Err(wrong_type("ietf-voucher:voucher", "object")));
}

#[test]
fn wrong_json_types_name_the_leaf() {
    let cases = [
        (r#","created-on":5"#, "created-on", "RFC 3339 date-and-time string"),
        (r#","domain-cert-revocation-checks":"yes""#, "domain-cert-revocation-checks", "boolean"),
        (r#","assertion":1"#, "assertion", "enumeration name string"),
        (r#","pinned-domain-cert":["AQ=="]"#, "pinned-domain-cert", "base64 string"),
        (r#","extensions":"one""#, "extensions", "array of strings or unsigned integers"),
    ];
    for (member, leaf, expected) in cases {
        assert_eq!(json(&voucher_json(member), Lenient), Err(wrong_type(leaf, expected)), "{member}");
    }
    let serial = r#"{"ietf-voucher:voucher":{"serial-number":5}}"#;
    let err = json(serial, Lenient).expect_err("number serial");
    assert_eq!(err, wrong_type("serial-number", "string"));
    assert_eq!(err.to_string(), "leaf \"serial-number\" has the wrong type: expected string");
}

#[test]
fn bad_values_have_their_own_errors() {
    let date = json(&voucher_json(r#","created-on":"2021-13-45T00:00:00Z""#), Lenient);
    assert_eq!(
        date,
        Err(VoucherError::InvalidDate { leaf: "created-on".into(), value: "2021-13-45T00:00:00Z".into() })
    );
    let no_zone = json(&voucher_json(r#","expires-on":"2021-01-01T00:00:00""#), Lenient);
    assert!(matches!(no_zone, Err(VoucherError::InvalidDate { .. })));
    let enumeration = json(&voucher_json(r#","assertion":"trusted""#), Lenient);
    assert_eq!(
        enumeration,
        Err(VoucherError::InvalidEnum { leaf: "assertion".into(), value: "\"trusted\"".into() })
    );
    let b64 = json(&voucher_json(r#","pinned-domain-cert":"***""#), Lenient);
    assert_eq!(b64, Err(VoucherError::InvalidBase64 { leaf: "pinned-domain-cert".into() }));
    assert!(matches!(json("{\"ietf-voucher:voucher\":", Lenient), Err(VoucherError::MalformedJson(_))));
}

#[test]
fn lenient_json_forms_are_accepted() {
    let text = voucher_json(concat!(
        r#","domain-cert-revocation-checks":"false","#,
        r#""pinned-domain-cert":"+\/8","idevid-issuer":"-_8=","#,
        r#""extensions":["example-my-extension",305823299950],"#,
        r#""extension:example-my-extension":{"my-ext-leaf1":"data"}"#
    ));
    let v = json(&text, Strict).expect("decodes");
    assert_eq!(v.domain_cert_revocation_checks, Some(false));
    assert_eq!(v.pinned_domain_cert, Some(vec![0xfb, 0xff]), "\\/ escape and no padding");
    assert_eq!(v.idevid_issuer, Some(vec![0xfb, 0xff]), "base64url");
    assert_eq!(v.extensions.as_ref().map(Vec::len), Some(2));
    assert_eq!(v.extension_data["example-my-extension"]["my-ext-leaf1"], "data");
}

#[test]
fn agent_sign_cert_accepts_a_single_string() {
    let text = r#"{"ietf-voucher-request:voucher":{"serial-number":"x","agent-sign-cert":"MAA="}}"#;
    let v = json(text, Strict).expect("decodes");
    assert_eq!(v.agent_sign_cert, Some(vec![vec![0x30, 0x00]]));
    assert_eq!(v.kind, Kind::Request);
}

#[test]
fn oversized_payloads_are_refused_before_parsing() {
    let small = voucher_json("");
    let mut exact = small.clone().into_bytes();
    exact.resize(MAX_PAYLOAD_LEN, b' ');
    assert!(from_json(&exact, Strict).is_ok(), "exactly the limit is fine");
    exact.push(b' ');
    let too_large = VoucherError::TooLarge { len: MAX_PAYLOAD_LEN + 1, max: MAX_PAYLOAD_LEN };
    assert_eq!(from_json(&exact, Strict), Err(too_large.clone()));
    assert_eq!(from_cbor(&exact, Strict), Err(too_large));
}

fn voucher_cbor(entries: Vec<(Value, Value)>) -> Vec<u8> {
    let mut inner = vec![(Value::from(11u64), Value::Text("JADA123456789".into()))];
    inner.extend(entries);
    cbor(&Value::Map(vec![(Value::from(2451u64), Value::Map(inner))]))
}

#[test]
fn unknown_sid_is_an_error_when_strict_and_recorded_when_lenient() {
    let bytes = voucher_cbor(vec![(Value::from(99u64), Value::Bool(true))]);
    let err = from_cbor(&bytes, Strict).expect_err("unknown SID");
    assert_eq!(err, VoucherError::UnknownSid { sid: 2550, delta: 99, kind: Kind::Voucher });
    assert_eq!(err.to_string(), "unknown SID 2550 (delta 99) in voucher");
    let v = from_cbor(&bytes, Lenient).expect("lenient");
    assert_eq!(v.unknown_leaves, ["sid:2550"]);
    assert_eq!(v.serial_number.as_deref(), Some("JADA123456789"));
}

#[test]
fn a_request_delta_is_unknown_in_a_voucher() {
    // delta 16 is agent-signed-data in a request; the voucher module ends at 15.
    let bytes = voucher_cbor(vec![(Value::from(16u64), Value::Bytes(vec![1]))]);
    let err = from_cbor(&bytes, Strict);
    assert_eq!(err, Err(VoucherError::UnknownSid { sid: 2467, delta: 16, kind: Kind::Voucher }));
}

#[test]
fn duplicate_cbor_keys_are_refused() {
    let same = voucher_cbor(vec![(Value::from(11u64), Value::Text("OTHER".into()))]);
    assert_eq!(from_cbor(&same, Lenient), Err(VoucherError::DuplicateLeaf("serial-number".into())));
    let mixed = voucher_cbor(vec![(Value::Text("serial-number".into()), Value::Text("X".into()))]);
    assert_eq!(from_cbor(&mixed, Lenient), Err(VoucherError::DuplicateLeaf("serial-number".into())));
}

#[test]
fn trailing_and_truncated_cbor() {
    let good = hex_file("cbrski/voucher-nonsigned.hex");
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0xf6, 0xf6]);
    assert_eq!(from_cbor(&trailing, Lenient), Err(VoucherError::TrailingData { extra: 2 }));
    for cut in [1, 10, good.len() - 1] {
        assert_eq!(from_cbor(&good[..cut], Lenient), Err(VoucherError::Truncated), "cut at {cut}");
    }
    assert_eq!(from_cbor(&[], Lenient), Err(VoucherError::Truncated));
    assert!(matches!(from_cbor(&[0xff], Lenient), Err(VoucherError::MalformedCbor(_))));
}

#[test]
fn wrong_cbor_top_level() {
    let wrong = cbor(&Value::Map(vec![(Value::from(2452u64), Value::Map(vec![]))]));
    assert_eq!(from_cbor(&wrong, Lenient), Err(VoucherError::WrongTopLevel("2452".into())));
    let two = cbor(&Value::Map(vec![
        (Value::from(2451u64), Value::Map(vec![])),
        (Value::from(2501u64), Value::Map(vec![])),
    ]));
    assert_eq!(from_cbor(&two, Lenient), Err(VoucherError::TopLevelCount(2)));
    let array = cbor(&Value::Array(vec![]));
    assert_eq!(from_cbor(&array, Lenient), Err(wrong_type("(top level)", "map")));
}

#[test]
fn wrong_cbor_types_and_values() {
    let serial_bytes = cbor(&Value::Map(vec![(
        Value::from(2451u64),
        Value::Map(vec![(Value::from(11u64), Value::Bytes(b"JADA".to_vec()))]),
    )]));
    assert_eq!(from_cbor(&serial_bytes, Lenient), Err(wrong_type("serial-number", "text string")));
    let flag = voucher_cbor(vec![(Value::from(3u64), Value::from(1u64))]);
    assert_eq!(from_cbor(&flag, Lenient), Err(wrong_type("domain-cert-revocation-checks", "boolean")));
    let cert_text = voucher_cbor(vec![(Value::from(8u64), Value::Text("MAA=".into()))]);
    assert_eq!(from_cbor(&cert_text, Lenient), Err(wrong_type("pinned-domain-cert", "byte string")));
    let date = voucher_cbor(vec![(Value::from(2u64), Value::Text("06/12/2022".into()))]);
    assert!(matches!(from_cbor(&date, Lenient), Err(VoucherError::InvalidDate { .. })));
    let assertion = voucher_cbor(vec![(Value::from(1u64), Value::from(7u64))]);
    assert_eq!(
        from_cbor(&assertion, Lenient),
        Err(VoucherError::InvalidEnum { leaf: "assertion".into(), value: "7".into() })
    );
    let by_name = voucher_cbor(vec![(Value::from(1u64), Value::Text("logged".into()))]);
    assert!(from_cbor(&by_name, Strict).is_ok(), "enum name accepted in CBOR");
}

#[test]
fn hostile_lengths_and_nesting_fail_cleanly() {
    // Declared lengths of 2^64-1 (byte string, array, map, text) with no data behind them.
    for h in
        ["5bffffffffffffffff", "9bffffffffffffffff", "a11909939bffffffffffffffff", "7bffffffffffffffff00"]
    {
        let bytes = hex::decode(h).expect("hex");
        assert_eq!(from_cbor(&bytes, Lenient), Err(VoucherError::Truncated), "{h}");
    }
    let deep_cbor = hex::decode("81".repeat(1000)).expect("hex");
    assert!(matches!(from_cbor(&deep_cbor, Lenient), Err(VoucherError::MalformedCbor(_))));
    let deep_json =
        format!(r#"{{"ietf-voucher:voucher":{{"extension:x":{}1{}}}}}"#, "[".repeat(500), "]".repeat(500));
    assert!(matches!(from_json(deep_json.as_bytes(), Lenient), Err(VoucherError::MalformedJson(_))));
}
