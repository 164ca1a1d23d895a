//! Appraisal step 4: the quote selects exactly the one sha256 bank, over exactly the PCRs whose
//! values it carries, and its signed pcrDigest is the digest of those values.

use super::attest::QuoteAttest;
use super::wire::TpmQuote;
use super::{err, TPM_ALG_SHA256};
use crate::agent::AgentError;
use sha2::Digest;
use std::collections::BTreeMap;

/// SHA-256 over the PCR values concatenated in ascending index order (what TPMS_QUOTE_INFO.pcrDigest holds for one sha256 bank).
pub fn pcr_digest(pcrs: &BTreeMap<u8, Vec<u8>>) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for v in pcrs.values() {
        h.update(v);
    }
    h.finalize().into()
}

/// Step 4: `attest` selects exactly one bank, sha256 = `hash_alg`, whose indices are the keys of
/// `pcrs`, every value 32 bytes, and [`pcr_digest`]`(pcrs)` is its pcrDigest.
pub(super) fn check_pcrs(quote: &TpmQuote, attest: &QuoteAttest) -> Result<(), AgentError> {
    let [selection] = attest.selections.as_slice() else {
        return Err(err(format!(
            "the quote selects {} PCR banks; exactly one (sha256) is accepted",
            attest.selections.len()
        )));
    };
    if quote.hash_alg != TPM_ALG_SHA256 {
        return Err(err(format!(
            "hash_alg {:#06x} is not TPM_ALG_SHA256 ({TPM_ALG_SHA256:#06x})",
            quote.hash_alg
        )));
    }
    if selection.hash != quote.hash_alg {
        return Err(err(format!(
            "the quoted bank is {:#06x}, not hash_alg {:#06x}",
            selection.hash, quote.hash_alg
        )));
    }
    let carried: Vec<u16> = quote.pcrs.keys().map(|i| u16::from(*i)).collect();
    if selection.indices != carried {
        return Err(err(format!(
            "the quote selects PCRs {:?} but the values carried are for {:?}",
            selection.indices, carried
        )));
    }
    if let Some((i, v)) = quote.pcrs.iter().find(|(_, v)| v.len() != 32) {
        return Err(err(format!("PCR {i} value is {} bytes, not 32", v.len())));
    }
    if pcr_digest(&quote.pcrs).as_slice() != attest.pcr_digest.as_slice() {
        return Err(err("pcrDigest does not match the PCR values carried (they are not the values quoted)"));
    }
    Ok(())
}
