//! Tests of what is SQLite's own: pragmas, file modes, triggers, schema versions, the group
//! commit. What every backend must do is in `suite.rs`.

use super::*;
use crate::suite::{cert, event};
use shared::store::Store;

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
    assert_eq!(got, [("k1", "v1"), ("k2", "v2"), ("k3", "v3")].map(|(k, v)| (k.to_owned(), v.to_owned())));

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
        store.record_certificate_audited(&cert("0a", "CN=first"), &event("first", 0)).await.expect("first"),
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
    assert!(matches!(&results[2], Err(StoreError::Duplicate { key, .. }) if key == "0a"), "{:?}", results[2]);
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
        s.write_batch(&WriteBatch::new().setting("ok.key", "x").setting("", "y").audit(event("inv", 1))).await
    });
    let s = store.clone();
    let last = tokio::spawn(async move {
        s.write_batch(&WriteBatch::new().setting("ok2", "y").audit(event("ok2", 2)).audit(event("ok2", 3)))
            .await
    });
    queued(&store, 4).await;
    assert!(matches!(invalid.await.expect("join"), Err(StoreError::Invalid(_))), "refused before queueing");
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
