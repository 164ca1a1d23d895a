//! The embedded SQLite [`Store`]: one database file per role, opened with a
//! small connection pool, WAL journaling and versioned migrations.
//!
//! SQLite runs one write transaction at a time. Writers of this process queue
//! on an async lock ([`SqliteStore`]'s writer gate) and take SQLite's write lock
//! in turn, instead of colliding on it and polling through the busy handler,
//! which sleeps 1, 2, 5, 10, … ms between tries and made tail latencies of
//! concurrent requests jump by tens of milliseconds. Reads do not queue (WAL
//! readers run beside the writer). Another process writing the same file (a
//! CLI next to a running server) still meets the busy timeout.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row, SqliteConnection};
use time::OffsetDateTime;

use super::migrations;
use super::model::{
    audit_hash, canonical_json, format_time, parse_time, AuditChainVerifier, AuditEvent, AuditRecord,
    AuditRowText, IssuedCertificate, Revocation, RevocationReason, VoucherRecord, AUDIT_GENESIS_HASH,
};
use super::{Store, StoreError, StoreFuture, WriteBatch};

/// How long a statement waits for another connection's write lock before it
/// fails with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the pool of a file database. WAL lets readers run beside
/// the single writer; more than a few connections buys nothing on SQLite.
const POOL_SIZE: u32 = 4;

/// How long a caller waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest accepted serial: RFC 5280 allows 20 octets, plus slack for a
/// leading zero octet and unusual issuers.
pub(crate) const MAX_SERIAL_HEX: usize = 64;

/// Longest accepted setting key, in bytes.
const MAX_SETTING_KEY: usize = 256;

/// Rows read per query while verifying the audit chain, bounding memory.
pub(crate) const VERIFY_PAGE: i64 = 1000;

/// The SQLite [`Store`].
///
/// Cheap to share: wrap it in an `Arc` (usually as `Arc<dyn Store>`).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: Option<PathBuf>,
    /// Held by every write of this process, for the whole transaction (see the module
    /// documentation); shared by clones.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Issued certificates with their audit events waiting for a group commit (see
    /// [`SqliteStore::record_certificate_audited_impl`]).
    issued: Arc<std::sync::Mutex<Vec<IssueJob>>>,
}

/// One certificate and its audit event waiting to be committed, and who waits for it.
#[derive(Debug)]
struct IssueJob {
    cert: IssuedCertificate,
    event: AuditEvent,
    done: tokio::sync::oneshot::Sender<Result<u64, StoreError>>,
}

