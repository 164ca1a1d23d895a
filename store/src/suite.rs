//! The store test-suite every backend runs: each test is an async function over an
//! `Arc<dyn Store>` holding a fresh, empty store, and [`backend_tests!`] turns the list into
//! `#[tokio::test]`s for one backend. SQLite runs always; PostgreSQL runs with the `postgres`
//! feature on a throw-away server (see `testkit::postgres`), skipping loudly when
//! PostgreSQL is not installed (failing under `BRSKI_REQUIRE_PEERS=1`).
//!
//! Backend-specific checks (SQLite pragmas and file modes, raw SQL against triggers, schema
//! versions recorded by a newer build) stay with each backend's module.

use std::sync::Arc;

use serde_json::json;
use time::macros::datetime;
use time::OffsetDateTime;

use shared::store::model::AUDIT_GENESIS_HASH;
use shared::store::{
    normalize_time, AuditEvent, IssuedCertificate, Revocation, RevocationReason, Store, StoreError, StoreExt,
    VoucherRecord, WriteBatch,
};

/// A test certificate record (shared by the backend-specific tests).
pub(super) fn cert(serial: &str, subject: &str) -> IssuedCertificate {
    IssuedCertificate {
        serial_hex: serial.to_owned(),
        issuer: "CN=brski test CA".to_owned(),
        subject: subject.to_owned(),
        not_before: datetime!(2025-01-01 00:00:00 UTC),
        not_after: datetime!(2026-01-01 00:00:00 UTC),
        profile: "ldevid".to_owned(),
        der: vec![0x30, 0x82, 0x01, 0x02, 0xaa],
        issued_at: datetime!(2025-01-01 00:00:01.25 UTC),
    }
}

/// A test audit event (shared by the backend-specific tests).
pub(super) fn event(subject: &str, n: u64) -> AuditEvent {
    AuditEvent {
        actor: "registrar".to_owned(),
        action: "voucher.requested".to_owned(),
        subject: subject.to_owned(),
        detail: json!({"n": n, "b": [1, 2], "a": {"y": true, "x": null}}),
        at: datetime!(2025-02-03 04:05:06 UTC) + time::Duration::seconds(n as i64),
    }
}

/// A fresh store answers the latest schema version of its backend.
pub(super) async fn schema_is_current(store: Arc<dyn Store>, latest: i64) {
    assert_eq!(store.schema_version().await.expect("version"), latest);
}

/// See the test of the same name for each backend.
pub(super) async fn certificate_and_audit_event_commit_together(store: Arc<dyn Store>) {
    let first = cert("00AA00AA00AA00AA", "CN=audited");
    let seq = store.record_certificate_audited(&first, &event("ca", 1)).await.expect("record");
    assert_eq!(seq, 1);
    assert!(store.certificate("00aa00aa00aa00aa").await.expect("lookup").is_some());
    // A duplicate serial writes neither the certificate nor the audit event.
    let err = store.record_certificate_audited(&cert("00AA00AA00AA00AA", "CN=dup"), &event("ca", 2)).await;
    assert!(matches!(err, Err(StoreError::Duplicate { .. })), "{err:?}");
    assert_eq!(store.audit_events(None, 0, 10).await.expect("events").len(), 1);
    assert_eq!(store.verify_audit_chain().await.expect("chain"), 1);
}

/// See the test of the same name for each backend.
pub(super) async fn duplicate_serial_is_refused_and_original_kept(store: Arc<dyn Store>) {
    let original = cert("00C0FFEE12345678", "CN=first");
    store.record_certificate(&original).await.expect("first");

    for serial in ["00C0FFEE12345678", "00c0ffee12345678"] {
        let err =
            store.record_certificate(&cert(serial, "CN=intruder")).await.expect_err("duplicate must fail");
        match err {
            StoreError::Duplicate { what, key } => {
                assert_eq!(what, "certificate serial");
                assert_eq!(key, "00c0ffee12345678");
            }
            other => panic!("expected Duplicate, got {other:?}"),
        }
    }
    let stored = store.certificate("00c0ffee12345678").await.expect("lookup").expect("present");
    assert_eq!(stored.subject, "CN=first");
    assert_eq!(stored.der, original.der);
    assert_eq!(stored.serial_hex, "00c0ffee12345678");
    let all = store.list_certificates(10, 0).await.expect("list");
    assert_eq!(all.len(), 1);

    assert!(matches!(store.record_certificate(&cert("not-hex", "CN=y")).await, Err(StoreError::Invalid(_))));
}

