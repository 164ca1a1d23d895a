//! One test per attack on the BRSKI flow, each refused with a clear reason and nothing
//! enrolled: the pledge writes no LDevID and the domain CA issues nothing for it.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use brski::lab::{Lab, LabOptions};
use est::client::{EstClient, RawReply};
use est::tls::{client_config, ServerTrust};
use pledge::ImprintError;
use pledge::{bootstrap, BootstrapError, Idevid, PledgeConfig};
use pledge::{fresh_nonce, pledge_request};
use registrar::Approval;
use shared::brski::PATH_REQUEST_VOUCHER;
use shared::keys::{load_key_file, Algorithm, Signer, SoftwareKey};
use shared::pki::{self, CertificateAuthority};
use shared::signed::Format;
use shared::voucher::{sign_voucher, Assertion, Kind, SignedVoucher, Voucher};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use x509_cert::Certificate;

const DAY: Duration = Duration::from_secs(86400);

async fn lab(dir: &std::path::Path) -> Lab {
    Lab::start(dir, LabOptions::default()).await.expect("lab starts")
}

/// Nothing was enrolled for the pledge: no LDevID on disk, no certificate for its serial.
async fn assert_nothing_enrolled(lab: &Lab, cfg: &PledgeConfig, serial: &str) {
    assert!(!cfg.state.join("ldevid.pem").exists(), "an LDevID was written for {serial}");
    let certs = lab.registrar.store().list_certificates(1000, 0).await.unwrap();
    assert!(
        certs.iter().all(|c| !c.subject.contains(serial)),
        "the domain CA issued a certificate for {serial}"
    );
}

fn voucher_refusal(e: BootstrapError) -> ImprintError {
    match e {
        BootstrapError::Voucher(v) => v,
        other => panic!("expected a voucher refusal, got: {other}"),
    }
}

/// The MASA's voucher-signing key and chain (from the lab's MASA state).
fn masa_signer(lab: &Lab) -> (SoftwareKey, Vec<Certificate>) {
    let d = lab.dir.join("masa");
    let key = load_key_file(&d.join(masa::SIGNER_KEY_FILE)).unwrap();
    let mut chain = pki::certs_from_pem(&std::fs::read(d.join(masa::SIGNER_CERT_FILE)).unwrap()).unwrap();
    chain.extend(pki::certs_from_pem(&std::fs::read(d.join(masa::CA_CERT_FILE)).unwrap()).unwrap());
    (key, chain)
}

/// A voucher answering `pvr`, pinning `pin`, signed by `key`; `edit` may change it.
fn voucher_for(
    pvr: &Voucher,
    pin: &Certificate,
    key: &dyn Signer,
    chain: &[Certificate],
    edit: impl Fn(&mut Voucher),
) -> Vec<u8> {
    let mut v = Voucher::new(Kind::Voucher);
    v.created_on = Some(OffsetDateTime::now_utc());
    v.assertion = Some(Assertion::Proximity);
    v.serial_number = pvr.serial_number.clone();
    v.nonce = pvr.nonce.clone();
    v.pinned_domain_cert = Some(pki::cert_to_der(pin).unwrap());
    edit(&mut v);
    sign_voucher(&v, Format::Cms, key, chain).unwrap().bytes().to_vec()
}

type Answer = Arc<dyn Fn(&Voucher) -> Vec<u8> + Send + Sync>;

/// A rogue registrar on loopback with TLS identity (`chain`, `key`) that answers every
/// voucher-request with `answer(request)` and accepts everything else.
async fn rogue_registrar(
    chain: Vec<Certificate>,
    key: SoftwareKey,
    answer: Answer,
) -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route(
            PATH_REQUEST_VOUCHER,
            post(move |body: Bytes| {
                let answer = answer.clone();
                async move {
                    let pvr = SignedVoucher::parse(&body).unwrap().inspect_unverified().unwrap();
                    ([("content-type", Format::Cms.media_type())], answer(&pvr)).into_response()
                }
            }),
        )
        .fallback(|| async { StatusCode::OK });
    let ders = chain.iter().map(|c| pki::cert_to_der(c).unwrap().into()).collect();
    let pk = rustls::pki_types::PrivateKeyDer::Pkcs8(key.to_pkcs8_der().unwrap().to_vec().into());
    let tls = Arc::new(est::http::server_tls_config(ders, pk).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = est::http::serve(listener, tls, app).await;
    });
    (url, task)
}

