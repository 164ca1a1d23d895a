//! Voucher data (RFC 8366 / rfc8366bis) and voucher-request data (RFC 8995, BRSKI-PRM,
//! cBRSKI): the unsigned payloads that CMS, JWS and COSE signatures wrap.
//!
//! Sans-IO and crypto-free: [`decode`] turns payload bytes (JSON per RFC 7951 or CBOR per
//! RFC 9254) into a [`Voucher`], [`encode`] turns it back, and [`check_voucher`] /
//! [`check_request`] apply the pledge's and registrar's data checks. The signing wrappers call
//! these on the bytes they verified or are about to sign.
//!
//! The authoritative leaf tables (names, SIDs, deltas) are in `shared/spec/voucher.md` §2–§3
//! and in [`Leaf`].

mod cbor;
mod error;
mod json;
mod jsontree;
mod keyid;
mod leaf;
mod model;
mod nonce;
mod validate;
mod vocab;

pub use cbor::{from_cbor, to_cbor};
pub use error::VoucherError;
pub use json::{from_json, to_json};
pub use leaf::Leaf;
pub use model::Voucher;
pub use nonce::Nonce;
pub use validate::{check_request, check_voucher, pin, Expectations, Pin};
pub use vocab::{Assertion, Extension, Kind, LEGACY_PRM_JSON_KEY};

/// Largest payload the decoders accept (64 KiB): a voucher with a certificate chain is a few
/// KiB; anything far larger is refused before parsing.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;

/// How decoders treat leaves they do not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// Unknown leaves are an error naming the leaf (for producers' self-checks and tests).
    Strict,
    /// Unknown leaves are skipped and recorded in [`Voucher::unknown_leaves`]
    /// (RFC 8995 §5.6.1: a pledge MUST ignore unknown leaves).
    Lenient,
}

/// The serialization of voucher data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// RFC 7951 JSON (CMS `application/voucher-cms+json`, JWS `application/voucher-jws+json`).
    Json,
    /// RFC 9254 YANG-CBOR (COSE `application/voucher+cose`).
    Cbor,
}

/// Decodes voucher or voucher-request data in the given encoding.
///
/// # Errors
///
/// As [`from_json`] / [`from_cbor`].
pub fn decode(bytes: &[u8], encoding: Encoding, strictness: Strictness) -> Result<Voucher, VoucherError> {
    match encoding {
        Encoding::Json => from_json(bytes, strictness),
        Encoding::Cbor => from_cbor(bytes, strictness),
    }
}

/// Encodes voucher or voucher-request data in the given encoding.
pub fn encode(voucher: &Voucher, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Json => to_json(voucher),
        Encoding::Cbor => to_cbor(voucher),
    }
}

/// Refuses payloads over [`MAX_PAYLOAD_LEN`].
fn check_size(bytes: &[u8]) -> Result<(), VoucherError> {
    if bytes.len() > MAX_PAYLOAD_LEN {
        return Err(VoucherError::TooLarge { len: bytes.len(), max: MAX_PAYLOAD_LEN });
    }
    Ok(())
}

mod signed;
pub use signed::{
    check_registrar_pin, refuse_unknown_leaves, sign_voucher, PinError, SignedVoucher, COSE_CONTENT_TYPE,
    JWS_TYP,
};