/// See the test of the same name for each backend.
pub(super) async fn list_certificates_pages_in_issue_order(store: Arc<dyn Store>) {
    for (i, serial) in ["03", "01", "02"].iter().enumerate() {
        let mut c = cert(serial, "CN=p");
        c.issued_at = datetime!(2025-01-01 00:00:00 UTC) + time::Duration::minutes(i as i64);
        store.record_certificate(&c).await.expect("record");
    }
    let page1 = store.list_certificates(2, 0).await.expect("page 1");
    let page2 = store.list_certificates(2, 2).await.expect("page 2");
    let serials: Vec<_> = page1.iter().chain(&page2).map(|c| c.serial_hex.clone()).collect();
    assert_eq!(serials, ["03", "01", "02"]);
}

/// See the test of the same name for each backend.
pub(super) async fn consume_once_is_single_use_per_scope(store: Arc<dyn Store>) {
    let exp = OffsetDateTime::now_utc() + time::Duration::hours(1);
    assert!(store.consume_once("voucher-nonce", b"n-1", exp).await.expect("1st"));
    assert!(!store.consume_once("voucher-nonce", b"n-1", exp).await.expect("2nd"));
    assert!(!store.consume_once("voucher-nonce", b"n-1", exp).await.expect("3rd"));
    assert!(store.consume_once("jwt-jti", b"n-1", exp).await.expect("other scope"));
    assert!(!store.consume_once("jwt-jti", b"n-1", exp).await.expect("other scope 2nd"));
    assert!(store.consume_once("voucher-nonce", b"n-2", exp).await.expect("other value"));
    assert!(matches!(store.consume_once("", b"x", exp).await, Err(StoreError::Invalid(_))));
}

/// See the test of the same name for each backend.
pub(super) async fn purge_expired_forgets_only_expired_values(store: Arc<dyn Store>) {
    let now = datetime!(2025-06-01 12:00:00 UTC);
    let past = now - time::Duration::microseconds(1);
    let future = now + time::Duration::seconds(1);
    assert!(store.consume_once("s", b"old", past).await.expect("old"));
    assert!(store.consume_once("s", b"new", future).await.expect("new"));
    assert_eq!(store.purge_expired(now).await.expect("purge"), 1);
    assert!(!store.consume_once("s", b"new", future).await.expect("still consumed"));
    assert!(store.consume_once("s", b"old", future).await.expect("purged"));
}

/// See the test of the same name for each backend.
pub(super) async fn concurrent_consumers_get_exactly_one_true(store: Arc<dyn Store>) {
    let exp = OffsetDateTime::now_utc() + time::Duration::hours(1);
    for round in 0..20u32 {
        let nonce = format!("nonce-{round}").into_bytes();
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let store = Arc::clone(&store);
                let nonce = nonce.clone();
                tokio::spawn(async move { store.consume_once("nonce", &nonce, exp).await })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            if t.await.expect("join").expect("consume") {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
}

/// See the test of the same name for each backend.
pub(super) async fn audit_log_is_ordered_filtered_and_chained(store: Arc<dyn Store>) {
    assert_eq!(store.verify_audit_chain().await.expect("empty chain"), 0);
    for n in 1..=5u64 {
        let subject = if n % 2 == 0 { "even" } else { "odd" };
        assert_eq!(store.append_audit(&event(subject, n)).await.expect("append"), n);
    }
    let all = store.audit_events(None, 0, 100).await.expect("list");
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(all[0].prev_hash, AUDIT_GENESIS_HASH);
    for pair in all.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    assert_eq!(all[2].event, event("odd", 3));

    let odd = store.audit_events(Some("odd"), 1, 100).await.expect("filter");
    assert_eq!(odd.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 5]);
    let limited = store.audit_events(None, 2, 2).await.expect("limit");
    assert_eq!(limited.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4]);

    assert_eq!(store.verify_audit_chain().await.expect("chain"), 5);
}

/// See the test of the same name for each backend.
pub(super) async fn concurrent_appends_keep_one_chain(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8u64)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.append_audit(&event("c", n)).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("join").expect("append"));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=8).collect::<Vec<u64>>());
    assert_eq!(store.verify_audit_chain().await.expect("chain"), 8);
}