/// Most issued certificates committed in one transaction.
const MAX_GROUP: usize = 256;

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and brings its
    /// schema up to date.
    ///
    /// The file is created with mode 0600 (it holds issued material), and an
    /// existing file accessible to group or others loses that access, with a
    /// warning; SQLite gives its `-wal`/`-shm` files the same mode. The parent
    /// directory must exist.
    ///
    /// Fails with [`StoreError::SchemaTooNew`] if a newer build migrated the
    /// file, [`StoreError::Io`] if the file cannot be created or its mode set.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        prepare_file(path)?;

        // synchronous=FULL: in WAL mode NORMAL only survives a crash of the
        // process, a power cut or OS crash can undo the last commits. The
        // design promises that an issued certificate, voucher or approval is
        // committed before the response leaves, so each commit is synced.
        // The cost (one fsync of the WAL per commit) is small at enrollment
        // rates.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Full);

        // Switching to WAL needs an exclusive lock that SQLite cannot wait
        // for with its busy handler, so do it once on a lone connection before
        // the pool opens several. The mode is stored in the file and every
        // later connection inherits it.
        let conn = SqliteConnection::connect_with(&options.clone().journal_mode(SqliteJournalMode::Wal))
            .await
            .map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
        conn.close().await?;

        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;

        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&pool).await?;
        if !mode.eq_ignore_ascii_case("wal") {
            pool.close().await;
            return Err(StoreError::Database(format!(
                "{} is in journal mode `{mode}`, not WAL; is it on a file system without \
                 shared memory support, or opened by a process with exclusive locking?",
                path.display()
            )));
        }

        Self::finish_open(pool, Some(path.to_owned())).await
    }

    /// Opens a fresh, empty in-memory database, e.g. for tests or a
    /// throw-away role. Its content is gone when the store is dropped.
    pub async fn open_in_memory() -> Result<SqliteStore, StoreError> {
        // `sqlite::memory:` names a fresh shared-cache in-memory database.
        // It lives only while a connection is open, so the pool holds exactly
        // one connection for good (no idle timeout, no maximum lifetime);
        // one connection also avoids shared-cache table locks.
        let options =
            SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true).busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Self::finish_open(pool, None).await
    }

    async fn finish_open(pool: SqlitePool, path: Option<PathBuf>) -> Result<Self, StoreError> {
        match migrations::migrate_sqlite(&pool).await {
            Ok(version) => {
                tracing::debug!(?path, version, "store opened");
                Ok(SqliteStore { pool, path, writer: Arc::default(), issued: Arc::default() })
            }
            Err(e) => {
                pool.close().await;
                Err(e)
            }
        }
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Closes every connection, waiting for running statements; the last
    /// close checkpoints the WAL into the database file. Later calls on this
    /// store (or its clones) fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn schema_version_impl(&self) -> Result<i64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(&self.pool).await?;
        Ok(v.unwrap_or(0))
    }

    async fn record_certificate_impl(&self, cert: &IssuedCertificate) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        insert_certificate(&mut tx, cert).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the certificate and its audit event together: neither exists without the
    /// other, and the call returns once both are durable.
    ///
    /// Group commit: the job is queued, then the caller waits for the writer gate; whoever
    /// holds the gate commits every queued job in one transaction (one fsync); a duplicate serial
    /// fails only its own job (SQLite undoes just the refused statement), and the audit chain's
    /// tail is read once per group. Under concurrency one fsync serves many issuances; alone, a
    /// job costs what a single transaction costs.
    async fn record_certificate_audited_impl(
        &self,
        cert: &IssuedCertificate,
        event: &AuditEvent,
    ) -> Result<u64, StoreError> {
        let (done, result) = tokio::sync::oneshot::channel();
        lock_queue(&self.issued).push(IssueJob { cert: cert.clone(), event: event.clone(), done });
        {
            let _writer = self.writer.lock().await;
            loop {
                let jobs: Vec<IssueJob> = {
                    let mut q = lock_queue(&self.issued);
                    let n = q.len().min(MAX_GROUP);
                    q.drain(..n).collect()
                };
                if jobs.is_empty() {
                    break;
                }
                self.commit_group(jobs).await;
            }
        }
        result.await.unwrap_or_else(|_| Err(StoreError::Invalid("the group commit was abandoned".into())))
    }

    /// Commits `jobs` in one transaction, one savepoint each, and tells every waiter.
    async fn commit_group(&self, jobs: Vec<IssueJob>) {
        let mut results = Vec::with_capacity(jobs.len());
        let outcome: Result<(), StoreError> = async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let mut tail = audit_tail(&mut tx).await?;
            for job in &jobs {
                // A refused INSERT (a duplicate serial) undoes only itself in SQLite, so that job
                // fails alone with nothing written; its audit event is then not appended. A
                // failing audit INSERT is a database fault: the whole group fails.
                let r = match insert_certificate(&mut tx, &job.cert).await {
                    Ok(()) => Ok(append_audit_after(&mut tx, &mut tail, &job.event).await?),
                    Err(e) => Err(e),
                };
                results.push(r);
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        for (i, job) in jobs.into_iter().enumerate() {
            let r = match (&outcome, results.get_mut(i)) {
                (Err(e), _) => Err(StoreError::Database(format!("the group commit failed: {e}"))),
                (Ok(()), Some(r)) => std::mem::replace(r, Ok(0)),
                (Ok(()), None) => Err(StoreError::Invalid("job not attempted".into())),
            };
            let _ = job.done.send(r);
        }
    }

    async fn certificate_impl(&self, serial_hex: &str) -> Result<Option<IssuedCertificate>, StoreError> {
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

    async fn list_certificates_impl(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<IssuedCertificate>, StoreError> {
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

    async fn revoke_certificate_impl(
        &self,
        serial_hex: &str,
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
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
            return Err(StoreError::NotFound { what: "certificate serial", key: serial });
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

    async fn revocation_impl(&self, serial_hex: &str) -> Result<Option<Revocation>, StoreError> {
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

    async fn list_revocations_impl(&self, limit: u32, offset: u64) -> Result<Vec<Revocation>, StoreError> {
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

    async fn append_audit_impl(&self, event: &AuditEvent) -> Result<u64, StoreError> {
        let _writer = self.writer.lock().await;
        // IMMEDIATE: read the chain tail and append under one write lock, so
        // concurrent appends cannot fork the chain.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let seq = append_audit_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn audit_events_impl(
        &self,
        subject: Option<&str>,
        since_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
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

    async fn verify_audit_chain_impl(&self) -> Result<u64, StoreError> {
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
                        return Err(StoreError::ChainBroken {
                            seq: verifier.rows() + 1,
                            reason: "a record has a negative sequence number",
                        })
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
                    return Err(e);
                }
            }
        }
        Ok(verifier.rows())
    }

    async fn consume_once_impl(
        &self,
        scope: &str,
        value: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().await;
        if scope.is_empty() {
            return Err(StoreError::Invalid("single-use scope must not be empty".into()));
        }
        if value.is_empty() {
            return Err(StoreError::Invalid(format!(
                "single-use value in scope `{scope}` must not be empty"
            )));
        }
        let expires = format_time(expires_at, "single-use expiry")?;
        let now = format_time(OffsetDateTime::now_utc(), "current time")?;
        // One statement: the primary key decides atomically which caller
        // inserts first; every other gets zero affected rows.
        let result = sqlx::query(
            "INSERT INTO single_use (scope, value, expires_at, consumed_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (scope, value) DO NOTHING",
        )
        .bind(scope)
        .bind(value)
        .bind(&expires)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn purge_expired_impl(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let _writer = self.writer.lock().await;
        let now = format_time(now, "purge time")?;
        let result = sqlx::query("DELETE FROM single_use WHERE expires_at <= ?")
            .bind(&now)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn record_voucher_impl(&self, v: &VoucherRecord) -> Result<u64, StoreError> {
        let _writer = self.writer.lock().await;
        let mut conn = self.pool.acquire().await?;
        insert_voucher(&mut conn, v).await
    }

    /// Every write of `batch` in one IMMEDIATE transaction (the audit chain tail is read and
    /// extended under the write lock), so one commit and one sync for all of them.
    async fn write_batch_impl(&self, batch: &WriteBatch) -> Result<Vec<u64>, StoreError> {
        let _writer = self.writer.lock().await;
        for (key, _) in &batch.settings {
            check_setting_key(key)?;
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let now = format_time(OffsetDateTime::now_utc(), "current time")?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for v in &batch.vouchers {
            insert_voucher(&mut tx, v).await?;
        }
        for (key, value) in &batch.settings {
            upsert_setting(&mut tx, key, value, &now).await?;
        }
        let mut seqs = Vec::with_capacity(batch.audit.len());
        if !batch.audit.is_empty() {
            let mut tail = audit_tail(&mut tx).await?;
            for event in &batch.audit {
                seqs.push(append_audit_after(&mut tx, &mut tail, event).await?);
            }
        }
        tx.commit().await?;
        Ok(seqs)
    }

    async fn vouchers_for_impl(&self, serial_number: &str) -> Result<Vec<VoucherRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT serial_number, domain, assertion, nonce, format, bytes, created_at \
             FROM vouchers WHERE serial_number = ? ORDER BY created_at, id",
        )
        .bind(serial_number)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(voucher_from_row).collect()
    }

    async fn put_setting_impl(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        check_setting_key(key)?;
        let now = format_time(OffsetDateTime::now_utc(), "current time")?;
        let mut conn = self.pool.acquire().await?;
        upsert_setting(&mut conn, key, value, &now).await
    }

    async fn get_setting_impl(&self, key: &str) -> Result<Option<String>, StoreError> {
        check_setting_key(key)?;
        let value: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    async fn settings_with_prefix_impl(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
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
async fn insert_voucher(conn: &mut sqlx::SqliteConnection, v: &VoucherRecord) -> Result<u64, StoreError> {
    let result = sqlx::query(
        "INSERT INTO vouchers \
         (serial_number, domain, assertion, nonce, format, bytes, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&v.serial_number)
    .bind(&v.domain)
    .bind(&v.assertion)
    .bind(v.nonce.as_deref())
    .bind(&v.format)
    .bind(v.bytes.as_slice())
    .bind(format_time(v.created_at, "voucher created_at")?)
    .execute(&mut *conn)
    .await?;
    u64::try_from(result.last_insert_rowid()).map_err(|_| StoreError::Corrupt {
        what: format!("voucher row id {} is negative", result.last_insert_rowid()),
    })
}

/// Sets `key` to `value` on `conn` (the key already checked), stamped `now`.
async fn upsert_setting(
    conn: &mut sqlx::SqliteConnection,
    key: &str,
    value: &str,
    now: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
         updated_at = excluded.updated_at",
    )
    .bind(key)
    .bind(value)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn lock_queue(q: &std::sync::Mutex<Vec<IssueJob>>) -> std::sync::MutexGuard<'_, Vec<IssueJob>> {
    q.lock().unwrap_or_else(|p| p.into_inner())
}

/// Inserts an issued certificate inside `tx`; a known serial is a [`StoreError::Duplicate`].
async fn insert_certificate(
    tx: &mut sqlx::SqliteConnection,
    cert: &IssuedCertificate,
) -> Result<(), StoreError> {
    let serial = normalize_serial(&cert.serial_hex)?;
    let result = sqlx::query(
        "INSERT INTO certificates \
         (serial_hex, issuer, subject, not_before, not_after, profile, der, issued_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
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
            Err(StoreError::Duplicate { what: "certificate serial", key: serial })
        }
        Err(e) => Err(e.into()),
    }
}

/// Appends `event` to the audit hash chain inside `tx` (which must hold the write lock).
async fn append_audit_in(tx: &mut sqlx::SqliteConnection, event: &AuditEvent) -> Result<u64, StoreError> {
    let mut tail = audit_tail(tx).await?;
    append_audit_after(tx, &mut tail, event).await
}

/// The last audit record's (seq, hash), or (0, genesis) for an empty log. Inside a write
/// transaction it stays the tail until this transaction appends.
async fn audit_tail(tx: &mut sqlx::SqliteConnection) -> Result<(u64, String), StoreError> {
    let tail = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?;
    match tail {
        Some(row) => Ok((seq_from_i64(row.try_get("seq")?)?, row.try_get::<String, _>("hash")?)),
        None => Ok((0, AUDIT_GENESIS_HASH.to_owned())),
    }
}

/// Appends `event` after `tail` (the caller's write transaction holds the tail) and moves
/// `tail` to the new record.
async fn append_audit_after(
    tx: &mut sqlx::SqliteConnection,
    tail: &mut (u64, String),
    event: &AuditEvent,
) -> Result<u64, StoreError> {
    let at = format_time(event.at, "audit time")?;
    let detail = canonical_json(&event.detail)?;
    let (prev_seq, prev_hash) = (tail.0, &tail.1);
    let seq = prev_seq + 1;
    let hash = audit_hash(
        prev_hash,
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
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(to_i64(seq, "audit sequence")?)
    .bind(&at)
    .bind(&event.actor)
    .bind(&event.action)
    .bind(&event.subject)
    .bind(&detail)
    .bind(prev_hash)
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    *tail = (seq, hash);
    Ok(seq)
}

impl Store for SqliteStore {
    fn schema_version(&self) -> StoreFuture<'_, i64> {
        Box::pin(self.schema_version_impl())
    }

    fn record_certificate<'a>(&'a self, cert: &'a IssuedCertificate) -> StoreFuture<'a, ()> {
        Box::pin(self.record_certificate_impl(cert))
    }

    fn record_certificate_audited<'a>(
        &'a self,
        cert: &'a IssuedCertificate,
        event: &'a AuditEvent,
    ) -> StoreFuture<'a, u64> {
        Box::pin(self.record_certificate_audited_impl(cert, event))
    }

    fn certificate<'a>(&'a self, serial_hex: &'a str) -> StoreFuture<'a, Option<IssuedCertificate>> {
        Box::pin(self.certificate_impl(serial_hex))
    }

    fn list_certificates(&self, limit: u32, offset: u64) -> StoreFuture<'_, Vec<IssuedCertificate>> {
        Box::pin(self.list_certificates_impl(limit, offset))
    }

    fn revoke_certificate<'a>(
        &'a self,
        serial_hex: &'a str,
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.revoke_certificate_impl(serial_hex, reason, at))
    }

    fn revocation<'a>(&'a self, serial_hex: &'a str) -> StoreFuture<'a, Option<Revocation>> {
        Box::pin(self.revocation_impl(serial_hex))
    }

    fn list_revocations(&self, limit: u32, offset: u64) -> StoreFuture<'_, Vec<Revocation>> {
        Box::pin(self.list_revocations_impl(limit, offset))
    }

    fn append_audit<'a>(&'a self, event: &'a AuditEvent) -> StoreFuture<'a, u64> {
        Box::pin(self.append_audit_impl(event))
    }

    fn audit_events<'a>(
        &'a self,
        subject: Option<&'a str>,
        since_seq: u64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<AuditRecord>> {
        Box::pin(self.audit_events_impl(subject, since_seq, limit))
    }

    fn verify_audit_chain(&self) -> StoreFuture<'_, u64> {
        Box::pin(self.verify_audit_chain_impl())
    }

    fn consume_once<'a>(
        &'a self,
        scope: &'a str,
        value: &'a [u8],
        expires_at: OffsetDateTime,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.consume_once_impl(scope, value, expires_at))
    }

    fn purge_expired(&self, now: OffsetDateTime) -> StoreFuture<'_, u64> {
        Box::pin(self.purge_expired_impl(now))
    }

    fn record_voucher<'a>(&'a self, voucher: &'a VoucherRecord) -> StoreFuture<'a, u64> {
        Box::pin(self.record_voucher_impl(voucher))
    }

    fn vouchers_for<'a>(&'a self, serial_number: &'a str) -> StoreFuture<'a, Vec<VoucherRecord>> {
        Box::pin(self.vouchers_for_impl(serial_number))
    }

    fn put_setting<'a>(&'a self, key: &'a str, value: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.put_setting_impl(key, value))
    }

    fn get_setting<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(self.get_setting_impl(key))
    }

    fn settings_with_prefix<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(String, String)>> {
        Box::pin(self.settings_with_prefix_impl(prefix))
    }

    fn write_batch<'a>(&'a self, batch: &'a WriteBatch) -> StoreFuture<'a, Vec<u64>> {
        Box::pin(self.write_batch_impl(batch))
    }
}

