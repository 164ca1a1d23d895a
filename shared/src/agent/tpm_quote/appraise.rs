//! Appraising a quote for one request: the five steps of [`appraise_quote`] in order, and step 3,
//! the binding of the quote to the request ([`quote_nonce`]).

use super::attest::{parse_quote_attest, QuoteAttest};
use super::err;
use super::pcr::check_pcrs;
use super::policy::PcrPolicy;
use super::signature::{attestation_key, check_signature};
use super::wire::TpmQuote;
use crate::agent::AgentError;
use crate::Verified;
use sha2::Digest;
use std::collections::BTreeMap;
use x509_cert::Certificate;

/// What an appraised quote established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppraisedQuote {
    /// The serialNumber of the attestation key's certificate (the device the TPM is in).
    pub device_serial: String,
    /// The quoted PCR values, covered by the signed pcrDigest.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// TPMS_CLOCK_INFO.clock (milliseconds the TPM has been powered).
    pub clock: u64,
    /// TPMS_CLOCK_INFO.resetCount (TPM resets, i.e. boots).
    pub reset_count: u32,
    /// TPMS_CLOCK_INFO.restartCount (restarts / resumes since the last reset).
    pub restart_count: u32,
}

/// The qualifying data (extraData) the proxy passes to TPM2_Quote: SHA-256(server_nonce || acr_hash).
pub fn quote_nonce(server_nonce: &[u8], acr_hash: &[u8]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update(server_nonce);
    h.update(acr_hash);
    h.finalize().into()
}

/// Appraises a quote for a request:
/// 1. `ak_chain[0]` parses, chains (intermediates = the rest) to one of `anchors` at `now`,
///    carries the EKU [`TCG_KP_AIK_CERTIFICATE`](super::TCG_KP_AIK_CERTIFICATE), and its subject serialNumber is `device_serial`;
/// 2. `signature` verifies with that certificate's P-256 key over SHA-256(`attest`);
/// 3. `attest` is a TPM-generated quote whose extraData is `expected_nonce` (constant time);
/// 4. it selects exactly one bank, sha256 = `hash_alg`, whose indices are the keys of `pcrs`,
///    every value 32 bytes, and [`pcr_digest`](super::pcr_digest)`(pcrs)` is its pcrDigest;
/// 5. every PCR of `policy` was quoted with exactly the expected value.
///
/// Every refusal is an [`AgentError::Evidence`] whose message starts with `TPM quote: `. The
/// verified value's signer chain is the AK certificate path (AK first, anchor last). Each step
/// is one function, in this order: `attestation_key`, `check_signature`, `bound_attest`,
/// `check_pcrs`, `PcrPolicy::check`.
pub fn appraise_quote(
    quote: &TpmQuote,
    anchors: &[Certificate],
    device_serial: &str,
    expected_nonce: &[u8],
    policy: &PcrPolicy,
    now: time::OffsetDateTime,
) -> Result<Verified<AppraisedQuote>, AgentError> {
    let ak = attestation_key(quote, anchors, device_serial, now)?;
    check_signature(&ak.cert, quote)?;
    let attest = bound_attest(quote, expected_nonce)?;
    check_pcrs(quote, &attest)?;
    policy.check(&quote.pcrs)?;
    Ok(Verified::new(
        AppraisedQuote {
            device_serial: ak.serial,
            pcrs: quote.pcrs.clone(),
            clock: attest.clock,
            reset_count: attest.reset_count,
            restart_count: attest.restart_count,
        },
        ak.path,
    ))
}

/// Step 3: the signed `attest` is a TPM-generated quote whose extraData is `expected_nonce`
/// (compared in constant time).
fn bound_attest(quote: &TpmQuote, expected_nonce: &[u8]) -> Result<QuoteAttest, AgentError> {
    use subtle::ConstantTimeEq;
    let attest = parse_quote_attest(&quote.attest)?;
    let same = attest.extra_data.len() == expected_nonce.len()
        && bool::from(attest.extra_data.ct_eq(expected_nonce));
    if !same {
        return Err(err("extraData does not bind this request (server nonce and acr_hash)"));
    }
    Ok(attest)
}
