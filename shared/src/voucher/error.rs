//! The one error type of the voucher module.
//!
//! Every refusal is its own variant so that callers (and tests) can tell the reasons apart, and
//! every message is a sentence an operator can act on.

use time::OffsetDateTime;

use super::vocab::{Assertion, Kind};

/// Why voucher data could not be decoded, or why a decoded voucher was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VoucherError {
    /// The payload is larger than the module accepts; checked before any parsing.
    #[error("voucher payload is {len} bytes, larger than the {max}-byte limit")]
    TooLarge {
        /// Size of the offered payload.
        len: usize,
        /// The limit ([`super::MAX_PAYLOAD_LEN`]).
        max: usize,
    },
    /// The bytes are not well-formed JSON.
    #[error("voucher payload is not valid JSON: {0}")]
    MalformedJson(String),
    /// The bytes are not well-formed CBOR (bad syntax or an unusable data item).
    #[error("voucher payload is not valid CBOR: {0}")]
    MalformedCbor(String),
    /// The CBOR input ends in the middle of a data item.
    #[error("voucher payload is truncated: the CBOR data ends before the item is complete")]
    Truncated,
    /// Bytes follow the single top-level CBOR data item.
    #[error("{extra} unexpected bytes follow the voucher's CBOR data item")]
    TrailingData {
        /// How many bytes follow the item.
        extra: usize,
    },
    /// The top-level object/map does not hold exactly one member.
    #[error("voucher payload must hold exactly one top-level member, found {0}")]
    TopLevelCount(usize),
    /// The top-level member is not `ietf-voucher:voucher` / `ietf-voucher-request:voucher`
    /// (or SID 2451 / 2501 in CBOR).
    #[error(
        "unexpected top-level member {0}: expected ietf-voucher:voucher or ietf-voucher-request:voucher"
    )]
    WrongTopLevel(String),
    /// A member has the wrong data type (for example a number where a string belongs).
    #[error("leaf \"{leaf}\" has the wrong type: expected {expected}")]
    WrongType {
        /// Name of the offending leaf (or container).
        leaf: String,
        /// What the encoding requires there.
        expected: &'static str,
    },
    /// A leaf that is not part of the module (Strict decoding only).
    #[error("unknown leaf \"{0}\"")]
    UnknownLeaf(String),
    /// A CBOR key whose SID is not part of the module (Strict decoding only).
    #[error("unknown SID {sid} (delta {delta}) in {kind}")]
    UnknownSid {
        /// Absolute SID (container SID + delta).
        sid: i128,
        /// The delta as transported.
        delta: i128,
        /// Which container it was found in.
        kind: Kind,
    },
    /// A member name (or a SID and a name for the same leaf) appears more than once.
    #[error("leaf \"{0}\" appears more than once")]
    DuplicateLeaf(String),
    /// A `binary` leaf is not valid base64.
    #[error("leaf \"{leaf}\" is not valid base64")]
    InvalidBase64 {
        /// Name of the offending leaf.
        leaf: String,
    },
    /// A `date-and-time` leaf is not an RFC 3339 timestamp.
    #[error("leaf \"{leaf}\" is not an RFC 3339 date-and-time: {value:?}")]
    InvalidDate {
        /// Name of the offending leaf.
        leaf: String,
        /// The value as transported.
        value: String,
    },
    /// An enumeration leaf has a value outside the enumeration.
    #[error("leaf \"{leaf}\" has an unknown value {value}")]
    InvalidEnum {
        /// Name of the offending leaf.
        leaf: String,
        /// The value as transported.
        value: String,
    },
    /// A voucher was expected but a voucher-request was given, or the other way round.
    #[error("expected a {expected}, got a {found}")]
    WrongKind {
        /// The kind the caller needs.
        expected: Kind,
        /// The kind that was decoded.
        found: Kind,
    },
    /// The mandatory serial-number leaf is absent.
    #[error("serial-number is missing")]
    MissingSerialNumber,
    /// The serial-number is not this pledge's.
    #[error("voucher is for serial-number {found:?}, this pledge is {expected:?}")]
    SerialMismatch {
        /// The pledge's own serial number.
        expected: String,
        /// The serial number in the voucher.
        found: String,
    },
    /// The voucher's nonce is not the one the pledge sent.
    #[error("voucher nonce does not match the request")]
    NonceMismatch,
    /// The pledge requires a nonce (it has no clock) but the voucher is nonceless.
    #[error("voucher has no nonce but this pledge requires one")]
    MissingNonce,
    /// expires-on is not after the current time.
    #[error("voucher expired at {expires_on} (now {now})")]
    Expired {
        /// The voucher's expires-on.
        expires_on: OffsetDateTime,
        /// The time it was checked against.
        now: OffsetDateTime,
    },
    /// The policy requires an assertion but the voucher carries none.
    #[error("voucher has no assertion")]
    MissingAssertion,
    /// The voucher's assertion is not one the policy accepts.
    #[error("voucher assertion \"{0}\" is not acceptable")]
    UnacceptableAssertion(Assertion),
    /// idevid-issuer does not name the issuer of this pledge's IDevID.
    #[error("voucher idevid-issuer does not match this pledge's IDevID authority key identifier")]
    IdevidIssuerMismatch,
    /// None of pinned-domain-cert / pinned-domain-pubk / pinned-domain-pubk-sha256 is present.
    #[error("voucher pins no domain trust anchor (no pinned-domain-cert, pinned-domain-pubk or pinned-domain-pubk-sha256)")]
    MissingPin,
    /// A pin leaf is present but unusable.
    #[error("leaf \"{leaf}\" is malformed: {reason}")]
    MalformedPin {
        /// Name of the pin leaf.
        leaf: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The pinned public key (or its hash) is not the registrar's.
    #[error("{0} does not match the registrar's public key")]
    PinMismatch(&'static str),
}
