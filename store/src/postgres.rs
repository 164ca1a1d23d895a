//! The PostgreSQL [`Store`], for deployments where several registrar (or MASA) processes share
//! one database.
//!
//! Same rules and texts as the SQLite store: times are stored as the same fixed-width RFC 3339
//! text (so the audit hash input is byte-identical across backends and text order is time
//! order; the columns use the `"C"` collation so that order does not depend on the server's
//! locale), serials are lower-case hex, JSON detail is canonical.
//!
//! Several processes write at once, so the invariants that SQLite gets from its single writer
//! are made explicit here:
//!
//! * **Audit chain.** A transaction that appends audit records first takes
//!   `LOCK TABLE audit_log IN EXCLUSIVE MODE` (readers still run), then reads the chain tail
//!   and appends: appends of all processes are serialized, sequence numbers are gapless and
//!   each record links to the one committed before it.
//! * **Single use and unique serials.** `INSERT … ON CONFLICT DO NOTHING` on the primary key:
//!   the server decides atomically which of several concurrent callers inserted first.
//! * **Migrations.** Run under a transaction-scoped advisory lock, so processes starting
//!   together against a fresh database migrate it once.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;

use crate::migrations::{check_recorded, Migration};
use crate::rules::{check_setting_key, normalize_serial, seq_from_i64, to_i64, VERIFY_PAGE};
use shared::store::model::{
    audit_hash, canonical_json, format_time, parse_time, AuditChainVerifier, AuditEvent, AuditRecord,
    AuditRowText, IssuedCertificate, Revocation, RevocationReason, VoucherRecord, AUDIT_GENESIS_HASH,
};
use shared::store::{Store, StoreError, StoreFuture, WriteBatch};

use crate::{to_store, DbError, DbResult};

/// Connections in the pool of one process.
const POOL_SIZE: u32 = 8;

/// How long a caller waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Key of the advisory lock that serializes migrations (ASCII "brskimig").
const MIGRATION_LOCK: i64 = 0x6272_736b_696d_6967;

/// The table that records applied migrations.
const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// Version 1: the same tables as SQLite's version 1, in PostgreSQL types.
///
/// Triggers make certificates, vouchers and revocations insert-only and the audit log
/// append-only (also against `TRUNCATE`) for SQL run outside this module; the hash chain
/// still detects changes by anyone who drops them.
const V1_INITIAL: &str = r#"
CREATE FUNCTION brski_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0];
END
$$;

