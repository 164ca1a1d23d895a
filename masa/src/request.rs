//! Validation of a registrar voucher-request (RVR), RFC 8995 §5.5, in order, each failure its
//! own [`MasaError`]:
//!
//! 1. parse; the signature verifies with the chain the RVR carries, whose top certificate is a
//!    *temporary* trust anchor for this consistency check only (§5.5.2, §5.5.3);
//! 2. the signer certificate carries id-kp-cmcRA (§5.5.4);
//! 3. it is a voucher-request with a serial-number and without proximity-registrar-cert;
//! 4. the prior-signed-voucher-request, when present (§5.5.5): signed by the IDevID it carries,
//!    which chains to this MASA's manufacturer CA, names the RVR's serial-number and matches
//!    its idevid-issuer; same nonce; its proximity-registrar key is in the RVR signer chain;
//! 5. the serial is a device this MASA minted (404 otherwise);
//! 6. ownership: the RVR signer chain leads to the current owner record (or, without one, the
//!    explicit allow-any-owner policy);
//! 7. a nonceless request needs `nonceless = true` and a registrar authenticated as the owner.
//!
//! The checks are plain functions over verified values; [`check_voucher_request`] is the glue
//! that reads the store between them.

use crate::error::MasaError;
use crate::ownership::OwnerRecord;
use crate::state::Masa;
use der::Decode;
use shared::brski::ID_KP_CMC_RA;
use shared::pki::{self, verify_chain};
use shared::signed::{Format, SignedError, Trust};
use shared::voucher::{Assertion, Kind, Nonce, SignedVoucher, Voucher};
use shared::Verified;
use time::OffsetDateTime;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, ExtendedKeyUsage};
use x509_cert::Certificate;

/// What is known about a request while it is checked: for the log and the audit record of a
/// refusal.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    /// The serial-number the request names (claimed until `serial_verified`).
    pub serial: Option<String>,
    /// Whether `serial` comes from a request whose signature verified.
    pub serial_verified: bool,
    /// Subject of the RVR signer, once its signature verified.
    pub registrar: Option<String>,
}

/// A registrar voucher-request whose signature, signer EKU and basic fields checked out.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedRvr {
    /// The request; its signer chain runs from the registrar certificate to the top of the
    /// chain it carried.
    pub request: Verified<Voucher>,
    /// Every certificate the request carried.
    pub carried: Vec<Certificate>,
    /// Its serial-number.
    pub serial: String,
    registrar: Certificate,
}

impl VerifiedRvr {
    /// The registrar's (signer's) certificate.
    pub(crate) fn registrar(&self) -> &Certificate {
        &self.registrar
    }

    /// The farthest certificate of the signer chain (the domain CA, or the registrar's own
    /// certificate when that is all it carried).
    pub(crate) fn top(&self) -> &Certificate {
        self.request.signer_chain().last().unwrap_or_else(|| self.registrar())
    }
}

/// How the requesting domain is authorised for the serial.
#[derive(Debug, Clone)]
pub(crate) enum Authorization {
    /// The RVR signer chain leads to the current owner record; pin this certificate.
    Owner {
        /// The certificate to pin: the owner's domain CA (or the certificate with its key).
        pinned: Box<Certificate>,
    },
    /// No current owner record; the allow-any-owner policy is on.
    AnyOwner,
}

/// Everything the checks established: what the voucher is built from.
#[derive(Debug, Clone)]
pub(crate) struct Approved {
    /// The device serial number.
    pub serial: String,
    /// The voucher's assertion.
    pub assertion: Assertion,
    /// The nonce to copy (none for a nonceless voucher).
    pub nonce: Option<Nonce>,
    /// idevid-issuer to copy (from the RVR, or computed from the pledge's IDevID).
    pub idevid_issuer: Option<Vec<u8>>,
    /// The pinned-domain-cert.
    pub pinned: Certificate,
    /// The registrar's certificate (RVR signer).
    pub registrar: Certificate,
    /// expires-on of a nonceless voucher.
    pub expires_on: Option<OffsetDateTime>,
}

