//! The registrar voucher-request (RFC 8995 §5.5): built from a checked pledge request and the
//! authenticated IDevID, signed by the registrar in the pledge's format with the chain it wants
//! pinned (its certificate, then the domain CA).

use crate::error::RegistrarError;
use crate::pvr::CheckedPvr;
use shared::keys::Signer;
use shared::pki;
use shared::voucher::{sign_voucher, Assertion, Kind, Voucher};
use time::OffsetDateTime;
use x509_cert::Certificate;

/// The unsigned registrar voucher-request for `pvr`: created-on now, the pledge's nonce, the
/// serial-number and idevid-issuer taken from the IDevID (never copied from the request), the
/// pledge's signed request as prior-signed-voucher-request, assertion proximity, and no
/// proximity-registrar-cert.
pub(crate) fn registrar_request(pvr: &CheckedPvr) -> Voucher {
    let mut v = Voucher::new(Kind::Request);
    v.created_on = Some(OffsetDateTime::now_utc());
    v.nonce = Some(pvr.nonce.clone());
    v.serial_number = Some(pvr.serial.clone());
    v.idevid_issuer = Some(pki::idevid_issuer(&pvr.idevid));
    v.prior_signed_voucher_request = Some(pvr.bytes.clone());
    v.assertion = Some(Assertion::Proximity);
    v
}

/// Signs the registrar voucher-request in the pledge's format.
pub(crate) fn sign_registrar_request(
    pvr: &CheckedPvr,
    signer: &dyn Signer,
    chain: &[Certificate],
) -> Result<Vec<u8>, RegistrarError> {
    let signed = sign_voucher(&registrar_request(pvr), pvr.format, signer, chain)
        .map_err(|e| RegistrarError::Internal(format!("signing the registrar voucher-request: {e}")))?;
    Ok(signed.bytes().to_vec())
}
