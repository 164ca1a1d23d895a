//! Certificates: `certs_from_pem` on the input (path validation of the first certificate
//! against the rest, at a fixed time) and `cert_from_der` on the input (validated against the
//! RFC 8995 vendor CA); plus the IDevID field readers on every certificate that parses.
#![no_main]

#[macro_use]
mod common;

use libfuzzer_sys::fuzz_target;
use shared::pki::{
    cert_from_der, certs_from_pem, idevid_issuer, masa_url, serial_number, subject_key_id, verify_chain,
};
use std::sync::LazyLock;
use x509_cert::Certificate;

static ANCHORS: LazyLock<Vec<Certificate>> =
    LazyLock::new(|| common::certs(&[vector!("rfc8995-appendix-c/vendor-ca.crt.pem")]));

fn fields(cert: &Certificate) {
    let _ = serial_number(cert);
    let _ = masa_url(cert);
    let _ = subject_key_id(cert);
    let _ = idevid_issuer(cert);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(certs) = certs_from_pem(data) {
        certs.iter().for_each(fields);
        if let Some((leaf, rest)) = certs.split_first() {
            // The rest both as intermediates and as anchors: the walk may end at any of them.
            let _ = verify_chain(leaf, rest, rest, common::RFC8995_AT);
            let _ = verify_chain(leaf, rest, &ANCHORS, common::RFC8995_AT);
        }
    }
    if let Ok(cert) = cert_from_der(data) {
        fields(&cert);
        let _ = verify_chain(&cert, &[], &ANCHORS, common::RFC8995_AT);
    }
});
