//! Building and signing the voucher (RFC 8366 / rfc8366bis, RFC 8995 §5.6) from what the
//! request checks approved, and committing it to the store before it is answered.

use crate::audit;
use crate::error::MasaError;
use crate::request::Approved;
use crate::state::Masa;
use shared::brski::domain_id;
use shared::pki;
use shared::signed::Format;
use shared::store::{VoucherRecord, WriteBatch};
use shared::voucher::{sign_voucher, Kind, Voucher};
use time::OffsetDateTime;

/// The voucher for an approved request: created-on, assertion, serial-number, nonce (copied),
/// idevid-issuer, pinned-domain-cert, domain-cert-revocation-checks false, and expires-on for a
/// nonceless voucher. prior-signed-voucher-request is not copied (RFC 8995 §5.5).
pub(crate) fn build_voucher(a: &Approved, now: OffsetDateTime) -> Result<Voucher, MasaError> {
    let mut v = Voucher::new(Kind::Voucher);
    v.created_on = Some(now.replace_nanosecond(0).unwrap_or(now));
    v.assertion = Some(a.assertion);
    v.serial_number = Some(a.serial.clone());
    v.nonce = a.nonce.clone();
    v.idevid_issuer = a.idevid_issuer.clone();
    v.pinned_domain_cert = Some(pki::cert_to_der(&a.pinned)?);
    v.domain_cert_revocation_checks = Some(false);
    v.expires_on = a.expires_on.map(|t| t.replace_nanosecond(0).unwrap_or(t));
    Ok(v)
}

/// Signs the voucher for `a` in `format` with the voucher-signing key (its chain carried),
/// records it and its audit event together, and returns the signed bytes.
pub(crate) async fn issue(
    masa: &Masa,
    a: &Approved,
    format: Format,
    actor: &str,
) -> Result<Vec<u8>, MasaError> {
    let now = OffsetDateTime::now_utc();
    let voucher = build_voucher(a, now)?;
    let signed = sign_voucher(&voucher, format, masa.voucher_signer(), masa.voucher_chain())
        .map_err(|e| MasaError::Internal(format!("signing the voucher: {e}")))?;
    let record = VoucherRecord {
        serial_number: a.serial.clone(),
        domain: domain_id(&a.pinned),
        assertion: a.assertion.name().to_string(),
        nonce: a.nonce.as_ref().map(|n| n.json_text().into_bytes()),
        format: audit::format_name(format).to_string(),
        bytes: signed.bytes().to_vec(),
        created_at: now,
    };
    // The voucher and its audit event: one transaction (one commit), before it is answered.
    let event = audit::issued_event(a, &record, actor);
    masa.store().write_batch(&WriteBatch::new().voucher(record).audit(event)).await?;
    Ok(signed.bytes().to_vec())
}
