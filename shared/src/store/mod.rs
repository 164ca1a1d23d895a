//! Persistence for every brski role: the one [`Store`] trait and the records it keeps
//! ([`model`]). The implementations live in the `store` crate: an embedded SQLite store as the
//! default, and a PostgreSQL store behind the same trait for deployments with several replicas
//! sharing one database (`store::open_url` picks one). Nothing here talks to a database.
//!
//! What the store guarantees, whatever the backend:
//!
//! * **Nothing lost.** Every write method returns only after its transaction
//!   committed, so a role that awaits the write before answering never hands
//!   out a certificate, voucher or approval the store does not hold.
//! * **No overwrite.** Issued certificates and vouchers are insert-only; a
//!   duplicate certificate serial fails with [`StoreError::Duplicate`].
//! * **Append-only audit.** The trait has no way to change or delete an audit
//!   record, and each record is hash-chained to its predecessor so that a
//!   change made behind the store's back is found by
//!   [`Store::verify_audit_chain`].
//! * **Single use.** [`Store::consume_once`] answers `true` exactly once per
//!   `(scope, value)`, atomically, even under concurrent callers and across
//!   replicas sharing one database.
//!
//! Times are kept in UTC at microsecond precision (the precision PostgreSQL
//! `timestamptz` offers, so data moves between backends unchanged); values read
//! back equal [`normalize_time`] of what was written.
//!
//! Roles hold the store as `Arc<dyn Store>`: every method returns a boxed
//! `Send` future ([`StoreFuture`]), which keeps the trait object-safe and lets
//! the futures run on a multi-threaded tokio runtime.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde::Serialize;
use time::OffsetDateTime;

pub mod model;

pub use model::{
    normalize_time, AuditEvent, AuditRecord, IssuedCertificate, Revocation, RevocationReason, VoucherRecord,
};

/// The future every [`Store`] method returns: boxed so the trait stays
/// object-safe (`Arc<dyn Store>`), and `Send` so it can be awaited from any
/// task of a multi-threaded runtime.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Everything that can go wrong in the store, each variant saying what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An insert-only record with this key already exists; the stored one was
    /// kept unchanged.
    #[error(
        "{what} `{key}` already exists in the store and is never overwritten; \
         use a fresh key (for a certificate: draw a new random serial)"
    )]
    Duplicate {
        /// Kind of record, e.g. `"certificate"`.
        what: &'static str,
        /// The key that collided.
        key: String,
    },
    /// The record the operation needs does not exist.
    #[error("{what} `{key}` is not in the store")]
    NotFound {
        /// Kind of record, e.g. `"certificate"`.
        what: &'static str,
        /// The key that was looked up.
        key: String,
    },
    /// The database was migrated by a newer build; opening it with this build
    /// could misread or damage data.
    #[error(
        "database schema version {found} is newer than this build of brski knows \
         (latest {known}); run a brski release that knows version {found}, or restore \
         a backup made with this release"
    )]
    SchemaTooNew {
        /// Highest version recorded in the database.
        found: i64,
        /// Highest version this build can apply.
        known: i64,
    },
    /// A migration recorded in the database does not match this build's list:
    /// the file was created by a different, incompatible build.
    #[error(
        "schema migration {version} is recorded as `{found}` but this build knows it as \
         `{expected}`; the database was created by an incompatible build of brski"
    )]
    SchemaMismatch {
        /// The migration version in question.
        version: i64,
        /// The name this build gives that version (empty if it knows none).
        expected: &'static str,
        /// The name recorded in the database.
        found: String,
    },
    /// The audit log's hash chain does not verify: a record was changed,
    /// removed or inserted outside the store.
    #[error(
        "audit log hash chain broken at sequence {seq}: {reason}; the audit table was \
         modified outside brski, keep a copy of the database for investigation"
    )]
    ChainBroken {
        /// The first sequence number at which the chain fails.
        seq: u64,
        /// What failed at that record.
        reason: &'static str,
    },
    /// A stored value cannot be decoded (bad time text, unknown code, …).
    #[error(
        "stored data is unreadable: {what}; the database may be damaged or written by an \
         incompatible build"
    )]
    Corrupt {
        /// Which value and why.
        what: String,
    },
    /// The caller passed a value the store cannot keep (empty key, time out of
    /// range, …). Nothing was written.
    #[error("invalid input to the store: {0}")]
    Invalid(String),
    /// The database file or its permissions could not be prepared.
    #[error("cannot prepare database file {}: {source}", path.display())]
    Io {
        /// The database path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Any other database failure (I/O, lock timeout, full disk, …), with the
    /// driver's message.
    #[error("database error: {0}")]
    Database(String),
}

