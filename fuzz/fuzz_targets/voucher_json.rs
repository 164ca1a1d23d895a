//! Voucher JSON (RFC 7951): `from_json` strict and lenient, then the data checks and
//! re-encoding of whatever decodes.
#![no_main]

#[macro_use]
mod common;

use libfuzzer_sys::fuzz_target;
use shared::voucher::{from_json, Strictness};

fuzz_target!(|data: &[u8]| {
    for mode in [Strictness::Strict, Strictness::Lenient] {
        if let Ok(v) = from_json(data, mode) {
            common::exercise_voucher(&v);
        }
    }
});
