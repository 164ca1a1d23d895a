//! Hardware-backed keys: a MASA signing vouchers, a registrar domain CA signing LDevIDs and
//! the registrar's TLS key (its handshakes with pledges and the MASA) in SoftHSM v2 (`pkcs11:` key URIs, RFC 7512). Each test makes its own token; all
//! tokens of this binary share one SoftHSM directory (`SOFTHSM2_CONF` is process-wide).
//! Without SoftHSM the tests skip loudly, or fail under `BRSKI_REQUIRE_PEERS=1`.

use brski::lab::{Lab, LabOptions};
use pledge::bootstrap;
use registrar::{list_pledges, PledgeState};
use shared::keys::Algorithm;
use shared::signed::Format;
use std::path::Path;
use testkit::softhsm::SoftHsmToken;

/// One test at a time in this process: SoftHSM refreshes its slot list when asked for it, and a
/// refresh racing another thread's C_InitToken aborts the process (`SlotManager::insertToken`
/// assertion, seen in CI). Tokens are made and used by one test at a time.
static SOFTHSM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A new token labelled `label`, or `None` (after a loud notice) without SoftHSM.
fn token(label: &str) -> Option<SoftHsmToken> {
    testkit::softhsm_token(label)
}

/// `openssl verify` accepts the LDevID (first certificate of the file) against the domain CA.
fn openssl_verify_ldevid(ca: &Path, chain: &Path) {
    let dir = chain.parent().unwrap();
    let leaf = dir.join("ldevid-leaf.pem");
    let pem = std::fs::read_to_string(chain).unwrap();
    let end = pem.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----\n".len();
    std::fs::write(&leaf, &pem[..end.min(pem.len())]).unwrap();
    let out =
        testkit::run_ok(dir, "openssl", &["verify", "-CAfile", ca.to_str().unwrap(), leaf.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
}

/// `openssl cms -verify` accepts a CMS voucher against the manufacturer CA.
fn openssl_verify_voucher(manufacturer_ca: &Path, voucher: &Path) {
    let dir = voucher.parent().unwrap();
    let args = [
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        voucher.to_str().unwrap(),
        "-CAfile",
        manufacturer_ca.to_str().unwrap(),
        "-purpose",
        "any",
    ];
    let out = testkit::run_ok(dir, "openssl", &args);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("voucher JSON");
    assert!(json["ietf-voucher:voucher"]["serial-number"].is_string(), "{json}");
}

/// Bootstraps one pledge per voucher format and checks the voucher and the LDevID.
async fn bootstrap_each_format(lab: &Lab, prefix: &str) {
    let manufacturer_ca = lab.dir.join("masa").join(masa::CA_CERT_FILE);
    let domain_ca = lab.registrar.config().state.join("domain-ca.pem");
    for format in [Format::Cms, Format::Jws, Format::Cose] {
        let (cfg, id) = lab.pledge(&format!("{prefix}-{format}"), format).await.expect("mint");
        // The pledge verifies the voucher (signed in SoftHSM) against the manufacturer CA.
        let outcome = bootstrap(&cfg, &id).await.unwrap_or_else(|e| panic!("{format}: bootstrap: {e}"));
        assert_eq!(outcome.mode, "brski");
        let voucher = outcome.files.voucher.expect("voucher kept");
        if testkit::peer("openssl") {
            openssl_verify_ldevid(&domain_ca, &cfg.state.join("ldevid.pem"));
            if format == Format::Cms {
                openssl_verify_voucher(&manufacturer_ca, &voucher);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masa_voucher_key_and_domain_ca_key_in_softhsm() {
    let _one = SOFTHSM.lock().await;
    let (Some(masa_token), Some(domain_token)) = (token("masa"), token("domain")) else { return };
    let voucher_key = masa_token.generate("voucher-signer", Algorithm::Es256).unwrap();
    let ca_key = domain_token.generate("domain-ca", Algorithm::Es384).unwrap();
    let registrar_key = domain_token.generate("registrar-tls", Algorithm::Es256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions {
        voucher_signer_key: Some(voucher_key.clone()),
        domain_ca_key: Some(ca_key.clone()),
        registrar_key: Some(registrar_key.clone()),
        ..LabOptions::default()
    };
    let lab = Lab::start(dir.path(), options.clone()).await.expect("lab starts");
    // No software copies of the three keys: the configurations name the tokens.
    assert!(!dir.path().join("masa").join(masa::SIGNER_KEY_FILE).exists());
    assert!(!dir.path().join("registrar").join("domain-ca.key").exists());
    assert!(!dir.path().join("registrar").join("registrar.key").exists());
    let masa_toml = std::fs::read_to_string(dir.path().join("masa/masa.toml")).unwrap();
    assert!(masa_toml.contains("voucher_signer_key = \"pkcs11:token=masa;"), "{masa_toml}");
    let reg_toml = std::fs::read_to_string(dir.path().join("registrar/registrar.toml")).unwrap();
    assert!(reg_toml.contains("domain_ca_key = \"pkcs11:token=domain;"), "{reg_toml}");
    assert!(reg_toml.contains("registrar_key = \"pkcs11:token=domain;object=registrar-tls;"), "{reg_toml}");
    bootstrap_each_format(&lab, "hsm").await;
    drop(lab);

    // Reopened from its configuration (Masa::load, registrar open), the lab signs again.
    let lab = Lab::start(dir.path(), options).await.expect("lab reopens");
    bootstrap_each_format(&lab, "again").await;
    let records = list_pledges(lab.registrar.store().as_ref()).await.unwrap();
    assert_eq!(records.len(), 6);
    for r in records {
        assert_eq!(r.state(), PledgeState::Enrolled, "{}: {:?}", r.serial, r.reason);
        assert!(r.voucher_status.is_some_and(|s| s.status));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_stops_the_masa_without_showing_it() {
    let _one = SOFTHSM.lock().await;
    let Some(t) = token("badpin") else { return };
    let key = t.generate("voucher-signer", Algorithm::Es256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = masa::InitOptions::new("127.0.0.1:9443");
    opts.voucher_signer_key = Some(key.replace("pin-value=1234", "pin-value=0000"));
    let err = masa::Masa::init(&dir.path().join("masa"), &opts).await.expect_err("wrong PIN").to_string();
    assert!(err.contains("wrong PIN"), "{err}");
    assert!(!err.contains("0000"), "the PIN leaked: {err}");
}
