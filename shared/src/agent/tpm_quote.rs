//! The TPM quote evidence item: a TPM2_Quote over the proxy's sha256 PCR bank, its signature by
//! the TPM attestation key (AK), the PCR values the proxy read, and the AK's certificate chain,
//! carried as the `tpm` item of the CMW collection next to the EAT.
//!
//! The quote's qualifying data (`extraData`) is [`quote_nonce`] = SHA-256(server nonce ||
//! acr_hash), so a quote binds exactly one request, like the EAT's `eat_nonce`. The registrar
//! appraises it with [`appraise_quote`]: the AK certificate chains to a manufacturer anchor,
//! carries tcg-kp-AIKCertificate and the proxy's serialNumber; the signature verifies; the
//! TPMS_ATTEST is a quote made by a TPM (TPM_GENERATED_VALUE), binds the request, and its
//! `pcrDigest` covers exactly the PCR values carried; those values satisfy the PCR policy.
//!
//! Wire form (CBOR map, media type [`TPM_QUOTE_MEDIA_TYPE`]): `1` attest (bstr), `2` signature
//! (bstr, DER ECDSA), `3` hash_alg (uint, TPM_ALG_ID), `4` `{index: value}` (uint -> bstr),
//! `5` `[AK certificate, intermediates...]` (bstr DER each). Pure Rust: nothing here talks to a
//! TPM; TPMS_ATTEST is parsed by a bounds-checked cursor.

use super::evidence::MAX_EVIDENCE_LEN;
use super::AgentError;
use crate::b64;
use crate::crypto::{Hash, PublicKey, SigForm};
use crate::pki;
use crate::Verified;
use ciborium::Value as Cbor;
use const_oid::ObjectIdentifier;
use serde_json::Value;
use sha2::Digest;
use std::collections::BTreeMap;
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::Certificate;

/// Media type of the TPM quote item in the CMW collection.
pub const TPM_QUOTE_MEDIA_TYPE: &str = "application/vnd.brski.tpm-quote+cbor";
/// tcg-kp-AIKCertificate: EKU an attestation-key certificate must carry.
pub const TCG_KP_AIK_CERTIFICATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.8.3");
/// TPM_ALG_SHA256 (TPM 2.0 Part 2, TPM_ALG_ID).
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// TPM_GENERATED_VALUE: the magic of every structure the TPM signs.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_QUOTE: the TPMS_ATTEST type of a quote.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

/// Most certificates accepted in `ak_chain`.
const MAX_AK_CHAIN: usize = 8;
/// Largest `sizeofSelect` accepted (256 PCRs; TPMs have 24).
const MAX_SIZEOF_SELECT: u8 = 32;

const K_ATTEST: i128 = 1;
const K_SIGNATURE: i128 = 2;
const K_HASH_ALG: i128 = 3;
const K_PCRS: i128 = 4;
const K_AK_CHAIN: i128 = 5;

/// A TPM quote as the proxy sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmQuote {
    /// The TPMS_ATTEST structure as the TPM marshalled it (contents of the TPM2B_ATTEST, no size prefix).
    pub attest: Vec<u8>,
    /// ECDSA P-256 signature by the attestation key over SHA-256(attest), DER (Ecdsa-Sig-Value).
    pub signature: Vec<u8>,
    /// The PCR bank quoted (TPM_ALG_ID; only TPM_ALG_SHA256 accepted).
    pub hash_alg: u16,
    /// The quoted PCR values by index (what the proxy read with TPM2_PCR_Read).
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// The attestation key's certificate (DER) first, then intermediates.
    pub ak_chain: Vec<Vec<u8>>,
}

fn err(detail: impl std::fmt::Display) -> AgentError {
    AgentError::Evidence(format!("TPM quote: {detail}"))
}

impl TpmQuote {
    /// The CBOR map: `1` attest bstr, `2` signature bstr, `3` hash_alg uint,
    /// `4` `{uint index: bstr value}`, `5` `[bstr DER certificates]`.
    pub fn to_cbor(&self) -> Vec<u8> {
        let int = |k: i128| Cbor::Integer(k.try_into().unwrap_or_else(|_| 0u8.into()));
        let pcrs =
            self.pcrs.iter().map(|(i, v)| (Cbor::Integer((*i).into()), Cbor::Bytes(v.clone()))).collect();
        let chain = self.ak_chain.iter().map(|c| Cbor::Bytes(c.clone())).collect();
        let map = Cbor::Map(vec![
            (int(K_ATTEST), Cbor::Bytes(self.attest.clone())),
            (int(K_SIGNATURE), Cbor::Bytes(self.signature.clone())),
            (int(K_HASH_ALG), Cbor::Integer(self.hash_alg.into())),
            (int(K_PCRS), Cbor::Map(pcrs)),
            (int(K_AK_CHAIN), Cbor::Array(chain)),
        ]);
        let mut out = Vec::new();
        // Writing CBOR into a Vec cannot fail.
        if ciborium::into_writer(&map, &mut out).is_err() {
            out.clear();
        }
        out
    }