/// The persistent state every brski role needs.
///
/// Implementations (crate `store`): `SqliteStore` (embedded, one process) and `PgStore`
/// (PostgreSQL, several processes on one database; feature `postgres`). Every
/// method is atomic and returns only after its writes are committed.
pub trait Store: Send + Sync {
    /// Highest schema migration applied to the database.
    fn schema_version(&self) -> StoreFuture<'_, i64>;

    /// Records an issued certificate. Fails with [`StoreError::Duplicate`] if
    /// its serial (compared case-insensitively) is already stored; the stored
    /// certificate is never overwritten.
    fn record_certificate<'a>(&'a self, cert: &'a IssuedCertificate) -> StoreFuture<'a, ()>;

    /// Records an issued certificate and appends its audit event atomically (one
    /// transaction): a CA issuing a certificate uses this, so the certificate and its
    /// audit record exist together or not at all. Returns the audit sequence number;
    /// a known serial is [`StoreError::Duplicate`] and nothing is written.
    fn record_certificate_audited<'a>(
        &'a self,
        cert: &'a IssuedCertificate,
        event: &'a AuditEvent,
    ) -> StoreFuture<'a, u64>;

    /// The issued certificate with this serial (hex, any case), if any.
    fn certificate<'a>(&'a self, serial_hex: &'a str) -> StoreFuture<'a, Option<IssuedCertificate>>;

    /// A page of issued certificates, oldest issuance first (ties by serial),
    /// so that paging with `offset` is stable.
    fn list_certificates(&self, limit: u32, offset: u64) -> StoreFuture<'_, Vec<IssuedCertificate>>;

    /// Marks a stored certificate revoked. Returns `true` if this call revoked
    /// it, `false` if it already was (the first revocation's reason and time
    /// are kept). Fails with [`StoreError::NotFound`] for an unknown serial.
    fn revoke_certificate<'a>(
        &'a self,
        serial_hex: &'a str,
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> StoreFuture<'a, bool>;

    /// The revocation of this certificate, or `None` if it is not revoked (or
    /// not stored).
    fn revocation<'a>(&'a self, serial_hex: &'a str) -> StoreFuture<'a, Option<Revocation>>;

    /// A page of revocations, oldest first, e.g. to build a CRL.
    fn list_revocations(&self, limit: u32, offset: u64) -> StoreFuture<'_, Vec<Revocation>>;

    /// Appends an audit event and returns its sequence number (1, 2, …).
    /// There is no way to change or delete it afterwards.
    fn append_audit<'a>(&'a self, event: &'a AuditEvent) -> StoreFuture<'a, u64>;

    /// Audit records with sequence number greater than `since_seq`, in
    /// sequence order, at most `limit`, optionally only those whose subject
    /// equals `subject`.
    fn audit_events<'a>(
        &'a self,
        subject: Option<&'a str>,
        since_seq: u64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<AuditRecord>>;

    /// Recomputes the audit hash chain from the first record and returns the
    /// number of records checked, or [`StoreError::ChainBroken`] with the first
    /// sequence number that fails.
    fn verify_audit_chain(&self) -> StoreFuture<'_, u64>;

    /// Consumes a single-use value (nonce, JWT `jti`, …) in `scope`. Returns
    /// `true` the first time, `false` on every later call until the value is
    /// purged after `expires_at`. Atomic across concurrent callers.
    ///
    /// Callers must still reject a token whose own validity has ended, and
    /// pass an `expires_at` no earlier than that end: once purged, a value
    /// reads as new again.
    fn consume_once<'a>(
        &'a self,
        scope: &'a str,
        value: &'a [u8],
        expires_at: OffsetDateTime,
    ) -> StoreFuture<'a, bool>;

    /// Forgets single-use values whose `expires_at` is at or before `now`;
    /// returns how many were removed.
    fn purge_expired(&self, now: OffsetDateTime) -> StoreFuture<'_, u64>;

    /// Records a voucher issued (MASA) or received (registrar, pledge); returns
    /// its row id. Vouchers are insert-only.
    fn record_voucher<'a>(&'a self, voucher: &'a VoucherRecord) -> StoreFuture<'a, u64>;

    /// All vouchers recorded for a pledge serial number, oldest first.
    fn vouchers_for<'a>(&'a self, serial_number: &'a str) -> StoreFuture<'a, Vec<VoucherRecord>>;

    /// Sets a role setting, replacing any previous value of `key`.
    fn put_setting<'a>(&'a self, key: &'a str, value: &'a str) -> StoreFuture<'a, ()>;

    /// The value of a role setting, if set.
    fn get_setting<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>>;

    /// Every setting whose key starts with `prefix`, as `(key, value)` in key order (e.g. all
    /// records a role keeps under `"masa.owner."`).
    fn settings_with_prefix<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(String, String)>>;

    /// Commits every write of `batch` in one transaction: vouchers (insert-only), then
    /// settings (each replacing its key), then audit events (appended to the chain in order).
    /// All of them are stored or none is; the call returns once they are committed, with the
    /// audit sequence numbers of the events in order. A role changing a record and auditing
    /// the change uses this, so the record never exists without its audit event and the
    /// change costs one commit instead of several.
    fn write_batch<'a>(&'a self, batch: &'a WriteBatch) -> StoreFuture<'a, Vec<u64>>;
}

