//! Fixed trust material for the fuzz targets, built once from the published test vectors
//! (testdata/vectors) so that inputs which parse also run the signature and path checks, plus
//! the payload checks every decoded voucher goes through.
#![allow(dead_code)]

use shared::pki::certs_from_pem;
use shared::signed::Trust;
use shared::voucher::{
    check_request, check_voucher, from_cbor, from_json, pin, to_cbor, to_json, Expectations, Strictness,
    Voucher,
};
use time::macros::datetime;
use time::OffsetDateTime;
use x509_cert::Certificate;

/// The bytes of a file under testdata/vectors, embedded at compile time.
macro_rules! vector {
    ($rel:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/vectors/", $rel)).as_slice()
    };
}

/// Certificates from PEM files; a file that does not parse contributes nothing (never panics).
pub fn certs(files: &[&[u8]]) -> Vec<Certificate> {
    files.iter().flat_map(|pem| certs_from_pem(pem).unwrap_or_default()).collect()
}

/// RFC 8995 Appendix C (vendor CA, registrar CA) as of 2021-04-14: the CMS vectors verify.
pub fn cms_trust() -> Trust {
    Trust {
        anchors: certs(&[
            vector!("rfc8995-appendix-c/vendor-ca.crt.pem"),
            vector!("rfc8995-appendix-c/registrar-ca.crt.pem"),
        ]),
        at: RFC8995_AT,
    }
}

/// draft-ietf-anima-jws-voucher signer and CA certificates as of 2025-01-01.
pub fn jws_trust() -> Trust {
    Trust {
        anchors: certs(&[
            vector!("jws-voucher/voucher-signer.pem"),
            vector!("jws-voucher/pvr-signer.pem"),
            vector!("jws-voucher/rvr-signer.pem"),
            vector!("rfc8995-appendix-c/vendor-ca.crt.pem"),
        ]),
        at: datetime!(2025-01-01 00:00 UTC),
    }
}

/// cBRSKI COSE examples: the MASA CA signs vouchers directly; valid from 2022-12-09.
pub fn cose_trust() -> Trust {
    Trust {
        anchors: certs(&[
            vector!("cbrski-cose-examples/masa_ca.crt.pem"),
            vector!("cbrski-cose-examples/registrar.crt.pem"),
            vector!("cbrski-cose-examples/pledge.crt.pem"),
        ]),
        at: datetime!(2023-01-01 00:00 UTC),
    }
}

/// Verification time of the RFC 8995 Appendix C vectors.
pub const RFC8995_AT: OffsetDateTime = datetime!(2021-04-14 00:00 UTC);

/// Runs what a receiver does with decoded voucher data: the data checks, the pin, and
/// re-encoding in both encodings (our own output must decode again without panicking).
pub fn exercise_voucher(v: &Voucher) {
    let expect = Expectations { now: Some(RFC8995_AT), require_nonce: true, ..Default::default() };
    let _ = check_voucher(v, &expect);
    let _ = check_request(v);
    let _ = pin(v);
    let _ = from_json(&to_json(v), Strictness::Strict);
    let _ = from_cbor(&to_cbor(v), Strictness::Strict);
}