/// The lab registrar's own TLS identity (a rogue that stole it would pass the pin check).
fn registrar_identity(lab: &Lab) -> (Vec<Certificate>, SoftwareKey) {
    let d = &lab.registrar.config().state;
    (lab.registrar.chain().to_vec(), load_key_file(&d.join("registrar.key")).unwrap())
}

/// Posts `pvr` to the lab registrar over TLS with `id` as client certificate.
async fn post_pvr(lab: &Lab, id: &Idevid, pvr: Vec<u8>) -> RawReply {
    let tls =
        client_config(&ServerTrust::InsecureBootstrap, Some((id.chain.clone(), id.signer.clone()))).unwrap();
    let mut conn = EstClient::new(&lab.registrar_url, None, tls).unwrap().connect().await.unwrap();
    conn.post_raw(PATH_REQUEST_VOUCHER, Format::Cms.media_type(), None, pvr).await.unwrap()
}

fn assert_refused(r: &RawReply, status: u16, text: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.detail());
    assert!(r.content_type.starts_with(est::http::MEDIA_PROBLEM), "{}", r.content_type);
    assert!(r.detail().contains(text), "reason {:?} lacks {text:?}", r.detail());
}

#[tokio::test]
async fn voucher_for_another_serial_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab(dir.path()).await;
    let (cfg, id) = lab.pledge("victim-1", Format::Cms).await.unwrap();
    let (key, chain) = masa_signer(&lab);
    let domain = lab.registrar.domain_ca().clone();
    let answer: Answer = Arc::new(move |pvr| {
        voucher_for(pvr, &domain, &key, &chain, |v| v.serial_number = Some("someone-else".into()))
    });
    let (rchain, rkey) = registrar_identity(&lab);
    let (url, _t) = rogue_registrar(rchain, rkey, answer).await;
    let cfg = PledgeConfig { registrar: Some(url), ..cfg };
    let e = voucher_refusal(bootstrap(&cfg, &id).await.unwrap_err());
    assert!(matches!(e, ImprintError::Content(ref t) if t.contains("serial")), "{e}");
    assert_nothing_enrolled(&lab, &cfg, "victim-1").await;
}

#[tokio::test]
async fn voucher_with_another_nonce_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab(dir.path()).await;
    let (cfg, id) = lab.pledge("victim-2", Format::Cms).await.unwrap();
    let (key, chain) = masa_signer(&lab);
    let domain = lab.registrar.domain_ca().clone();
    let answer: Answer =
        Arc::new(move |pvr| voucher_for(pvr, &domain, &key, &chain, |v| v.nonce = Some(fresh_nonce())));
    let (rchain, rkey) = registrar_identity(&lab);
    let (url, _t) = rogue_registrar(rchain, rkey, answer).await;
    let cfg = PledgeConfig { registrar: Some(url), ..cfg };
    let e = voucher_refusal(bootstrap(&cfg, &id).await.unwrap_err());
    assert!(matches!(e, ImprintError::Content(ref t) if t.contains("nonce")), "{e}");
    assert_nothing_enrolled(&lab, &cfg, "victim-2").await;
}

#[tokio::test]
async fn voucher_signed_by_an_unknown_masa_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab(dir.path()).await;
    let (cfg, id) = lab.pledge("victim-3", Format::Cms).await.unwrap();
    let rogue_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let rogue_ca = pki::create_ca("CN=Rogue MASA", &rogue_key, DAY, None).unwrap();
    let domain = lab.registrar.domain_ca().clone();
    let answer: Answer =
        Arc::new(move |pvr| voucher_for(pvr, &domain, &rogue_key, std::slice::from_ref(&rogue_ca), |_| {}));
    let (rchain, rkey) = registrar_identity(&lab);
    let (url, _t) = rogue_registrar(rchain, rkey, answer).await;
    let cfg = PledgeConfig { registrar: Some(url), ..cfg };
    let e = voucher_refusal(bootstrap(&cfg, &id).await.unwrap_err());
    assert!(matches!(e, ImprintError::Signature(_)), "{e}");
    assert_nothing_enrolled(&lab, &cfg, "victim-3").await;
}

