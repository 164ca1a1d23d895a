//! The store operations of the SQLite backend, one per [`Store`] method: reads on the pool,
//! frequent writes through the group commit, rare writes in their own transaction.

use super::*;
use shared::store::StoreBackend;

impl StoreBackend for SqliteStore {
    type Error = DbError;

    async fn schema_version(&self) -> DbResult<i64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(&self.pool).await?;
        Ok(v.unwrap_or(0))
    }

    async fn record_certificate(&self, cert: &IssuedCertificate) -> DbResult<()> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        insert_certificate(&mut tx, cert).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the certificate and its audit event together: neither exists without the
    /// other, and the call returns once both are durable. A group-committed write (see
    /// [`SqliteStore::submit`]).
    async fn record_certificate_audited(
        &self,
        cert: &IssuedCertificate,
        event: &AuditEvent,
    ) -> DbResult<u64> {
        let job = Write::Certificate { cert: CertRow::new(cert)?, event: AuditRow::new(event)? };
        let (reply, result) = tokio::sync::oneshot::channel();
        self.submit(job, Reply::Seq(reply));
        answer(result).await
    }

    async fn certificate(&self, serial_hex: &str) -> DbResult<Option<IssuedCertificate>> {
        let serial = normalize_serial(serial_hex)?;
        let row = sqlx::query(
            "SELECT serial_hex, issuer, subject, not_before, not_after, profile, der, issued_at \
             FROM certificates WHERE serial_hex = ?",
        )
        .bind(&serial)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(certificate_from_row).transpose()
    }

    async fn list_certificates(&self, limit: u32, offset: u64) -> DbResult<Vec<IssuedCertificate>> {
        let rows = sqlx::query(
            "SELECT serial_hex, issuer, subject, not_before, not_after, profile, der, issued_at \
             FROM certificates ORDER BY issued_at, serial_hex LIMIT ? OFFSET ?",
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
        let _writer = self.writer.lock().await;
        let serial = normalize_serial(serial_hex)?;
        let at = format_time(at, "revocation time")?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM certificates WHERE serial_hex = ?")
            .bind(&serial)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            tx.rollback().await?;
            return Err(DbError::Store(StoreError::NotFound { what: "certificate serial", key: serial }));
        }
        let result = sqlx::query(
            "INSERT INTO certificate_revocations (serial_hex, reason, revoked_at) \
             VALUES (?, ?, ?) ON CONFLICT (serial_hex) DO NOTHING",
        )
        .bind(&serial)
        .bind(i64::from(reason.code()))
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(result.rows_affected() == 1)
    }

    async fn revocation(&self, serial_hex: &str) -> DbResult<Option<Revocation>> {
        let serial = normalize_serial(serial_hex)?;
        let row = sqlx::query(
            "SELECT serial_hex, reason, revoked_at FROM certificate_revocations \
             WHERE serial_hex = ?",
        )
        .bind(&serial)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(revocation_from_row).transpose()
    }

    async fn list_revocations(&self, limit: u32, offset: u64) -> DbResult<Vec<Revocation>> {
        let rows = sqlx::query(
            "SELECT serial_hex, reason, revoked_at FROM certificate_revocations \
             ORDER BY revoked_at, serial_hex LIMIT ? OFFSET ?",
        )
        .bind(i64::from(limit))
        .bind(to_i64(offset, "offset")?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(revocation_from_row).collect()
    }

    async fn append_audit(&self, event: &AuditEvent) -> DbResult<u64> {
        let job = Write::AppendAudit(AuditRow::new(event)?);
        let (reply, result) = tokio::sync::oneshot::channel();
        self.submit(job, Reply::Seq(reply));
        answer(result).await
    }

    async fn audit_events(
        &self,
        subject: Option<&str>,
        since_seq: u64,
        limit: u32,
    ) -> DbResult<Vec<AuditRecord>> {
        let since = to_i64(since_seq, "since_seq")?;
        let rows = match subject {
            Some(subject) => {
                sqlx::query(
                    "SELECT seq, at, actor, action, subject, detail, prev_hash, hash \
                     FROM audit_log WHERE subject = ? AND seq > ? ORDER BY seq LIMIT ?",
                )
                .bind(subject)
                .bind(since)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT seq, at, actor, action, subject, detail, prev_hash, hash \
                     FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
                )
                .bind(since)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(audit_from_row).collect()
    }

    async fn verify_audit_chain(&self) -> DbResult<u64> {
        let mut verifier = AuditChainVerifier::new();
        // Page in seq order with a cursor on the last seen seq so the check
        // works on logs of any length with bounded memory.
        let mut after: i64 = i64::MIN;
        loop {
            let rows = sqlx::query(
                "SELECT seq, at, actor, action, subject, detail, prev_hash, hash \
                 FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
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
                let seq = match u64::try_from(raw_seq) {
                    Ok(s) => s,
                    Err(_) => {
                        return Err(DbError::Store(StoreError::ChainBroken {
                            seq: verifier.rows() + 1,
                            reason: "a record has a negative sequence number",
                        }))
                    }
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
        let job = Write::ConsumeOnce {
            scope: scope.to_owned(),
            value: value.to_vec(),
            expires: format_time(expires_at, "single-use expiry")?,
            now: format_time(OffsetDateTime::now_utc(), "current time")?,
        };
        let (reply, result) = tokio::sync::oneshot::channel();
        self.submit(job, Reply::Consumed(reply));
        answer(result).await
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> DbResult<u64> {
        let _writer = self.writer.lock().await;
        let now = format_time(now, "purge time")?;
        let result = sqlx::query("DELETE FROM single_use WHERE expires_at <= ?")
            .bind(&now)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn record_voucher(&self, v: &VoucherRecord) -> DbResult<u64> {
        let _writer = self.writer.lock().await;
        let mut conn = self.pool.acquire().await?;
        insert_voucher(&mut conn, v).await
    }

    /// Every write of `batch` in one IMMEDIATE transaction (the audit chain tail is read and
    /// extended under the write lock), so one commit and one sync for all of them.
    async fn write_batch(&self, batch: &WriteBatch) -> DbResult<Vec<u64>> {
        for (key, _) in &batch.settings {
            check_setting_key(key)?;
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let job = Write::Batch {
            vouchers: batch.vouchers.iter().map(VoucherRow::new).collect::<Result<_, _>>()?,
            settings: batch.settings.clone(),
            now: format_time(OffsetDateTime::now_utc(), "current time")?,
            audit: batch.audit.iter().map(AuditRow::new).collect::<Result<_, _>>()?,
        };
        let (reply, result) = tokio::sync::oneshot::channel();
        self.submit(job, Reply::Seqs(reply));
        answer(result).await
    }

    async fn vouchers_for(&self, serial_number: &str) -> DbResult<Vec<VoucherRecord>> {
        let rows = sqlx::query(
            "SELECT serial_number, domain, assertion, nonce, format, bytes, created_at \
             FROM vouchers WHERE serial_number = ? ORDER BY created_at, id",
        )
        .bind(serial_number)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(voucher_from_row).collect()
    }

    async fn put_setting(&self, key: &str, value: &str) -> DbResult<()> {
        check_setting_key(key)?;
        let job = Write::PutSetting {
            key: key.to_owned(),
            value: value.to_owned(),
            now: format_time(OffsetDateTime::now_utc(), "current time")?,
        };
        let (reply, result) = tokio::sync::oneshot::channel();
        self.submit(job, Reply::Unit(reply));
        answer(result).await
    }

    async fn get_setting(&self, key: &str) -> DbResult<Option<String>> {
        check_setting_key(key)?;
        let value: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    async fn settings_with_prefix(&self, prefix: &str) -> DbResult<Vec<(String, String)>> {
        // Keys are compared with substr, not LIKE, so `%` and `_` in the prefix are literal.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT key, value FROM settings WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

/// Inserts a voucher record (insert-only) on `conn`; returns its row id.
pub(super) async fn insert_voucher(conn: &mut sqlx::SqliteConnection, v: &VoucherRecord) -> DbResult<u64> {
    let result = sqlx::query(INSERT_VOUCHER)
        .bind(&v.serial_number)
        .bind(&v.domain)
        .bind(&v.assertion)
        .bind(v.nonce.as_deref())
        .bind(&v.format)
        .bind(v.bytes.as_slice())
        .bind(format_time(v.created_at, "voucher created_at")?)
        .execute(&mut *conn)
        .await?;
    let id = result.last_insert_rowid();
    Ok(u64::try_from(id)
        .map_err(|_| StoreError::Corrupt { what: format!("voucher row id {id} is negative") })?)
}

/// Inserts an issued certificate inside `tx`; a known serial is a [`StoreError::Duplicate`].
pub(super) async fn insert_certificate(
    tx: &mut sqlx::SqliteConnection,
    cert: &IssuedCertificate,
) -> DbResult<()> {
    let serial = normalize_serial(&cert.serial_hex)?;
    let result = sqlx::query(INSERT_CERTIFICATE)
        .bind(&serial)
        .bind(&cert.issuer)
        .bind(&cert.subject)
        .bind(format_time(cert.not_before, "not_before")?)
        .bind(format_time(cert.not_after, "not_after")?)
        .bind(&cert.profile)
        .bind(cert.der.as_slice())
        .bind(format_time(cert.issued_at, "issued_at")?)
        .execute(&mut *tx)
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => {
            Err(DbError::Store(StoreError::Duplicate { what: "certificate serial", key: serial }))
        }
        Err(e) => Err(e.into()),
    }
}

/// The last audit record's (seq, hash), or (0, genesis) for an empty log. Inside a write
/// transaction it stays the tail until this transaction appends.
pub(super) async fn audit_tail(tx: &mut sqlx::SqliteConnection) -> DbResult<(u64, String)> {
    let tail = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?;
    match tail {
        Some(row) => Ok((seq_from_i64(row.try_get("seq")?)?, row.try_get::<String, _>("hash")?)),
        None => Ok((0, AUDIT_GENESIS_HASH.to_owned())),
    }
}
