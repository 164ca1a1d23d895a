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
//!
//! The frequent writes (a certificate with its audit event, write batches,
//! consume-once, settings, audit events) are group-committed: each is a job on
//! one queue, and a committer task commits every job queued at the time in one
//! transaction, so concurrent requests share one commit (one fsync) and one
//! read of the audit chain's tail; each job still succeeds or fails on its own
//! (see `SqliteStore::submit`). The rare writes (revocation, purge, a voucher or
//! certificate on its own) run their own transaction under the gate.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteQueryResult, SqliteRow, SqliteSynchronous,
};
use sqlx::{Arguments, Connection, Row, SqliteConnection};
use time::OffsetDateTime;

use crate::migrations;
use shared::store::model::{
    audit_hash, canonical_json, format_time, parse_time, AuditChainVerifier, AuditEvent, AuditRecord,
    AuditRowText, IssuedCertificate, Revocation, RevocationReason, VoucherRecord, AUDIT_GENESIS_HASH,
};
use shared::store::{Store, StoreError, StoreFuture, WriteBatch};

use crate::rules::{check_setting_key, normalize_serial, seq_from_i64, to_i64, VERIFY_PAGE};
use crate::{to_store, DbError, DbResult};

/// How long a statement waits for another connection's write lock before it
/// fails with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the pool of a file database. WAL lets readers run beside
/// the single writer; more than a few connections buys nothing on SQLite.
const POOL_SIZE: u32 = 4;

/// How long a caller waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Writes waiting for a group commit (see [`SqliteStore::submit`]); shared by clones.
    pending: Arc<std::sync::Mutex<Pending>>,
}