/// A store implementation written with plain `async fn`s and its own error type; the blanket
/// implementation below makes every backend a [`Store`] (boxed futures, errors as
/// [`StoreError`]), so no backend writes the forwarding. Implemented by the `store` crate's
/// `SqliteStore` and `PgStore`; roles use [`Store`].
pub trait StoreBackend: Send + Sync {
    /// The backend's error; every one becomes a [`StoreError`].
    type Error: Into<StoreError> + Send;

    /// As [`Store::schema_version`].
    fn schema_version(&self) -> impl Future<Output = Result<i64, Self::Error>> + Send;

    /// As [`Store::record_certificate`].
    fn record_certificate(
        &self,
        cert: &IssuedCertificate,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// As [`Store::record_certificate_audited`].
    fn record_certificate_audited(
        &self,
        cert: &IssuedCertificate,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// As [`Store::certificate`].
    fn certificate(
        &self,
        serial_hex: &str,
    ) -> impl Future<Output = Result<Option<IssuedCertificate>, Self::Error>> + Send;

    /// As [`Store::list_certificates`].
    fn list_certificates(
        &self,
        limit: u32,
        offset: u64,
    ) -> impl Future<Output = Result<Vec<IssuedCertificate>, Self::Error>> + Send;

    /// As [`Store::revoke_certificate`].
    fn revoke_certificate(
        &self,
        serial_hex: &str,
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// As [`Store::revocation`].
    fn revocation(
        &self,
        serial_hex: &str,
    ) -> impl Future<Output = Result<Option<Revocation>, Self::Error>> + Send;

    /// As [`Store::list_revocations`].
    fn list_revocations(
        &self,
        limit: u32,
        offset: u64,
    ) -> impl Future<Output = Result<Vec<Revocation>, Self::Error>> + Send;

    /// As [`Store::append_audit`].
    fn append_audit(&self, event: &AuditEvent) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// As [`Store::audit_events`].
    fn audit_events(
        &self,
        subject: Option<&str>,
        since_seq: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, Self::Error>> + Send;

    /// As [`Store::verify_audit_chain`].
    fn verify_audit_chain(&self) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// As [`Store::consume_once`].
    fn consume_once(
        &self,
        scope: &str,
        value: &[u8],
        expires_at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// As [`Store::purge_expired`].
    fn purge_expired(&self, now: OffsetDateTime) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// As [`Store::record_voucher`].
    fn record_voucher(
        &self,
        voucher: &VoucherRecord,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// As [`Store::vouchers_for`].
    fn vouchers_for(
        &self,
        serial_number: &str,
    ) -> impl Future<Output = Result<Vec<VoucherRecord>, Self::Error>> + Send;

    /// As [`Store::put_setting`].
    fn put_setting(&self, key: &str, value: &str) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// As [`Store::get_setting`].
    fn get_setting(&self, key: &str) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send;

    /// As [`Store::settings_with_prefix`].
    fn settings_with_prefix(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, Self::Error>> + Send;

    /// As [`Store::write_batch`].
    fn write_batch(&self, batch: &WriteBatch) -> impl Future<Output = Result<Vec<u64>, Self::Error>> + Send;
}

impl<B: StoreBackend> Store for B {
    fn schema_version(&self) -> StoreFuture<'_, i64> {
        Box::pin(async move { StoreBackend::schema_version(self).await.map_err(Into::into) })
    }

    fn record_certificate<'a>(&'a self, cert: &'a IssuedCertificate) -> StoreFuture<'a, ()> {
        Box::pin(async move { StoreBackend::record_certificate(self, cert).await.map_err(Into::into) })
    }

    fn record_certificate_audited<'a>(
        &'a self,
        cert: &'a IssuedCertificate,
        event: &'a AuditEvent,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            StoreBackend::record_certificate_audited(self, cert, event).await.map_err(Into::into)
        })
    }

    fn certificate<'a>(&'a self, serial_hex: &'a str) -> StoreFuture<'a, Option<IssuedCertificate>> {
        Box::pin(async move { StoreBackend::certificate(self, serial_hex).await.map_err(Into::into) })
    }

    fn list_certificates(&self, limit: u32, offset: u64) -> StoreFuture<'_, Vec<IssuedCertificate>> {
        Box::pin(
            async move { StoreBackend::list_certificates(self, limit, offset).await.map_err(Into::into) },
        )
    }

    fn revoke_certificate<'a>(
        &'a self,
        serial_hex: &'a str,
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            StoreBackend::revoke_certificate(self, serial_hex, reason, at).await.map_err(Into::into)
        })
    }

    fn revocation<'a>(&'a self, serial_hex: &'a str) -> StoreFuture<'a, Option<Revocation>> {
        Box::pin(async move { StoreBackend::revocation(self, serial_hex).await.map_err(Into::into) })
    }

    fn list_revocations(&self, limit: u32, offset: u64) -> StoreFuture<'_, Vec<Revocation>> {
        Box::pin(async move { StoreBackend::list_revocations(self, limit, offset).await.map_err(Into::into) })
    }

    fn append_audit<'a>(&'a self, event: &'a AuditEvent) -> StoreFuture<'a, u64> {
        Box::pin(async move { StoreBackend::append_audit(self, event).await.map_err(Into::into) })
    }

    fn audit_events<'a>(
        &'a self,
        subject: Option<&'a str>,
        since_seq: u64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<AuditRecord>> {
        Box::pin(async move {
            StoreBackend::audit_events(self, subject, since_seq, limit).await.map_err(Into::into)
        })
    }

    fn verify_audit_chain(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move { StoreBackend::verify_audit_chain(self).await.map_err(Into::into) })
    }

    fn consume_once<'a>(
        &'a self,
        scope: &'a str,
        value: &'a [u8],
        expires_at: OffsetDateTime,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            StoreBackend::consume_once(self, scope, value, expires_at).await.map_err(Into::into)
        })
    }

    fn purge_expired(&self, now: OffsetDateTime) -> StoreFuture<'_, u64> {
        Box::pin(async move { StoreBackend::purge_expired(self, now).await.map_err(Into::into) })
    }

    fn record_voucher<'a>(&'a self, voucher: &'a VoucherRecord) -> StoreFuture<'a, u64> {
        Box::pin(async move { StoreBackend::record_voucher(self, voucher).await.map_err(Into::into) })
    }

    fn vouchers_for<'a>(&'a self, serial_number: &'a str) -> StoreFuture<'a, Vec<VoucherRecord>> {
        Box::pin(async move { StoreBackend::vouchers_for(self, serial_number).await.map_err(Into::into) })
    }

    fn put_setting<'a>(&'a self, key: &'a str, value: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move { StoreBackend::put_setting(self, key, value).await.map_err(Into::into) })
    }

    fn get_setting<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move { StoreBackend::get_setting(self, key).await.map_err(Into::into) })
    }

    fn settings_with_prefix<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(String, String)>> {
        Box::pin(async move { StoreBackend::settings_with_prefix(self, prefix).await.map_err(Into::into) })
    }

    fn write_batch<'a>(&'a self, batch: &'a WriteBatch) -> StoreFuture<'a, Vec<u64>> {
        Box::pin(async move { StoreBackend::write_batch(self, batch).await.map_err(Into::into) })
    }
}

