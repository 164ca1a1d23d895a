//! Versioned schema migrations for the SQLite store (the PostgreSQL store keeps its own
//! list in `postgres.rs`, under the same rules).
//!
//! The list is ordered and append-only: a released migration is never edited,
//! a change to the schema is a new entry with the next version. At open every
//! migration not yet recorded in `schema_migrations` runs in its own
//! transaction together with the row that records it, so a crash leaves the
//! database either before or after a migration, never half-way.

use sqlx::sqlite::SqlitePool;
use sqlx::Row;
use time::OffsetDateTime;

use shared::store::model::format_time;
use shared::store::StoreError;

use crate::{DbError, DbResult};

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// Version it brings the schema to; strictly increasing in the list.
    pub version: i64,
    /// Short name, recorded with the version and checked on every open.
    pub name: &'static str,
    /// The SQL to run (several statements allowed).
    pub sql: &'static str,
}

/// The table that records applied migrations.
const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// Version 1: every table a role needs from its first line.
///
/// Triggers make certificates, vouchers and revocations insert-only and the
/// audit log append-only even for SQL run outside this module; the audit hash
/// chain still detects changes by anyone who drops the triggers.
const V1_INITIAL: &str = r#"
CREATE TABLE certificates (
    serial_hex  TEXT PRIMARY KEY NOT NULL CHECK (length(serial_hex) > 0),
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    not_after   TEXT NOT NULL,
    profile     TEXT NOT NULL,
    der         BLOB NOT NULL,
    issued_at   TEXT NOT NULL
) STRICT;
CREATE INDEX certificates_by_issued ON certificates (issued_at, serial_hex);
CREATE INDEX certificates_by_subject ON certificates (subject);
CREATE TRIGGER certificates_insert_only BEFORE UPDATE ON certificates
BEGIN
    SELECT RAISE(ABORT, 'certificates are insert-only');
END;

CREATE TABLE certificate_revocations (
    serial_hex  TEXT PRIMARY KEY NOT NULL
                REFERENCES certificates (serial_hex) ON DELETE RESTRICT,
    reason      INTEGER NOT NULL CHECK (reason BETWEEN 0 AND 10),
    revoked_at  TEXT NOT NULL
) STRICT;
CREATE INDEX certificate_revocations_by_time ON certificate_revocations (revoked_at, serial_hex);
CREATE TRIGGER certificate_revocations_insert_only BEFORE UPDATE ON certificate_revocations
BEGIN
    SELECT RAISE(ABORT, 'revocations are insert-only');
END;

CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY NOT NULL CHECK (seq > 0),
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE
) STRICT;
CREATE INDEX audit_log_by_subject ON audit_log (subject, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TABLE single_use (
    scope        TEXT NOT NULL,
    value        BLOB NOT NULL,
    expires_at   TEXT NOT NULL,
    consumed_at  TEXT NOT NULL,
    PRIMARY KEY (scope, value)
) STRICT, WITHOUT ROWID;
CREATE INDEX single_use_by_expiry ON single_use (expires_at);

CREATE TABLE vouchers (
    id             INTEGER PRIMARY KEY NOT NULL,
    serial_number  TEXT NOT NULL,
    domain         TEXT NOT NULL,
    assertion      TEXT NOT NULL,
    nonce          BLOB,
    format         TEXT NOT NULL,
    bytes          BLOB NOT NULL,
    created_at     TEXT NOT NULL
) STRICT;
CREATE INDEX vouchers_by_serial ON vouchers (serial_number, created_at, id);
CREATE TRIGGER vouchers_insert_only BEFORE UPDATE ON vouchers
BEGIN
    SELECT RAISE(ABORT, 'vouchers are insert-only');
END;

CREATE TABLE settings (
    key         TEXT PRIMARY KEY NOT NULL CHECK (length(key) > 0),
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;
"#;

/// All SQLite migrations, in order.
pub(crate) static SQLITE_MIGRATIONS: &[Migration] =
    &[Migration { version: 1, name: "initial", sql: V1_INITIAL }];

/// The schema version this build brings a database to.
pub(crate) fn latest_version() -> i64 {
    SQLITE_MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Applies every pending migration; returns the resulting schema version.
///
/// Fails with [`StoreError::SchemaTooNew`] before touching anything if the
/// database was migrated by a newer build, and with
/// [`StoreError::SchemaMismatch`] if a recorded migration is not this build's.
pub(crate) async fn migrate_sqlite(pool: &SqlitePool) -> DbResult<i64> {
    sqlx::raw_sql(CREATE_SCHEMA_MIGRATIONS).execute(pool).await?;

    let known = latest_version();
    let applied =
        sqlx::query("SELECT version, name FROM schema_migrations ORDER BY version").fetch_all(pool).await?;
    let mut found_max = 0;
    for row in &applied {
        let version: i64 = row.try_get("version")?;
        found_max = found_max.max(version);
    }
    if found_max > known {
        return Err(DbError::Store(StoreError::SchemaTooNew { found: found_max, known }));
    }
    for row in &applied {
        let version: i64 = row.try_get("version")?;
        let name: String = row.try_get("name")?;
        check_recorded(SQLITE_MIGRATIONS, version, &name)?;
    }

    for m in SQLITE_MIGRATIONS {
        // IMMEDIATE takes the write lock at once, so two processes opening
        // the same file serialize here instead of both running a migration.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let recorded: Option<String> =
            sqlx::query_scalar("SELECT name FROM schema_migrations WHERE version = ?")
                .bind(m.version)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(name) = recorded {
            tx.rollback().await?;
            check_recorded(SQLITE_MIGRATIONS, m.version, &name)?;
            continue;
        }
        sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(|e| {
            StoreError::Database(format!(
                "schema migration {} ({}) failed and was rolled back: {e}",
                m.version, m.name
            ))
        })?;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
            .bind(m.version)
            .bind(m.name)
            .bind(format_time(OffsetDateTime::now_utc(), "applied_at")?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "applied store schema migration");
    }

    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(pool).await?;
    Ok(version.unwrap_or(0))
}

/// Checks that a recorded migration is the one this build has under that
/// version in `list`.
pub(crate) fn check_recorded(list: &'static [Migration], version: i64, name: &str) -> DbResult<()> {
    match list.iter().find(|m| m.version == version) {
        Some(m) if m.name == name => Ok(()),
        Some(m) => Err(DbError::Store(StoreError::SchemaMismatch {
            version,
            expected: m.name,
            found: name.to_owned(),
        })),
        None => {
            Err(DbError::Store(StoreError::SchemaMismatch { version, expected: "", found: name.to_owned() }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_strictly_increase_from_one() {
        let mut prev = 0;
        for m in SQLITE_MIGRATIONS {
            assert!(m.version > prev, "migration {} out of order", m.version);
            assert!(!m.name.is_empty());
            prev = m.version;
        }
        assert_eq!(SQLITE_MIGRATIONS.first().map(|m| m.version), Some(1));
        assert_eq!(latest_version(), prev);
    }
}
