//! BRSKI end to end on loopback: a reference MASA, the registrar and pledges as real TLS
//! servers and clients. Twenty pledges bootstrap in parallel to LDevIDs that `openssl verify`
//! accepts against the domain CA, once per voucher format.

use brski::lab::{Lab, LabOptions};
use pledge::bootstrap;
use registrar::{list_pledges, PledgeState};
use shared::signed::Format;
use std::path::Path;

const PLEDGES: usize = 20;

async fn twenty_in_parallel(format: Format) {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::start(dir.path(), LabOptions::default()).await.expect("lab starts");
    let mut tasks = Vec::new();
    for i in 0..PLEDGES {
        let (cfg, id) = lab.pledge(&format!("{format}-{i:03}"), format).await.expect("mint");
        tasks.push(tokio::spawn(async move { (cfg.state.clone(), bootstrap(&cfg, &id).await) }));
    }
    let mut states = Vec::new();
    for t in tasks {
        let (state, result) = t.await.expect("task");
        let outcome = result.unwrap_or_else(|e| panic!("{}: bootstrap failed: {e}", state.display()));
        assert_eq!(outcome.mode, "brski");
        assert!(outcome.files.voucher.as_ref().is_some_and(|v| v.exists()));
        states.push(state);
    }
    let domain_ca = lab.registrar.config().state.join("domain-ca.pem");
    if testkit::peer("openssl") {
        for s in &states {
            openssl_verify(&domain_ca, &s.join("ldevid.pem"));
        }
    }
    let records = list_pledges(lab.registrar.store().as_ref()).await.unwrap();
    assert_eq!(records.len(), PLEDGES);
    if format == Format::Cms && testkit::peer("openssl") {
        openssl_verifies_registrar_request(&domain_ca, records[0].last_rvr.as_deref().expect("RVR kept"));
    }
    for r in records {
        assert_eq!(r.state(), PledgeState::Enrolled, "{}: {:?}", r.serial, r.reason);
        assert_eq!(r.enroll_status_via.as_deref(), Some("ldevid"));
        assert!(r.audit_log.as_deref().is_some_and(|a| a.starts_with("ok")), "{:?}", r.audit_log);
        assert!(r.voucher_status.is_some_and(|s| s.status));
    }
}

/// `openssl verify` accepts the LDevID (first certificate of the file) against the domain CA.
fn openssl_verify(ca: &Path, chain: &Path) {
    let dir = chain.parent().unwrap();
    let leaf = dir.join("ldevid-leaf.pem");
    let pem = std::fs::read_to_string(chain).unwrap();
    let end = pem.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----\n".len();
    std::fs::write(&leaf, &pem[..end.min(pem.len())]).unwrap();
    let out =
        testkit::run_ok(dir, "openssl", &["verify", "-CAfile", ca.to_str().unwrap(), leaf.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
}

/// `openssl cms -verify` accepts the registrar voucher-request (signed by the registrar,
/// chaining to the domain CA) and prints its JSON.
fn openssl_verifies_registrar_request(ca: &Path, rvr_b64: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rvr = dir.path().join("rvr.p7");
    std::fs::write(&rvr, shared::b64::decode_lenient(rvr_b64).unwrap()).unwrap();
    let args = [
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        "rvr.p7",
        "-CAfile",
        ca.to_str().unwrap(),
        "-purpose",
        "any",
    ];
    let out = testkit::run_ok(dir.path(), "openssl", &args);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("RVR JSON");
    let req = &json["ietf-voucher-request:voucher"];
    assert!(req["prior-signed-voucher-request"].is_string() && req["idevid-issuer"].is_string(), "{json}");
    assert!(req.get("proximity-registrar-cert").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_pledges_bootstrap_in_parallel_cms() {
    twenty_in_parallel(Format::Cms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_pledges_bootstrap_in_parallel_jws() {
    twenty_in_parallel(Format::Jws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_pledges_bootstrap_in_parallel_cose() {
    twenty_in_parallel(Format::Cose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_directory_is_reused_on_new_ports() {
    let dir = tempfile::tempdir().unwrap();
    let first = Lab::start(dir.path(), LabOptions::default()).await.expect("first lab");
    let (cfg, id) = first.pledge("reuse-1", Format::Cms).await.unwrap();
    bootstrap(&cfg, &id).await.expect("bootstrap in the first run");
    let ca = std::fs::read(first.registrar.config().state.join("domain-ca.pem")).unwrap();
    let old_url = first.registrar_url.clone();
    drop(first);
    let second = Lab::start(dir.path(), LabOptions::default()).await.expect("reopened lab");
    assert_ne!(second.registrar_url, old_url, "new ports");
    assert_eq!(
        std::fs::read(second.registrar.config().state.join("domain-ca.pem")).unwrap(),
        ca,
        "same domain CA"
    );
    let (cfg, id) = second.pledge("reuse-2", Format::Cms).await.unwrap();
    bootstrap(&cfg, &id).await.expect("bootstrap in the second run");
    let records = list_pledges(second.registrar.store().as_ref()).await.unwrap();
    assert_eq!(records.len(), 2, "records of both runs");
}
