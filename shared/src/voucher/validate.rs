//! The pledge's checks on a (signature-verified) voucher, voucher.md §2, and basic sanity
//! checks on a voucher-request.
//!
//! Signature and certificate-chain checks happen elsewhere: this module only judges the data.
//! In particular a `pinned-domain-cert` pin needs X.509 chain building, which is left to the
//! caller; only the raw-public-key pins are checked here.
//!
//! Not enforced: RFC 8366's `must not(../nonce)` exclusivity between `nonce` and `expires-on`,
//! which rfc8366bis dropped from the YANG module; a voucher carrying both is accepted and both
//! are checked.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::error::VoucherError;
use super::keyid;
use super::model::Voucher;
use super::nonce::Nonce;
use super::vocab::{Assertion, Kind};

/// What the pledge knows and requires when it checks a voucher.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// The nonce the pledge sent in its voucher-request, if any.
    pub nonce: Option<Nonce>,
    /// The pledge's own serial number (X520SerialNumber of its IDevID).
    pub serial_number: Option<String>,
    /// The pledge's IDevID AuthorityKeyIdentifier (any of the forms of voucher.md §4).
    pub idevid_issuer: Option<Vec<u8>>,
    /// The current time, for a pledge with a trustworthy clock; `None` skips time checks.
    pub now: Option<OffsetDateTime>,
    /// Assertions the local policy accepts; empty accepts any (including none).
    pub acceptable_assertions: Vec<Assertion>,
    /// DER SubjectPublicKeyInfo of the registrar's TLS certificate, to check raw-key pins.
    pub registrar_spki: Option<Vec<u8>>,
    /// Refuse nonceless vouchers (a pledge without a clock must).
    pub require_nonce: bool,
}

/// The domain trust anchor a voucher pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// `pinned-domain-cert`: DER certificate the registrar's chain must lead to.
    Cert(Vec<u8>),
    /// `pinned-domain-pubk`: the registrar's DER SubjectPublicKeyInfo.
    Pubk(Vec<u8>),
    /// `pinned-domain-pubk-sha256`: SHA-256 of the registrar's SubjectPublicKeyInfo.
    PubkSha256([u8; 32]),
}

/// The pin the pledge uses, by rfc8366bis priority: pinned-domain-pubk-sha256, then
/// pinned-domain-pubk, then pinned-domain-cert. (The bis rule picks the pin matching the
/// proximity attribute the pledge sent; this module always uses the nonceless order.)
/// A pubk-sha256 that is not 32 bytes long is not understood and skipped.
pub fn pin(v: &Voucher) -> Option<Pin> {
    let sha = v.pinned_domain_pubk_sha256.as_deref();
    if let Some(hash) = sha.and_then(|h| <[u8; 32]>::try_from(h).ok()) {
        return Some(Pin::PubkSha256(hash));
    }
    if let Some(key) = &v.pinned_domain_pubk {
        return Some(Pin::Pubk(key.clone()));
    }
    v.pinned_domain_cert.clone().map(Pin::Cert)
}

/// Checks a decoded voucher against what the pledge expects (voucher.md §2).
///
/// In order: it is a voucher; serial-number present and (if expected) equal; nonce; time
/// (`expires-on` passed; `created-on` is informational and not checked); assertion
/// acceptable; idevid-issuer (if both the voucher and the expectations carry one); a usable pin
/// that, for raw-key pins and a known registrar key, matches it. A `Pin::Cert` must then be
/// checked against the registrar's TLS chain by the caller.
///
/// # Errors
///
/// The first failed check, each with its own [`VoucherError`] variant. A
/// pinned-domain-pubk-sha256 that is not 32 bytes is refused ([`VoucherError::MalformedPin`])
/// rather than skipped, even though [`pin`] would fall back to another pin.
pub fn check_voucher(v: &Voucher, e: &Expectations) -> Result<(), VoucherError> {
    check_kind(v, Kind::Voucher)?;
    check_serial(v, e.serial_number.as_deref())?;
    check_nonce(v, e)?;
    if let Some(now) = e.now {
        check_time(v, now)?;
    }
    check_assertion(v, &e.acceptable_assertions)?;
    check_idevid_issuer(v, e.idevid_issuer.as_deref())?;
    check_pin(v, e.registrar_spki.as_deref())
}

