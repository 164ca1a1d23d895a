//! Every published JSON voucher / voucher-request payload decodes to what vectors/README.md says,
//! and survives an encode/decode round trip.

#[path = "voucher/common.rs"]
mod common;

use common::{data, json_vector, pem_der, JSON_VECTORS};
use shared::voucher::{from_json, to_json, Assertion, Kind, Nonce, Strictness, Voucher};
use time::macros::datetime;

const RFC8995_SERIAL: &str = "00-D0-E5-F2-00-02";
const RFC8995_NONCE: &str = "-_XE9zK9q8Ll1qylMtLKeg";

fn text_nonce(s: &str) -> Option<Nonce> {
    Some(Nonce::from_text(s.to_string()))
}

fn assert_nonce_text(v: &Voucher, want: &str) {
    let got = v.nonce.as_ref().expect("nonce present");
    assert_eq!(got.as_text(), Some(want), "nonce kept exactly as transported");
}

#[test]
fn every_vector_decodes_strictly_with_nothing_unknown() {
    for path in JSON_VECTORS {
        let v = json_vector(path);
        assert!(v.unknown_leaves.is_empty(), "{path}: {:?}", v.unknown_leaves);
        assert!(v.serial_number.is_some(), "{path}: serial-number");
    }
}

#[test]
fn every_vector_round_trips() {
    for path in JSON_VECTORS {
        let v = json_vector(path);
        let again = from_json(&to_json(&v), Strictness::Strict).expect("re-decodes");
        // Leaves ignored on input are (rightly) not emitted again.
        let expect = Voucher { ignored_leaves: vec![], ..v.clone() };
        assert_eq!(again, expect, "{path}");
        assert_eq!(
            again.created_on.map(|t| t.offset()),
            v.created_on.map(|t| t.offset()),
            "{path}: offset kept"
        );
    }
}

#[test]
fn rfc8995_pledge_voucher_request() {
    let v = json_vector("rfc8995/pledge-voucher-request.json");
    assert_eq!(v.kind, Kind::Request);
    assert!(!v.legacy_prm_key);
    assert_eq!(v.assertion, Some(Assertion::Proximity));
    assert_eq!(v.serial_number.as_deref(), Some(RFC8995_SERIAL));
    assert_nonce_text(&v, RFC8995_NONCE);
    assert_eq!(v.created_on, Some(datetime!(2021-04-13 17:43:23.747 -04:00)));
    assert_eq!(v.created_on.map(|t| t.offset().whole_hours()), Some(-4));
    let registrar = pem_der("rfc8995/registrar.crt.pem");
    assert_eq!(v.proximity_registrar_cert, Some(registrar));
}

#[test]
fn rfc8995_registrar_voucher_request_carries_the_pvr() {
    let v = json_vector("rfc8995/registrar-voucher-request.json");
    assert_eq!(v.kind, Kind::Request);
    assert_eq!(v.created_on, Some(datetime!(2021-04-13 21:43:23.787 UTC)));
    assert_eq!(v.nonce, text_nonce(RFC8995_NONCE));
    assert_eq!(v.idevid_issuer, None, "pre-rfc8366bis RVR has no idevid-issuer");
    assert_eq!(v.prior_signed_voucher_request, Some(data("rfc8995/pledge-voucher-request.cms.der")));
}

#[test]
fn rfc8995_voucher() {
    let v = json_vector("rfc8995/voucher.json");
    assert_eq!(v.kind, Kind::Voucher);
    assert_eq!(v.assertion, Some(Assertion::Logged));
    assert_eq!(v.serial_number.as_deref(), Some(RFC8995_SERIAL));
    assert_nonce_text(&v, RFC8995_NONCE);
    assert_eq!(v.created_on, Some(datetime!(2021-04-13 17:43:24.589 -04:00)));
    assert_eq!(v.pinned_domain_cert, Some(pem_der("rfc8995/registrar.crt.pem")));
}

#[test]
fn rfc8366bis_example_vouchers() {
    let eph = json_vector("bis/ex-voucher-ephemeral.json");
    assert_eq!(eph.assertion, Some(Assertion::Logged));
    assert_nonce_text(&eph, "base64encodedvalue==");
    assert!(eph.idevid_issuer.is_some() && eph.pinned_domain_cert.is_some());

    let long = json_vector("bis/ex-voucher-long-lived.json");
    assert_eq!(long.assertion, Some(Assertion::Verified));
    assert_eq!(long.domain_cert_revocation_checks, Some(true), "\"true\" accepted");
    assert_eq!(long.expires_on, Some(datetime!(2016-10-21 19:31:42 UTC)));
    assert_eq!(long.last_renewal_date, Some(datetime!(2017-10-07 19:31:42 UTC)));
    assert!(long.nonce.is_none());
    assert!(String::from_utf8(to_json(&long))
        .expect("utf8")
        .contains("\"domain-cert-revocation-checks\":true"));
}

#[test]
fn rfc8366bis_cms_and_jws_examples() {
    let vr = json_vector("bis/vr_00-D0-E5-F2-00-02.json");
    let v = json_vector("bis/voucher_00-D0-E5-F2-00-02.json");
    assert_eq!(vr.assertion, Some(Assertion::Proximity));
    assert_eq!(v.assertion, Some(Assertion::Logged));
    assert_nonce_text(&v, "4vTsppS2CeqBzhEdoifM2g");
    assert_eq!(v.nonce, vr.nonce);
    assert_eq!(v.pinned_domain_cert, vr.proximity_registrar_cert);
    assert_eq!(vr.created_on, Some(datetime!(2022-07-10 17:08:18.598 -04:00)));

    let jws = json_vector("bis/jws-voucher-example.payload.json");
    assert_eq!(jws.assertion, Some(Assertion::Proximity));
    assert_eq!(jws.serial_number.as_deref(), Some("caffe-98745"));
    assert_nonce_text(&jws, "62a2e7693d82fcda2624de58fb6722e5");
    assert_eq!(jws.created_on, Some(datetime!(2025-10-15 00:00:00 UTC)));
}