    /// Parses the CBOR map strictly: at most [`MAX_EVIDENCE_LEN`] bytes, one map and nothing
    /// after it, exactly the keys 1-5 once each, with their types; PCR indices fit a `u8` and
    /// occur once.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, AgentError> {
        if bytes.len() > MAX_EVIDENCE_LEN {
            return Err(err(format!("larger than {MAX_EVIDENCE_LEN} bytes")));
        }
        let mut rest = bytes;
        let v: Cbor = ciborium::from_reader(&mut rest).map_err(|e| err(format!("not CBOR: {e}")))?;
        if !rest.is_empty() {
            return Err(err(format!("{} bytes after the CBOR map", rest.len())));
        }
        let Cbor::Map(entries) = v else { return Err(err("not a CBOR map")) };
        let (mut attest, mut signature, mut hash_alg, mut pcrs, mut ak_chain) =
            (None, None, None, None, None);
        for (k, v) in entries {
            let key = k.as_integer().map(i128::from).ok_or_else(|| err("a map key is not an integer"))?;
            let dup = || err(format!("key {key} occurs twice"));
            match key {
                K_ATTEST => attest.replace(bytes_of(v, "attest")?).map_or(Ok(()), |_| Err(dup()))?,
                K_SIGNATURE => signature.replace(bytes_of(v, "signature")?).map_or(Ok(()), |_| Err(dup()))?,
                K_HASH_ALG => {
                    let alg = v
                        .as_integer()
                        .and_then(|i| u16::try_from(i).ok())
                        .ok_or_else(|| err("hash_alg is not a TPM_ALG_ID (uint16)"))?;
                    hash_alg.replace(alg).map_or(Ok(()), |_| Err(dup()))?
                }
                K_PCRS => pcrs.replace(pcrs_of(v)?).map_or(Ok(()), |_| Err(dup()))?,
                K_AK_CHAIN => ak_chain.replace(chain_of(v)?).map_or(Ok(()), |_| Err(dup()))?,
                other => return Err(err(format!("unknown key {other}"))),
            }
        }
        let missing = |what: &str| err(format!("no {what}"));
        Ok(TpmQuote {
            attest: attest.ok_or_else(|| missing("attest (1)"))?,
            signature: signature.ok_or_else(|| missing("signature (2)"))?,
            hash_alg: hash_alg.ok_or_else(|| missing("hash_alg (3)"))?,
            pcrs: pcrs.ok_or_else(|| missing("pcrs (4)"))?,
            ak_chain: ak_chain.ok_or_else(|| missing("ak_chain (5)"))?,
        })
    }
}

fn bytes_of(v: Cbor, what: &str) -> Result<Vec<u8>, AgentError> {
    match v {
        Cbor::Bytes(b) => Ok(b),
        _ => Err(err(format!("{what} is not a byte string"))),
    }
}

fn pcrs_of(v: Cbor) -> Result<BTreeMap<u8, Vec<u8>>, AgentError> {
    let Cbor::Map(entries) = v else { return Err(err("pcrs is not a map")) };
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        let index = k
            .as_integer()
            .and_then(|i| u8::try_from(i).ok())
            .ok_or_else(|| err("a PCR index is not an integer 0-255"))?;
        let value = bytes_of(v, &format!("PCR {index}"))?;
        if out.insert(index, value).is_some() {
            return Err(err(format!("PCR {index} occurs twice")));
        }
    }
    Ok(out)
}

fn chain_of(v: Cbor) -> Result<Vec<Vec<u8>>, AgentError> {
    let Cbor::Array(items) = v else { return Err(err("ak_chain is not an array")) };
    if items.len() > MAX_AK_CHAIN {
        return Err(err(format!("ak_chain has more than {MAX_AK_CHAIN} certificates")));
    }
    items.into_iter().map(|c| bytes_of(c, "an ak_chain entry")).collect()
}

