//! The store operations of the PostgreSQL backend, one per [`Store`] method, and the
//! statements they share inside a transaction.

use super::*;
use shared::store::StoreBackend;

impl StoreBackend for PgStore {
    type Error = DbError;

    async fn schema_version(&self) -> DbResult<i64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(&self.pool).await?;
        Ok(v.unwrap_or(0))
    }

    async fn record_certificate(&self, cert: &IssuedCertificate) -> DbResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_certificate(&mut conn, cert).await
    }

    async fn record_certificate_audited(
        &self,
        cert: &IssuedCertificate,
        event: &AuditEvent,
    ) -> DbResult<u64> {
        let mut tx = self.pool.begin().await?;
        lock_audit(&mut tx).await?;
        insert_certificate(&mut tx, cert).await?;
        let seq = append_audit_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn certificate(&self, serial_hex: &str) -> DbResult<Option<IssuedCertificate>> {
        let serial = normalize_serial(serial_hex)?;
        let row = sqlx::query(
            "SELECT serial_hex, issuer, subject, not_before, not_after, profile, der, issued_at \
             FROM certificates WHERE serial_hex = $1",
        )
        .bind(&serial)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(certificate_from_row).transpose()
    }

    async fn list_certificates(&self, limit: u32, offset: u64) -> DbResult<Vec<IssuedCertificate>> {
        let rows = sqlx::query(
            "SELECT serial_hex, issuer, subject, not_before, not_after, profile, der, issued_at \
             FROM certificates ORDER BY issued_at, serial_hex LIMIT $1 OFFSET $2",
        )
        .bind(i64::from(limit))
        .bind(to_i64(offset, "offset")?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(certificate_from_row).collect()
    }

    async fn revoke_certificate(
        &self,
        serial_hex: &str,
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> DbResult<bool> {
        let serial = normalize_serial(serial_hex)?;
        let at = format_time(at, "revocation time")?;
        let mut tx = self.pool.begin().await?;
        // Certificates are never deleted, so the check cannot be invalidated before the commit.
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM certificates WHERE serial_hex = $1")
            .bind(&serial)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            tx.rollback().await?;
            return Err(DbError::Store(StoreError::NotFound { what: "certificate serial", key: serial }));
        }
        let result = sqlx::query(
            "INSERT INTO certificate_revocations (serial_hex, reason, revoked_at) \
             VALUES ($1, $2, $3) ON CONFLICT (serial_hex) DO NOTHING",
        )
        .bind(&serial)
        .bind(i32::from(reason.code()))
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(result.rows_affected() == 1)
    }

    async fn revocation(&self, serial_hex: &str) -> DbResult<Option<Revocation>> {
        let serial = normalize_serial(serial_hex)?;
        let row = sqlx::query(
            "SELECT serial_hex, reason, revoked_at FROM certificate_revocations WHERE serial_hex = $1",
        )
        .bind(&serial)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(revocation_from_row).transpose()
    }

    async fn list_revocations(&self, limit: u32, offset: u64) -> DbResult<Vec<Revocation>> {
        let rows = sqlx::query(
            "SELECT serial_hex, reason, revoked_at FROM certificate_revocations \
             ORDER BY revoked_at, serial_hex LIMIT $1 OFFSET $2",
        )
        .bind(i64::from(limit))
        .bind(to_i64(offset, "offset")?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(revocation_from_row).collect()
    }

    async fn append_audit(&self, event: &AuditEvent) -> DbResult<u64> {
        let mut tx = self.pool.begin().await?;
        lock_audit(&mut tx).await?;
        let seq = append_audit_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn audit_events(
        &self,
        subject: Option<&str>,
        since_seq: u64,
        limit: u32,
    ) -> DbResult<Vec<AuditRecord>> {
        let since = to_i64(since_seq, "since_seq")?;
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_log \
             WHERE ($1::text IS NULL OR subject = $1) AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(subject)
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn verify_audit_chain(&self) -> DbResult<u64> {
        let mut verifier = AuditChainVerifier::new();
        let mut after: i64 = i64::MIN;
        loop {
            let rows = sqlx::query(
                "SELECT seq, at, actor, action, subject, detail, prev_hash, hash \
                 FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(VERIFY_PAGE)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let raw_seq: i64 = row.try_get("seq")?;
                after = raw_seq;
                let Ok(seq) = u64::try_from(raw_seq) else {
                    return Err(DbError::Store(StoreError::ChainBroken {
                        seq: verifier.rows() + 1,
                        reason: "a record has a negative sequence number",
                    }));
                };
                let at: String = row.try_get("at")?;
                let actor: String = row.try_get("actor")?;
                let action: String = row.try_get("action")?;
                let subject: String = row.try_get("subject")?;
                let detail: String = row.try_get("detail")?;
                let prev_hash: String = row.try_get("prev_hash")?;
                let hash: String = row.try_get("hash")?;
                let text = AuditRowText {
                    seq,
                    at: &at,
                    actor: &actor,
                    action: &action,
                    subject: &subject,
                    detail: &detail,
                };
                if let Err(e) = verifier.check(&text, &prev_hash, &hash) {
                    tracing::error!(error = %e, "audit chain verification failed");
                    return Err(DbError::Store(e));
                }
            }
        }
        Ok(verifier.rows())
    }

    async fn consume_once(&self, scope: &str, value: &[u8], expires_at: OffsetDateTime) -> DbResult<bool> {
        if scope.is_empty() {
            return Err(DbError::Store(StoreError::Invalid("single-use scope must not be empty".into())));
        }
        if value.is_empty() {
            return Err(DbError::Store(StoreError::Invalid(format!(
                "single-use value in scope `{scope}` must not be empty"
            ))));
        }
        let expires = format_time(expires_at, "single-use expiry")?;
        let now = format_time(OffsetDateTime::now_utc(), "current time")?;
        let result = sqlx::query(
            "INSERT INTO single_use (scope, value, expires_at, consumed_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (scope, value) DO NOTHING",
        )
        .bind(scope)
        .bind(value)
        .bind(&expires)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> DbResult<u64> {
        let now = format_time(now, "purge time")?;
        let result = sqlx::query("DELETE FROM single_use WHERE expires_at <= $1")
            .bind(&now)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn record_voucher(&self, v: &VoucherRecord) -> DbResult<u64> {
        let mut conn = self.pool.acquire().await?;
        insert_voucher(&mut conn, v).await
    }

    async fn write_batch(&self, batch: &WriteBatch) -> DbResult<Vec<u64>> {
        for (key, _) in &batch.settings {
            check_setting_key(key)?;
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let now = format_time(OffsetDateTime::now_utc(), "current time")?;
        let mut tx = self.pool.begin().await?;
        if !batch.audit.is_empty() {
            // First, before any row lock: a batch never waits for the audit lock while
            // holding a row another appender waits for.
            lock_audit(&mut tx).await?;
        }
        for v in &batch.vouchers {
            insert_voucher(&mut tx, v).await?;
        }
        for (key, value) in &batch.settings {
            upsert_setting(&mut tx, key, value, &now).await?;
        }
        let mut seqs = Vec::with_capacity(batch.audit.len());
        for event in &batch.audit {
            seqs.push(append_audit_in(&mut tx, event).await?);
        }
        tx.commit().await?;
        Ok(seqs)
    }

    async fn vouchers_for(&self, serial_number: &str) -> DbResult<Vec<VoucherRecord>> {
        let rows = sqlx::query(
            "SELECT serial_number, domain, assertion, nonce, format, bytes, created_at \
             FROM vouchers WHERE serial_number = $1 ORDER BY created_at, id",
        )
        .bind(serial_number)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(voucher_from_row).collect()
    }

    async fn put_setting(&self, key: &str, value: &str) -> DbResult<()> {
        check_setting_key(key)?;
        let now = format_time(OffsetDateTime::now_utc(), "current time")?;
        let mut conn = self.pool.acquire().await?;
        upsert_setting(&mut conn, key, value, &now).await
    }

    async fn get_setting(&self, key: &str) -> DbResult<Option<String>> {
        check_setting_key(key)?;
        let value: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    async fn settings_with_prefix(&self, prefix: &str) -> DbResult<Vec<(String, String)>> {
        // Compared with left(), not LIKE, so `%` and `_` in the prefix are literal.
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key, value FROM settings WHERE left(key, length($1)) = $1 ORDER BY key")
                .bind(prefix)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows)
    }
}

/// Takes the audit append lock for the rest of the transaction on `conn` (see the module
/// documentation).
pub(super) async fn lock_audit(conn: &mut PgConnection) -> DbResult<()> {
    sqlx::query("LOCK TABLE audit_log IN EXCLUSIVE MODE").execute(&mut *conn).await?;
    Ok(())
}

/// Inserts an issued certificate; a known serial is a [`StoreError::Duplicate`] and leaves the
/// transaction usable (no error is raised in the server).
pub(super) async fn insert_certificate(conn: &mut PgConnection, cert: &IssuedCertificate) -> DbResult<()> {
    let serial = normalize_serial(&cert.serial_hex)?;
    let result = sqlx::query(
        "INSERT INTO certificates \
         (serial_hex, issuer, subject, not_before, not_after, profile, der, issued_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (serial_hex) DO NOTHING",
    )
    .bind(&serial)
    .bind(&cert.issuer)
    .bind(&cert.subject)
    .bind(format_time(cert.not_before, "not_before")?)
    .bind(format_time(cert.not_after, "not_after")?)
    .bind(&cert.profile)
    .bind(cert.der.as_slice())
    .bind(format_time(cert.issued_at, "issued_at")?)
    .execute(&mut *conn)
    .await?;
    if result.rows_affected() == 0 {
        return Err(DbError::Store(StoreError::Duplicate { what: "certificate serial", key: serial }));
    }
    Ok(())
}

/// Appends `event` to the audit hash chain; the transaction must hold the audit lock.
pub(super) async fn append_audit_in(conn: &mut PgConnection, event: &AuditEvent) -> DbResult<u64> {
    let at = format_time(event.at, "audit time")?;
    let detail = canonical_json(&event.detail)?;
    let tail: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (prev_seq, prev_hash) = match tail {
        Some((seq, hash)) => (seq_from_i64(seq)?, hash),
        None => (0, AUDIT_GENESIS_HASH.to_owned()),
    };
    let seq = prev_seq + 1;
    let hash = audit_hash(
        &prev_hash,
        &AuditRowText {
            seq,
            at: &at,
            actor: &event.actor,
            action: &event.action,
            subject: &event.subject,
            detail: &detail,
        },
    );
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, subject, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(to_i64(seq, "audit sequence")?)
    .bind(&at)
    .bind(&event.actor)
    .bind(&event.action)
    .bind(&event.subject)
    .bind(&detail)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    Ok(seq)
}

/// Inserts a voucher record (insert-only); returns its row id.
pub(super) async fn insert_voucher(conn: &mut PgConnection, v: &VoucherRecord) -> DbResult<u64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO vouchers (serial_number, domain, assertion, nonce, format, bytes, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(&v.serial_number)
    .bind(&v.domain)
    .bind(&v.assertion)
    .bind(v.nonce.as_deref())
    .bind(&v.format)
    .bind(v.bytes.as_slice())
    .bind(format_time(v.created_at, "voucher created_at")?)
    .fetch_one(&mut *conn)
    .await?;
    Ok(u64::try_from(id)
        .map_err(|_| StoreError::Corrupt { what: format!("voucher row id {id} is negative") })?)
}

/// Sets `key` to `value` (the key already checked), stamped `now`.
pub(super) async fn upsert_setting(
    conn: &mut PgConnection,
    key: &str,
    value: &str,
    now: &str,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(key)
    .bind(value)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
