//! The store implementations behind [`shared::store::Store`]: [`SqliteStore`], an embedded
//! SQLite database per role (the default), and `PgStore` (cargo feature `postgres`), one
//! PostgreSQL database shared by several replicas. [`open_url`] picks one from a role's `store`
//! setting. Both run the same test-suite (`suite.rs`), the PostgreSQL half on a real server.
//!
//! Layout, one concept per module:
//!
//! * `rules`: what both backends check of keys and numbers, so a record means the same in both;
//! * `migrations`: the versioned SQLite schema and its runner (PostgreSQL's schema and runner sit
//!   with its backend, both checked against the same recorded-migration rule);
//! * `sqlite`: the SQLite backend, with its group commit;
//! * `postgres`: the PostgreSQL backend (feature `postgres`).
//!
//! What this crate does not do: decide anything. The records, the trait and its guarantees are
//! `shared::store`'s; this crate only keeps them, and answers database failures as
//! [`StoreError::Database`].

use shared::store::{Store, StoreError};

mod migrations;
#[cfg(feature = "postgres")]
mod postgres;
mod rules;
mod sqlite;
#[cfg(test)]
mod suite;

#[cfg(feature = "postgres")]
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A failure inside a backend: a database driver error, or a [`StoreError`] the backend's own
/// checks raised. Both `?` into it; it becomes a [`StoreError`] where a [`Store`] method
/// answers (a driver error as [`StoreError::Database`] with the driver's message).
///
/// It is the backends' [`shared::store::StoreBackend::Error`]; roles see only [`StoreError`].
#[derive(Debug)]
#[non_exhaustive]
pub enum DbError {
    /// The database driver failed (I/O, lock timeout, constraint, ...).
    Sql(sqlx::Error),
    /// The backend refused or could not decode something.
    Store(StoreError),
}

impl std::fmt::Display for DbError {
    /// As the [`StoreError`] it becomes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Sql(e) => write!(f, "database error: {e}"),
            DbError::Store(e) => e.fmt(f),
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        DbError::Sql(e)
    }
}

impl From<StoreError> for DbError {
    fn from(e: StoreError) -> Self {
        DbError::Store(e)
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Sql(e) => StoreError::Database(e.to_string()),
            DbError::Store(e) => e,
        }
    }
}

/// What the backends' functions return.
pub(crate) type DbResult<T> = Result<T, DbError>;

/// Whether `url` names a PostgreSQL database (`postgres://…` or `postgresql://…`).
pub fn is_postgres_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// Opens the store `url_or_path` names: a PostgreSQL database for a `postgres://` or
/// `postgresql://` URL ([`is_postgres_url`]), otherwise the SQLite database file at that path
/// (see [`SqliteStore::open`]).
///
/// A PostgreSQL URL in a build without the `postgres` feature is [`StoreError::Invalid`].
pub async fn open_url(url_or_path: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if is_postgres_url(url_or_path) {
        #[cfg(feature = "postgres")]
        {
            return Ok(std::sync::Arc::new(PgStore::connect(url_or_path.trim()).await?));
        }
        #[cfg(not(feature = "postgres"))]
        {
            return Err(StoreError::Invalid(
                "this build of brski has no PostgreSQL support (cargo feature `postgres` of `store`)".into(),
            ));
        }
    }
    Ok(std::sync::Arc::new(SqliteStore::open(std::path::Path::new(url_or_path)).await?))
}