/// The qualifying data (extraData) the proxy passes to TPM2_Quote: SHA-256(server_nonce || acr_hash).
pub fn quote_nonce(server_nonce: &[u8], acr_hash: &[u8]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update(server_nonce);
    h.update(acr_hash);
    h.finalize().into()
}

/// SHA-256 over the PCR values concatenated in ascending index order (what TPMS_QUOTE_INFO.pcrDigest holds for one sha256 bank).
pub fn pcr_digest(pcrs: &BTreeMap<u8, Vec<u8>>) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for v in pcrs.values() {
        h.update(v);
    }
    h.finalize().into()
}

/// Expected PCR values (index -> value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PcrPolicy {
    /// The PCRs that must be quoted, with their exact values.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
}

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

/// One TPMS_PCR_SELECTION of a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    /// The bank (TPM_ALG_ID).
    pub hash: u16,
    /// The selected PCR indices, ascending (bit i of byte j = PCR 8j+i).
    pub indices: Vec<u16>,
}

/// A parsed TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE (not yet appraised: nothing here is
/// trusted until [`appraise_quote`] checked the signature over it).
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

/// A bounds-checked big-endian reader over TPM marshalled bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], AgentError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| err(format!("attest truncated in {what}")))?;
        let out = self.buf.get(self.pos..end).ok_or_else(|| err(format!("attest truncated in {what}")))?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], AgentError> {
        <[u8; N]>::try_from(self.take(N, what)?).map_err(|_| err(format!("attest truncated in {what}")))
    }

    fn u8(&mut self, what: &str) -> Result<u8, AgentError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    fn u16(&mut self, what: &str) -> Result<u16, AgentError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, AgentError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, AgentError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A TPM2B: u16 size, then that many bytes.
    fn tpm2b(&mut self, what: &str) -> Result<&'a [u8], AgentError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

