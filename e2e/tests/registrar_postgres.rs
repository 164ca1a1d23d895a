//! Two registrars on one PostgreSQL database: pledges bootstrap concurrently against both,
//! each registrar with its own connection pool and port. Every pledge is enrolled, no
//! certificate serial is issued twice, every record is in the database, and the audit log's
//! hash chain (appended to by both registrars) verifies.

use std::collections::HashSet;

use brski::lab::{Lab, LabOptions};
use pledge::bootstrap;
use registrar::{list_pledges, PledgeState};
use shared::signed::Format;

const PLEDGES: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_registrars_on_one_database_enroll_concurrently() {
    let Some(url) = testkit::postgres_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions { store_url: Some(url.clone()), ..LabOptions::default() };
    let mut lab = Lab::start(dir.path(), options).await.expect("lab starts");
    let (replica, replica_url) = lab.start_replica().await.expect("second registrar starts");
    assert_ne!(replica_url, lab.registrar_url);

    // Mint every pledge first, then start all bootstraps at once, alternating registrars.
    let mut pledges = Vec::new();
    for i in 0..PLEDGES {
        let (mut cfg, id) = lab.pledge(&format!("pg-{i:03}"), Format::Cms).await.expect("mint");
        if i % 2 == 1 {
            cfg.registrar = Some(replica_url.clone());
        }
        pledges.push((cfg, id));
    }
    let tasks: Vec<_> = pledges
        .into_iter()
        .map(|(cfg, id)| tokio::spawn(async move { (cfg.state.clone(), bootstrap(&cfg, &id).await) }))
        .collect();
    let mut serials = Vec::new();
    for t in tasks {
        let (state, result) = t.await.expect("task");
        let outcome = result.unwrap_or_else(|e| panic!("{}: bootstrap failed: {e}", state.display()));
        assert_eq!(outcome.mode, "brski");
        let pem = std::fs::read(state.join("ldevid.pem")).expect("LDevID written");
        let leaf = shared::pki::certs_from_pem(&pem).expect("PEM").remove(0);
        serials.push(hex::encode(leaf.tbs_certificate().serial_number().as_bytes()));
    }

    // No duplicate serial among the issued LDevIDs.
    let unique: HashSet<&String> = serials.iter().collect();
    assert_eq!(unique.len(), PLEDGES, "duplicate LDevID serial: {serials:?}");

    // A third, independent connection sees every record both registrars wrote.
    let store = store::open_url(&url).await.expect("open the shared database");
    for serial in &serials {
        let cert = store.certificate(serial).await.expect("lookup");
        assert!(cert.is_some(), "certificate {serial} is not in the database");
    }
    let all = store.list_certificates(10_000, 0).await.expect("list");
    let stored: HashSet<&str> = all.iter().map(|c| c.serial_hex.as_str()).collect();
    assert_eq!(stored.len(), all.len(), "a serial is stored twice");
    let records = list_pledges(store.as_ref()).await.expect("pledge records");
    assert_eq!(records.len(), PLEDGES);
    for r in &records {
        assert_eq!(r.state(), PledgeState::Enrolled, "{}: {:?}", r.serial, r.reason);
    }

    // Both registrars appended to one audit chain: gapless and verifying.
    let checked = store.verify_audit_chain().await.expect("audit chain verifies");
    let events = store.audit_events(None, 0, u32::MAX).await.expect("audit events");
    assert_eq!(checked, events.len() as u64);
    assert!(checked >= PLEDGES as u64, "only {checked} audit records for {PLEDGES} enrollments");
    for serial in &serials {
        assert!(
            events.iter().any(|e| e.event.action == "est.cert.issued" && e.event.subject == *serial),
            "no audit record of the issuance of {serial}"
        );
    }

    // Each registrar sees the other's enrollments through the shared store.
    assert_eq!(list_pledges(replica.store().as_ref()).await.expect("replica view").len(), PLEDGES);
    assert_eq!(list_pledges(lab.registrar.store().as_ref()).await.expect("first view").len(), PLEDGES);

    // `registrar list|approve|deny` open the store the `store` key of registrar.toml names.
    let config = dir.path().join("registrar").join(registrar::CONFIG_FILE);
    assert!(std::fs::read_to_string(&config).unwrap().contains("store = \"postgres"));
    let cli_store = registrar::open_store(&config).await.expect("open_store");
    assert_eq!(list_pledges(cli_store.as_ref()).await.expect("CLI view").len(), PLEDGES);
}