/// See the test of the same name for each backend.
pub(super) async fn revocation_is_visible_and_first_one_wins(store: Arc<dyn Store>) {
    store.record_certificate(&cert("abcd", "CN=r")).await.expect("record");
    assert_eq!(store.revocation("abcd").await.expect("read"), None);

    let at = datetime!(2025-03-04 05:06:07.123456789 UTC);
    assert!(store.revoke_certificate("ABCD", RevocationReason::KeyCompromise, at).await.expect("revoke"));
    let expected = Revocation {
        serial_hex: "abcd".to_owned(),
        reason: RevocationReason::KeyCompromise,
        revoked_at: normalize_time(at),
    };
    assert_eq!(store.revocation("abcd").await.expect("read"), Some(expected.clone()));

    assert!(!store
        .revoke_certificate("abcd", RevocationReason::Superseded, at + time::Duration::DAY)
        .await
        .expect("second revoke"));
    assert_eq!(store.list_revocations(10, 0).await.expect("list"), vec![expected]);

    assert!(matches!(
        store.revoke_certificate("ffff", RevocationReason::Unspecified, at).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// See the test of the same name for each backend.
pub(super) async fn write_batch_commits_all_or_nothing(store: Arc<dyn Store>) {
    let voucher = VoucherRecord {
        serial_number: "PID-B".to_owned(),
        domain: "registrar.example".to_owned(),
        assertion: "proximity".to_owned(),
        nonce: Some(vec![1]),
        format: "cms-json".to_owned(),
        bytes: vec![1, 2, 3],
        created_at: datetime!(2025-01-01 00:00:00 UTC),
    };
    store.append_audit(&event("before", 0)).await.expect("first event");
    let batch = WriteBatch::new()
        .voucher(voucher.clone())
        .setting("role.pledge.PID-B", "{\"state\":\"voucher-issued\"}")
        .audit(event("PID-B", 1))
        .audit(event("PID-B", 2));
    assert_eq!(store.write_batch(&batch).await.expect("batch"), vec![2, 3]);
    assert_eq!(store.vouchers_for("PID-B").await.expect("vouchers"), vec![voucher.clone()]);
    assert!(store.get_setting("role.pledge.PID-B").await.expect("get").is_some());
    assert_eq!(store.verify_audit_chain().await.expect("chain"), 3);

    // A write that fails late (an audit time RFC 3339 cannot express) leaves nothing of
    // the batch behind: not the voucher, not the setting, not the earlier event.
    let mut bad = event("PID-C", 3);
    bad.at = datetime!(-0001-01-01 00:00:00 UTC);
    let failing = WriteBatch::new()
        .voucher(VoucherRecord { serial_number: "PID-C".to_owned(), ..voucher })
        .setting("role.pledge.PID-C", "x")
        .audit(event("PID-C", 4))
        .audit(bad);
    assert!(matches!(store.write_batch(&failing).await, Err(StoreError::Invalid(_))));
    assert!(store.vouchers_for("PID-C").await.expect("vouchers").is_empty());
    assert_eq!(store.get_setting("role.pledge.PID-C").await.expect("get"), None);
    assert_eq!(store.verify_audit_chain().await.expect("chain"), 3);

    // A bad key is refused before anything is written; an empty batch writes nothing.
    let bad_key = WriteBatch::new().setting("", "x").audit(event("PID-D", 5));
    assert!(matches!(store.write_batch(&bad_key).await, Err(StoreError::Invalid(_))));
    assert!(store.write_batch(&WriteBatch::new()).await.expect("empty").is_empty());
    assert_eq!(store.verify_audit_chain().await.expect("chain"), 3);
}

/// See the test of the same name for each backend.
pub(super) async fn vouchers_round_trip_per_serial(store: Arc<dyn Store>) {
    let v1 = VoucherRecord {
        serial_number: "PID-1".to_owned(),
        domain: "registrar.example".to_owned(),
        assertion: "verified".to_owned(),
        nonce: Some(vec![1, 2, 3]),
        format: "cms-json".to_owned(),
        bytes: vec![9, 8, 7],
        created_at: datetime!(2025-01-01 00:00:00 UTC),
    };
    let v2 = VoucherRecord {
        nonce: None,
        assertion: "logged".to_owned(),
        created_at: datetime!(2025-01-02 00:00:00 UTC),
        ..v1.clone()
    };
    let other = VoucherRecord { serial_number: "PID-2".to_owned(), ..v1.clone() };
    let id2 = store.record_voucher(&v2).await.expect("v2");
    let id1 = store.record_voucher(&v1).await.expect("v1");
    assert_ne!(id1, id2);
    store.record_voucher(&other).await.expect("other");
    assert_eq!(store.vouchers_for("PID-1").await.expect("list"), vec![v1, v2]);
    assert!(store.vouchers_for("PID-3").await.expect("none").is_empty());
}

/// See the test of the same name for each backend.
pub(super) async fn settings_round_trip(store: Arc<dyn Store>) {
    assert_eq!(store.get_setting("missing").await.expect("get"), None);
    store.put_setting("registrar.domain", "a").await.expect("put");
    store.put_setting("registrar.domain", "b").await.expect("overwrite");
    assert_eq!(store.get_setting("registrar.domain").await.expect("get").as_deref(), Some("b"));
    store.put_setting_json("masa.urls", &vec!["https://masa.example"]).await.expect("put json");
    let urls: Option<Vec<String>> = store.get_setting_json("masa.urls").await.expect("json");
    assert_eq!(urls, Some(vec!["https://masa.example".to_owned()]));
    let wrong: Result<Option<u32>, _> = store.get_setting_json("masa.urls").await;
    assert!(matches!(wrong, Err(StoreError::Corrupt { .. })));
    assert!(matches!(store.put_setting("", "x").await, Err(StoreError::Invalid(_))));
}

/// See the test of the same name for each backend.
pub(super) async fn settings_by_prefix_are_literal_and_ordered(store: Arc<dyn Store>) {
    for (k, v) in [("p.b", "2"), ("p.a", "1"), ("p_x", "no"), ("q.a", "no"), ("p.%", "3")] {
        store.put_setting(k, v).await.expect("put");
    }
    let got = store.settings_with_prefix("p.").await.expect("list");
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["p.%", "p.a", "p.b"]);
    assert!(store.settings_with_prefix("p.%x").await.expect("none").is_empty());
}

/// See the test of the same name for each backend.
pub(super) async fn concurrent_issuance_is_group_committed_and_a_duplicate_fails_alone(
    store: Arc<dyn Store>,
) {
    store.record_certificate_audited(&cert("0a", "CN=first"), &event("first", 0)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        let s = store.clone();
        // One job reuses the serial of the first certificate.
        let serial = if i == 17 { "0a".to_string() } else { format!("{:02x}", 0x10 + i) };
        tasks.push(tokio::spawn(async move {
            s.record_certificate_audited(&cert(&serial, "CN=x"), &event("x", i)).await
        }));
    }
    let mut ok = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Duplicate { .. }) => assert_eq!(i, 17),
            Err(e) => panic!("job {i}: {e}"),
        }
    }
    assert_eq!(ok, 39);
    assert_eq!(store.list_certificates(100, 0).await.unwrap().len(), 40);
    // 1 + 39 audit records, chained, with no gap left by the failed job.
    assert_eq!(store.verify_audit_chain().await.unwrap(), 40);
}

