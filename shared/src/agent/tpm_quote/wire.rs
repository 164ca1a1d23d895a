//! The wire form of the TPM quote item: a CBOR map, `1` attest (bstr), `2` signature (bstr, DER
//! ECDSA), `3` hash_alg (uint, TPM_ALG_ID), `4` `{index: value}` (uint -> bstr), `5`
//! `[AK certificate, intermediates...]` (bstr DER each), decoded strictly.

use super::err;
use crate::agent::evidence::MAX_EVIDENCE_LEN;
use crate::agent::AgentError;
use ciborium::Value as Cbor;
use std::collections::BTreeMap;

/// Most certificates accepted in `ak_chain`.
const MAX_AK_CHAIN: usize = 8;

/// Map key of `attest`.
const K_ATTEST: i128 = 1;
/// Map key of `signature`.
const K_SIGNATURE: i128 = 2;
/// Map key of `hash_alg`.
const K_HASH_ALG: i128 = 3;
/// Map key of `pcrs`.
const K_PCRS: i128 = 4;
/// Map key of `ak_chain`.
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

/// The byte string `v`, or a refusal naming `what`.
fn bytes_of(v: Cbor, what: &str) -> Result<Vec<u8>, AgentError> {
    match v {
        Cbor::Bytes(b) => Ok(b),
        _ => Err(err(format!("{what} is not a byte string"))),
    }
}

/// The `pcrs` map: each index a `u8` once, each value a byte string.
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

/// The `ak_chain` array of at most [`MAX_AK_CHAIN`] byte strings.
fn chain_of(v: Cbor) -> Result<Vec<Vec<u8>>, AgentError> {
    let Cbor::Array(items) = v else { return Err(err("ak_chain is not an array")) };
    if items.len() > MAX_AK_CHAIN {
        return Err(err(format!("ak_chain has more than {MAX_AK_CHAIN} certificates")));
    }
    items.into_iter().map(|c| bytes_of(c, "an ak_chain entry")).collect()
}