/// Runs every check of a voucher request (RFC 8995 §5.5) and returns what to put in the
/// voucher. `peer` is the TLS client certificate chain, leaf first (may be empty).
pub(crate) async fn check_voucher_request(
    masa: &Masa,
    body: &[u8],
    format: Format,
    peer: &[Certificate],
    seen: &mut Seen,
) -> Result<Approved, MasaError> {
    let at = OffsetDateTime::now_utc();
    let rvr = verify_rvr(body, format, at, seen)?;
    let idevid = match &rvr.request.prior_signed_voucher_request {
        Some(pvr) => Some(check_pvr(&rvr, pvr, masa.manufacturer_ca(), at)?),
        None => None,
    };
    require_device(masa, &rvr.serial).await?;
    let record = masa.owner_record(&rvr.serial).await?;
    let auth = authorize(&rvr, record.as_ref(), masa.config().allow_any_owner, at)?;
    let pinned = match &auth {
        Authorization::Owner { pinned } => pinned.as_ref().clone(),
        Authorization::AnyOwner => rvr.top().clone(),
    };
    let expires_on = match rvr.request.nonce {
        Some(_) => None,
        None => Some(nonceless_expiry(masa, &rvr, record.as_ref(), peer, &pinned, at)?),
    };
    let assertion = match (&idevid, &auth) {
        (Some(_), _) => Assertion::Proximity,
        (None, Authorization::Owner { .. }) => Assertion::Verified,
        (None, Authorization::AnyOwner) => Assertion::Logged,
    };
    let idevid_issuer = rvr.request.idevid_issuer.clone().or_else(|| idevid.as_ref().map(pki::idevid_issuer));
    Ok(Approved {
        serial: rvr.serial.clone(),
        assertion,
        nonce: rvr.request.nonce.clone(),
        idevid_issuer,
        pinned,
        registrar: rvr.registrar().clone(),
        expires_on,
    })
}

/// 404 unless `serial` is a device this MASA minted.
pub(crate) async fn require_device(masa: &Masa, serial: &str) -> Result<(), MasaError> {
    match masa.device(serial).await? {
        Some(_) => Ok(()),
        None => Err(MasaError::UnknownDevice(serial.to_string())),
    }
}

/// Steps 1–3: parse, verify with the carried chain, id-kp-cmcRA, request fields.
pub(crate) fn verify_rvr(
    body: &[u8],
    format: Format,
    at: OffsetDateTime,
    seen: &mut Seen,
) -> Result<VerifiedRvr, MasaError> {
    let signed = SignedVoucher::parse(body).map_err(|e| MasaError::MalformedRequest(e.to_string()))?;
    if signed.format() != format {
        return Err(MasaError::FormatMismatch {
            declared: format.to_string(),
            found: signed.format().to_string(),
        });
    }
    seen.serial = signed.inspect_unverified().ok().and_then(|v| v.serial_number);
    let carried = signed.envelope().certificates();
    if carried.is_empty() {
        return Err(MasaError::BadSignature("it carries no certificates".into()));
    }
    let trust = Trust { anchors: top_certs(&carried), at };
    let request = signed.verify(&trust).map_err(|e| match e {
        SignedError::Signature(s) => MasaError::BadSignature(s.to_string()),
        SignedError::Payload(p) => MasaError::MalformedRequest(p.to_string()),
    })?;
    let signer =
        request.signer().cloned().ok_or_else(|| MasaError::BadSignature("no signer certificate".into()))?;
    let subject = signer.tbs_certificate().subject().to_string();
    seen.registrar = Some(subject.clone());
    if !has_cmc_ra(&signer) {
        return Err(MasaError::NotRegistrar(subject));
    }
    let serial = check_fields(&request)?;
    seen.serial = Some(serial.clone());
    seen.serial_verified = true;
    Ok(VerifiedRvr { request, carried, serial, registrar: signer })
}

/// The carried certificates that no other carried certificate issued, or self-issued ones:
/// the candidates for the top of the registrar's chain.
fn top_certs(carried: &[Certificate]) -> Vec<Certificate> {
    let subject_of_another = |c: &Certificate| {
        carried.iter().any(|o| o != c && o.tbs_certificate().subject() == c.tbs_certificate().issuer())
    };
    carried
        .iter()
        .filter(|c| c.tbs_certificate().issuer() == c.tbs_certificate().subject() || !subject_of_another(c))
        .cloned()
        .collect()
}

/// Whether `cert` has extended key usage id-kp-cmcRA.
fn has_cmc_ra(cert: &Certificate) -> bool {
    let eku: Option<ExtendedKeyUsage> = cert.tbs_certificate().get_extension().ok().flatten().map(|(_, e)| e);
    eku.is_some_and(|e| e.0.contains(&ID_KP_CMC_RA))
}

/// A voucher-request with a serial-number and no proximity-registrar-cert.
fn check_fields(v: &Voucher) -> Result<String, MasaError> {
    if v.kind != Kind::Request {
        return Err(MasaError::NotARequest(v.kind.to_string()));
    }
    let serial = v.serial_number.clone().filter(|s| !s.is_empty()).ok_or(MasaError::MissingSerialNumber)?;
    if v.proximity_registrar_cert.is_some() {
        return Err(MasaError::ProximityCertInRequest);
    }
    Ok(serial)
}