#[tokio::test]
async fn expired_nonceless_voucher_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab(dir.path()).await;
    let (cfg, id) = lab.pledge("victim-4", Format::Cms).await.unwrap();
    let (key, chain) = masa_signer(&lab);
    let domain = lab.registrar.domain_ca().clone();
    let answer: Answer = Arc::new(move |pvr| {
        voucher_for(pvr, &domain, &key, &chain, |v| {
            v.nonce = None;
            v.expires_on = Some(OffsetDateTime::now_utc() - time::Duration::minutes(5));
        })
    });
    let (rchain, rkey) = registrar_identity(&lab);
    let (url, _t) = rogue_registrar(rchain, rkey, answer).await;
    let cfg = PledgeConfig { registrar: Some(url), ..cfg };
    let e = voucher_refusal(bootstrap(&cfg, &id).await.unwrap_err());
    assert!(matches!(e, ImprintError::Content(ref t) if t.contains("expired")), "{e}");
    assert_nothing_enrolled(&lab, &cfg, "victim-4").await;
}

#[tokio::test]
async fn man_in_the_middle_registrar_is_refused_by_the_pin() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab(dir.path()).await;
    let (cfg, id) = lab.pledge("victim-5", Format::Cms).await.unwrap();
    // The attacker has a genuine MASA voucher pinning the real domain, but its own TLS key.
    let (key, chain) = masa_signer(&lab);
    let domain = lab.registrar.domain_ca().clone();
    let answer: Answer = Arc::new(move |pvr| voucher_for(pvr, &domain, &key, &chain, |_| {}));
    let mitm_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let mitm_cert = pki::create_ca("CN=127.0.0.1", &mitm_key, DAY, None).unwrap();
    let (url, _t) = rogue_registrar(vec![mitm_cert], mitm_key, answer).await;
    let cfg = PledgeConfig { registrar: Some(url), ..cfg };
    let e = voucher_refusal(bootstrap(&cfg, &id).await.unwrap_err());
    assert!(matches!(e, ImprintError::Pin(_)), "{e}");
    assert_nothing_enrolled(&lab, &cfg, "victim-5").await;
}

#[tokio::test]
async fn request_signed_by_another_key_than_the_tls_client_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab(dir.path()).await;
    let (cfg, a) = lab.pledge("pledge-a", Format::Cms).await.unwrap();
    let (_, b) = lab.pledge("pledge-b", Format::Cms).await.unwrap();
    // B's request, with A's serial and signed by B, sent over a TLS connection as A.
    let mut signer_b = b.clone();
    signer_b.serial = a.serial.clone();
    let pvr = pledge_request(&signer_b, lab.registrar.certificate(), &fresh_nonce(), Format::Cms).unwrap();
    let r = post_pvr(&lab, &a, pvr).await;
    assert_refused(&r, 403, "signed by a key other than the TLS client");
    assert_nothing_enrolled(&lab, &cfg, "pledge-a").await;
}

#[tokio::test]
async fn replayed_pledge_request_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab(dir.path()).await;
    let (_, id) = lab.pledge("replayed-1", Format::Cms).await.unwrap();
    let pvr = pledge_request(&id, lab.registrar.certificate(), &fresh_nonce(), Format::Cms).unwrap();
    let first = post_pvr(&lab, &id, pvr.clone()).await;
    assert_eq!(first.status.as_u16(), 200, "{}", first.detail());
    let again = post_pvr(&lab, &id, pvr).await;
    assert_refused(&again, 403, "replayed");
}

#[tokio::test]
async fn pledge_from_an_untrusted_manufacturer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab(dir.path()).await;
    let other = Lab::start(&dir.path().join("other"), LabOptions::default()).await.unwrap();
    let (cfg, id) = other.pledge("foreign-1", Format::Cms).await.unwrap();
    let cfg = PledgeConfig { registrar: Some(lab.registrar_url.clone()), ..cfg };
    match bootstrap(&cfg, &id).await.unwrap_err() {
        BootstrapError::Refused { status, detail } => {
            assert_eq!(status, 403);
            assert!(detail.contains("trusted manufacturer"), "{detail}");
        }
        e => panic!("unexpected: {e}"),
    }
    assert_nothing_enrolled(&lab, &cfg, "foreign-1").await;
}

