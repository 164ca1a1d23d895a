//! PCRs and quotes: reading and extending SHA-256 PCRs, and TPM2_Quote by an attestation key
//! over chosen PCRs with caller-chosen qualifying data (the request-bound nonce).

use super::signer::ecdsa_raw;
use super::{key_error, with_tpm};
use crate::keys::{Algorithm, KeyError};
use std::collections::BTreeMap;
use std::convert::TryFrom;
use tss_esapi::handles::{PcrHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::structures::{
    Data, Digest, DigestValues, PcrSelectionList, PcrSelectionListBuilder, PcrSlot, SignatureScheme,
};
use tss_esapi::traits::Marshall;
use tss_esapi::Context;

/// A quote as the TPM made it, with the PCR values it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmQuoteData {
    /// The marshalled TPMS_ATTEST (what the attestation key signed).
    pub attest: Vec<u8>,
    /// The signature over SHA-256(attest), DER ECDSA.
    pub signature: Vec<u8>,
    /// The quoted SHA-256 PCR values by index, read in the same session.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
}

/// Quotes the SHA-256 PCRs `pcrs` with the attestation key at `ak_handle`, `nonce` as the
/// qualifying data (at most 64 bytes). The PCRs are read before and after the quote; if
/// anything extended them in between, the quote is taken again (up to three times), so the
/// values returned are the ones the quote covers.
pub fn quote(tcti: &str, ak_handle: u32, nonce: &[u8], pcrs: &[u8]) -> Result<TpmQuoteData, KeyError> {
    let err = |e: String| key_error(ak_handle, tcti, e);
    let selection = selection(pcrs).map_err(|e| err(format!("PCR selection: {e}")))?;
    for _ in 0..3 {
        let taken = with_tpm(tcti, "TPM2_Quote", |ctx| {
            let (before, values) = read(ctx, &selection)?;
            let ak = ctx.tr_from_tpm_public(TpmHandle::Persistent(PersistentTpmHandle::new(ak_handle)?))?;
            let data = Data::try_from(nonce.to_vec())?;
            let (attest, signature) = ctx.execute_with_nullauth_session(|c| {
                c.quote(ak.into(), data, SignatureScheme::Null, selection.clone())
            })?;
            let (after, _) = read(ctx, &selection)?;
            Ok((before == after, attest.marshall()?, signature, values))
        })
        .map_err(err)?;
        let (stable, attest, signature, values) = taken;
        if stable {
            let raw = ecdsa_raw(&signature).map_err(err)?;
            let der = crate::crypto::raw_to_der(Algorithm::Es256, &raw).map_err(|e| err(e.to_string()))?;
            return Ok(TpmQuoteData { attest, signature: der, pcrs: values });
        }
    }
    Err(err("the PCRs kept changing while quoting".into()))
}

/// Reads the SHA-256 PCRs `pcrs`.
pub fn pcr_read(tcti: &str, pcrs: &[u8]) -> Result<BTreeMap<u8, Vec<u8>>, String> {
    let selection = selection(pcrs).map_err(|e| format!("PCR selection: {e}"))?;
    with_tpm(tcti, "TPM2_PCR_Read", |ctx| read(ctx, &selection).map(|(_, v)| v))
}

/// Extends SHA-256 PCR `pcr` (0..=23) with `digest` (what a measuring boot stage or a tamper
/// does: the new value is SHA-256(old || digest)).
pub fn pcr_extend(tcti: &str, pcr: u8, digest: [u8; 32]) -> Result<(), String> {
    let handle = pcr_handle(pcr).ok_or_else(|| format!("PCR {pcr} is not 0..=23"))?;
    with_tpm(tcti, "TPM2_PCR_Extend", |ctx| {
        let mut values = DigestValues::new();
        values.set(HashingAlgorithm::Sha256, Digest::try_from(digest.to_vec())?);
        ctx.execute_with_nullauth_session(|c| c.pcr_extend(handle, values))
    })
}

/// Reads the selection (at most 8 PCRs per TPM2_PCR_Read, so in chunks); returns the update
/// counter of the first read and the values.
fn read(ctx: &mut Context, selection: &PcrSelectionList) -> tss_esapi::Result<(u32, BTreeMap<u8, Vec<u8>>)> {
    let wanted: Vec<u8> = indices(selection);
    let mut values = BTreeMap::new();
    let mut counter = None;
    for chunk in wanted.chunks(8) {
        let (c, _, digests) = ctx.pcr_read(selection_of(chunk)?)?;
        counter.get_or_insert(c);
        for (i, d) in chunk.iter().zip(digests.value()) {
            values.insert(*i, d.value().to_vec());
        }
    }
    Ok((counter.unwrap_or_default(), values))
}

fn selection(pcrs: &[u8]) -> Result<PcrSelectionList, String> {
    if pcrs.is_empty() {
        return Err("no PCR chosen".into());
    }
    selection_of(pcrs).map_err(|e| e.to_string())
}

fn selection_of(pcrs: &[u8]) -> tss_esapi::Result<PcrSelectionList> {
    let slots: Vec<PcrSlot> = pcrs
        .iter()
        .map(|&i| {
            PcrSlot::try_from(1u32 << i)
                .map_err(|_| tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::InvalidParam))
        })
        .collect::<Result<_, _>>()?;
    PcrSelectionListBuilder::new().with_selection(HashingAlgorithm::Sha256, &slots).build()
}

fn indices(selection: &PcrSelectionList) -> Vec<u8> {
    let mut out: Vec<u8> = selection
        .get_selections()
        .iter()
        .flat_map(|s| s.selected().into_iter().map(|slot| u32::from(slot).trailing_zeros() as u8))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn pcr_handle(pcr: u8) -> Option<PcrHandle> {
    use PcrHandle::*;
    const ALL: [PcrHandle; 24] = [
        Pcr0, Pcr1, Pcr2, Pcr3, Pcr4, Pcr5, Pcr6, Pcr7, Pcr8, Pcr9, Pcr10, Pcr11, Pcr12, Pcr13, Pcr14, Pcr15,
        Pcr16, Pcr17, Pcr18, Pcr19, Pcr20, Pcr21, Pcr22, Pcr23,
    ];
    ALL.get(usize::from(pcr)).copied()
}
