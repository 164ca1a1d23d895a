//! A device whose keys live in its TPM (swtpm), end to end on loopback: the MASA mints it into
//! the TPM (IDevID key and attestation key born there, both certified), the pledge bootstraps
//! over BRSKI with the TPM IDevID key doing its TLS client authentication and signing its
//! voucher-request, the LDevID key is created in the same TPM (and renewal moves it to the
//! other LDevID handle), and the Identity Proxy attaches a TPM quote over PCRs 0, 7 and 16 to
//! each agent request's evidence, which the registrar appraises against its PCR policy: a
//! request is issued while PCR 16 holds the measured value and refused once it is tampered
//! with. Each test starts its own swtpm; without swtpm it skips loudly, or fails under
//! `BRSKI_REQUIRE_PEERS=1`.
#![cfg(feature = "tpm")]

use agent::{self as agent_client, AgentApiClient, AgentClientError, Endpoint};
use brski::lab::{Lab, LabOptions};
use pledge::Attestation;
use pledge::ProxyConfig;
use shared::agent::{CredentialSpec, Model};
use shared::keys::{Algorithm, KeyUri, SoftwareKey};
use shared::pki;
use shared::signed::Format;
use shared::tpm;
use std::path::Path;
use std::time::Duration;
use testkit::swtpm::SwTpm;

const TD: &str = "campus.example";
/// What the device's boot measured into PCR 16 (a stand-in for a firmware or OS digest).
const MEASUREMENT: [u8; 32] = [0x42; 32];

/// PCR 16 after a reset and one extension with [`MEASUREMENT`].
fn expected_pcr16() -> [u8; 32] {
    let mut data = vec![0u8; 32];
    data.extend(MEASUREMENT);
    shared::crypto::sha256(&data)
}

fn policy(dir: &Path) -> String {
    format!(
        r#"trust_domain = "{TD}"

[[proxy]]
serial = "*"
agents = ["wimse://{TD}/agent/*"]

[attestation]
ak_anchors = "{}"
require_quote = true

[attestation.pcrs]
"16" = "{}"
"#,
        dir.join("lab/masa").join(masa::CA_CERT_FILE).display(),
        hex::encode(expected_pcr16())
    )
}

fn spec(name: &str) -> CredentialSpec {
    CredentialSpec {
        id: Some(format!("wimse://{TD}/agent/{name}")),
        formats: vec!["x509".into(), "wit".into()],
        ttl: 600,
        owner: None,
        model: Model::None,
    }
}

async fn request(c: &AgentApiClient, name: &str) -> Result<agent_client::Credential, AgentClientError> {
    let bundle = c.bundle().await.unwrap();
    let agent = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let nonce = c.nonce().await.unwrap();
    let acr = agent_client::build_acr(&agent, &bundle.issuance_uri, Some(nonce), spec(name), 60).unwrap();
    c.obtain(&acr, None, Duration::from_secs(30), &mut |_, _, _| {}).await
}

