//! The registrar's checks on a pledge voucher-request (RFC 8995 §5.2, §5.3), in order: a
//! voucher-request media type; an IDevID client certificate from a trusted manufacturer with a
//! serialNumber; a request signed by that certificate's key; a request (not a voucher) with a
//! nonce; proximity with this registrar's own certificate; the same serial-number as the IDevID.

use crate::config::Manufacturer;
use crate::error::RegistrarError;
use shared::pki::{self, verify_chain};
use shared::signed::{Format, SignatureError, SignedError, Trust};
use shared::voucher::{check_request, Assertion, Nonce, SignedVoucher, Voucher};
use shared::Verified;
use time::OffsetDateTime;
use x509_cert::Certificate;

/// A pledge voucher-request that passed every check.
#[derive(Debug)]
pub(crate) struct CheckedPvr {
    /// The pledge's serial number (from the IDevID, equal to the request's).
    pub serial: String,
    /// The IDevID (TLS client certificate).
    pub idevid: Certificate,
    /// Index of the manufacturer it chains to.
    pub manufacturer: usize,
    /// The request's format (the registrar voucher-request uses the same).
    pub format: Format,
    /// The request's nonce.
    pub nonce: Nonce,
    /// The signed request exactly as received.
    pub bytes: Vec<u8>,
}

/// What the checks need besides the request.
#[derive(Debug)]
pub(crate) struct PvrContext<'a> {
    /// The TLS client chain as sent (leaf first).
    pub client_chain: &'a [Certificate],
    /// This registrar's TLS certificate.
    pub own_cert: &'a Certificate,
    /// Trusted manufacturers.
    pub manufacturers: &'a [Manufacturer],
    /// Verification time.
    pub at: OffsetDateTime,
}

/// Runs every check on a pledge voucher-request received with `content_type`.
pub(crate) fn check_pvr(
    body: &[u8],
    content_type: &str,
    cx: &PvrContext<'_>,
) -> Result<CheckedPvr, RegistrarError> {
    let format = shared::brski::media::format_of(content_type)
        .ok_or_else(|| RegistrarError::UnsupportedMediaType(content_type.to_string()))?;
    let (idevid, rest) = cx.client_chain.split_first().ok_or(RegistrarError::NoClientCert)?;
    let manufacturer = find_manufacturer(idevid, rest, cx)?;
    let serial = pki::serial_number(idevid).ok_or(RegistrarError::NoSerial)?;
    let signed = SignedVoucher::parse(body).map_err(|e| RegistrarError::BadRequest(e.to_string()))?;
    if signed.format() != format {
        return Err(RegistrarError::BadRequest(format!(
            "the body is {} but Content-Type says {}",
            signed.format(),
            format
        )));
    }
    let request = verify_with_client_key(&signed, idevid, cx.at)?;
    check_request(&request).map_err(|e| RegistrarError::BadRequest(e.to_string()))?;
    let nonce =
        request.nonce.clone().ok_or_else(|| RegistrarError::BadRequest("the request has no nonce".into()))?;
    check_proximity(&request, cx.own_cert)?;
    let claimed = request.serial_number.clone().unwrap_or_default();
    if claimed != serial {
        return Err(RegistrarError::SerialMismatch { request: claimed, idevid: serial });
    }
    Ok(CheckedPvr {
        serial,
        idevid: idevid.clone(),
        manufacturer,
        format,
        nonce,
        bytes: signed.bytes().to_vec(),
    })
}

/// The first manufacturer whose anchors the IDevID chains to.
fn find_manufacturer(
    leaf: &Certificate,
    rest: &[Certificate],
    cx: &PvrContext<'_>,
) -> Result<usize, RegistrarError> {
    let mut last = String::from("no manufacturer is configured");
    for (i, m) in cx.manufacturers.iter().enumerate() {
        match verify_chain(leaf, rest, &m.idevid_anchors, cx.at) {
            Ok(_) => return Ok(i),
            Err(e) => last = e.to_string(),
        }
    }
    Err(RegistrarError::UnknownManufacturer(last))
}

/// Verifies the request with the TLS client certificate as the only trusted key: anything
/// signed by another key fails here.
fn verify_with_client_key(
    signed: &SignedVoucher,
    idevid: &Certificate,
    at: OffsetDateTime,
) -> Result<Verified<Voucher>, RegistrarError> {
    let trust = Trust { anchors: vec![idevid.clone()], at };
    signed.verify(&trust).map_err(|e| match e {
        SignedError::Signature(SignatureError::BadSignature | SignatureError::Chain(_)) => {
            RegistrarError::SignerMismatch
        }
        other => RegistrarError::BadRequest(other.to_string()),
    })
}

/// Proximity: the assertion asks for it and the registrar certificate the pledge saw is ours.
fn check_proximity(request: &Voucher, own: &Certificate) -> Result<(), RegistrarError> {
    if request.assertion != Some(Assertion::Proximity) {
        return Err(RegistrarError::BadRequest("the request's assertion is not \"proximity\"".into()));
    }
    let own_der = pki::cert_to_der(own).map_err(|e| RegistrarError::Internal(e.to_string()))?;
    match &request.proximity_registrar_cert {
        Some(der) if *der == own_der => Ok(()),
        _ => Err(RegistrarError::ProximityMismatch),
    }
}
