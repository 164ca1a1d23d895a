//! JWS: `Jws::parse_json` (General / flattened JSON) on the bytes and `Jws::parse_compact` on
//! their UTF-8 lossy text; what parses is verified against the JWS-voucher draft's CAs.
#![no_main]

#[macro_use]
mod common;

use libfuzzer_sys::fuzz_target;
use shared::signed::jws::Jws;
use shared::signed::Trust;
use std::sync::LazyLock;

static TRUST: LazyLock<Trust> = LazyLock::new(common::jws_trust);

fn exercise(jws: &Jws) {
    let _ = jws.unverified_payload();
    let _ = jws.verify(&TRUST);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(jws) = Jws::parse_json(data) {
        exercise(&jws);
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(jws) = Jws::parse_compact(&text) {
        exercise(&jws);
    }
});