fn openssl_verify(dir: &Path, ca: &[x509_cert::Certificate], leaf: &x509_cert::Certificate) {
    if !testkit::peer("openssl") {
        return;
    }
    let pem =
        |c: &[x509_cert::Certificate]| c.iter().map(|c| pki::cert_to_pem(c).unwrap()).collect::<String>();
    std::fs::write(dir.join("ca.pem"), pem(ca)).unwrap();
    std::fs::write(dir.join("leaf.pem"), pem(std::slice::from_ref(leaf))).unwrap();
    let out = testkit::run_ok(dir, "openssl", &["verify", "-CAfile", "ca.pem", "leaf.pem"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("leaf.pem: OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_device_bootstraps_and_its_agents_evidence_carries_an_appraised_quote() {
    let Some(t) = SwTpm::for_test() else { return };
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions { agent_policy: Some(policy(dir.path())), ..LabOptions::default() };
    let lab = Lab::start(&dir.path().join("lab"), options).await.expect("lab starts");

    // Factory: both keys are born in the TPM; the device directory holds no private key.
    let serial = "tpm-device-1";
    let out = dir.path().join("device");
    let device = lab.masa.mint_tpm_device_to(serial, &t.tcti(), &out).await.expect("mint into the TPM");
    assert!(!out.join("idevid.key").exists());
    assert_eq!(tpm::read_key(&t.tcti(), tpm::IDEVID_HANDLE).unwrap().spki, pki::spki_der(&device.idevid));
    assert_eq!(tpm::read_key(&t.tcti(), tpm::IAK_HANDLE).unwrap().kind, tpm::KeyKind::Attestation);
    let owner = masa::Owner::DomainCa(lab.registrar.domain_ca().clone());
    lab.masa.claim(serial, owner, None).await.unwrap();
    // Minting the same TPM again is refused (its handles are taken).
    let again = lab.masa.mint_tpm_device_to("tpm-device-2", &t.tcti(), &dir.path().join("again")).await;
    assert!(again.unwrap_err().to_string().contains("already exists"));

    // Boot measured something into PCR 16.
    tpm::pcr_extend(&t.tcti(), 16, MEASUREMENT).unwrap();

    // The pledge finds its TPM keys by default and bootstraps with them.
    let mut cfg = pledge::PledgeConfig::in_dir(&out);
    assert!(matches!(cfg.idevid_key.parse::<KeyUri>(), Ok(KeyUri::Tpm(_))), "{}", cfg.idevid_key);
    cfg.registrar = Some(lab.registrar_url.clone());
    cfg.format = Format::Cms;
    cfg.max_attempts = 1;
    let idevid = pledge::Idevid::load(&cfg).expect("the IDevID in the TPM");
    pledge::bootstrap(&cfg, &idevid).await.expect("bootstrap with TPM keys");
    assert!(!out.join(pledge::LDEVID_KEY).exists(), "no LDevID key file");
    let ldevid_uri = std::fs::read_to_string(out.join(pledge::LDEVID_KEY_URI)).unwrap();
    assert!(ldevid_uri.starts_with("tpm:handle=0x81000002"), "{ldevid_uri}");
    let ldevid = pki::certs_from_pem(&std::fs::read(out.join(pledge::LDEVID_CERT)).unwrap()).unwrap();
    assert_eq!(pki::spki_der(&ldevid[0]), tpm::read_key(&t.tcti(), 0x8100_0002).unwrap().spki);
    let domain_ca = pki::certs_from_pem(&std::fs::read(out.join(pledge::DOMAIN_CA)).unwrap()).unwrap();
    openssl_verify(dir.path(), &domain_ca, &ldevid[0]);

    // The Identity Proxy quotes PCRs 0, 7 and 16 into every request's evidence.
    let mut pcfg = ProxyConfig::in_dir(&out);
    pcfg.renew = false;
    cfg.quote_pcrs = vec![0, 7, 16];
    pcfg.attestation = Attestation::from_config(&cfg).expect("attestation key");
    assert!(pcfg.attestation.is_some(), "iak.key-uri and iak.pem are found by default");
    let running = pledge::start_proxy(&pcfg, None).await.expect("proxy starts");
    let c = AgentApiClient::new(Endpoint::Unix(running.socket.clone()), Duration::from_secs(30));

    let cred = request(&c, "measured-1").await.expect("issued while PCR 16 is as measured");
    assert_eq!(cred.agent_id, format!("wimse://{TD}/agent/measured-1"));
    let audit = lab.registrar.store().audit_events(None, 0, 1000).await.unwrap();
    let issued = audit.iter().map(|r| &r.event).find(|e| e.action == "agent.credential.issued");
    let issued = issued.expect("issuance audited");
    assert_eq!(issued.detail["tpm_quote"]["device_serial"], serial);
    assert_eq!(issued.detail["tpm_quote"]["pcrs"]["16"], hex::encode(expected_pcr16()));

    // The LDevID renews into the other TPM handle (the previous key stays until the next
    // renewal replaces it, so requests in flight during the switch still sign), then back.
    let first = tpm::read_key(&t.tcti(), 0x8100_0002).unwrap();
    for (n, handle) in [(1, 0x8100_0003u32), (2, 0x8100_0002)] {
        let id = running.proxy.identity();
        pledge::reenroll(&running.proxy, &id, Duration::from_secs(30)).await.expect("reenroll");
        running.proxy.reload().unwrap();
        let renewed = std::fs::read_to_string(out.join(pledge::LDEVID_KEY_URI)).unwrap();
        assert!(renewed.starts_with(&format!("tpm:handle=0x{handle:08x}")), "{renewed}");
        let leaf = running.proxy.identity().chain[0].clone();
        assert_eq!(pki::spki_der(&leaf), tpm::read_key(&t.tcti(), handle).unwrap().spki);
        request(&c, &format!("measured-renewed-{n}")).await.expect("issued with the renewed LDevID");
    }
    assert_ne!(
        tpm::read_key(&t.tcti(), 0x8100_0002).unwrap(),
        first,
        "the second renewal replaced the first key"
    );

    // Tampering: something else is measured into PCR 16. The quote is genuine, but the policy
    // no longer matches, and the registrar refuses.
    tpm::pcr_extend(&t.tcti(), 16, [0x66; 32]).unwrap();
    let err = request(&c, "tampered").await.unwrap_err();
    match &err {
        AgentClientError::Refused { status, reason, detail } => {
            assert_eq!((*status, reason.as_str()), (403, "evidence"), "{err}");
            assert!(detail.contains("PCR 16"), "{detail}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    let audit = lab.registrar.store().audit_events(None, 0, 1000).await.unwrap();
    let refused = |e: &&shared::store::AuditEvent| e.action == "agent.credential.refused";
    assert!(audit.iter().map(|r| &r.event).filter(refused).any(|e| e.detail.to_string().contains("PCR 16")));
}