#[test]
fn jws_voucher_draft_examples() {
    let pvr = json_vector("jws/pvr.payload.json");
    assert_eq!(pvr.kind, Kind::Request);
    assert_eq!(pvr.assertion, None, "the draft's PVR has no assertion");
    assert_eq!(pvr.serial_number.as_deref(), Some("kit-987654321"));
    assert_nonce_text(&pvr, "TauvK+Y/cc2RfIFvpZzfKQ==");
    assert_eq!(pvr.created_on, Some(datetime!(2024-11-29 09:34:16.426 UTC)));

    let rvr = json_vector("jws/rvr.payload.json");
    let issuer = rvr.idevid_issuer.clone().expect("idevid-issuer");
    assert_eq!(issuer.len(), 26);
    assert_eq!(issuer[..6], [0x04, 0x18, 0x30, 0x16, 0x80, 0x14]);
    assert_same_json(&rvr.prior_signed_voucher_request, "jws/pvr.jws.json");

    let voucher = json_vector("jws/voucher.payload.json");
    assert_eq!(voucher.assertion, Some(Assertion::Logged));
    assert_eq!(voucher.nonce, pvr.nonce);
}

/// The prior-signed-voucher-request of a JWS RVR is the PVR's JWS JSON text.
fn assert_same_json(prior: &Option<Vec<u8>>, file: &str) {
    let prior: serde_json::Value =
        serde_json::from_slice(prior.as_deref().expect("prior present")).expect("JWS JSON");
    let expected: serde_json::Value = serde_json::from_slice(&data(file)).expect("file JSON");
    assert_eq!(prior, expected);
}

#[test]
fn brski_prm_examples_use_the_legacy_key() {
    let pvr = json_vector("prm/pvr.payload.json");
    assert_eq!(pvr.kind, Kind::Request);
    assert!(pvr.legacy_prm_key);
    assert_eq!(pvr.assertion, Some(Assertion::AgentProximity));
    assert_eq!(pvr.serial_number.as_deref(), Some("0123456789"));
    assert!(pvr.agent_provided_proximity_registrar_cert.is_some());
    let signed = pvr.agent_signed_data.clone().expect("agent-signed-data");
    assert!(signed.starts_with(b"{\"payload\":"), "agent-signed-data is JWS JSON text");
    assert!(String::from_utf8(to_json(&pvr))
        .expect("utf8")
        .starts_with("{\"ietf-voucher-request-prm:voucher\""));

    let rvr = json_vector("prm/rvr.payload.json");
    assert!(rvr.legacy_prm_key);
    let certs = rvr.agent_sign_cert.clone().expect("agent-sign-cert");
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0][0], 0x30, "DER certificate");
    assert_eq!(rvr.idevid_issuer.as_ref().map(Vec::len), Some(26));
    assert_same_json(&rvr.prior_signed_voucher_request, "prm/pvr.jws.json");
}

#[test]
fn brski_prm_vouchers() {
    let pvr = json_vector("prm/pvr.payload.json");
    let countersigned = json_vector("prm/voucher-countersigned.payload.json");
    assert_eq!(countersigned.kind, Kind::Voucher);
    assert_eq!(countersigned.assertion, Some(Assertion::AgentProximity));
    assert_eq!(countersigned.nonce, pvr.nonce);
    let other_run = json_vector("prm/voucher.payload.json");
    assert_nonce_text(&other_run, "L3IJ6hptHCIQoNxaab9HWA==");
    assert_ne!(other_run.nonce, pvr.nonce);
}

#[test]
fn pinned_domain_cert_in_a_request_is_ignored() {
    let v = json_vector("anima/ex-file-voucher-request.json");
    assert_eq!(v.kind, Kind::Request);
    assert_eq!(v.pinned_domain_cert, None);
    assert_eq!(v.ignored_leaves, ["pinned-domain-cert"]);
    assert_eq!(v.serial_number.as_deref(), Some("JADA123456789"));
    assert!(v.idevid_issuer.is_some());
    assert!(!String::from_utf8(to_json(&v)).expect("utf8").contains("pinned-domain-cert"));
}

#[test]
fn anima_bootstrap_examples() {
    let c = json_vector("anima/ex-file-voucher-request-constrained.json");
    assert_eq!(c.created_on, Some(datetime!(2017-01-01 00:00:02 UTC)));
    assert_nonce_text(&c, "62a2e7693d82fcda2624de58fb6722e5");
    let offline = json_vector("anima/ex-file-voucher-request-offline.json");
    assert!(offline.nonce.is_none() && offline.idevid_issuer.is_some());
    let prior = json_vector("anima/ex-file-voucher-request-prior.json");
    assert!(prior.prior_signed_voucher_request.is_some());
    let prox = json_vector("anima/ex-file-voucher-request-proximity.json");
    assert_eq!(prox.assertion, Some(Assertion::Proximity));
    assert!(prox.proximity_registrar_cert.is_some());
    let voucher = json_vector("anima/example-voucher.json");
    assert_eq!((voucher.kind, voucher.assertion), (Kind::Voucher, Some(Assertion::Logged)));
    let old = json_vector("anima/old-2020-registrar-voucher-request.json");
    assert_nonce_text(&old, "aMjgueKUT-22wVimj6z27Q");
    assert_eq!(old.created_on, Some(datetime!(2020-02-25 23:04:49.054 UTC)));
}