#[tokio::test]
async fn domain_that_does_not_own_the_serial_is_refused_by_the_masa() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab(dir.path()).await;
    let (cfg, id) = lab.pledge("owned-elsewhere", Format::Cms).await.unwrap();
    let other_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let other_ca = pki::create_ca("CN=Another Domain CA", &other_key, DAY, None).unwrap();
    lab.masa.claim("owned-elsewhere", masa::Owner::DomainCa(other_ca), None).await.unwrap();
    match bootstrap(&cfg, &id).await.unwrap_err() {
        BootstrapError::Refused { status, detail } => {
            assert_eq!(status, 403, "{detail}");
            assert!(detail.contains("MASA"), "{detail}");
        }
        e => panic!("unexpected: {e}"),
    }
    assert_nothing_enrolled(&lab, &cfg, "owned-elsewhere").await;
}

#[tokio::test]
async fn proximity_cert_of_another_registrar_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab(dir.path()).await;
    let (cfg, id) = lab.pledge("proximity-1", Format::Cms).await.unwrap();
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let ca = CertificateAuthority::new(pki::create_ca("CN=Other", &key, DAY, None).unwrap(), Box::new(key))
        .unwrap();
    let other = ca.certificate().clone();
    let pvr = pledge_request(&id, &other, &fresh_nonce(), Format::Cms).unwrap();
    let r = post_pvr(&lab, &id, pvr).await;
    assert_refused(&r, 401, "proximity-registrar-cert");
    assert_nothing_enrolled(&lab, &cfg, "proximity-1").await;
}

#[tokio::test]
async fn pending_pledge_cannot_use_est_before_approval_and_enrolls_after() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LabOptions { approval: Approval::Manual, ..LabOptions::default() };
    let lab = Lab::start(dir.path(), opts).await.unwrap();
    let (cfg, id) = lab.pledge("pending-1", Format::Cms).await.unwrap();
    let pvr = pledge_request(&id, lab.registrar.certificate(), &fresh_nonce(), Format::Cms).unwrap();
    let r = post_pvr(&lab, &id, pvr).await;
    assert_eq!(r.status.as_u16(), 202, "{}", r.detail());
    assert_eq!(r.retry_after, Some(Duration::from_secs(1)));
    // EST with the IDevID while pending: refused.
    let tls =
        client_config(&ServerTrust::InsecureBootstrap, Some((id.chain.clone(), id.signer.clone()))).unwrap();
    let mut conn = EstClient::new(&lab.registrar_url, None, tls).unwrap().connect().await.unwrap();
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let binding = conn.channel_binding().unwrap();
    let subject = id.certificate().tbs_certificate().subject().clone();
    let csr = est::binding::csr_with_challenge_password(&subject, &[], &key, &binding).unwrap();
    let e = conn.simpleenroll(&csr).await.expect_err("EST refused");
    let text = e.to_string();
    assert!(text.contains("403") && text.contains("waiting for approval"), "{text}");
    assert_nothing_enrolled(&lab, &cfg, "pending-1").await;
    // The operator approves; the pledge's own flow (202 then retry) completes.
    let store = lab.registrar.store().clone();
    let approver = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        registrar::decide_pledge(store.as_ref(), "pending-1", true, "test-operator").await.unwrap();
    });
    let outcome = bootstrap(&cfg, &id).await.expect("bootstraps after approval");
    approver.await.unwrap();
    assert!(outcome.files.cert.exists());
}

#[tokio::test]
async fn enrolled_pledge_cannot_get_a_certificate_for_another_serial() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab(dir.path()).await;
    let (cfg, id) = lab.pledge("honest-1", Format::Cms).await.unwrap();
    let outcome = bootstrap(&cfg, &id).await.expect("bootstraps");
    // With its LDevID, the device asks for a certificate naming another device's serial.
    let key = Arc::new(load_key_file(&outcome.files.key).unwrap());
    let anchors = ServerTrust::Explicit(outcome.ca_certs.clone());
    let tls = client_config(&anchors, Some((outcome.chain.clone(), key as Arc<dyn Signer>))).unwrap();
    let mut conn = EstClient::new(&lab.registrar_url, None, tls).unwrap().connect().await.unwrap();
    let new_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let subject = pki::name_with_serial("CN=someone else", "victim-9").unwrap();
    let binding = conn.channel_binding().unwrap();
    let csr = est::binding::csr_with_challenge_password(&subject, &[], &new_key, &binding).unwrap();
    let text = conn.simpleenroll(&csr).await.expect_err("refused").to_string();
    assert!(text.contains("403") && text.contains("victim-9"), "{text}");
}
