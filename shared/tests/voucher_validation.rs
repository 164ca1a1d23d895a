//! The pledge's checks on a voucher (voucher.md §2) and the request sanity check.

#[path = "voucher/common.rs"]
mod common;

use common::{cbor_vector, json_vector};
use sha2::{Digest, Sha256};
use shared::voucher::{
    check_request, check_voucher, pin, Assertion, Expectations, Kind, Nonce, Pin, Voucher, VoucherError,
};
use time::macros::datetime;
use time::OffsetDateTime;

const SPKI: &[u8] = b"\x30\x59 pretend DER SubjectPublicKeyInfo";
const KEY_ID: [u8; 20] = [0x11; 20];

/// The RFC 8995 voucher and what its pledge expects.
fn rfc8995() -> (Voucher, Expectations) {
    let v = json_vector("rfc8995/voucher.json");
    let e = Expectations {
        nonce: Some(Nonce::from_text("-_XE9zK9q8Ll1qylMtLKeg".into())),
        serial_number: Some("00-D0-E5-F2-00-02".into()),
        now: Some(datetime!(2021-04-14 00:00 UTC)),
        acceptable_assertions: vec![Assertion::Logged, Assertion::Verified],
        require_nonce: true,
        ..Expectations::default()
    };
    (v, e)
}

fn aki_forms() -> [Vec<u8>; 3] {
    let bare = KEY_ID.to_vec();
    let seq = [&[0x30, 0x16, 0x80, 0x14][..], &KEY_ID].concat();
    let full = [&[0x04, 0x18][..], &seq].concat();
    [full, seq, bare]
}

#[test]
fn rfc8995_voucher_is_accepted_and_pins_the_registrar_cert() {
    let (v, e) = rfc8995();
    assert_eq!(check_voucher(&v, &e), Ok(()));
    assert!(matches!(pin(&v), Some(Pin::Cert(c)) if Some(&c) == v.pinned_domain_cert.as_ref()));
}

#[test]
fn nonce_must_match_the_request() {
    let (v, mut e) = rfc8995();
    e.nonce = Some(Nonce::from_text("4vTsppS2CeqBzhEdoifM2g".into()));
    let err = check_voucher(&v, &e).expect_err("other nonce");
    assert_eq!(err, VoucherError::NonceMismatch);
    assert_eq!(err.to_string(), "voucher nonce does not match the request");
}

#[test]
fn nonce_matches_across_forms() {
    let (v, mut e) = rfc8995();
    let raw = Nonce::from_text("-_XE9zK9q8Ll1qylMtLKeg".into()).decoded().expect("base64url");
    e.nonce = Some(Nonce::from_bytes(&raw));
    assert_eq!(check_voucher(&v, &e), Ok(()));
}

#[test]
fn cbrski_voucher_is_rejected_by_the_pvr_sender() {
    let v = cbor_vector("cbrski/voucher-nonsigned.hex");
    let pvr = cbor_vector("cbrski/pvr-nonsigned.hex");
    let e = Expectations { nonce: pvr.nonce, ..Expectations::default() };
    assert_eq!(check_voucher(&v, &e), Err(VoucherError::NonceMismatch));
}

#[test]
fn nonceless_voucher_needs_a_clock() {
    let (mut v, e) = rfc8995();
    v.nonce = None;
    assert_eq!(check_voucher(&v, &e), Err(VoucherError::MissingNonce));
    let relaxed = Expectations { require_nonce: false, ..e };
    assert_eq!(check_voucher(&v, &relaxed), Ok(()));
}

#[test]
fn serial_number_must_match() {
    let (v, mut e) = rfc8995();
    e.serial_number = Some("00-D0-E5-F2-00-03".into());
    assert_eq!(
        check_voucher(&v, &e),
        Err(VoucherError::SerialMismatch {
            expected: "00-D0-E5-F2-00-03".into(),
            found: "00-D0-E5-F2-00-02".into()
        })
    );
    let (mut v, e) = rfc8995();
    v.serial_number = None;
    assert_eq!(check_voucher(&v, &e), Err(VoucherError::MissingSerialNumber));
}

#[test]
fn expired_voucher_is_refused() {
    let (mut v, mut e) = rfc8995();
    let expires_on = datetime!(2021-04-20 00:00 UTC);
    v.expires_on = Some(expires_on);
    assert_eq!(check_voucher(&v, &e), Ok(()), "nonce and expires-on together are allowed");
    let now = datetime!(2021-04-20 00:00:01 UTC);
    e.now = Some(now);
    assert_eq!(check_voucher(&v, &e), Err(VoucherError::Expired { expires_on, now }));
    e.now = None;
    assert_eq!(check_voucher(&v, &e), Ok(()), "a clockless pledge skips time checks");
}