/// `backend_tests!(open)`: one multi-threaded `#[tokio::test]` per suite function, each on
/// the fresh store `open().await` returns (`None`: the backend is unavailable, skip).
macro_rules! backend_tests {
    ($open:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some((store, _guard)) = $open.await else { return };
                super::$name(store).await;
            }
        )*
    };
}

mod sqlite {
    use std::sync::Arc;

    use crate::{migrations, SqliteStore};
    use shared::store::Store;

    /// A file database in a temporary directory (the directory lives as long as the guard).
    async fn open() -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("brski.db")).await.expect("open store");
        Some((Arc::new(store), dir))
    }

    #[tokio::test]
    async fn schema_is_current() {
        let (store, _dir) = open().await.expect("open");
        super::schema_is_current(store, migrations::latest_version()).await;
    }

    backend_tests!(open(); certificate_and_audit_event_commit_together,
        duplicate_serial_is_refused_and_original_kept,
        list_certificates_pages_in_issue_order,
        consume_once_is_single_use_per_scope,
        purge_expired_forgets_only_expired_values,
        concurrent_consumers_get_exactly_one_true,
        audit_log_is_ordered_filtered_and_chained,
        concurrent_appends_keep_one_chain,
        revocation_is_visible_and_first_one_wins,
        write_batch_commits_all_or_nothing,
        vouchers_round_trip_per_serial,
        settings_round_trip,
        settings_by_prefix_are_literal_and_ordered,
        concurrent_issuance_is_group_committed_and_a_duplicate_fails_alone,);
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::Arc;

    use crate::{postgres, PgStore};
    use shared::store::Store;

    /// A store on a fresh database of the test server, or `None` (skipped) without PostgreSQL.
    async fn open() -> Option<(Arc<dyn Store>, ())> {
        let url = testkit::postgres_database().await?;
        let store = PgStore::connect(&url).await.expect("connect");
        Some((Arc::new(store), ()))
    }

    #[tokio::test]
    async fn schema_is_current() {
        let Some((store, ())) = open().await else { return };
        super::schema_is_current(store, postgres::latest_version()).await;
    }

    backend_tests!(open(); certificate_and_audit_event_commit_together,
        duplicate_serial_is_refused_and_original_kept,
        list_certificates_pages_in_issue_order,
        consume_once_is_single_use_per_scope,
        purge_expired_forgets_only_expired_values,
        concurrent_consumers_get_exactly_one_true,
        audit_log_is_ordered_filtered_and_chained,
        concurrent_appends_keep_one_chain,
        revocation_is_visible_and_first_one_wins,
        write_batch_commits_all_or_nothing,
        vouchers_round_trip_per_serial,
        settings_round_trip,
        settings_by_prefix_are_literal_and_ordered,
        concurrent_issuance_is_group_committed_and_a_duplicate_fails_alone,);
}
