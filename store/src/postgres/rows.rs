//! Rows of the PostgreSQL schema decoded into the store's records.

use super::*;

pub(super) fn certificate_from_row(row: &PgRow) -> DbResult<IssuedCertificate> {
    let serial_hex: String = row.try_get("serial_hex")?;
    let time = |col: &str| -> DbResult<OffsetDateTime> {
        let text: String = row.try_get(col)?;
        Ok(parse_time(&text, &format!("certificate {serial_hex} {col}"))?)
    };
    Ok(IssuedCertificate {
        not_before: time("not_before")?,
        not_after: time("not_after")?,
        issued_at: time("issued_at")?,
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        profile: row.try_get("profile")?,
        der: row.try_get("der")?,
        serial_hex,
    })
}

pub(super) fn revocation_from_row(row: &PgRow) -> DbResult<Revocation> {
    let serial_hex: String = row.try_get("serial_hex")?;
    let code: i32 = row.try_get("reason")?;
    let reason = u8::try_from(code).ok().and_then(RevocationReason::from_code).ok_or_else(|| {
        StoreError::Corrupt { what: format!("revocation of {serial_hex} has unknown reason code {code}") }
    })?;
    let at: String = row.try_get("revoked_at")?;
    Ok(Revocation {
        revoked_at: parse_time(&at, &format!("revocation time of {serial_hex}"))?,
        reason,
        serial_hex,
    })
}

pub(super) fn audit_from_row(row: &PgRow) -> DbResult<AuditRecord> {
    let seq = seq_from_i64(row.try_get("seq")?)?;
    let at: String = row.try_get("at")?;
    let detail: String = row.try_get("detail")?;
    Ok(AuditRecord {
        seq,
        event: AuditEvent {
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            subject: row.try_get("subject")?,
            detail: serde_json::from_str(&detail).map_err(|e| StoreError::Corrupt {
                what: format!("audit record {seq} detail is not JSON: {e}"),
            })?,
            at: parse_time(&at, &format!("audit record {seq} time"))?,
        },
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

pub(super) fn voucher_from_row(row: &PgRow) -> DbResult<VoucherRecord> {
    let serial_number: String = row.try_get("serial_number")?;
    let created: String = row.try_get("created_at")?;
    Ok(VoucherRecord {
        created_at: parse_time(&created, &format!("voucher for {serial_number} created_at"))?,
        domain: row.try_get("domain")?,
        assertion: row.try_get("assertion")?,
        nonce: row.try_get("nonce")?,
        format: row.try_get("format")?,
        bytes: row.try_get("bytes")?,
        serial_number,
    })
}
