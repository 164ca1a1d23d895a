//! Tests of what is PostgreSQL's own (migrations under concurrency, schema versions); what
//! every backend must do is in `suite.rs`.

use super::*;
use shared::store::Store;

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
    sqlx::raw_sql("DROP TRIGGER audit_log_no_update ON audit_log").execute(&store.pool).await.expect("drop");
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
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM schema_migrations").fetch_one(&again.pool).await.expect("count");
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