/// Creates the database file with mode 0600 if missing, and removes group and
/// other access from an existing database and its WAL/shared-memory files.
fn prepare_file(path: &Path) -> Result<(), StoreError> {
    let io_err = |source| StoreError::Io { path: path.to_owned(), source };
    let mut open = OpenOptions::new();
    open.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    let file = open.open(path).map_err(io_err)?;
    drop(file);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut companions = vec![path.to_owned()];
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            companions.push(PathBuf::from(name));
        }
        for file in companions {
            let meta = match std::fs::metadata(&file) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(e)),
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                // Only ever remove access: group/other bits go, the owner's
                // read/write bits stay as they were.
                let tightened = mode & 0o600;
                tracing::warn!(
                    file = %file.display(),
                    mode = format_args!("{mode:o}"),
                    "store file was accessible to group or others; setting mode {tightened:o}"
                );
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(tightened))
                    .map_err(io_err)?;
            }
        }
    }
    Ok(())
}

/// Lower-cases a serial and checks it is non-empty hex of sane length.
pub(crate) fn normalize_serial(serial_hex: &str) -> Result<String, StoreError> {
    if serial_hex.is_empty() || serial_hex.len() > MAX_SERIAL_HEX {
        return Err(StoreError::Invalid(format!(
            "certificate serial must be 1 to {MAX_SERIAL_HEX} hex digits, got {} characters",
            serial_hex.len()
        )));
    }
    if !serial_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::Invalid(format!("certificate serial `{serial_hex}` is not hex")));
    }
    Ok(serial_hex.to_ascii_lowercase())
}

