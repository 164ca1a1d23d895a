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
use shared::store::{StoreError, WriteBatch};

use crate::{DbError, DbResult};

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
pub(crate) static POSTGRES_MIGRATIONS: &[Migration] =
    &[Migration { version: 1, name: "initial", sql: V1_INITIAL }];

/// The schema version this build brings a PostgreSQL database to.
pub(crate) fn latest_version() -> i64 {
    POSTGRES_MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The PostgreSQL [`Store`]: a connection pool on one database.
///
/// Cheap to share: wrap it in an `Arc` (usually as `Arc<dyn Store>`).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

mod ops;
mod rows;
#[cfg(test)]
mod tests;

use rows::*;

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
