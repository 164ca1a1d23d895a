//! The pledge's checks on a voucher (RFC 8995 §5.6.1, §5.6.2), in order: the signature with
//! the manufacturer anchor (an unknown MASA fails here); serial-number, idevid-issuer, nonce and
//! expiry; then the registrar's TLS chain against the pinned domain certificate (a
//! man-in-the-middle registrar fails here). Only then is the connection trusted.

use crate::identity::Idevid;
use shared::pki;
use shared::signed::Trust;
use shared::voucher::{check_registrar_pin, check_voucher, Expectations, Nonce, SignedVoucher, Voucher};
use shared::Verified;
use time::OffsetDateTime;
use x509_cert::Certificate;

/// Why a voucher was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImprintError {
    /// Not a signed voucher.
    #[error("the voucher cannot be parsed: {0}")]
    Malformed(String),
    /// Not signed by the manufacturer's MASA.
    #[error("the voucher signature does not verify with the manufacturer trust anchor: {0}")]
    Signature(String),
    /// Content checks (serial, nonce, expiry, assertion, pin presence).
    #[error("the voucher is not for this pledge and request: {0}")]
    Content(String),
    /// The registrar is not the one the voucher pins.
    #[error("the registrar is not the one the voucher pins: {0}")]
    Pin(String),
}

/// Verifies `bytes` as the voucher answering a request with `nonce`, received from a
/// registrar that presented `registrar_chain`.
pub(crate) fn verify_voucher(
    bytes: &[u8],
    id: &Idevid,
    nonce: &Nonce,
    registrar_chain: &[Certificate],
    now: Option<OffsetDateTime>,
) -> Result<Verified<Voucher>, ImprintError> {
    let signed = SignedVoucher::parse(bytes).map_err(|e| ImprintError::Malformed(e.to_string()))?;
    let at = now.unwrap_or_else(OffsetDateTime::now_utc);
    let trust = Trust { anchors: id.manufacturer_anchors.clone(), at };
    let voucher = signed.verify(&trust).map_err(|e| ImprintError::Signature(e.to_string()))?;
    let expect = Expectations {
        nonce: Some(nonce.clone()),
        serial_number: Some(id.serial.clone()),
        idevid_issuer: Some(pki::idevid_issuer(id.certificate())),
        now,
        acceptable_assertions: Vec::new(),
        registrar_spki: registrar_chain.first().map(pki::spki_der),
        require_nonce: false,
    };
    check_voucher(&voucher, &expect).map_err(|e| ImprintError::Content(e.to_string()))?;
    check_registrar_pin(&voucher, registrar_chain, at).map_err(|e| ImprintError::Pin(e.to_string()))?;
    Ok(voucher)
}