pub(crate) fn check_setting_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_SETTING_KEY {
        return Err(StoreError::Invalid(format!(
            "setting key must be 1 to {MAX_SETTING_KEY} bytes, got {}",
            key.len()
        )));
    }
    Ok(())
}

pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is too large")))
}

pub(crate) fn seq_from_i64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v)
        .map_err(|_| StoreError::Corrupt { what: format!("audit sequence number {v} is negative") })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn certificate_from_row(row: &SqliteRow) -> Result<IssuedCertificate, StoreError> {
    let serial_hex: String = row.try_get("serial_hex")?;
    let time = |col: &str| -> Result<OffsetDateTime, StoreError> {
        let text: String = row.try_get(col)?;
        parse_time(&text, &format!("certificate {serial_hex} {col}"))
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

fn revocation_from_row(row: &SqliteRow) -> Result<Revocation, StoreError> {
    let serial_hex: String = row.try_get("serial_hex")?;
    let code: i64 = row.try_get("reason")?;
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

fn audit_from_row(row: &SqliteRow) -> Result<AuditRecord, StoreError> {
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

fn voucher_from_row(row: &SqliteRow) -> Result<VoucherRecord, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite::{cert, event};

    async fn open_temp() -> (tempfile::TempDir, PathBuf, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("brski.db");
        let store = SqliteStore::open(&path).await.expect("open store");
        (dir, path, store)
    }

    #[tokio::test]
    async fn migrations_run_once_and_data_survives_reopen() {
        let (_dir, path, store) = open_temp().await;
        let version = store.schema_version().await.expect("version");
        assert_eq!(version, migrations::latest_version());
        assert!(version >= 1);
        store.record_certificate(&cert("0a1b2c3d4e5f6071", "CN=pledge-1")).await.expect("record");
        store.put_setting("ca.name", "test").await.expect("setting");
        store.append_audit(&event("p1", 1)).await.expect("audit");
        store.close().await;

        for _ in 0..2 {
            let store = SqliteStore::open(&path).await.expect("reopen");
            assert_eq!(store.schema_version().await.expect("version"), version);
            let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM schema_migrations")
                .fetch_one(&store.pool)
                .await
                .expect("count");
            assert_eq!(count, migrations::SQLITE_MIGRATIONS.len() as i64);
            let got = store
                .certificate("0a1b2c3d4e5f6071")
                .await
                .expect("lookup")
                .expect("certificate survives reopen");
            assert_eq!(got, cert("0a1b2c3d4e5f6071", "CN=pledge-1"));
            assert_eq!(store.get_setting("ca.name").await.expect("get").as_deref(), Some("test"));
            assert_eq!(store.verify_audit_chain().await.expect("chain"), 1);
            store.close().await;
        }
    }

    #[tokio::test]
    async fn file_database_uses_wal_full_sync_and_foreign_keys() {
        let (_dir, _path, store) = open_temp().await;
        // Ask every pooled connection, not only the first.
        let mut conns = Vec::new();
        for _ in 0..POOL_SIZE {
            conns.push(store.pool.acquire().await.expect("acquire"));
        }
        for conn in &mut conns {
            let mode: String =
                sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut **conn).await.expect("journal_mode");
            assert_eq!(mode, "wal");
            let sync: i64 =
                sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut **conn).await.expect("synchronous");
            assert_eq!(sync, 2, "synchronous=FULL");
            let fk: i64 =
                sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut **conn).await.expect("foreign_keys");
            assert_eq!(fk, 1);
            let busy: i64 =
                sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(&mut **conn).await.expect("busy_timeout");
            assert_eq!(busy, 5000);
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn database_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path, store) = open_temp().await;
        store.append_audit(&event("p", 1)).await.expect("write");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        assert!(wal.exists(), "WAL file exists while open");
        assert_eq!(mode(&wal), 0o600);
        store.close().await;

        // An existing file with a loose mode is tightened on open.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let store = SqliteStore::open(&path).await.expect("reopen");
        assert_eq!(mode(&path), 0o600);
        store.close().await;
    }

    #[tokio::test]
    async fn raw_sql_cannot_overwrite_a_certificate() {
        let (_dir, _path, store) = open_temp().await;
        store.record_certificate(&cert("00c0ffee12345678", "CN=first")).await.expect("record");
        let raw = sqlx::query("UPDATE certificates SET subject = 'CN=x'").execute(&store.pool).await;
        let msg = raw.expect_err("certificates are insert-only").to_string();
        assert!(msg.contains("insert-only"), "{msg}");
    }

    #[tokio::test]
    async fn tampering_with_audit_rows_is_detected() {
        let (_dir, _path, store) = open_temp().await;
        for n in 1..=4u64 {
            store.append_audit(&event("t", n)).await.expect("append");
        }
        // The triggers refuse changes made through SQL …
        let refused =
            sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2").execute(&store.pool).await;
        let msg = refused.expect_err("UPDATE must fail").to_string();
        assert!(msg.contains("append-only"), "{msg}");
        let refused = sqlx::query("DELETE FROM audit_log WHERE seq = 3").execute(&store.pool).await;
        let msg = refused.expect_err("DELETE must fail").to_string();
        assert!(msg.contains("append-only"), "{msg}");
        assert_eq!(store.verify_audit_chain().await.expect("intact"), 4);

        // … and someone who drops them is caught by the hash chain.
        sqlx::raw_sql("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
            .execute(&store.pool)
            .await
            .expect("drop triggers");
        sqlx::query("UPDATE audit_log SET detail = '{\"n\":99}' WHERE seq = 2")
            .execute(&store.pool)
            .await
            .expect("tamper");
        match store.verify_audit_chain().await {
            Err(StoreError::ChainBroken { seq, .. }) => assert_eq!(seq, 2),
            other => panic!("expected ChainBroken at 2, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn deleting_an_audit_row_is_detected() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        for n in 1..=4u64 {
            store.append_audit(&event("t", n)).await.expect("append");
        }
        sqlx::raw_sql("DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 2;")
            .execute(&store.pool)
            .await
            .expect("delete");
        match store.verify_audit_chain().await {
            Err(StoreError::ChainBroken { seq, .. }) => assert_eq!(seq, 2),
            other => panic!("expected ChainBroken at 2, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let (_dir, path, store) = open_temp().await;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
            .bind(migrations::latest_version() + 7)
            .bind("from-the-future")
            .bind("2030-01-01T00:00:00.000000Z")
            .execute(&store.pool)
            .await
            .expect("stamp");
        store.close().await;
        match SqliteStore::open(&path).await {
            Err(StoreError::SchemaTooNew { found, known }) => {
                assert_eq!(known, migrations::latest_version());
                assert_eq!(found, known + 7);
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn foreign_migration_name_is_refused() {
        let (_dir, path, store) = open_temp().await;
        sqlx::query("UPDATE schema_migrations SET name = 'other' WHERE version = 1")
            .execute(&store.pool)
            .await
            .expect("rename");
        store.close().await;
        assert!(matches!(SqliteStore::open(&path).await, Err(StoreError::SchemaMismatch { version: 1, .. })));
    }

    #[tokio::test]
    async fn in_memory_store_keeps_data_across_calls() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        assert_eq!(store.path(), None);
        assert_eq!(store.schema_version().await.expect("version"), migrations::latest_version());
        store.record_certificate(&cert("01", "CN=m")).await.expect("record");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(store.certificate("01").await.expect("get").is_some());
    }
}