CREATE TABLE certificates (
    serial_hex  TEXT COLLATE "C" PRIMARY KEY NOT NULL CHECK (length(serial_hex) > 0),
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    not_before  TEXT COLLATE "C" NOT NULL,
    not_after   TEXT COLLATE "C" NOT NULL,
    profile     TEXT NOT NULL,
    der         BYTEA NOT NULL,
    issued_at   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX certificates_by_issued ON certificates (issued_at, serial_hex);
CREATE INDEX certificates_by_subject ON certificates (subject);
CREATE TRIGGER certificates_insert_only BEFORE UPDATE ON certificates
    FOR EACH ROW EXECUTE FUNCTION brski_refuse_change('certificates are insert-only');

CREATE TABLE certificate_revocations (
    serial_hex  TEXT COLLATE "C" PRIMARY KEY NOT NULL
                REFERENCES certificates (serial_hex) ON DELETE RESTRICT,
    reason      INTEGER NOT NULL CHECK (reason BETWEEN 0 AND 10),
    revoked_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX certificate_revocations_by_time ON certificate_revocations (revoked_at, serial_hex);
CREATE TRIGGER certificate_revocations_insert_only BEFORE UPDATE ON certificate_revocations
    FOR EACH ROW EXECUTE FUNCTION brski_refuse_change('revocations are insert-only');

CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY NOT NULL CHECK (seq > 0),
    at         TEXT COLLATE "C" NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE
);
CREATE INDEX audit_log_by_subject ON audit_log (subject, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION brski_refuse_change('audit_log is append-only');
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION brski_refuse_change('audit_log is append-only');
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION brski_refuse_change('audit_log is append-only');

CREATE TABLE single_use (
    scope        TEXT NOT NULL,
    value        BYTEA NOT NULL,
    expires_at   TEXT COLLATE "C" NOT NULL,
    consumed_at  TEXT NOT NULL,
    PRIMARY KEY (scope, value)
);
CREATE INDEX single_use_by_expiry ON single_use (expires_at);

CREATE TABLE vouchers (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    serial_number  TEXT NOT NULL,
    domain         TEXT NOT NULL,
    assertion      TEXT NOT NULL,
    nonce          BYTEA,
    format         TEXT NOT NULL,
    bytes          BYTEA NOT NULL,
    created_at     TEXT COLLATE "C" NOT NULL
);
CREATE INDEX vouchers_by_serial ON vouchers (serial_number, created_at, id);
CREATE TRIGGER vouchers_insert_only BEFORE UPDATE ON vouchers
    FOR EACH ROW EXECUTE FUNCTION brski_refuse_change('vouchers are insert-only');

CREATE TABLE settings (
    key         TEXT COLLATE "C" PRIMARY KEY NOT NULL CHECK (length(key) > 0),
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
"#;

/// All PostgreSQL migrations, in order; append-only like the SQLite list.
pub static POSTGRES_MIGRATIONS: &[Migration] = &[Migration { version: 1, name: "initial", sql: V1_INITIAL }];

/// The schema version this build brings a PostgreSQL database to.
pub fn latest_version() -> i64 {
    POSTGRES_MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The PostgreSQL [`Store`]: a connection pool on one database.
///
/// Cheap to share: wrap it in an `Arc` (usually as `Arc<dyn Store>`).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, with
    /// the usual libpq query parameters such as `sslmode` or `host=/socket/dir`) and brings
    /// its schema up to date.
    ///
    /// Fails with [`StoreError::SchemaTooNew`] if a newer build migrated the database,
    /// [`StoreError::SchemaMismatch`] if it was migrated by an incompatible build, and
    /// [`StoreError::Database`] if the server cannot be reached.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        Ok(Self::connect_db(url).await?)
    }

    async fn connect_db(url: &str) -> DbResult<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))?;
        match migrate(&pool).await {
            Ok(version) => {
                tracing::debug!(version, "PostgreSQL store opened");
                Ok(PgStore { pool })
            }
            Err(e) => {
                pool.close().await;
                Err(e)
            }
        }
    }

    /// Closes every connection, waiting for running statements. Later calls on this store
    /// (or its clones) fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn schema_version_impl(&self) -> DbResult<i64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(&self.pool).await?;
        Ok(v.unwrap_or(0))
    }

    async fn record_certificate_impl(&self, cert: &IssuedCertificate) -> DbResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_certificate(&mut conn, cert).await
    }

    async fn record_certificate_audited_impl(
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

    async fn certificate_impl(&self, serial_hex: &str) -> DbResult<Option<IssuedCertificate>> {
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

    async fn list_certificates_impl(&self, limit: u32, offset: u64) -> DbResult<Vec<IssuedCertificate>> {
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

    async fn revoke_certificate_impl(
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

    async fn revocation_impl(&self, serial_hex: &str) -> DbResult<Option<Revocation>> {
        let serial = normalize_serial(serial_hex)?;
        let row = sqlx::query(
            "SELECT serial_hex, reason, revoked_at FROM certificate_revocations WHERE serial_hex = $1",
        )
        .bind(&serial)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(revocation_from_row).transpose()
    }

    async fn list_revocations_impl(&self, limit: u32, offset: u64) -> DbResult<Vec<Revocation>> {
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

    async fn append_audit_impl(&self, event: &AuditEvent) -> DbResult<u64> {
        let mut tx = self.pool.begin().await?;
        lock_audit(&mut tx).await?;
        let seq = append_audit_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn audit_events_impl(
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

    async fn verify_audit_chain_impl(&self) -> DbResult<u64> {
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

    async fn purge_expired_impl(&self, now: OffsetDateTime) -> DbResult<u64> {
        let now = format_time(now, "purge time")?;
        let result = sqlx::query("DELETE FROM single_use WHERE expires_at <= $1")
            .bind(&now)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn record_voucher_impl(&self, v: &VoucherRecord) -> DbResult<u64> {
        let mut conn = self.pool.acquire().await?;
        insert_voucher(&mut conn, v).await
    }

    async fn write_batch_impl(&self, batch: &WriteBatch) -> DbResult<Vec<u64>> {
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

    async fn vouchers_for_impl(&self, serial_number: &str) -> DbResult<Vec<VoucherRecord>> {
        let rows = sqlx::query(
            "SELECT serial_number, domain, assertion, nonce, format, bytes, created_at \
             FROM vouchers WHERE serial_number = $1 ORDER BY created_at, id",
        )
        .bind(serial_number)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(voucher_from_row).collect()
    }

    async fn put_setting_impl(&self, key: &str, value: &str) -> DbResult<()> {
        check_setting_key(key)?;
        let now = format_time(OffsetDateTime::now_utc(), "current time")?;
        let mut conn = self.pool.acquire().await?;
        upsert_setting(&mut conn, key, value, &now).await
    }

    async fn get_setting_impl(&self, key: &str) -> DbResult<Option<String>> {
        check_setting_key(key)?;
        let value: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    async fn settings_with_prefix_impl(&self, prefix: &str) -> DbResult<Vec<(String, String)>> {
        // Compared with left(), not LIKE, so `%` and `_` in the prefix are literal.
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key, value FROM settings WHERE left(key, length($1)) = $1 ORDER BY key")
                .bind(prefix)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows)
    }
}

/// Brings the schema up to date in one transaction under the migration advisory lock.
async fn migrate(pool: &PgPool) -> DbResult<i64> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    sqlx::raw_sql(CREATE_SCHEMA_MIGRATIONS).execute(&mut *tx).await?;

    let known = latest_version();
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, name FROM schema_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await?;
    let found_max = applied.iter().map(|(v, _)| *v).max().unwrap_or(0);
    if found_max > known {
        return Err(DbError::Store(StoreError::SchemaTooNew { found: found_max, known }));
    }
    for (version, name) in &applied {
        check_recorded(POSTGRES_MIGRATIONS, *version, name)?;
    }
    for m in POSTGRES_MIGRATIONS {
        if applied.iter().any(|(v, _)| *v == m.version) {
            continue;
        }
        sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(|e| {
            StoreError::Database(format!(
                "schema migration {} ({}) failed and was rolled back: {e}",
                m.version, m.name
            ))
        })?;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(format_time(OffsetDateTime::now_utc(), "applied_at")?)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version = m.version, name = m.name, "applied store schema migration");
    }
    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(version.unwrap_or(0))
}

/// Takes the audit append lock for the rest of the transaction on `conn` (see the module
/// documentation).
async fn lock_audit(conn: &mut PgConnection) -> DbResult<()> {
    sqlx::query("LOCK TABLE audit_log IN EXCLUSIVE MODE").execute(&mut *conn).await?;
    Ok(())
}

/// Inserts an issued certificate; a known serial is a [`StoreError::Duplicate`] and leaves the
/// transaction usable (no error is raised in the server).
async fn insert_certificate(conn: &mut PgConnection, cert: &IssuedCertificate) -> DbResult<()> {
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
async fn append_audit_in(conn: &mut PgConnection, event: &AuditEvent) -> DbResult<u64> {
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
async fn insert_voucher(conn: &mut PgConnection, v: &VoucherRecord) -> DbResult<u64> {
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
async fn upsert_setting(conn: &mut PgConnection, key: &str, value: &str, now: &str) -> DbResult<()> {
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

fn certificate_from_row(row: &PgRow) -> DbResult<IssuedCertificate> {
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

fn revocation_from_row(row: &PgRow) -> DbResult<Revocation> {
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

fn audit_from_row(row: &PgRow) -> DbResult<AuditRecord> {
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

fn voucher_from_row(row: &PgRow) -> DbResult<VoucherRecord> {
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

impl Store for PgStore {
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn fresh() -> Option<(String, PgStore)> {
        let url = testkit::postgres_database().await?;
        let store = PgStore::connect(&url).await.expect("connect");
        Some((url, store))
    }

    #[tokio::test]
    async fn raw_sql_cannot_change_records_and_tampering_is_detected() {
        let Some((_url, store)) = fresh().await else { return };
        for n in 1..=3 {
            let event = AuditEvent {
                actor: "a".into(),
                action: "b".into(),
                subject: "s".into(),
                detail: serde_json::json!({ "n": n }),
                at: OffsetDateTime::now_utc(),
            };
            store.append_audit(&event).await.expect("append");
        }
        for sql in [
            "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
            "DELETE FROM audit_log WHERE seq = 3",
            "TRUNCATE audit_log",
        ] {
            let msg = sqlx::query(sql).execute(&store.pool).await.expect_err(sql).to_string();
            assert!(msg.contains("append-only"), "{sql}: {msg}");
        }
        sqlx::raw_sql("DROP TRIGGER audit_log_no_update ON audit_log")
            .execute(&store.pool)
            .await
            .expect("drop");
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
    async fn migrations_run_once_and_newer_schema_is_refused() {
        let Some((url, store)) = fresh().await else { return };
        assert_eq!(store.schema_version().await.expect("version"), latest_version());
        store.close().await;
        // Several processes connecting at once to a migrated database: nothing runs twice.
        let again = PgStore::connect(&url).await.expect("reconnect");
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM schema_migrations")
            .fetch_one(&again.pool)
            .await
            .expect("count");
        assert_eq!(count, POSTGRES_MIGRATIONS.len() as i64);
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(latest_version() + 7)
            .bind("from-the-future")
            .bind("2030-01-01T00:00:00.000000Z")
            .execute(&again.pool)
            .await
            .expect("stamp");
        again.close().await;
        match PgStore::connect(&url).await {
            Err(StoreError::SchemaTooNew { found, known }) => {
                assert_eq!(known, latest_version());
                assert_eq!(found, known + 7);
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_connects_migrate_once() {
        let Some(url) = testkit::postgres_database().await else { return };
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { PgStore::connect(&url).await.map(|_| ()) })
            })
            .collect();
        for t in tasks {
            t.await.expect("join").expect("connect");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_pools_on_one_database_keep_one_chain_and_unique_serials() {
        let Some(url) = testkit::postgres_database().await else { return };
        let a = std::sync::Arc::new(PgStore::connect(&url).await.expect("a"));
        let b = std::sync::Arc::new(PgStore::connect(&url).await.expect("b"));
        let mut tasks = Vec::new();
        for i in 0..60u32 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            // Serials 0..30 twice: each is issued by exactly one of the two pools.
            let serial = format!("{:04x}", i / 2);
            tasks.push(tokio::spawn(async move {
                let cert = IssuedCertificate {
                    serial_hex: serial.clone(),
                    issuer: "CN=ca".into(),
                    subject: format!("CN={i}"),
                    not_before: OffsetDateTime::UNIX_EPOCH,
                    not_after: OffsetDateTime::UNIX_EPOCH,
                    profile: "ldevid".into(),
                    der: vec![1],
                    issued_at: OffsetDateTime::UNIX_EPOCH,
                };
                let event = AuditEvent {
                    actor: "ca".into(),
                    action: "issued".into(),
                    subject: serial,
                    detail: serde_json::json!({}),
                    at: OffsetDateTime::now_utc(),
                };
                let issued = store.record_certificate_audited(&cert, &event).await;
                let other = store.append_audit(&AuditEvent { action: "other".into(), ..event }).await;
                (issued, other.expect("append"))
            }));
        }
        let (mut issued, mut duplicates) = (0, 0);
        for t in tasks {
            match t.await.expect("join").0 {
                Ok(_) => issued += 1,
                Err(StoreError::Duplicate { .. }) => duplicates += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((issued, duplicates), (30, 30));
        assert_eq!(a.list_certificates(100, 0).await.expect("list").len(), 30);
        assert_eq!(b.verify_audit_chain().await.expect("chain"), 30 + 60);
    }
}
