//! CMS SignedData: `CmsSigned::parse` (DER or BER), then, for what parses, signature and path
//! verification against the RFC 8995 trust anchors, and the typed `SignedVoucher` path
//! (auto-detection, base64/hex unwrapping, unverified payload decoding).
#![no_main]

#[macro_use]
mod common;

use libfuzzer_sys::fuzz_target;
use shared::signed::cms::CmsSigned;
use shared::signed::Trust;
use shared::voucher::SignedVoucher;
use std::sync::LazyLock;

static TRUST: LazyLock<Trust> = LazyLock::new(common::cms_trust);

fuzz_target!(|data: &[u8]| {
    if let Ok(cms) = CmsSigned::parse(data) {
        let _ = cms.unverified_content();
        let _ = cms.certificates();
        // Accept whatever eContentType it claims so every input reaches the signature check.
        let _ = cms.verify(&TRUST, &[cms.econtent_type()]);
    }
    if let Ok(signed) = SignedVoucher::parse(data) {
        let _ = signed.envelope().certificates();
        if let Ok(v) = signed.inspect_unverified() {
            common::exercise_voucher(&v);
        }
        if let Ok(v) = signed.verify(&TRUST) {
            common::exercise_voucher(&v);
        }
    }
});