/// Basic sanity of a voucher-request: it is a request and names a serial-number.
///
/// # Errors
///
/// [`VoucherError::WrongKind`] or [`VoucherError::MissingSerialNumber`].
pub fn check_request(v: &Voucher) -> Result<(), VoucherError> {
    check_kind(v, Kind::Request)?;
    check_serial(v, None)
}

fn check_kind(v: &Voucher, expected: Kind) -> Result<(), VoucherError> {
    if v.kind == expected {
        return Ok(());
    }
    Err(VoucherError::WrongKind { expected, found: v.kind })
}

fn check_serial(v: &Voucher, expected: Option<&str>) -> Result<(), VoucherError> {
    let found = v.serial_number.as_deref().ok_or(VoucherError::MissingSerialNumber)?;
    match expected {
        Some(want) if want != found => {
            Err(VoucherError::SerialMismatch { expected: want.to_string(), found: found.to_string() })
        }
        _ => Ok(()),
    }
}

fn check_nonce(v: &Voucher, e: &Expectations) -> Result<(), VoucherError> {
    match (&v.nonce, &e.nonce) {
        (Some(got), Some(sent)) if !bool::from(got.ct_eq(sent)) => Err(VoucherError::NonceMismatch),
        (None, _) if e.require_nonce => Err(VoucherError::MissingNonce),
        _ => Ok(()),
    }
}

fn check_time(v: &Voucher, now: OffsetDateTime) -> Result<(), VoucherError> {
    if let Some(expires_on) = v.expires_on {
        if expires_on <= now {
            return Err(VoucherError::Expired { expires_on, now });
        }
    }
    // created-on is informational (RFC 8366 §5.3): a created-on ahead of the pledge's clock
    // is not a reason to refuse (the rfc8366bis JWS example is dated after its signer expired).
    Ok(())
}

fn check_assertion(v: &Voucher, acceptable: &[Assertion]) -> Result<(), VoucherError> {
    if acceptable.is_empty() {
        return Ok(());
    }
    match v.assertion {
        None => Err(VoucherError::MissingAssertion),
        Some(a) if acceptable.contains(&a) => Ok(()),
        Some(a) => Err(VoucherError::UnacceptableAssertion(a)),
    }
}

/// Compares key ids, so the full extnValue, the inner SEQUENCE and the bare id all match.
fn check_idevid_issuer(v: &Voucher, own: Option<&[u8]>) -> Result<(), VoucherError> {
    match (v.idevid_issuer.as_deref(), own) {
        (Some(theirs), Some(own)) if keyid::key_id(theirs) != keyid::key_id(own) => {
            Err(VoucherError::IdevidIssuerMismatch)
        }
        _ => Ok(()),
    }
}

fn check_pin(v: &Voucher, registrar_spki: Option<&[u8]>) -> Result<(), VoucherError> {
    if v.pinned_domain_pubk_sha256.as_ref().is_some_and(|h| h.len() != 32) {
        return Err(VoucherError::MalformedPin {
            leaf: "pinned-domain-pubk-sha256",
            reason: "a SHA-256 hash must be 32 bytes",
        });
    }
    let pin = pin(v).ok_or(VoucherError::MissingPin)?;
    match (pin, registrar_spki) {
        (Pin::PubkSha256(hash), Some(spki)) => {
            let actual: [u8; 32] = Sha256::digest(spki).into();
            matches_or(actual.ct_eq(&hash).into(), "pinned-domain-pubk-sha256")
        }
        (Pin::Pubk(key), Some(spki)) => matches_or(key == spki, "pinned-domain-pubk"),
        _ => Ok(()),
    }
}

fn matches_or(matches: bool, leaf: &'static str) -> Result<(), VoucherError> {
    if matches {
        Ok(())
    } else {
        Err(VoucherError::PinMismatch(leaf))
    }
}