/// Parses a TPMS_ATTEST that must be a quote: magic TPM_GENERATED_VALUE, type
/// TPM_ST_ATTEST_QUOTE, every field in bounds, no trailing bytes. Does not check the signature,
/// the nonce or the PCRs ([`appraise_quote`] does).
pub fn parse_quote_attest(attest: &[u8]) -> Result<QuoteAttest, AgentError> {
    let mut c = Cursor { buf: attest, pos: 0 };
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

fn short_hex(v: &[u8]) -> String {
    if v.is_empty() {
        "empty".into()
    } else {
        hex::encode(v)
    }
}

/// Appraises a quote for a request:
/// 1. `ak_chain[0]` parses, chains (intermediates = the rest) to one of `anchors` at `now`,
///    carries the EKU [`TCG_KP_AIK_CERTIFICATE`], and its subject serialNumber is `device_serial`;
/// 2. `signature` verifies with that certificate's P-256 key over SHA-256(`attest`);
/// 3. `attest` is a TPM-generated quote whose extraData is `expected_nonce` (constant time);
/// 4. it selects exactly one bank, sha256 = `hash_alg`, whose indices are the keys of `pcrs`,
///    every value 32 bytes, and [`pcr_digest`]`(pcrs)` is its pcrDigest;
/// 5. every PCR of `policy` was quoted with exactly the expected value.
///
/// Every refusal is an [`AgentError::Evidence`] whose message starts with `TPM quote: `. The
/// verified value's signer chain is the AK certificate path (AK first, anchor last).
pub fn appraise_quote(
    quote: &TpmQuote,
    anchors: &[Certificate],
    device_serial: &str,
    expected_nonce: &[u8],
    policy: &PcrPolicy,
    now: time::OffsetDateTime,
) -> Result<Verified<AppraisedQuote>, AgentError> {
    // (1) The attestation key's certificate.
    let (ak_der, intermediates) =
        quote.ak_chain.split_first().ok_or_else(|| err("no attestation key certificate"))?;
    let ak = pki::cert_from_der(ak_der)
        .map_err(|e| err(format!("the attestation key certificate does not parse: {e}")))?;
    let intermediates = intermediates
        .iter()
        .enumerate()
        .map(|(i, d)| {
            pki::cert_from_der(d).map_err(|e| err(format!("ak_chain[{}] does not parse: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let path = pki::verify_chain(&ak, &intermediates, anchors, now)
        .map_err(|e| err(format!("attestation key certificate path: {e}")))?;
    let eku: Option<ExtendedKeyUsage> = ak
        .tbs_certificate()
        .get_extension()
        .map_err(|e| err(format!("the attestation key certificate's extendedKeyUsage is malformed: {e}")))?
        .map(|(_, eku)| eku);
    if !eku.is_some_and(|e| e.0.contains(&TCG_KP_AIK_CERTIFICATE)) {
        return Err(err(format!(
            "the attestation key certificate lacks the EKU tcg-kp-AIKCertificate ({TCG_KP_AIK_CERTIFICATE})"
        )));
    }
    let serial = pki::serial_number(&ak)
        .ok_or_else(|| err("the attestation key certificate's subject has no serialNumber"))?;
    if serial != device_serial {
        return Err(err(format!(
            "the attestation key certificate is for device {serial:?}, not the proxy's {device_serial:?}"
        )));
    }

    // (2) The signature over the attest bytes.
    let key = PublicKey::from_spki_der(&pki::spki_der(&ak))
        .map_err(|e| err(format!("the attestation key: {e}")))?;
    if !matches!(key, PublicKey::P256(_)) {
        return Err(err("the attestation key is not an ECDSA P-256 key"));
    }
    key.verify_ecdsa(Hash::Sha256, SigForm::Der, &quote.attest, &quote.signature).map_err(|e| {
        err(format!("the signature over attest does not verify with the attestation key: {e}"))
    })?;

    // (3) The signed TPMS_ATTEST.
    let attest = parse_quote_attest(&quote.attest)?;
    {
        use subtle::ConstantTimeEq;
        let same = attest.extra_data.len() == expected_nonce.len()
            && bool::from(attest.extra_data.ct_eq(expected_nonce));
        if !same {
            return Err(err("extraData does not bind this request (server nonce and acr_hash)"));
        }
    }

    // (4) The PCR selection and the values carried.
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

    // (5) The policy.
    for (i, want) in &policy.pcrs {
        match quote.pcrs.get(i) {
            None => return Err(err(format!("policy wants PCR {i}, which the quote does not cover"))),
            Some(got) if got != want => {
                return Err(err(format!(
                    "PCR {i} is {} where policy wants {}",
                    short_hex(got),
                    short_hex(want)
                )))
            }
            Some(_) => {}
        }
    }

    Ok(Verified::new(
        AppraisedQuote {
            device_serial: serial,
            pcrs: quote.pcrs.clone(),
            clock: attest.clock,
            reset_count: attest.reset_count,
            restart_count: attest.restart_count,
        },
        path,
    ))
}

/// The "tpm" item of a CMW collection, if present (media type must be TPM_QUOTE_MEDIA_TYPE).
pub fn tpm_quote_from_cmw(cmw: &Value) -> Result<Option<TpmQuote>, AgentError> {
    let Some(item) = cmw.get("tpm") else { return Ok(None) };
    let item = item.as_array().ok_or_else(|| err("the tpm item is not a CMW record (array)"))?;
    if !(2..=3).contains(&item.len()) {
        return Err(err("the tpm item is not a CMW record [type, value, indicator]"));
    }
    if item.first().and_then(Value::as_str) != Some(TPM_QUOTE_MEDIA_TYPE) {
        return Err(err(format!("the tpm item is not {TPM_QUOTE_MEDIA_TYPE}")));
    }
    if let Some(ind) = item.get(2) {
        if ind.as_u64() != Some(super::evidence::CMW_EVIDENCE) {
            return Err(err("the tpm item's CMW indicator is not evidence (4)"));
        }
    }
    let data = item.get(1).and_then(Value::as_str).ok_or_else(|| err("the tpm item has no value"))?;
    if data.len() > MAX_EVIDENCE_LEN / 3 * 4 + 4 {
        return Err(err(format!("larger than {MAX_EVIDENCE_LEN} bytes")));
    }
    let bytes = b64::decode_url(data).map_err(|e| err(format!("the tpm item is not base64url: {e}")))?;
    TpmQuote::from_cbor(&bytes).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, Signer, SoftwareKey};
    use crate::pki::{create_ca, name_with_serial, CertificateAuthority, Profile};
    use std::time::Duration;

    const SERIAL: &str = "proxy-0042";

    struct Fixture {
        manufacturer: CertificateAuthority,
        ak: SoftwareKey,
        ak_cert: Certificate,
        nonce: [u8; 32],
        pcrs: BTreeMap<u8, Vec<u8>>,
    }

    fn ca(name: &str) -> CertificateAuthority {
        let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let cert = create_ca(name, &key, Duration::from_secs(86400 * 365), None).unwrap();
        CertificateAuthority::new(cert, Box::new(key)).unwrap()
    }

    fn ak_cert(ca: &CertificateAuthority, key: &SoftwareKey, serial: &str, eku: bool) -> Certificate {
        let mut p = Profile::end_entity(Duration::from_secs(86400));
        if eku {
            p.extended_key_usage = vec![TCG_KP_AIK_CERTIFICATE];
        }
        let spki = <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(&key.public_key_der()).unwrap();
        ca.issue_for_key(spki, name_with_serial("CN=TPM AK", serial).unwrap(), &[], &p).unwrap()
    }

    fn fixture() -> Fixture {
        let manufacturer = ca("CN=Example TPM Manufacturer CA");
        let ak = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let ak_cert = ak_cert(&manufacturer, &ak, SERIAL, true);
        let nonce = quote_nonce(&[7u8; 32], &[9u8; 32]);
        let pcrs = BTreeMap::from([(0u8, vec![0xa0; 32]), (7, vec![0xa7; 32]), (16, vec![0u8; 32])]);
        Fixture { manufacturer, ak, ak_cert, nonce, pcrs }
    }

    fn sign(key: &SoftwareKey, attest: &[u8]) -> Vec<u8> {
        crate::crypto::raw_to_der(Algorithm::Es256, &key.sign(attest).unwrap()).unwrap()
    }

    /// A quote over `attest`, signed by `key`, carrying `pcrs` and `chain`.
    fn quote_of(
        key: &SoftwareKey,
        attest: Vec<u8>,
        pcrs: BTreeMap<u8, Vec<u8>>,
        chain: &[&Certificate],
    ) -> TpmQuote {
        TpmQuote {
            signature: sign(key, &attest),
            attest,
            hash_alg: TPM_ALG_SHA256,
            pcrs,
            ak_chain: chain.iter().map(|c| pki::cert_to_der(c).unwrap()).collect(),
        }
    }

    fn attest_for(nonce: &[u8], pcrs: &BTreeMap<u8, Vec<u8>>) -> Vec<u8> {
        let indices: Vec<u8> = pcrs.keys().copied().collect();
        marshal_quote_attest(
            b"\x00\x0bsigner-name",
            nonce,
            123_456,
            3,
            1,
            0x2023_0001,
            &indices,
            &pcr_digest(pcrs),
        )
    }

    fn good(f: &Fixture) -> TpmQuote {
        quote_of(&f.ak, attest_for(&f.nonce, &f.pcrs), f.pcrs.clone(), &[&f.ak_cert])
    }

    fn policy(f: &Fixture) -> PcrPolicy {
        PcrPolicy { pcrs: BTreeMap::from([(16u8, f.pcrs[&16].clone())]) }
    }

    fn appraise(f: &Fixture, q: &TpmQuote) -> Result<Verified<AppraisedQuote>, AgentError> {
        let anchors = [f.manufacturer.certificate().clone()];
        appraise_quote(q, &anchors, SERIAL, &f.nonce, &policy(f), time::OffsetDateTime::now_utc())
    }

    /// The refusal message of an appraisal, which must start with "TPM quote: " and contain `want`.
    fn refused(f: &Fixture, q: &TpmQuote, want: &str) {
        let e = appraise(f, q).expect_err(want);
        let AgentError::Evidence(msg) = &e else { panic!("not an evidence error: {e:?}") };
        assert!(msg.starts_with("TPM quote: "), "{msg}");
        assert!(msg.contains(want), "{msg:?} does not say {want:?}");
        assert_eq!(e.reason(), "evidence");
    }

    #[test]
    fn tpm_quote_good_quote_appraises() {
        let f = fixture();
        let v = appraise(&f, &good(&f)).expect("a good quote appraises");
        assert_eq!(v.device_serial, SERIAL);
        assert_eq!(v.pcrs, f.pcrs);
        assert_eq!((v.clock, v.reset_count, v.restart_count), (123_456, 3, 1));
        assert_eq!(v.signer(), Some(&f.ak_cert), "the verified signer is the AK certificate");
        assert_eq!(v.signer_chain().last(), Some(f.manufacturer.certificate()));
        // An empty policy accepts any quoted values.
        let anchors = [f.manufacturer.certificate().clone()];
        let now = time::OffsetDateTime::now_utc();
        assert!(appraise_quote(&good(&f), &anchors, SERIAL, &f.nonce, &PcrPolicy::default(), now).is_ok());
    }

    #[test]
    fn tpm_quote_with_an_intermediate_appraises() {
        let f = fixture();
        let ik = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let spki = <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(&ik.public_key_der()).unwrap();
        let p = Profile::certificate_authority(Duration::from_secs(86400), Some(0));
        let inter_cert = f
            .manufacturer
            .issue_for_key(spki, pki::parse_name("CN=AK Intermediate").unwrap(), &[], &p)
            .unwrap();
        let inter = CertificateAuthority::new(inter_cert.clone(), Box::new(ik)).unwrap();
        let ak_cert = ak_cert(&inter, &f.ak, SERIAL, true);
        let q = quote_of(&f.ak, attest_for(&f.nonce, &f.pcrs), f.pcrs.clone(), &[&ak_cert, &inter_cert]);
        let v = appraise(&f, &q).expect("AK under an intermediate appraises");
        assert_eq!(v.signer_chain().len(), 3);
        // Without the intermediate the path does not validate.
        let q = quote_of(&f.ak, attest_for(&f.nonce, &f.pcrs), f.pcrs.clone(), &[&ak_cert]);
        refused(&f, &q, "attestation key certificate path");
    }

    #[test]
    fn tpm_quote_wrong_nonce_is_refused() {
        let f = fixture();
        let other = quote_nonce(&[8u8; 32], &[9u8; 32]);
        let q = quote_of(&f.ak, attest_for(&other, &f.pcrs), f.pcrs.clone(), &[&f.ak_cert]);
        refused(&f, &q, "extraData does not bind this request");
        // A prefix of the right nonce is not the nonce.
        let q = quote_of(&f.ak, attest_for(&f.nonce[..16], &f.pcrs), f.pcrs.clone(), &[&f.ak_cert]);
        refused(&f, &q, "extraData does not bind this request");
    }

    #[test]
    fn tpm_quote_changed_pcr_value_does_not_match_the_digest() {
        let f = fixture();
        let mut q = good(&f);
        q.pcrs.insert(7, vec![0xbb; 32]);
        refused(&f, &q, "pcrDigest does not match the PCR values carried");
        // A value of the wrong length.
        let mut q = good(&f);
        q.pcrs.insert(16, vec![0u8; 31]);
        refused(&f, &q, "PCR 16 value is 31 bytes, not 32");
        // Values for PCRs the quote did not select.
        let mut q = good(&f);
        q.pcrs.insert(9, vec![0u8; 32]);
        refused(&f, &q, "the quote selects PCRs [0, 7, 16] but the values carried are for [0, 7, 9, 16]");
    }

    #[test]
    fn tpm_quote_policy_mismatch_is_refused() {
        let f = fixture();
        let mut pcrs = f.pcrs.clone();
        pcrs.insert(16, vec![0x3f; 32]);
        let q = quote_of(&f.ak, attest_for(&f.nonce, &pcrs), pcrs, &[&f.ak_cert]);
        refused(&f, &q, &format!("PCR 16 is {} where policy wants {}", "3f".repeat(32), "00".repeat(32)));
        // A policy PCR the quote does not cover.
        let pcrs = BTreeMap::from([(0u8, vec![0xa0; 32])]);
        let q = quote_of(&f.ak, attest_for(&f.nonce, &pcrs), pcrs, &[&f.ak_cert]);
        refused(&f, &q, "policy wants PCR 16, which the quote does not cover");
    }

    #[test]
    fn tpm_quote_ak_certificate_checks() {
        let f = fixture();
        let attest = attest_for(&f.nonce, &f.pcrs);
        // Without the EKU.
        let no_eku = ak_cert(&f.manufacturer, &f.ak, SERIAL, false);
        refused(
            &f,
            &quote_of(&f.ak, attest.clone(), f.pcrs.clone(), &[&no_eku]),
            "lacks the EKU tcg-kp-AIKCertificate",
        );
        // Of another device.
        let other = ak_cert(&f.manufacturer, &f.ak, "proxy-0043", true);
        refused(
            &f,
            &quote_of(&f.ak, attest.clone(), f.pcrs.clone(), &[&other]),
            "is for device \"proxy-0043\", not the proxy's \"proxy-0042\"",
        );
        // From a CA that is not an anchor.
        let rogue = ca("CN=Example TPM Manufacturer CA");
        let foreign = ak_cert(&rogue, &f.ak, SERIAL, true);
        refused(
            &f,
            &quote_of(&f.ak, attest.clone(), f.pcrs.clone(), &[&foreign]),
            "attestation key certificate path",
        );
        // None at all, or garbage.
        refused(&f, &quote_of(&f.ak, attest.clone(), f.pcrs.clone(), &[]), "no attestation key certificate");
        let mut q = good(&f);
        q.ak_chain = vec![vec![0x30, 0x03, 0x02, 0x01]];
        refused(&f, &q, "the attestation key certificate does not parse");
        // Expired at appraisal time.
        let anchors = [f.manufacturer.certificate().clone()];
        let later = time::OffsetDateTime::now_utc() + time::Duration::days(2);
        let e = appraise_quote(&good(&f), &anchors, SERIAL, &f.nonce, &policy(&f), later).unwrap_err();
        assert!(e.to_string().contains("TPM quote: attestation key certificate path"), "{e}");
    }

    #[test]
    fn tpm_quote_bad_signature_is_refused() {
        let f = fixture();
        // Signed by another key than the certified AK.
        let stranger = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let q = quote_of(&stranger, attest_for(&f.nonce, &f.pcrs), f.pcrs.clone(), &[&f.ak_cert]);
        refused(&f, &q, "the signature over attest does not verify");
        // Attest changed after signing.
        let mut q = good(&f);
        let last = q.attest.len() - 1;
        q.attest[last] ^= 1;
        refused(&f, &q, "the signature over attest does not verify");
        // Not a signature.
        let mut q = good(&f);
        q.signature = vec![1, 2, 3];
        refused(&f, &q, "the signature over attest does not verify");
    }

    #[test]
    fn tpm_quote_malformed_attest_is_refused() {
        let f = fixture();
        let signed = |attest: Vec<u8>| quote_of(&f.ak, attest, f.pcrs.clone(), &[&f.ak_cert]);
        let attest = attest_for(&f.nonce, &f.pcrs);
        // Bad magic.
        let mut bad = attest.clone();
        bad[0] = 0;
        refused(&f, &signed(bad), "magic 0x00544347 is not TPM_GENERATED_VALUE");
        // Another attestation type (TPM_ST_ATTEST_CERTIFY).
        let mut bad = attest.clone();
        bad[5] = 0x17;
        refused(&f, &signed(bad), "type 0x8017 is not TPM_ST_ATTEST_QUOTE");
        // Truncated anywhere.
        for n in [0, 3, 5, 10, attest.len() - 33, attest.len() - 1] {
            let q = signed(attest[..n].to_vec());
            let e = appraise(&f, &q).unwrap_err().to_string();
            assert!(e.contains("TPM quote: attest truncated in"), "{n}: {e}");
        }
        // Trailing bytes.
        let mut bad = attest.clone();
        bad.extend_from_slice(&[0, 0]);
        refused(&f, &signed(bad), "2 trailing bytes after TPMS_ATTEST");
        // Two selections (sha256 twice, the second empty).
        let mut two = Vec::new();
        let count_at = attest.len() - (2 + 32) - 4 - (2 + 1 + 3);
        two.extend_from_slice(&attest[..count_at]);
        two.extend_from_slice(&2u32.to_be_bytes());
        two.extend_from_slice(&attest[count_at + 4..attest.len() - 34]);
        two.extend_from_slice(&[0x00, 0x0b, 3, 0, 0, 0]);
        two.extend_from_slice(&attest[attest.len() - 34..]);
        let parsed = parse_quote_attest(&two).unwrap();
        assert_eq!(parsed.selections.len(), 2);
        refused(&f, &signed(two), "the quote selects 2 PCR banks; exactly one (sha256) is accepted");
        // A huge selection count in a short input.
        let mut bad = attest[..count_at].to_vec();
        bad.extend_from_slice(&u32::MAX.to_be_bytes());
        refused(&f, &signed(bad), "attest truncated in pcrSelect[0]");
    }

    #[test]
    fn tpm_quote_bank_must_be_sha256() {
        let f = fixture();
        let mut q = good(&f);
        q.hash_alg = 0x0004;
        refused(&f, &q, "hash_alg 0x0004 is not TPM_ALG_SHA256 (0x000b)");
        // A sha1 bank quoted while hash_alg says sha256.
        let mut attest = attest_for(&f.nonce, &f.pcrs);
        let at = attest.len() - 34 - 4 - 2;
        attest[at..at + 2].copy_from_slice(&[0x00, 0x04]);
        refused(&f, &quote_of(&f.ak, attest, f.pcrs.clone(), &[&f.ak_cert]), "the quoted bank is 0x0004");
    }

    #[test]
    fn tpm_quote_parser_reads_what_marshal_writes() {
        let pcrs = [0u8, 7, 16, 23, 30];
        let a = marshal_quote_attest(b"name", b"nonce", 1, 2, 3, 4, &pcrs, &[5u8; 32]);
        let p = parse_quote_attest(&a).unwrap();
        assert_eq!(p.qualified_signer, b"name");
        assert_eq!(p.extra_data, b"nonce");
        assert_eq!((p.clock, p.reset_count, p.restart_count, p.safe, p.firmware_version), (1, 2, 3, true, 4));
        assert_eq!(
            p.selections,
            vec![PcrSelection { hash: TPM_ALG_SHA256, indices: vec![0, 7, 16, 23, 30] }]
        );
        assert_eq!(p.pcr_digest, vec![5u8; 32]);
        // Every prefix is refused without panicking.
        for n in 0..a.len() {
            assert!(parse_quote_attest(&a[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn tpm_quote_cbor_round_trip_and_strictness() {
        let f = fixture();
        let q = good(&f);
        let bytes = q.to_cbor();
        assert_eq!(TpmQuote::from_cbor(&bytes).unwrap(), q);
        let bad = |b: &[u8], want: &str| {
            let e = TpmQuote::from_cbor(b).unwrap_err().to_string();
            assert!(e.contains("TPM quote: ") && e.contains(want), "{e:?} does not say {want:?}");
        };
        let mut trailing = bytes.clone();
        trailing.push(0);
        bad(&trailing, "1 bytes after the CBOR map");
        bad(&bytes[..bytes.len() - 1], "not CBOR");
        bad(&[0x80], "not a CBOR map");
        bad(&vec![0u8; MAX_EVIDENCE_LEN + 1], "larger than");
        let enc = |v: Cbor| {
            let mut out = Vec::new();
            ciborium::into_writer(&v, &mut out).unwrap();
            out
        };
        let decoded: Cbor = ciborium::from_reader(bytes.as_slice()).unwrap();
        let Cbor::Map(entries) = decoded else { panic!() };
        let without = |k: i128| {
            Cbor::Map(
                entries.iter().filter(|(x, _)| x.as_integer().map(i128::from) != Some(k)).cloned().collect(),
            )
        };
        bad(&enc(without(5)), "no ak_chain (5)");
        let mut extra = entries.clone();
        extra.push((Cbor::Integer(6.into()), Cbor::Null));
        bad(&enc(Cbor::Map(extra)), "unknown key 6");
        let mut dup = entries.clone();
        dup.push(entries[0].clone());
        bad(&enc(Cbor::Map(dup)), "key 1 occurs twice");
        let mut wrong = entries.clone();
        wrong[2].1 = Cbor::Integer(70000.into());
        bad(&enc(Cbor::Map(wrong)), "hash_alg is not a TPM_ALG_ID");
        let mut wrong = entries.clone();
        wrong[3].1 = Cbor::Map(vec![(Cbor::Integer(300.into()), Cbor::Bytes(vec![]))]);
        bad(&enc(Cbor::Map(wrong)), "a PCR index is not an integer 0-255");
        let mut wrong = entries.clone();
        wrong[0].1 = Cbor::Text("attest".into());
        bad(&enc(Cbor::Map(wrong)), "attest is not a byte string");
    }

    #[test]
    fn tpm_quote_cmw_item() {
        let f = fixture();
        let q = good(&f);
        let cbor = q.to_cbor();
        let cmw = crate::agent::evidence::cmw_collection(b"eat", Some((TPM_QUOTE_MEDIA_TYPE, &cbor)));
        assert_eq!(tpm_quote_from_cmw(&cmw).unwrap(), Some(q));
        let plain = crate::agent::evidence::cmw_collection(b"eat", None);
        assert_eq!(tpm_quote_from_cmw(&plain).unwrap(), None);
        let other = crate::agent::evidence::cmw_collection(b"eat", Some(("application/octet-stream", &cbor)));
        let e = tpm_quote_from_cmw(&other).unwrap_err().to_string();
        assert!(e.contains("TPM quote: the tpm item is not application/vnd.brski.tpm-quote+cbor"), "{e}");
        let mut wrong = cmw.clone();
        wrong["tpm"][2] = serde_json::json!(3);
        assert!(tpm_quote_from_cmw(&wrong).unwrap_err().to_string().contains("indicator"));
        wrong["tpm"] = serde_json::json!({"x": 1});
        assert!(tpm_quote_from_cmw(&wrong).is_err());
        wrong["tpm"] = serde_json::json!([TPM_QUOTE_MEDIA_TYPE, "***", 4]);
        assert!(tpm_quote_from_cmw(&wrong).unwrap_err().to_string().contains("not base64url"));
    }
}
