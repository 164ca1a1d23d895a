//! TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE (TPM 2.0 Part 2 §10.12.8, §10.12.1 TPMS_QUOTE_INFO):
//! parsed strictly from the bytes the TPM signed, and marshalled for software-made quotes.

use super::cursor::Cursor;
use super::{err, TPM_ALG_SHA256, TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE};
use crate::agent::AgentError;

/// Largest `sizeofSelect` accepted (256 PCRs; TPMs have 24).
const MAX_SIZEOF_SELECT: u8 = 32;

/// One TPMS_PCR_SELECTION of a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    /// The bank (TPM_ALG_ID).
    pub hash: u16,
    /// The selected PCR indices, ascending (bit i of byte j = PCR 8j+i).
    pub indices: Vec<u16>,
}

/// A parsed TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE (not yet appraised: nothing here is
/// trusted until [`appraise_quote`](super::appraise_quote) checked the signature over it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteAttest {
    /// qualifiedSigner (TPM2B_NAME contents).
    pub qualified_signer: Vec<u8>,
    /// extraData (TPM2B_DATA contents): the qualifying data given to TPM2_Quote.
    pub extra_data: Vec<u8>,
    /// clockInfo.clock.
    pub clock: u64,
    /// clockInfo.resetCount.
    pub reset_count: u32,
    /// clockInfo.restartCount.
    pub restart_count: u32,
    /// clockInfo.safe.
    pub safe: bool,
    /// firmwareVersion.
    pub firmware_version: u64,
    /// TPMS_QUOTE_INFO.pcrSelect.
    pub selections: Vec<PcrSelection>,
    /// TPMS_QUOTE_INFO.pcrDigest (TPM2B_DIGEST contents).
    pub pcr_digest: Vec<u8>,
}

/// Parses a TPMS_ATTEST that must be a quote: magic TPM_GENERATED_VALUE, type
/// TPM_ST_ATTEST_QUOTE, every field in bounds, no trailing bytes. Does not check the signature,
/// the nonce or the PCRs ([`appraise_quote`](super::appraise_quote) does).
pub fn parse_quote_attest(attest: &[u8]) -> Result<QuoteAttest, AgentError> {
    let mut c = Cursor::new(attest);
    let magic = c.u32("magic")?;
    if magic != TPM_GENERATED_VALUE {
        return Err(err(format!(
            "magic {magic:#010x} is not TPM_GENERATED_VALUE ({TPM_GENERATED_VALUE:#010x}): not made by a TPM"
        )));
    }
    let ty = c.u16("type")?;
    if ty != TPM_ST_ATTEST_QUOTE {
        return Err(err(format!("type {ty:#06x} is not TPM_ST_ATTEST_QUOTE ({TPM_ST_ATTEST_QUOTE:#06x})")));
    }
    let qualified_signer = c.tpm2b("qualifiedSigner")?.to_vec();
    let extra_data = c.tpm2b("extraData")?.to_vec();
    let clock = c.u64("clockInfo.clock")?;
    let reset_count = c.u32("clockInfo.resetCount")?;
    let restart_count = c.u32("clockInfo.restartCount")?;
    let safe = match c.u8("clockInfo.safe")? {
        0 => false,
        1 => true,
        other => return Err(err(format!("clockInfo.safe is {other}, not YES or NO"))),
    };
    let firmware_version = c.u64("firmwareVersion")?;
    let selections = pcr_selections(&mut c)?;
    let pcr_digest = c.tpm2b("pcrDigest")?.to_vec();
    if c.remaining() != 0 {
        return Err(err(format!("{} trailing bytes after TPMS_ATTEST", c.remaining())));
    }
    Ok(QuoteAttest {
        qualified_signer,
        extra_data,
        clock,
        reset_count,
        restart_count,
        safe,
        firmware_version,
        selections,
        pcr_digest,
    })
}

/// TPMS_QUOTE_INFO.pcrSelect: a TPML_PCR_SELECTION (u32 count, then count TPMS_PCR_SELECTION).
fn pcr_selections(c: &mut Cursor<'_>) -> Result<Vec<PcrSelection>, AgentError> {
    let count = c.u32("pcrSelect.count")?;
    let mut selections = Vec::new();
    for n in 0..count {
        // Each selection takes at least 3 bytes: refuse counts the input cannot hold before
        // looping over them.
        if c.remaining() < 3 {
            return Err(err(format!("attest truncated in pcrSelect[{n}]")));
        }
        let hash = c.u16("pcrSelect.hash")?;
        let size = c.u8("pcrSelect.sizeofSelect")?;
        if size > MAX_SIZEOF_SELECT {
            return Err(err(format!("pcrSelect.sizeofSelect {size} is larger than {MAX_SIZEOF_SELECT}")));
        }
        let bitmap = c.take(usize::from(size), "pcrSelect.pcrSelect")?;
        let indices = bitmap
            .iter()
            .enumerate()
            .flat_map(|(j, byte)| {
                (0..8u16).filter(move |i| (byte >> i) & 1 == 1).map(move |i| (j as u16) * 8 + i)
            })
            .collect();
        selections.push(PcrSelection { hash, indices });
    }
    Ok(selections)
}

/// Builds a TPMS_ATTEST of type quote (for tests and for anyone producing quotes in software; the proxy uses the TPM's own bytes).
///
/// One sha256 selection of `pcr_indices` (at least 3 bitmap bytes, as TPMs emit); `safe` = YES.
/// Fields longer than a TPM2B can hold are truncated to 65535 bytes.
#[allow(clippy::too_many_arguments)]
pub fn marshal_quote_attest(
    qualified_signer: &[u8],
    extra_data: &[u8],
    clock: u64,
    reset_count: u32,
    restart_count: u32,
    firmware_version: u64,
    pcr_indices: &[u8],
    pcr_digest: &[u8],
) -> Vec<u8> {
    fn tpm2b(out: &mut Vec<u8>, b: &[u8]) {
        let b = &b[..b.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(b);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
    out.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
    tpm2b(&mut out, qualified_signer);
    tpm2b(&mut out, extra_data);
    out.extend_from_slice(&clock.to_be_bytes());
    out.extend_from_slice(&reset_count.to_be_bytes());
    out.extend_from_slice(&restart_count.to_be_bytes());
    out.push(1);
    out.extend_from_slice(&firmware_version.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    let size = pcr_indices.iter().map(|i| usize::from(*i) / 8 + 1).max().unwrap_or(0).max(3);
    let mut bitmap = vec![0u8; size];
    for i in pcr_indices {
        if let Some(byte) = bitmap.get_mut(usize::from(*i) / 8) {
            *byte |= 1 << (i % 8);
        }
    }
    out.push(size as u8);
    out.extend_from_slice(&bitmap);
    tpm2b(&mut out, pcr_digest);
    out
}