/// Most jobs committed in one transaction.
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
        Ok(Self::open_db(path).await?)
    }

    async fn open_db(path: &Path) -> DbResult<SqliteStore> {
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
            return Err(DbError::Store(StoreError::Database(format!(
                "{} is in journal mode `{mode}`, not WAL; is it on a file system without \
                 shared memory support, or opened by a process with exclusive locking?",
                path.display()
            ))));
        }

        Self::finish_open(pool, Some(path.to_owned())).await
    }

    /// Opens a fresh, empty in-memory database, e.g. for tests or a
    /// throw-away role. Its content is gone when the store is dropped.
    pub async fn open_in_memory() -> Result<SqliteStore, StoreError> {
        Ok(Self::open_in_memory_db().await?)
    }

    async fn open_in_memory_db() -> DbResult<SqliteStore> {
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

    async fn finish_open(pool: SqlitePool, path: Option<PathBuf>) -> DbResult<Self> {
        match migrations::migrate_sqlite(&pool).await {
            Ok(version) => {
                tracing::debug!(?path, version, "store opened");
                Ok(SqliteStore { pool, path, writer: Arc::default(), pending: Arc::default() })
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

    async fn schema_version_impl(&self) -> DbResult<i64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(&self.pool).await?;
        Ok(v.unwrap_or(0))
    }

    async fn record_certificate_impl(&self, cert: &IssuedCertificate) -> DbResult<()> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        insert_certificate(&mut tx, cert).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the certificate and its audit event together: neither exists without the
    /// other, and the call returns once both are durable. A group-committed write (see
    /// [`SqliteStore::submit`]).
    async fn record_certificate_audited_impl(
        &self,
        cert: &IssuedCertificate,
        event: &AuditEvent,
    ) -> DbResult<u64> {
        let job = Write::Certificate { cert: CertRow::new(cert)?, event: AuditRow::new(event)? };
        let (reply, result) = tokio::sync::oneshot::channel();
        self.submit(job, Reply::Seq(reply));
        answer(result).await
    }

    /// Queues `write` for the next group commit; `reply` hears its result once the group's
    /// transaction is committed (or failed).
    ///
    /// Group commit: every frequent write (certificate with its audit event, write batch,
    /// consume-once, setting, audit event) is a job on one queue. A committer task drains the
    /// queue under the writer gate and commits up to [`MAX_GROUP`] jobs in one `BEGIN
    /// IMMEDIATE` transaction (one fsync), reading the audit chain's tail once per group, and
    /// answers every job after COMMIT; if BEGIN or COMMIT fails, every job of the group fails.
    /// A job refused by a constraint (a duplicate serial) fails alone with nothing of it
    /// written: a single statement undoes only itself in SQLite, a job of several statements
    /// runs inside its own savepoint. Under concurrency one fsync serves many writes; alone, a
    /// job costs one transaction as before (a lone single-statement job, e.g. consume-once,
    /// runs without one).
    ///
    /// The committer runs as its own task, so a caller that stops waiting (a cancelled
    /// request) abandons only its own answer, never the writes of the others in its group.
    fn submit(&self, write: Write, reply: Reply) {
        let start = {
            let mut pending = lock_pending(&self.pending);
            pending.jobs.push(Job { write, reply });
            !std::mem::replace(&mut pending.committer, true)
        };
        if start {
            let store = self.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(store.run_committer());
                }
                Err(_) => {
                    // Not inside a runtime (sqlx could not run either): answer rather than hang.
                    store.fail_pending("the store was used outside a tokio runtime");
                }
            }
        }
    }

    /// The committer task: commits groups until the queue is empty, each under the writer
    /// gate (taken per group, so that a rare write waiting for the gate gets its turn between
    /// groups under sustained load).
    async fn run_committer(self) {
        let mut watch = CommitterWatch { store: &self, finished: false };
        loop {
            let _writer = self.writer.lock().await;
            let jobs: Vec<Job> = {
                let mut pending = lock_pending(&self.pending);
                if pending.jobs.is_empty() {
                    // Cleared under the same lock that `submit` pushes under: a job queued
                    // from now on starts a new committer.
                    pending.committer = false;
                    break;
                }
                let n = pending.jobs.len().min(MAX_GROUP);
                pending.groups += 1;
                pending.jobs.drain(..n).collect()
            };
            self.commit_group(jobs).await;
        }
        watch.finished = true;
    }

    /// Answers every queued job with an error and lets the next job start a committer.
    fn fail_pending(&self, why: &str) {
        let jobs = {
            let mut pending = lock_pending(&self.pending);
            pending.committer = false;
            std::mem::take(&mut pending.jobs)
        };
        for job in jobs {
            job.reply.send(Err(StoreError::Database(format!("the write was not committed: {why}"))));
        }
    }

    /// Commits `jobs` in one transaction and tells every waiter.
    async fn commit_group(&self, mut jobs: Vec<Job>) {
        if let [job] = jobs.as_slice() {
            if job.write.autocommits() {
                // One statement and no audit tail to read: SQLite's own implicit
                // transaction, one round trip.
                if let Some(job) = jobs.pop() {
                    let result = match job.write.script(None, false) {
                        Ok((script, _)) => match script.run(&self.pool).await {
                            Ok(done) => Ok(job.write.outcome(&done, Vec::new())),
                            Err(e) => Err(job.write.error(e)),
                        },
                        Err(e) => Err(e.into()),
                    };
                    job.reply.send(result);
                }
                return;
            }
        }
        // Savepoints keep a failing job of several statements from leaving a part behind;
        // a lone job needs none (a failure rolls the whole transaction back).
        let savepoints = jobs.len() > 1;
        let mut results: Vec<Result<Outcome, StoreError>> = Vec::with_capacity(jobs.len());
        let outcome: DbResult<()> = async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let mut tail: Option<(u64, String)> = None;
            for job in &jobs {
                if tail.is_none() && job.write.appends_audit() {
                    tail = Some(audit_tail(&mut tx).await?);
                }
                results.push(run_job(&mut tx, &job.write, &mut tail, savepoints).await?);
            }
            if results.iter().any(Result::is_ok) {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(())
        }
        .await;
        let mut results = results.into_iter();
        for job in jobs {
            let result = match (results.next(), &outcome) {
                // Committed, or refused alone (then its own error says more than the group's).
                (Some(result), Ok(())) | (Some(result @ Err(_)), Err(_)) => result,
                (_, Err(e)) => Err(StoreError::Database(format!("the group commit failed: {e}"))),
                (None, Ok(())) => Err(StoreError::Database("the job was not attempted".into())),
            };
            job.reply.send(result);
        }
    }

    async fn certificate_impl(&self, serial_hex: &str) -> DbResult<Option<IssuedCertificate>> {
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

    async fn list_certificates_impl(&self, limit: u32, offset: u64) -> DbResult<Vec<IssuedCertificate>> {
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

    async fn revocation_impl(&self, serial_hex: &str) -> DbResult<Option<Revocation>> {
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

    async fn list_revocations_impl(&self, limit: u32, offset: u64) -> DbResult<Vec<Revocation>> {
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

    async fn append_audit_impl(&self, event: &AuditEvent) -> DbResult<u64> {
        let job = Write::AppendAudit(AuditRow::new(event)?);
        let (reply, result) = tokio::sync::oneshot::channel();
        self.submit(job, Reply::Seq(reply));
        answer(result).await
    }

    async fn audit_events_impl(
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

    async fn verify_audit_chain_impl(&self) -> DbResult<u64> {
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

    async fn consume_once_impl(
        &self,
        scope: &str,
        value: &[u8],
        expires_at: OffsetDateTime,
    ) -> DbResult<bool> {
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

    async fn purge_expired_impl(&self, now: OffsetDateTime) -> DbResult<u64> {
        let _writer = self.writer.lock().await;
        let now = format_time(now, "purge time")?;
        let result = sqlx::query("DELETE FROM single_use WHERE expires_at <= ?")
            .bind(&now)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn record_voucher_impl(&self, v: &VoucherRecord) -> DbResult<u64> {
        let _writer = self.writer.lock().await;
        let mut conn = self.pool.acquire().await?;
        insert_voucher(&mut conn, v).await
    }

    /// Every write of `batch` in one IMMEDIATE transaction (the audit chain tail is read and
    /// extended under the write lock), so one commit and one sync for all of them.
    async fn write_batch_impl(&self, batch: &WriteBatch) -> DbResult<Vec<u64>> {
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

    async fn vouchers_for_impl(&self, serial_number: &str) -> DbResult<Vec<VoucherRecord>> {
        let rows = sqlx::query(
            "SELECT serial_number, domain, assertion, nonce, format, bytes, created_at \
             FROM vouchers WHERE serial_number = ? ORDER BY created_at, id",
        )
        .bind(serial_number)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(voucher_from_row).collect()
    }

    async fn put_setting_impl(&self, key: &str, value: &str) -> DbResult<()> {
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

    async fn get_setting_impl(&self, key: &str) -> DbResult<Option<String>> {
        check_setting_key(key)?;
        let value: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    async fn settings_with_prefix_impl(&self, prefix: &str) -> DbResult<Vec<(String, String)>> {
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
async fn insert_voucher(conn: &mut sqlx::SqliteConnection, v: &VoucherRecord) -> DbResult<u64> {
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
async fn insert_certificate(tx: &mut sqlx::SqliteConnection, cert: &IssuedCertificate) -> DbResult<()> {
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
async fn audit_tail(tx: &mut sqlx::SqliteConnection) -> DbResult<(u64, String)> {
    let tail = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?;
    match tail {
        Some(row) => Ok((seq_from_i64(row.try_get("seq")?)?, row.try_get::<String, _>("hash")?)),
        None => Ok((0, AUDIT_GENESIS_HASH.to_owned())),
    }
}

/// Writes waiting for a group commit, and whether a committer task is running.
#[derive(Debug, Default)]
struct Pending {
    jobs: Vec<Job>,
    /// A committer task runs (or is about to) and will see every job pushed while this is
    /// set; it clears the flag under this lock when it finds the queue empty.
    committer: bool,
    /// Groups committed (or attempted) so far.
    groups: u64,
}

fn lock_pending(pending: &std::sync::Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

/// Clears the committer flag and fails the queued jobs if the committer task ends early
/// (a panic, or the runtime shutting down), so that no later write waits forever.
struct CommitterWatch<'a> {
    store: &'a SqliteStore,
    finished: bool,
}

impl Drop for CommitterWatch<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.store.fail_pending("the committer task stopped");
        }
    }
}

/// One queued write and who waits for it.
#[derive(Debug)]
struct Job {
    write: Write,
    reply: Reply,
}

/// A queued write, its values already checked and formatted (before queueing, so that a bad
/// value fails its call without taking a place in a group).
#[derive(Debug)]
enum Write {
    /// [`Store::record_certificate_audited`].
    Certificate { cert: CertRow, event: AuditRow },
    /// [`Store::write_batch`] (not empty).
    Batch { vouchers: Vec<VoucherRow>, settings: Vec<(String, String)>, now: String, audit: Vec<AuditRow> },
    /// [`Store::consume_once`].
    ConsumeOnce { scope: String, value: Vec<u8>, expires: String, now: String },
    /// [`Store::put_setting`].
    PutSetting { key: String, value: String, now: String },
    /// [`Store::append_audit`].
    AppendAudit(AuditRow),
}

/// What a committed job tells its caller; [`Reply::send`] turns it into the call's type.
#[derive(Debug)]
enum Outcome {
    /// Audit sequence numbers, in order.
    Seqs(Vec<u64>),
    /// Whether a consume-once call consumed the value.
    Consumed(bool),
}

/// Where a job's result goes, typed as its call returns it.
#[derive(Debug)]
enum Reply {
    Seq(tokio::sync::oneshot::Sender<Result<u64, StoreError>>),
    Seqs(tokio::sync::oneshot::Sender<Result<Vec<u64>, StoreError>>),
    Consumed(tokio::sync::oneshot::Sender<Result<bool, StoreError>>),
    Unit(tokio::sync::oneshot::Sender<Result<(), StoreError>>),
}

impl Reply {
    /// Sends `result` to the caller (who may have stopped waiting).
    fn send(self, result: Result<Outcome, StoreError>) {
        let mismatch =
            || StoreError::Database("internal error: a job produced the wrong kind of result".into());
        match self {
            Reply::Seq(tx) => {
                let _ = tx.send(result.and_then(|o| match o {
                    Outcome::Seqs(seqs) => match seqs.as_slice() {
                        [seq] => Ok(*seq),
                        _ => Err(mismatch()),
                    },
                    _ => Err(mismatch()),
                }));
            }
            Reply::Seqs(tx) => {
                let _ = tx.send(result.and_then(|o| match o {
                    Outcome::Seqs(seqs) => Ok(seqs),
                    Outcome::Consumed(_) => Err(mismatch()),
                }));
            }
            Reply::Consumed(tx) => {
                let _ = tx.send(result.and_then(|o| match o {
                    Outcome::Consumed(c) => Ok(c),
                    Outcome::Seqs(_) => Err(mismatch()),
                }));
            }
            Reply::Unit(tx) => {
                let _ = tx.send(result.map(|_| ()));
            }
        }
    }
}

/// Waits for a queued job's answer.
async fn answer<T>(result: tokio::sync::oneshot::Receiver<Result<T, StoreError>>) -> DbResult<T> {
    Ok(result.await.unwrap_or_else(|_| Err(StoreError::Database("the group commit was abandoned".into())))?)
}

/// An issued certificate, formatted for its row.
#[derive(Debug)]
struct CertRow {
    serial: String,
    issuer: String,
    subject: String,
    not_before: String,
    not_after: String,
    profile: String,
    der: Vec<u8>,
    issued_at: String,
}

impl CertRow {
    fn new(cert: &IssuedCertificate) -> DbResult<Self> {
        Ok(CertRow {
            serial: normalize_serial(&cert.serial_hex)?,
            issuer: cert.issuer.clone(),
            subject: cert.subject.clone(),
            not_before: format_time(cert.not_before, "not_before")?,
            not_after: format_time(cert.not_after, "not_after")?,
            profile: cert.profile.clone(),
            der: cert.der.clone(),
            issued_at: format_time(cert.issued_at, "issued_at")?,
        })
    }
}

/// A voucher record, formatted for its row.
#[derive(Debug)]
struct VoucherRow {
    serial_number: String,
    domain: String,
    assertion: String,
    nonce: Option<Vec<u8>>,
    format: String,
    bytes: Vec<u8>,
    created_at: String,
}

impl VoucherRow {
    fn new(v: &VoucherRecord) -> DbResult<Self> {
        Ok(VoucherRow {
            serial_number: v.serial_number.clone(),
            domain: v.domain.clone(),
            assertion: v.assertion.clone(),
            nonce: v.nonce.clone(),
            format: v.format.clone(),
            bytes: v.bytes.clone(),
            created_at: format_time(v.created_at, "voucher created_at")?,
        })
    }
}

/// An audit event, formatted for its row; its sequence number and hashes come when it is
/// chained to the tail inside the write transaction.
#[derive(Debug)]
struct AuditRow {
    at: String,
    actor: String,
    action: String,
    subject: String,
    detail: String,
}

impl AuditRow {
    fn new(event: &AuditEvent) -> DbResult<Self> {
        Ok(AuditRow {
            at: format_time(event.at, "audit time")?,
            detail: canonical_json(&event.detail)?,
            actor: event.actor.clone(),
            action: event.action.clone(),
            subject: event.subject.clone(),
        })
    }

    /// Adds the INSERT of this record after `tail` to `script` and moves `tail` to it.
    fn chain(&self, script: &mut Script, tail: &mut (u64, String)) -> DbResult<u64> {
        let seq = tail.0.checked_add(1).ok_or_else(|| StoreError::Invalid("the audit log is full".into()))?;
        let hash = audit_hash(
            &tail.1,
            &AuditRowText {
                seq,
                at: &self.at,
                actor: &self.actor,
                action: &self.action,
                subject: &self.subject,
                detail: &self.detail,
            },
        );
        script.statement(INSERT_AUDIT);
        script.bind(to_i64(seq, "audit sequence")?)?;
        script.bind(self.at.clone())?;
        script.bind(self.actor.clone())?;
        script.bind(self.action.clone())?;
        script.bind(self.subject.clone())?;
        script.bind(self.detail.clone())?;
        script.bind(std::mem::take(&mut tail.1))?;
        script.bind(hash.clone())?;
        *tail = (seq, hash);
        Ok(seq)
    }
}

const INSERT_CERTIFICATE: &str = "INSERT INTO certificates \
     (serial_hex, issuer, subject, not_before, not_after, profile, der, issued_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_VOUCHER: &str = "INSERT INTO vouchers \
     (serial_number, domain, assertion, nonce, format, bytes, created_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?)";
const UPSERT_SETTING: &str = "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";
const INSERT_AUDIT: &str =
    "INSERT INTO audit_log (seq, at, actor, action, subject, detail, prev_hash, hash) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
/// One statement: the primary key decides atomically which caller inserts first; every
/// other gets zero affected rows.
const CONSUME_ONCE: &str = "INSERT INTO single_use (scope, value, expires_at, consumed_at) \
     VALUES (?, ?, ?, ?) ON CONFLICT (scope, value) DO NOTHING";

/// The statements of one job as one query string, run in one round trip to SQLite.
///
/// sqlx's SQLite driver runs every `;`-separated statement of a query, binding the
/// arguments in order across them (checked by the test
/// `several_statements_run_in_one_query_with_arguments_in_order`); each statement is
/// prepared once and cached with the query string.
#[derive(Default)]
struct Script {
    sql: String,
    args: SqliteArguments,
    statements: usize,
}

impl Script {
    fn statement(&mut self, sql: &str) {
        if !self.sql.is_empty() {
            self.sql.push_str(";\n");
        }
        self.sql.push_str(sql);
        self.statements += 1;
    }

    fn bind<T>(&mut self, value: T) -> DbResult<()>
    where
        T: for<'t> sqlx::Encode<'t, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        Ok(self.args.add(value).map_err(|e| StoreError::Invalid(format!("cannot bind a value: {e}")))?)
    }

    async fn run<'c, E>(self, conn: E) -> Result<SqliteQueryResult, sqlx::Error>
    where
        E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
    {
        sqlx::query_with(sqlx::AssertSqlSafe(self.sql), self.args).execute(conn).await
    }
}

impl Write {
    fn appends_audit(&self) -> bool {
        match self {
            Write::Certificate { .. } | Write::AppendAudit(_) => true,
            Write::Batch { audit, .. } => !audit.is_empty(),
            Write::ConsumeOnce { .. } | Write::PutSetting { .. } => false,
        }
    }

    /// Whether the job alone is one statement that needs no transaction around it.
    fn autocommits(&self) -> bool {
        match self {
            Write::ConsumeOnce { .. } | Write::PutSetting { .. } => true,
            Write::Batch { vouchers, settings, audit, .. } => {
                audit.is_empty() && vouchers.len() + settings.len() == 1
            }
            Write::Certificate { .. } | Write::AppendAudit(_) => false,
        }
    }

    /// The job's statements, audit records chained after `tail` (`Some` whenever the job
    /// [appends audit records](Self::appends_audit)), inside a savepoint if `savepoint` and
    /// the job has several statements. Returns the script and the audit sequence numbers;
    /// `tail` is moved past the job's records.
    fn script(&self, mut tail: Option<&mut (u64, String)>, savepoint: bool) -> DbResult<(Script, Vec<u64>)> {
        let mut script = Script::default();
        let mut seqs = Vec::new();
        let mut chain = |script: &mut Script, event: &AuditRow| -> DbResult<()> {
            let tail = tail
                .as_deref_mut()
                .ok_or_else(|| StoreError::Database("internal error: the audit tail was not read".into()))?;
            seqs.push(event.chain(script, tail)?);
            Ok(())
        };
        match self {
            Write::Certificate { cert, event } => {
                script.statement(INSERT_CERTIFICATE);
                script.bind(cert.serial.clone())?;
                script.bind(cert.issuer.clone())?;
                script.bind(cert.subject.clone())?;
                script.bind(cert.not_before.clone())?;
                script.bind(cert.not_after.clone())?;
                script.bind(cert.profile.clone())?;
                script.bind(cert.der.clone())?;
                script.bind(cert.issued_at.clone())?;
                chain(&mut script, event)?;
            }
            Write::Batch { vouchers, settings, now, audit } => {
                for v in vouchers {
                    script.statement(INSERT_VOUCHER);
                    script.bind(v.serial_number.clone())?;
                    script.bind(v.domain.clone())?;
                    script.bind(v.assertion.clone())?;
                    script.bind(v.nonce.clone())?;
                    script.bind(v.format.clone())?;
                    script.bind(v.bytes.clone())?;
                    script.bind(v.created_at.clone())?;
                }
                for (key, value) in settings {
                    script.statement(UPSERT_SETTING);
                    script.bind(key.clone())?;
                    script.bind(value.clone())?;
                    script.bind(now.clone())?;
                }
                for event in audit {
                    chain(&mut script, event)?;
                }
            }
            Write::ConsumeOnce { scope, value, expires, now } => {
                script.statement(CONSUME_ONCE);
                script.bind(scope.clone())?;
                script.bind(value.clone())?;
                script.bind(expires.clone())?;
                script.bind(now.clone())?;
            }
            Write::PutSetting { key, value, now } => {
                script.statement(UPSERT_SETTING);
                script.bind(key.clone())?;
                script.bind(value.clone())?;
                script.bind(now.clone())?;
            }
            Write::AppendAudit(event) => chain(&mut script, event)?,
        }
        if savepoint && script.statements > 1 {
            script.sql = format!("SAVEPOINT job;\n{};\nRELEASE job", script.sql);
        }
        Ok((script, seqs))
    }

    /// The caller's outcome of the job's committed statements.
    fn outcome(&self, done: &SqliteQueryResult, seqs: Vec<u64>) -> Outcome {
        match self {
            // A single statement: its own count of inserted rows.
            Write::ConsumeOnce { .. } => Outcome::Consumed(done.rows_affected() == 1),
            _ => Outcome::Seqs(seqs),
        }
    }

    /// The caller's error for a statement of this job that failed.
    fn error(&self, e: sqlx::Error) -> StoreError {
        match (self, &e) {
            (Write::Certificate { cert, .. }, sqlx::Error::Database(db))
                if db.is_unique_violation() && db.message().contains("certificates.") =>
            {
                StoreError::Duplicate { what: "certificate serial", key: cert.serial.clone() }
            }
            _ => DbError::Sql(e).into(),
        }
    }
}

/// Runs one job of a group inside the group's transaction. `Ok(Err(_))`: the job failed alone
/// and nothing of it is written; `Err(_)`: the transaction is unusable, the group fails.
async fn run_job(
    tx: &mut SqliteConnection,
    write: &Write,
    tail: &mut Option<(u64, String)>,
    savepoints: bool,
) -> DbResult<Result<Outcome, StoreError>> {
    // The tail moves only if the job's statements succeed.
    let mut job_tail = tail.clone();
    let (script, seqs) = match write.script(job_tail.as_mut(), savepoints) {
        Ok(built) => built,
        Err(e) => return Ok(Err(e.into())),
    };
    let wrapped = savepoints && script.statements > 1;
    match script.run(&mut *tx).await {
        Ok(done) => {
            *tail = job_tail;
            Ok(Ok(write.outcome(&done, seqs)))
        }
        // A refused statement (constraint, trigger) undid only itself and left the
        // transaction open; undo the job's earlier statements. Any other failure (I/O, full
        // disk, …) may have ended the transaction: the whole group fails.
        Err(e) if is_constraint_violation(&e) => {
            if wrapped {
                sqlx::raw_sql("ROLLBACK TO job; RELEASE job").execute(&mut *tx).await?;
            }
            Ok(Err(write.error(e)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether SQLite refused a statement for a constraint (unique key, check, trigger `RAISE`):
/// the statement is undone, the transaction stays open.
fn is_constraint_violation(e: &sqlx::Error) -> bool {
    const SQLITE_CONSTRAINT: i64 = 19;
    matches!(e, sqlx::Error::Database(db)
        if db.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| c & 0xff == SQLITE_CONSTRAINT))
}

impl Store for SqliteStore {
    fn schema_version(&self) -> StoreFuture<'_, i64> {
        to_store(self.schema_version_impl())
    }

    fn record_certificate<'a>(&'a self, cert: &'a IssuedCertificate) -> StoreFuture<'a, ()> {
        to_store(self.record_certificate_impl(cert))
    }

    fn record_certificate_audited<'a>(
        &'a self,
        cert: &'a IssuedCertificate,
        event: &'a AuditEvent,
    ) -> StoreFuture<'a, u64> {
        to_store(self.record_certificate_audited_impl(cert, event))
    }

    fn certificate<'a>(&'a self, serial_hex: &'a str) -> StoreFuture<'a, Option<IssuedCertificate>> {
        to_store(self.certificate_impl(serial_hex))
    }

    fn list_certificates(&self, limit: u32, offset: u64) -> StoreFuture<'_, Vec<IssuedCertificate>> {
        to_store(self.list_certificates_impl(limit, offset))
    }

    fn revoke_certificate<'a>(
        &'a self,
        serial_hex: &'a str,
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> StoreFuture<'a, bool> {
        to_store(self.revoke_certificate_impl(serial_hex, reason, at))
    }

    fn revocation<'a>(&'a self, serial_hex: &'a str) -> StoreFuture<'a, Option<Revocation>> {
        to_store(self.revocation_impl(serial_hex))
    }

    fn list_revocations(&self, limit: u32, offset: u64) -> StoreFuture<'_, Vec<Revocation>> {
        to_store(self.list_revocations_impl(limit, offset))
    }

    fn append_audit<'a>(&'a self, event: &'a AuditEvent) -> StoreFuture<'a, u64> {
        to_store(self.append_audit_impl(event))
    }

    fn audit_events<'a>(
        &'a self,
        subject: Option<&'a str>,
        since_seq: u64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<AuditRecord>> {
        to_store(self.audit_events_impl(subject, since_seq, limit))
    }

    fn verify_audit_chain(&self) -> StoreFuture<'_, u64> {
        to_store(self.verify_audit_chain_impl())
    }

    fn consume_once<'a>(
        &'a self,
        scope: &'a str,
        value: &'a [u8],
        expires_at: OffsetDateTime,
    ) -> StoreFuture<'a, bool> {
        to_store(self.consume_once_impl(scope, value, expires_at))
    }

    fn purge_expired(&self, now: OffsetDateTime) -> StoreFuture<'_, u64> {
        to_store(self.purge_expired_impl(now))
    }

    fn record_voucher<'a>(&'a self, voucher: &'a VoucherRecord) -> StoreFuture<'a, u64> {
        to_store(self.record_voucher_impl(voucher))
    }

    fn vouchers_for<'a>(&'a self, serial_number: &'a str) -> StoreFuture<'a, Vec<VoucherRecord>> {
        to_store(self.vouchers_for_impl(serial_number))
    }

    fn put_setting<'a>(&'a self, key: &'a str, value: &'a str) -> StoreFuture<'a, ()> {
        to_store(self.put_setting_impl(key, value))
    }

    fn get_setting<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>> {
        to_store(self.get_setting_impl(key))
    }

    fn settings_with_prefix<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(String, String)>> {
        to_store(self.settings_with_prefix_impl(prefix))
    }

    fn write_batch<'a>(&'a self, batch: &'a WriteBatch) -> StoreFuture<'a, Vec<u64>> {
        to_store(self.write_batch_impl(batch))
    }
}

/// Creates the database file with mode 0600 if missing, and removes group and
/// other access from an existing database and its WAL/shared-memory files.
fn prepare_file(path: &Path) -> DbResult<()> {
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
                Err(e) => return Err(DbError::Store(io_err(e))),
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

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn certificate_from_row(row: &SqliteRow) -> DbResult<IssuedCertificate> {
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

fn revocation_from_row(row: &SqliteRow) -> DbResult<Revocation> {
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

fn audit_from_row(row: &SqliteRow) -> DbResult<AuditRecord> {
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

fn voucher_from_row(row: &SqliteRow) -> DbResult<VoucherRecord> {
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
    use crate::suite::{cert, event};

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

    /// A store whose writer gate the test holds: writes queue until the guard is dropped, then
    /// the committer finds them all queued and commits them as one group.
    async fn queued(store: &SqliteStore, n: usize) {
        for _ in 0..2000 {
            if lock_pending(&store.pending).jobs.len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("{n} jobs were not queued");
    }

    fn groups(store: &SqliteStore) -> u64 {
        lock_pending(&store.pending).groups
    }

    fn voucher(serial: &str) -> VoucherRecord {
        VoucherRecord {
            serial_number: serial.to_owned(),
            domain: "registrar.example".to_owned(),
            assertion: "proximity".to_owned(),
            nonce: Some(vec![7]),
            format: "cms-json".to_owned(),
            bytes: vec![1, 2, 3],
            created_at: time::macros::datetime!(2025-01-01 00:00:00 UTC),
        }
    }

    fn exp() -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::hours(1)
    }

    /// The sqlx behaviour [`Script`] relies on: several `;`-separated statements in one query
    /// all run, with the arguments bound in order across them, and a refused statement stops
    /// the query there and reports its error.
    #[tokio::test]
    async fn several_statements_run_in_one_query_with_arguments_in_order() {
        let (_dir, _path, store) = open_temp().await;
        let mut script = Script::default();
        for (k, v) in [("k1", "v1"), ("k2", "v2"), ("k3", "v3")] {
            script.statement(UPSERT_SETTING);
            script.bind(k.to_owned()).expect("bind");
            script.bind(v.to_owned()).expect("bind");
            script.bind("2025-01-01T00:00:00.000000Z".to_owned()).expect("bind");
        }
        assert_eq!(script.statements, 3);
        script.run(&store.pool).await.expect("run");
        let got = store.settings_with_prefix("k").await.expect("list");
        assert_eq!(
            got,
            [("k1", "v1"), ("k2", "v2"), ("k3", "v3")].map(|(k, v)| (k.to_owned(), v.to_owned()))
        );

        let mut script = Script::default();
        script.statement(UPSERT_SETTING);
        for v in ["k4", "v4", "2025-01-01T00:00:00.000000Z"] {
            script.bind(v.to_owned()).expect("bind");
        }
        script.statement("INSERT INTO certificates (serial_hex) VALUES (?)");
        script.bind("ab".to_owned()).expect("bind");
        script.statement(UPSERT_SETTING);
        for v in ["k5", "v5", "2025-01-01T00:00:00.000000Z"] {
            script.bind(v.to_owned()).expect("bind");
        }
        let err = script.run(&store.pool).await.expect_err("NOT NULL columns missing");
        assert!(is_constraint_violation(&err), "{err}");
        assert_eq!(store.get_setting("k4").await.expect("get").as_deref(), Some("v4"));
        assert_eq!(store.get_setting("k5").await.expect("get"), None, "statements after the refused one");
    }

    /// 64 concurrent writes of every queued kind: all succeed, share transactions, and the
    /// audit chain stays one chain with every sequence number handed out once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_mixed_writes_share_transactions_and_keep_one_chain() {
        let (_dir, _path, store) = open_temp().await;
        let before = groups(&store);
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let subject = format!("t{i}");
                match i % 5 {
                    0 => {
                        let batch = WriteBatch::new()
                            .voucher(voucher(&subject))
                            .setting(format!("batch.{i}"), "b")
                            .audit(event(&subject, 1))
                            .audit(event(&subject, 2));
                        s.write_batch(&batch).await.expect("batch")
                    }
                    1 => {
                        assert!(s.consume_once("n", subject.as_bytes(), exp()).await.expect("consume"));
                        Vec::new()
                    }
                    2 => {
                        s.put_setting(&format!("put.{i}"), "p").await.expect("put");
                        Vec::new()
                    }
                    3 => vec![s.append_audit(&event(&subject, 1)).await.expect("append")],
                    _ => vec![s
                        .record_certificate_audited(
                            &cert(&format!("{:04x}", 0x100 + i), "CN=c"),
                            &event(&subject, 1),
                        )
                        .await
                        .expect("certificate")],
                }
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.extend(t.await.expect("join"));
        }
        // Batches (13 with 2 events) + appends (13) + certificates (12).
        let events = 13 * 2 + 13 + 12;
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=events).collect::<Vec<u64>>(), "every sequence number once");
        assert_eq!(store.verify_audit_chain().await.expect("chain"), events);
        assert_eq!(store.list_certificates(100, 0).await.expect("certs").len(), 12);
        assert_eq!(store.settings_with_prefix("batch.").await.expect("batch settings").len(), 13);
        assert_eq!(store.settings_with_prefix("put.").await.expect("put settings").len(), 13);
        assert_eq!(store.vouchers_for("t5").await.expect("vouchers").len(), 1);
        assert!(!store.consume_once("n", b"t1", exp()).await.expect("consumed before"));
        let used = groups(&store) - before;
        assert!(used < 64, "64 writes took {used} transactions");
    }

    /// Jobs queued behind the writer gate are committed as one group; a duplicate serial in it
    /// fails alone, its audit event is absent, and its neighbours' events are chained without a
    /// gap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn duplicate_serial_in_a_group_fails_alone_without_its_audit_event() {
        let (_dir, _path, store) = open_temp().await;
        assert_eq!(
            store
                .record_certificate_audited(&cert("0a", "CN=first"), &event("first", 0))
                .await
                .expect("first"),
            1
        );
        let gate = store.writer.lock().await;
        let before = groups(&store);
        let mut tasks = Vec::new();
        for i in 0..5u64 {
            let s = store.clone();
            let serial = if i == 2 { "0A".to_owned() } else { format!("{:02x}", 0x10 + i) };
            tasks.push(tokio::spawn(async move {
                s.record_certificate_audited(&cert(&serial, "CN=x"), &event(&format!("job{i}"), i)).await
            }));
            // Queue them in order, so that the duplicate has neighbours on both sides.
            queued(&store, tasks.len()).await;
        }
        drop(gate);
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("join"));
        }
        assert_eq!(groups(&store) - before, 1, "one transaction for the five jobs");
        assert!(
            matches!(&results[2], Err(StoreError::Duplicate { key, .. }) if key == "0a"),
            "{:?}",
            results[2]
        );
        let seqs: Vec<u64> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(seqs, [2, 3, 4, 5]);
        assert!(store.audit_events(Some("job2"), 0, 10).await.expect("events").is_empty());
        for neighbour in ["job1", "job3"] {
            assert_eq!(store.audit_events(Some(neighbour), 0, 10).await.expect("events").len(), 1);
        }
        assert_eq!(store.certificate("0a").await.expect("get").expect("kept").subject, "CN=first");
        assert_eq!(store.list_certificates(100, 0).await.expect("list").len(), 5);
        assert_eq!(store.verify_audit_chain().await.expect("chain"), 5);
    }

    /// Two consume-once jobs for the same value in one group: exactly one consumes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn same_value_twice_in_one_group_is_consumed_once() {
        let (_dir, _path, store) = open_temp().await;
        let gate = store.writer.lock().await;
        let before = groups(&store);
        let mut tasks = Vec::new();
        for value in ["same", "other", "same"] {
            let s = store.clone();
            tasks.push(tokio::spawn(async move { s.consume_once("nonce", value.as_bytes(), exp()).await }));
        }
        let s = store.clone();
        let append = tokio::spawn(async move { s.append_audit(&event("a", 1)).await });
        queued(&store, 4).await;
        drop(gate);
        let mut wins = Vec::new();
        for t in tasks {
            wins.push(t.await.expect("join").expect("consume"));
        }
        assert_eq!(append.await.expect("join").expect("append"), 1);
        assert_eq!(groups(&store) - before, 1);
        assert_eq!(wins.iter().filter(|w| **w).count(), 2, "{wins:?}");
        assert!(wins[1], "the other value");
        assert!(wins[0] != wins[2], "exactly one of the two `same` jobs wins: {wins:?}");
        assert!(!store.consume_once("nonce", b"same", exp()).await.expect("again"));
        // Bad input is refused before it is queued.
        assert!(matches!(store.consume_once("nonce", b"", exp()).await, Err(StoreError::Invalid(_))));
        assert!(matches!(store.consume_once("", b"x", exp()).await, Err(StoreError::Invalid(_))));
    }

    /// A batch refused half-way (its setting refused by a trigger after its voucher went in)
    /// leaves nothing behind, in a group and alone; a certificate whose audit event is refused
    /// is not stored; a batch with an invalid key fails before queueing. The neighbours commit
    /// and the chain has no gap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_job_refused_half_way_fails_alone_with_nothing_written() {
        let (_dir, _path, store) = open_temp().await;
        sqlx::raw_sql(
            "CREATE TRIGGER refuse_setting BEFORE INSERT ON settings WHEN NEW.key = 'refuse' \
             BEGIN SELECT RAISE(ABORT, 'refused setting'); END; \
             CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log WHEN NEW.subject = 'refuse' \
             BEGIN SELECT RAISE(ABORT, 'refused event'); END;",
        )
        .execute(&store.pool)
        .await
        .expect("triggers");

        let bad_batch =
            || WriteBatch::new().voucher(voucher("PID-BAD")).setting("refuse", "x").audit(event("bad", 9));
        // Alone (no savepoint): the transaction is rolled back.
        assert!(matches!(store.write_batch(&bad_batch()).await, Err(StoreError::Database(_))));
        assert!(store.vouchers_for("PID-BAD").await.expect("vouchers").is_empty());

        let gate = store.writer.lock().await;
        let before = groups(&store);
        let s = store.clone();
        let first = tokio::spawn(async move {
            s.write_batch(&WriteBatch::new().voucher(voucher("PID-1")).audit(event("ok1", 1))).await
        });
        queued(&store, 1).await;
        let s = store.clone();
        let bad = tokio::spawn(async move { s.write_batch(&bad_batch()).await });
        queued(&store, 2).await;
        let s = store.clone();
        let bad_cert = tokio::spawn(async move {
            s.record_certificate_audited(&cert("0bad", "CN=b"), &event("refuse", 1)).await
        });
        queued(&store, 3).await;
        let s = store.clone();
        let invalid = tokio::spawn(async move {
            s.write_batch(&WriteBatch::new().setting("ok.key", "x").setting("", "y").audit(event("inv", 1)))
                .await
        });
        let s = store.clone();
        let last = tokio::spawn(async move {
            s.write_batch(
                &WriteBatch::new().setting("ok2", "y").audit(event("ok2", 2)).audit(event("ok2", 3)),
            )
            .await
        });
        queued(&store, 4).await;
        assert!(
            matches!(invalid.await.expect("join"), Err(StoreError::Invalid(_))),
            "refused before queueing"
        );
        drop(gate);

        assert_eq!(first.await.expect("join").expect("first"), vec![1]);
        assert!(
            matches!(bad.await.expect("join"), Err(StoreError::Database(m)) if m.contains("refused setting"))
        );
        assert!(
            matches!(bad_cert.await.expect("join"), Err(StoreError::Database(m)) if m.contains("refused event"))
        );
        assert_eq!(last.await.expect("join").expect("last"), vec![2, 3]);
        assert_eq!(groups(&store) - before, 1);

        assert!(store.vouchers_for("PID-BAD").await.expect("vouchers").is_empty());
        assert_eq!(store.vouchers_for("PID-1").await.expect("vouchers").len(), 1);
        assert_eq!(store.certificate("0bad").await.expect("get"), None);
        assert_eq!(store.get_setting("ok.key").await.expect("get"), None);
        assert_eq!(store.get_setting("ok2").await.expect("get").as_deref(), Some("y"));
        assert!(store.audit_events(Some("bad"), 0, 10).await.expect("events").is_empty());
        assert_eq!(store.verify_audit_chain().await.expect("chain"), 3);
    }

    /// A COMMIT that fails (a deferred foreign key, checked at COMMIT) fails every job of the
    /// group, and none of their writes is stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_commit_fails_every_job_of_the_group() {
        let (_dir, _path, store) = open_temp().await;
        sqlx::raw_sql(
            "CREATE TABLE dangling (serial TEXT REFERENCES certificates (serial_hex) \
             DEFERRABLE INITIALLY DEFERRED); \
             CREATE TRIGGER poison AFTER INSERT ON settings WHEN NEW.key = 'poison' \
             BEGIN INSERT INTO dangling (serial) VALUES ('no-such-serial'); END;",
        )
        .execute(&store.pool)
        .await
        .expect("schema");

        let gate = store.writer.lock().await;
        let mut tasks = Vec::new();
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.put_setting("poison", "x").await.map(|()| 0) }));
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.append_audit(&event("lost", 1)).await }));
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.consume_once("n", b"v", exp()).await.map(u64::from) }));
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.record_certificate_audited(&cert("0c", "CN=c"), &event("lost", 2)).await
        }));
        queued(&store, 4).await;
        drop(gate);
        for t in tasks {
            let r = t.await.expect("join");
            assert!(matches!(&r, Err(StoreError::Database(m)) if m.contains("group commit failed")), "{r:?}");
        }
        assert_eq!(store.get_setting("poison").await.expect("get"), None);
        assert_eq!(store.verify_audit_chain().await.expect("chain"), 0);
        assert_eq!(store.certificate("0c").await.expect("get"), None);
        // The connection is usable again, and the value was not consumed.
        assert!(store.consume_once("n", b"v", exp()).await.expect("consume"));
        assert_eq!(store.append_audit(&event("after", 1)).await.expect("append"), 1);
    }

    /// A caller that stops waiting for its write (a cancelled request) does not take the
    /// writes of the others down with it: the queued job is still committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_cancelled_caller_leaves_its_group_intact() {
        let (_dir, _path, store) = open_temp().await;
        let gate = store.writer.lock().await;
        let s = store.clone();
        let cancelled = tokio::spawn(async move { s.append_audit(&event("cancelled", 1)).await });
        queued(&store, 1).await;
        let s = store.clone();
        let other = tokio::spawn(async move { s.append_audit(&event("other", 2)).await });
        queued(&store, 2).await;
        cancelled.abort();
        assert!(cancelled.await.expect_err("aborted").is_cancelled());
        drop(gate);
        assert_eq!(other.await.expect("join").expect("append"), 2);
        assert_eq!(store.audit_events(Some("cancelled"), 0, 10).await.expect("events").len(), 1);
        assert_eq!(store.verify_audit_chain().await.expect("chain"), 2);
        // A later write starts a new committer.
        store.put_setting("later", "x").await.expect("put");
        assert_eq!(store.get_setting("later").await.expect("get").as_deref(), Some("x"));
        // … and the committer stops once the queue is empty.
        let mut stopped = false;
        for _ in 0..1000 {
            if !lock_pending(&store.pending).committer {
                stopped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(stopped, "the committer keeps running with an empty queue");
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
