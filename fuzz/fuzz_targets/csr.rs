//! PKCS#10: `Csr::verify_der` (parse + proof-of-possession signature), then the accessors an
//! EST server reads before issuing; plus the PEM / base64 entry point on the lossy text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::pki::{Csr, CHALLENGE_PASSWORD};

fn exercise(csr: &Csr) {
    let _ = csr.subject();
    let _ = csr.public_key_der();
    let _ = csr.challenge_password();
    let _ = csr.attribute(CHALLENGE_PASSWORD);
    let _ = csr.requested_extensions();
    let _ = csr.requested_san();
}

fuzz_target!(|data: &[u8]| {
    if let Ok(csr) = Csr::verify_der(data) {
        exercise(&csr);
    }
    if let Ok(csr) = Csr::verify_pem_or_base64(&String::from_utf8_lossy(data)) {
        exercise(&csr);
    }
});