#[test]
fn created_on_is_informational_even_in_the_future() {
    let (v, mut e) = rfc8995();
    let created_on: OffsetDateTime = v.created_on.expect("created-on");
    e.now = Some(created_on - time::Duration::days(30));
    assert_eq!(check_voucher(&v, &e), Ok(()), "RFC 8366 §5.3: created-on is informational");
}

#[test]
fn assertion_must_be_acceptable() {
    let (v, mut e) = rfc8995();
    e.acceptable_assertions = vec![Assertion::Verified];
    let err = check_voucher(&v, &e).expect_err("logged not accepted");
    assert_eq!(err, VoucherError::UnacceptableAssertion(Assertion::Logged));
    assert_eq!(err.to_string(), "voucher assertion \"logged\" is not acceptable");
    let (mut v, e) = rfc8995();
    v.assertion = None;
    assert_eq!(check_voucher(&v, &e), Err(VoucherError::MissingAssertion));
    let any = Expectations { acceptable_assertions: vec![], ..e };
    assert_eq!(check_voucher(&v, &any), Ok(()));
}

#[test]
fn idevid_issuer_compares_key_ids_in_every_form() {
    let (mut v, mut e) = rfc8995();
    for theirs in aki_forms() {
        for ours in aki_forms() {
            v.idevid_issuer = Some(theirs.clone());
            e.idevid_issuer = Some(ours);
            assert_eq!(check_voucher(&v, &e), Ok(()), "{}", hex::encode(&theirs));
        }
    }
    e.idevid_issuer = Some([0x22; 20].to_vec());
    assert_eq!(check_voucher(&v, &e), Err(VoucherError::IdevidIssuerMismatch));
}

#[test]
fn cbrski_rvr_idevid_issuer_matches_the_pledge_aki() {
    let rvr = cbor_vector("cbrski/rvr-nonsigned.hex");
    let mut v = Voucher { kind: Kind::Voucher, ..rvr };
    v.pinned_domain_pubk = Some(SPKI.to_vec());
    // AKI of cbrski-cose-examples/pledge.crt.pem as openssl prints it.
    let aki = hex::decode("CB8D98CA74C51B58DDE7ACEF869A9443A8D666A6").expect("hex");
    let e = Expectations { idevid_issuer: Some(aki), ..Expectations::default() };
    assert_eq!(check_voucher(&v, &e), Ok(()));
}

#[test]
fn a_pin_is_required() {
    let (mut v, e) = rfc8995();
    v.pinned_domain_cert = None;
    assert_eq!(check_voucher(&v, &e), Err(VoucherError::MissingPin));
    assert_eq!(pin(&v), None);
}

#[test]
fn pubk_sha256_pin_matches_the_registrar_key() {
    let (mut v, mut e) = rfc8995();
    let hash: [u8; 32] = Sha256::digest(SPKI).into();
    v.pinned_domain_pubk_sha256 = Some(hash.to_vec());
    v.pinned_domain_pubk = Some(b"some other key".to_vec());
    assert_eq!(pin(&v), Some(Pin::PubkSha256(hash)), "sha256 pin has priority");
    e.registrar_spki = Some(SPKI.to_vec());
    assert_eq!(check_voucher(&v, &e), Ok(()));
    e.registrar_spki = Some(b"\x30\x59 another key".to_vec());
    assert_eq!(check_voucher(&v, &e), Err(VoucherError::PinMismatch("pinned-domain-pubk-sha256")));
    v.pinned_domain_pubk_sha256 = Some(vec![0; 31]);
    assert!(matches!(check_voucher(&v, &e), Err(VoucherError::MalformedPin { .. })));
}

#[test]
fn pubk_pin_matches_the_registrar_key() {
    let (mut v, mut e) = rfc8995();
    v.pinned_domain_pubk = Some(SPKI.to_vec());
    assert_eq!(pin(&v), Some(Pin::Pubk(SPKI.to_vec())), "pubk before cert");
    e.registrar_spki = Some(SPKI.to_vec());
    assert_eq!(check_voucher(&v, &e), Ok(()));
    e.registrar_spki = Some(b"other".to_vec());
    assert_eq!(check_voucher(&v, &e), Err(VoucherError::PinMismatch("pinned-domain-pubk")));
}

#[test]
fn kinds_are_checked() {
    let (v, e) = rfc8995();
    let pvr = json_vector("rfc8995/pledge-voucher-request.json");
    assert_eq!(
        check_voucher(&pvr, &e),
        Err(VoucherError::WrongKind { expected: Kind::Voucher, found: Kind::Request })
    );
    assert_eq!(check_request(&pvr), Ok(()));
    assert_eq!(
        check_request(&v),
        Err(VoucherError::WrongKind { expected: Kind::Request, found: Kind::Voucher })
    );
    let empty = Voucher::new(Kind::Request);
    assert_eq!(check_request(&empty), Err(VoucherError::MissingSerialNumber));
}