/// Step 4: the prior-signed-voucher-request. Returns the pledge's IDevID.
pub(crate) fn check_pvr(
    rvr: &VerifiedRvr,
    pvr_bytes: &[u8],
    manufacturer: &Certificate,
    at: OffsetDateTime,
) -> Result<Certificate, MasaError> {
    let signed = SignedVoucher::parse(pvr_bytes).map_err(|e| MasaError::PvrMalformed(e.to_string()))?;
    // A COSE PVR may carry no certificates; the registrar then puts the pledge's in its x5bag.
    let rvr_extra: Vec<Certificate> =
        rvr.carried.iter().filter(|c| !rvr.request.signer_chain().contains(c)).cloned().collect();
    let mut carried = signed.envelope().certificates();
    if carried.is_empty() {
        carried = rvr_extra.clone();
    }
    if carried.is_empty() {
        return Err(MasaError::PvrBadSignature("it carries no IDevID certificate".into()));
    }
    // Step A: which carried certificate's key signed it (each is a candidate, nothing more).
    let pvr = signed.verify(&Trust { anchors: carried.clone(), at }).map_err(|e| match e {
        SignedError::Signature(s) => MasaError::PvrBadSignature(s.to_string()),
        SignedError::Payload(p) => MasaError::PvrMalformed(p.to_string()),
    })?;
    let idevid = pvr.signer().cloned().ok_or_else(|| MasaError::PvrBadSignature("no signer".into()))?;
    // Step B: that certificate is an IDevID of this manufacturer.
    let pool: Vec<Certificate> = carried.iter().chain(&rvr_extra).cloned().collect();
    verify_chain(&idevid, &pool, std::slice::from_ref(manufacturer), at)
        .map_err(|e| MasaError::ForeignDevice(e.to_string()))?;
    if pvr.kind != Kind::Request {
        return Err(MasaError::PvrMalformed(format!("the pledge's artifact is a {}", pvr.kind)));
    }
    check_pvr_serial(rvr, &pvr, &idevid)?;
    check_idevid_issuer(&rvr.request, &idevid)?;
    if pvr.nonce != rvr.request.nonce {
        return Err(MasaError::NonceMismatch);
    }
    check_proximity(&pvr, rvr.request.signer_chain())?;
    Ok(idevid)
}

/// The IDevID's serialNumber (and the PVR's own serial-number, if any) equal the RVR's.
fn check_pvr_serial(rvr: &VerifiedRvr, pvr: &Voucher, idevid: &Certificate) -> Result<(), MasaError> {
    let from_cert = pki::serial_number(idevid).unwrap_or_default();
    for theirs in [Some(&from_cert), pvr.serial_number.as_ref()].into_iter().flatten() {
        if *theirs != rvr.serial {
            return Err(MasaError::SerialMismatch { rvr: rvr.serial.clone(), idevid: theirs.clone() });
        }
    }
    Ok(())
}

/// The RVR's idevid-issuer (if present) names the IDevID's issuer key. Compared by key
/// identifier, so the full extnValue, the bare AKI SEQUENCE and the bare id all match.
fn check_idevid_issuer(rvr: &Voucher, idevid: &Certificate) -> Result<(), MasaError> {
    match &rvr.idevid_issuer {
        Some(v) if issuer_key_id(v) != issuer_key_id(&pki::idevid_issuer(idevid)) => {
            Err(MasaError::IdevidIssuerMismatch)
        }
        _ => Ok(()),
    }
}

/// The key identifier inside an idevid-issuer value of any of its published forms.
fn issuer_key_id(value: &[u8]) -> Vec<u8> {
    let inner =
        der::asn1::OctetString::from_der(value).map(|o| o.as_bytes().to_vec()).unwrap_or(value.to_vec());
    match AuthorityKeyIdentifier::from_der(&inner) {
        Ok(AuthorityKeyIdentifier { key_identifier: Some(id), .. }) => id.as_bytes().to_vec(),
        _ => inner,
    }
}

