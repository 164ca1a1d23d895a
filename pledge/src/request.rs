//! The pledge voucher-request (RFC 8995 §5.2): created-on, a fresh random nonce, assertion
//! proximity, the registrar's end-entity certificate as seen in the TLS handshake, and the
//! serial-number, signed with the IDevID key in the configured format.

use crate::identity::Idevid;
use shared::signed::{Format, SignatureError};
use shared::voucher::{sign_voucher, Assertion, Kind, Nonce, Voucher};
use time::OffsetDateTime;
use x509_cert::Certificate;

/// A fresh nonce: 16 random bytes (RFC 4086 §6.2), new for every attempt.
pub fn fresh_nonce() -> Nonce {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    Nonce::from_bytes(&bytes)
}

/// Builds and signs the voucher-request; returns its bytes.
pub fn pledge_request(
    id: &Idevid,
    registrar: &Certificate,
    nonce: &Nonce,
    format: Format,
) -> Result<Vec<u8>, SignatureError> {
    let mut v = Voucher::new(Kind::Request);
    v.created_on = Some(OffsetDateTime::now_utc());
    v.nonce = Some(nonce.clone());
    v.assertion = Some(Assertion::Proximity);
    v.proximity_registrar_cert =
        Some(shared::pki::cert_to_der(registrar).map_err(|e| SignatureError::Sign(e.to_string()))?);
    v.serial_number = Some(id.serial.clone());
    let signed = sign_voucher(&v, format, id.signer.as_ref(), std::slice::from_ref(id.certificate()))?;
    Ok(signed.bytes().to_vec())
}
