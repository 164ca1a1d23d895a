//! COSE_Sign1: `CoseSigned::parse`, then the header accessors, verification against the cBRSKI
//! example CAs and `from_cbor` on the payload; plus `from_cbor` on the raw input in both
//! strictness modes (YANG-CBOR voucher data without the signature wrapper).
#![no_main]

#[macro_use]
mod common;

use libfuzzer_sys::fuzz_target;
use shared::signed::cose::CoseSigned;
use shared::signed::Trust;
use shared::voucher::{from_cbor, Strictness};
use std::sync::LazyLock;

static TRUST: LazyLock<Trust> = LazyLock::new(common::cose_trust);

fuzz_target!(|data: &[u8]| {
    if let Ok(cose) = CoseSigned::parse(data) {
        let _ = cose.algorithm();
        let _ = cose.certificates();
        let _ = cose.key_id();
        let _ = cose.without_unprotected_certs();
        let _ = cose.verify(&TRUST);
        for mode in [Strictness::Strict, Strictness::Lenient] {
            if let Ok(v) = from_cbor(cose.unverified_payload(), mode) {
                common::exercise_voucher(&v);
            }
        }
    }
    for mode in [Strictness::Strict, Strictness::Lenient] {
        if let Ok(v) = from_cbor(data, mode) {
            common::exercise_voucher(&v);
        }
    }
});