/// The PVR's proximity-registrar key (by rfc8366bis order: pubk-sha256, pubk, cert) is the key
/// of a certificate in the RVR signer chain (RFC 8995 §5.5.5, an RFC 7469-style pin match).
fn check_proximity(pvr: &Voucher, chain: &[Certificate]) -> Result<(), MasaError> {
    let keys: Vec<Vec<u8>> = chain.iter().map(pki::spki_der).collect();
    let found = if let Some(h) = &pvr.proximity_registrar_pubk_sha256 {
        keys.iter().any(|k| shared::crypto::sha256(k).as_slice() == h.as_slice())
    } else if let Some(k) = &pvr.proximity_registrar_pubk {
        keys.contains(k)
    } else if let Some(der) = &pvr.proximity_registrar_cert {
        let cert = Certificate::from_der(der).map_err(|e| {
            MasaError::ProximityMismatch(format!(
                "the pledge's proximity-registrar-cert is not a certificate: {e}"
            ))
        })?;
        keys.contains(&pki::spki_der(&cert))
    } else {
        return Err(MasaError::ProximityMismatch(
            "the prior-signed-voucher-request carries no proximity-registrar-cert".into(),
        ));
    };
    if !found {
        return Err(MasaError::ProximityMismatch(
            "the pledge's proximity-registrar-cert is not in the registrar voucher-request's signing chain \
             (RFC 8995 §5.5.5)"
                .into(),
        ));
    }
    Ok(())
}

/// Step 6: ownership. A current record must match the RVR signer chain; without one the
/// request is authorised only by the allow-any-owner policy (403 otherwise: fixable by the
/// manufacturer recording the owner, RFC 8995 §5.6).
pub(crate) fn authorize(
    rvr: &VerifiedRvr,
    record: Option<&OwnerRecord>,
    allow_any_owner: bool,
    at: OffsetDateTime,
) -> Result<Authorization, MasaError> {
    match record.filter(|r| r.is_current(at)) {
        Some(r) => r
            .matches(rvr.request.signer_chain(), &rvr.carried, at)
            .map(|pinned| Authorization::Owner { pinned: Box::new(pinned) })
            .ok_or_else(|| MasaError::OwnedByOther(rvr.serial.clone())),
        None if allow_any_owner => Ok(Authorization::AnyOwner),
        None => Err(MasaError::NoOwner(rvr.serial.clone())),
    }
}

/// Step 7: a nonceless request. Allowed only with `nonceless = true` and a registrar
/// authenticated as the owner: its TLS client certificate or its RVR signer chain leads to the
/// current owner record (allow-any-owner alone is not enough, RFC 8995 §5.5.4). The voucher
/// expires after the configured lifetime, never after the registrar's or the pinned
/// certificate's notAfter.
fn nonceless_expiry(
    masa: &Masa,
    rvr: &VerifiedRvr,
    record: Option<&OwnerRecord>,
    peer: &[Certificate],
    pinned: &Certificate,
    at: OffsetDateTime,
) -> Result<OffsetDateTime, MasaError> {
    if !masa.config().nonceless {
        return Err(MasaError::NoncelessRefused(
            "this MASA does not issue nonceless vouchers (config key nonceless = false)".into(),
        ));
    }
    let current = record.filter(|r| r.is_current(at));
    let by_tls = current.is_some_and(|r| r.matches(peer, &[], at).is_some());
    let by_rvr = current.is_some_and(|r| r.matches(rvr.request.signer_chain(), &rvr.carried, at).is_some());
    if !(by_tls || by_rvr) {
        return Err(MasaError::NoncelessRefused(format!(
            "the registrar is not authenticated as the owner of serial {}: neither its TLS client \
             certificate nor its voucher-request chain leads to a current ownership record \
             (allow_any_owner does not authorise nonceless vouchers)",
            rvr.serial
        )));
    }
    let lifetime = time::Duration::try_from(masa.config().nonceless_lifetime())
        .map_err(|e| MasaError::Internal(e.to_string()))?;
    Ok([at + lifetime, not_after(rvr.registrar()), not_after(pinned)].into_iter().min().unwrap_or(at))
}

/// A certificate's notAfter.
fn not_after(cert: &Certificate) -> OffsetDateTime {
    let secs = cert.tbs_certificate().validity().not_after.to_unix_duration().as_secs();
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .unwrap_or(time::macros::datetime!(9999-12-31 23:59:59 UTC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_key_ids_compare_leniently() {
        let id = [7u8; 20];
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(der::asn1::OctetString::new(id.to_vec()).unwrap()),
            ..Default::default()
        };
        let seq = der::Encode::to_der(&aki).unwrap();
        let full = der::Encode::to_der(&der::asn1::OctetString::new(seq.clone()).unwrap()).unwrap();
        assert_eq!(issuer_key_id(&full), id);
        assert_eq!(issuer_key_id(&seq), id);
        assert_eq!(issuer_key_id(&id), id);
    }
}
