//! The TPM quote evidence item: the strict CBOR decoder (and its round trip), the TPMS_ATTEST
//! cursor on the raw input and on a decoded quote's `attest`, and appraisal against no anchors
//! (it must refuse, never panic).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::agent::tpm_quote::{appraise_quote, parse_quote_attest, PcrPolicy, TpmQuote};

fuzz_target!(|data: &[u8]| {
    let _ = parse_quote_attest(data);
    if let Ok(q) = TpmQuote::from_cbor(data) {
        let _ = parse_quote_attest(&q.attest);
        let at = time::OffsetDateTime::UNIX_EPOCH;
        assert!(appraise_quote(&q, &[], "serial", &[0u8; 32], &PcrPolicy::default(), at).is_err());
        assert_eq!(TpmQuote::from_cbor(&q.to_cbor()), Ok(q), "re-encoding decodes to the same quote");
    }
});
