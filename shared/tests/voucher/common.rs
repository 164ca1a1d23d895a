//! Helpers shared by the integration tests: reading the copied vectors.
#![allow(dead_code)]

use base64::Engine;
use shared::voucher::{from_cbor, from_json, Strictness, Voucher};

/// Bytes of `tests/data/<path>`.
pub(crate) fn data(path: &str) -> Vec<u8> {
    // Test data lives in testdata/vectors; these short names map onto its folders.
    let (dir, file) = path.split_once('/').expect("dir/file");
    let dir = match dir {
        "anima" => "anima-bootstrap-repo",
        "bis" => "rfc8366bis-examples",
        "cbrski" => "cbrski-cose-examples",
        "jws" => "jws-voucher",
        "prm" => "brski-prm-examples",
        "rfc8995" => "rfc8995-appendix-c",
        other => panic!("unknown vector folder {other}"),
    };
    let full = format!("{}/../testdata/vectors/{dir}/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

/// A hex dump file (line-wrapped) as bytes.
pub(crate) fn hex_file(path: &str) -> Vec<u8> {
    let text: String = String::from_utf8(data(path)).expect("hex file is text").split_whitespace().collect();
    hex::decode(text).expect("valid hex")
}

/// The DER of the first PEM block of a file.
pub(crate) fn pem_der(path: &str) -> Vec<u8> {
    let text = String::from_utf8(data(path)).expect("PEM is text");
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).expect("PEM base64")
}

/// Serializes a hand-built CBOR value.
pub(crate) fn cbor(value: &ciborium::value::Value) -> Vec<u8> {
    let mut buf = Vec::new();
    ciborium::ser::into_writer(value, &mut buf).expect("serialize");
    buf
}

/// Strictly decodes a JSON vector.
pub(crate) fn json_vector(path: &str) -> Voucher {
    from_json(&data(path), Strictness::Strict).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Strictly decodes a CBOR hex vector.
pub(crate) fn cbor_vector(path: &str) -> Voucher {
    from_cbor(&hex_file(path), Strictness::Strict).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every unsigned JSON payload among the vectors.
pub(crate) const JSON_VECTORS: &[&str] = &[
    "rfc8995/pledge-voucher-request.json",
    "rfc8995/registrar-voucher-request.json",
    "rfc8995/voucher.json",
    "bis/ex-voucher-ephemeral.json",
    "bis/ex-voucher-long-lived.json",
    "bis/jws-voucher-example.payload.json",
    "bis/voucher_00-D0-E5-F2-00-02.json",
    "bis/vr_00-D0-E5-F2-00-02.json",
    "jws/pvr.payload.json",
    "jws/rvr.payload.json",
    "jws/voucher.payload.json",
    "prm/pvr.payload.json",
    "prm/rvr.payload.json",
    "prm/voucher-countersigned.payload.json",
    "prm/voucher.payload.json",
    "anima/ex-file-voucher-request-constrained.json",
    "anima/ex-file-voucher-request-offline.json",
    "anima/ex-file-voucher-request-prior.json",
    "anima/ex-file-voucher-request-proximity.json",
    "anima/ex-file-voucher-request.json",
    "anima/example-voucher.json",
    "anima/old-2020-pledge-voucher-request.json",
    "anima/old-2020-registrar-voucher-request.json",
];

/// Every unsigned CBOR payload among the vectors (cBRSKI).
pub(crate) const CBOR_VECTORS: &[&str] =
    &["cbrski/pvr-nonsigned.hex", "cbrski/rvr-nonsigned.hex", "cbrski/voucher-nonsigned.hex"];
