//! The group commit of the SQLite store: the frequent writes queue as jobs, and one committer
//! task commits every job queued at the time in one transaction (one fsync, one read of the
//! audit chain's tail), each job still succeeding or failing on its own.

use super::*;

impl SqliteStore {
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
    pub(super) fn submit(&self, write: Write, reply: Reply) {
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
    pub(super) async fn run_committer(self) {
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
    pub(super) fn fail_pending(&self, why: &str) {
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
    pub(super) async fn commit_group(&self, mut jobs: Vec<Job>) {
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
}

/// Writes waiting for a group commit, and whether a committer task is running.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) jobs: Vec<Job>,
    /// A committer task runs (or is about to) and will see every job pushed while this is
    /// set; it clears the flag under this lock when it finds the queue empty.
    pub(super) committer: bool,
    /// Groups committed (or attempted) so far.
    pub(super) groups: u64,
}

pub(super) fn lock_pending(pending: &std::sync::Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

/// Clears the committer flag and fails the queued jobs if the committer task ends early
/// (a panic, or the runtime shutting down), so that no later write waits forever.
pub(super) struct CommitterWatch<'a> {
    pub(super) store: &'a SqliteStore,
    pub(super) finished: bool,
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
pub(super) struct Job {
    pub(super) write: Write,
    pub(super) reply: Reply,
}

/// A queued write, its values already checked and formatted (before queueing, so that a bad
/// value fails its call without taking a place in a group).
#[derive(Debug)]
pub(super) enum Write {
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
pub(super) enum Outcome {
    /// Audit sequence numbers, in order.
    Seqs(Vec<u64>),
    /// Whether a consume-once call consumed the value.
    Consumed(bool),
}

/// Where a job's result goes, typed as its call returns it.
#[derive(Debug)]
pub(super) enum Reply {
    Seq(tokio::sync::oneshot::Sender<Result<u64, StoreError>>),
    Seqs(tokio::sync::oneshot::Sender<Result<Vec<u64>, StoreError>>),
    Consumed(tokio::sync::oneshot::Sender<Result<bool, StoreError>>),
    Unit(tokio::sync::oneshot::Sender<Result<(), StoreError>>),
}

impl Reply {
    /// Sends `result` to the caller (who may have stopped waiting).
    pub(super) fn send(self, result: Result<Outcome, StoreError>) {
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
pub(super) async fn answer<T>(result: tokio::sync::oneshot::Receiver<Result<T, StoreError>>) -> DbResult<T> {
    Ok(result.await.unwrap_or_else(|_| Err(StoreError::Database("the group commit was abandoned".into())))?)
}

/// An issued certificate, formatted for its row.
#[derive(Debug)]
pub(super) struct CertRow {
    pub(super) serial: String,
    pub(super) issuer: String,
    pub(super) subject: String,
    pub(super) not_before: String,
    pub(super) not_after: String,
    pub(super) profile: String,
    pub(super) der: Vec<u8>,
    pub(super) issued_at: String,
}

impl CertRow {
    pub(super) fn new(cert: &IssuedCertificate) -> DbResult<Self> {
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
pub(super) struct VoucherRow {
    pub(super) serial_number: String,
    pub(super) domain: String,
    pub(super) assertion: String,
    pub(super) nonce: Option<Vec<u8>>,
    pub(super) format: String,
    pub(super) bytes: Vec<u8>,
    pub(super) created_at: String,
}

impl VoucherRow {
    pub(super) fn new(v: &VoucherRecord) -> DbResult<Self> {
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
pub(super) struct AuditRow {
    pub(super) at: String,
    pub(super) actor: String,
    pub(super) action: String,
    pub(super) subject: String,
    pub(super) detail: String,
}

impl AuditRow {
    pub(super) fn new(event: &AuditEvent) -> DbResult<Self> {
        Ok(AuditRow {
            at: format_time(event.at, "audit time")?,
            detail: canonical_json(&event.detail)?,
            actor: event.actor.clone(),
            action: event.action.clone(),
            subject: event.subject.clone(),
        })
    }

    /// Adds the INSERT of this record after `tail` to `script` and moves `tail` to it.
    pub(super) fn chain(&self, script: &mut Script, tail: &mut (u64, String)) -> DbResult<u64> {
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

pub(super) const INSERT_CERTIFICATE: &str = "INSERT INTO certificates \
     (serial_hex, issuer, subject, not_before, not_after, profile, der, issued_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
pub(super) const INSERT_VOUCHER: &str = "INSERT INTO vouchers \
     (serial_number, domain, assertion, nonce, format, bytes, created_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?)";
pub(super) const UPSERT_SETTING: &str = "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";
pub(super) const INSERT_AUDIT: &str =
    "INSERT INTO audit_log (seq, at, actor, action, subject, detail, prev_hash, hash) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
/// One statement: the primary key decides atomically which caller inserts first; every
/// other gets zero affected rows.
pub(super) const CONSUME_ONCE: &str = "INSERT INTO single_use (scope, value, expires_at, consumed_at) \
     VALUES (?, ?, ?, ?) ON CONFLICT (scope, value) DO NOTHING";

/// The statements of one job as one query string, run in one round trip to SQLite.
///
/// sqlx's SQLite driver runs every `;`-separated statement of a query, binding the
/// arguments in order across them (checked by the test
/// `several_statements_run_in_one_query_with_arguments_in_order`); each statement is
/// prepared once and cached with the query string.
#[derive(Default)]
pub(super) struct Script {
    pub(super) sql: String,
    pub(super) args: SqliteArguments,
    pub(super) statements: usize,
}

impl Script {
    pub(super) fn statement(&mut self, sql: &str) {
        if !self.sql.is_empty() {
            self.sql.push_str(";\n");
        }
        self.sql.push_str(sql);
        self.statements += 1;
    }

    pub(super) fn bind<T>(&mut self, value: T) -> DbResult<()>
    where
        T: for<'t> sqlx::Encode<'t, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        Ok(self.args.add(value).map_err(|e| StoreError::Invalid(format!("cannot bind a value: {e}")))?)
    }

    pub(super) async fn run<'c, E>(self, conn: E) -> Result<SqliteQueryResult, sqlx::Error>
    where
        E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
    {
        sqlx::query_with(sqlx::AssertSqlSafe(self.sql), self.args).execute(conn).await
    }
}

impl Write {
    pub(super) fn appends_audit(&self) -> bool {
        match self {
            Write::Certificate { .. } | Write::AppendAudit(_) => true,
            Write::Batch { audit, .. } => !audit.is_empty(),
            Write::ConsumeOnce { .. } | Write::PutSetting { .. } => false,
        }
    }

    /// Whether the job alone is one statement that needs no transaction around it.
    pub(super) fn autocommits(&self) -> bool {
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
    ///
    /// Longer than 60 lines on purpose: one arm per [`Write`] kind, each the statements and
    /// binds of that kind in column order, read side by side with the SQL constants above.
    pub(super) fn script(
        &self,
        mut tail: Option<&mut (u64, String)>,
        savepoint: bool,
    ) -> DbResult<(Script, Vec<u64>)> {
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
    pub(super) fn outcome(&self, done: &SqliteQueryResult, seqs: Vec<u64>) -> Outcome {
        match self {
            // A single statement: its own count of inserted rows.
            Write::ConsumeOnce { .. } => Outcome::Consumed(done.rows_affected() == 1),
            _ => Outcome::Seqs(seqs),
        }
    }

    /// The caller's error for a statement of this job that failed.
    pub(super) fn error(&self, e: sqlx::Error) -> StoreError {
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
pub(super) async fn run_job(
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
pub(super) fn is_constraint_violation(e: &sqlx::Error) -> bool {
    const SQLITE_CONSTRAINT: i64 = 19;
    matches!(e, sqlx::Error::Database(db)
        if db.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| c & 0xff == SQLITE_CONSTRAINT))
}
