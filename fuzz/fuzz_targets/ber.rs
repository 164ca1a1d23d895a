//! BER to DER normalisation: `ber::to_der` must not panic, and its output must be a fixed
//! point (normalising DER again changes nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::signed::ber::to_der;

fuzz_target!(|data: &[u8]| {
    if let Ok(der) = to_der(data) {
        assert_eq!(to_der(&der).as_deref(), Ok(der.as_slice()), "to_der output is not a fixed point");
    }
});