/// Writes that [`Store::write_batch`] commits together.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    /// Vouchers to record (insert-only, as [`Store::record_voucher`]).
    pub vouchers: Vec<VoucherRecord>,
    /// Settings to set, `(key, value)`, as [`Store::put_setting`].
    pub settings: Vec<(String, String)>,
    /// Audit events to append, in order, as [`Store::append_audit`].
    pub audit: Vec<AuditEvent>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Adds a voucher record.
    pub fn voucher(mut self, v: VoucherRecord) -> Self {
        self.vouchers.push(v);
        self
    }

    /// Adds a setting.
    pub fn setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// Adds a setting stored as JSON (as [`StoreExt::put_setting_json`]).
    pub fn setting_json<T: Serialize + ?Sized>(self, key: &str, value: &T) -> Result<Self, StoreError> {
        let text = serde_json::to_string(value)
            .map_err(|e| StoreError::Invalid(format!("setting `{key}` cannot be encoded as JSON: {e}")))?;
        Ok(self.setting(key, text))
    }

    /// Adds an audit event.
    pub fn audit(mut self, event: AuditEvent) -> Self {
        self.audit.push(event);
        self
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.vouchers.is_empty() && self.settings.is_empty() && self.audit.is_empty()
    }
}

/// Typed settings on top of [`Store::put_setting`]/[`Store::get_setting`],
/// stored as JSON text. Implemented for every store, including `dyn Store`.
pub trait StoreExt: Store {
    /// Stores `value` as JSON under `key`.
    fn put_setting_json<'a, T: Serialize + ?Sized>(&'a self, key: &'a str, value: &T) -> StoreFuture<'a, ()> {
        match serde_json::to_string(value) {
            Ok(text) => Box::pin(async move { self.put_setting(key, &text).await }),
            Err(e) => Box::pin(std::future::ready(Err(StoreError::Invalid(format!(
                "setting `{key}` cannot be encoded as JSON: {e}"
            ))))),
        }
    }

    /// Reads the JSON setting `key` as a `T`; [`StoreError::Corrupt`] if the
    /// stored text is not a valid `T`.
    fn get_setting_json<'a, T: DeserializeOwned + Send + 'a>(
        &'a self,
        key: &'a str,
    ) -> StoreFuture<'a, Option<T>> {
        Box::pin(async move {
            match self.get_setting(key).await? {
                None => Ok(None),
                Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| StoreError::Corrupt {
                    what: format!("setting `{key}` is not the expected JSON: {e}"),
                }),
            }
        })
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
