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
use shared::store::{StoreError, WriteBatch};

use crate::rules::{check_setting_key, normalize_serial, seq_from_i64, to_i64, VERIFY_PAGE};
use crate::{DbError, DbResult};

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

mod commit;
mod ops;
mod rows;
#[cfg(test)]
mod tests;

use commit::*;
use ops::*;
use rows::*;

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
