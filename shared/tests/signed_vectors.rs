//! Every published signed object in testdata/vectors verifies (or fails) as its README says,
//! through the generic CMS / JWS / COSE layer.

mod common;
use common::*;
use shared::signed::cms::{CmsSigned, ID_CT_ANIMA_JSON_VOUCHER};
use shared::signed::cose::CoseSigned;
use shared::signed::jws::Jws;
use shared::signed::{SignatureError, Trust};

const CMS_TYPES: [const_oid::ObjectIdentifier; 2] =
    [ID_CT_ANIMA_JSON_VOUCHER, const_oid::db::rfc5911::ID_DATA];

fn trust(rel: &str, when: &str) -> Trust {
    Trust { anchors: certs(rel), at: at(when) }
}

#[test]
fn rfc8995_voucher_verifies_to_vendor_ca() {
    let cms = CmsSigned::parse(&read("rfc8995-appendix-c/voucher.cms.der")).unwrap();
    let v = cms
        .verify(&trust("rfc8995-appendix-c/vendor-ca.crt.pem", "2021-04-14T00:00:00Z"), &CMS_TYPES)
        .unwrap();
    assert_eq!(v.value().as_slice(), read("rfc8995-appendix-c/voucher.json").trim_ascii_end());
    assert_eq!(v.signer_chain().len(), 2);
    assert_eq!(v.signer().unwrap(), &certs("rfc8995-appendix-c/masa.crt.pem")[0]);
}

#[test]
fn rfc8995_pvr_verifies_with_embedded_idevid() {
    let cms = CmsSigned::parse(&read("rfc8995-appendix-c/pledge-voucher-request.cms.der")).unwrap();
    let v = cms
        .verify(&trust("rfc8995-appendix-c/vendor-ca.crt.pem", "2021-04-14T00:00:00Z"), &CMS_TYPES)
        .unwrap();
    assert_eq!(v.signer().unwrap(), &certs("rfc8995-appendix-c/pvr-embedded-idevid.crt.pem")[0]);
}

#[test]
fn rfc8995_rvr_verifies_to_registrar_ca() {
    let cms = CmsSigned::parse(&read("rfc8995-appendix-c/registrar-voucher-request.cms.der")).unwrap();
    let v = cms
        .verify(&trust("rfc8995-appendix-c/registrar-ca.crt.pem", "2021-04-14T00:00:00Z"), &CMS_TYPES)
        .unwrap();
    assert_eq!(v.signer().unwrap(), &certs("rfc8995-appendix-c/registrar.crt.pem")[0]);
}

#[test]
fn voucher_against_stale_rsa_vendor_ca_is_untrusted() {
    let cms = CmsSigned::parse(&read("rfc8366bis-examples/voucher_00-D0-E5-F2-00-02.pkcs")).unwrap();
    let err = cms
        .verify(
            &trust("rfc8366bis-examples/vendor-00-D0-E5-F2-00-02.crt", "2022-07-11T00:00:00Z"),
            &CMS_TYPES,
        )
        .unwrap_err();
    assert!(matches!(err, SignatureError::Chain(shared::pki::ChainError::UntrustedIssuer { .. })), "{err}");
    let ok = cms.verify(&trust("rfc8995-appendix-c/vendor-ca.crt.pem", "2022-07-11T00:00:00Z"), &CMS_TYPES);
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn jws_voucher_examples_verify() {
    for (obj, signer_pem) in [
        ("jws-voucher/voucher.jws.json", "jws-voucher/voucher-signer.pem"),
        ("jws-voucher/pvr.jws.json", "jws-voucher/pvr-signer.pem"),
        ("jws-voucher/rvr.jws.json", "jws-voucher/rvr-signer.pem"),
    ] {
        let jws = Jws::parse_json(&read(obj)).unwrap();
        let anchors = certs(signer_pem);
        let ca = anchors.last().unwrap().clone();
        let v = jws.verify(&Trust { anchors: vec![ca], at: at("2024-12-01T00:00:00Z") });
        assert!(v.is_ok(), "{obj}: {:?}", v.err());
    }
}

#[test]
fn cose_voucher_verifies_with_masa_ca_key() {
    let cose = CoseSigned::parse(&read_hex("cbrski-cose-examples/voucher.hex")).unwrap();
    let v = cose.verify(&trust("cbrski-cose-examples/masa_ca.crt.pem", "2023-01-01T00:00:00Z")).unwrap();
    assert_eq!(v.value().as_slice(), read_hex("cbrski-cose-examples/voucher-nonsigned.hex").as_slice());
    let pvr = CoseSigned::parse(&read_hex("cbrski-cose-examples/pvr.hex")).unwrap();
    assert!(pvr.verify(&trust("cbrski-cose-examples/pledge.crt.pem", "2023-01-01T00:00:00Z")).is_ok());
    let rvr = CoseSigned::parse(&read_hex("cbrski-cose-examples/rvr.hex")).unwrap();
    assert!(rvr.verify(&trust("cbrski-cose-examples/registrar.crt.pem", "2023-01-01T00:00:00Z")).is_ok());
    // Signed by the MASA CA, not by the pledge:
    assert_eq!(
        cose.verify(&trust("cbrski-cose-examples/pledge.crt.pem", "2023-01-01T00:00:00Z")).unwrap_err(),
        SignatureError::BadSignature
    );
}
