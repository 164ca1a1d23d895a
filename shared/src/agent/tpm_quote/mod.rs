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
//!
//! # Layout
//!
//! One step of the appraisal per module; each imports only modules above it in this list:
//!
//! * `wire`: the CBOR map ([`TpmQuote`]);
//! * `cmw`: the `tpm` item of the CMW collection ([`tpm_quote_from_cmw`]);
//! * `cursor`: the bounds-checked reader TPMS_ATTEST is parsed with;
//! * `attest`: TPMS_ATTEST of a quote ([`parse_quote_attest`], [`marshal_quote_attest`]);
//! * `signature`: the attestation key's certificate and its signature over the attest bytes
//!   (appraisal steps 1 and 2);
//! * `pcr`: the PCR selection and digest (step 4, [`pcr_digest`]);
//! * `policy`: the expected PCR values ([`PcrPolicy`], step 5);
//! * `appraise`: the request binding ([`quote_nonce`], step 3) and the five steps in order
//!   ([`appraise_quote`]).

use super::AgentError;
use const_oid::ObjectIdentifier;

mod appraise;
mod attest;
mod cmw;
mod cursor;
mod pcr;
mod policy;
mod signature;
mod wire;

pub use appraise::{appraise_quote, quote_nonce, AppraisedQuote};
pub use attest::{marshal_quote_attest, parse_quote_attest, PcrSelection, QuoteAttest};
pub use cmw::tpm_quote_from_cmw;
pub use pcr::pcr_digest;
pub use policy::PcrPolicy;
pub use wire::TpmQuote;

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

/// An [`AgentError::Evidence`] whose message starts with `TPM quote: `, as every refusal here is.
fn err(detail: impl std::fmt::Display) -> AgentError {
    AgentError::Evidence(format!("TPM quote: {detail}"))
}

#[cfg(test)]
mod tests;
