//! Our EST client against our EST server, in-process over real TLS on loopback: every auth
//! mode, a label, renew and rekey, the 202 path, tls-exporter binding (required; missing or
//! from another connection refused), serverkeygen, pinned and bootstrap trust.

use est::authority::{Decision, LocalCa};
use est::client::{ClientError, Enrollment, EstClient, EstConnection};
use est::http::{serve, server_tls_config};
use est::server::{hash_password, router, AuthRequirement, BindingPolicy, EstServerConfig, LabelPolicy};
use est::tls::{client_config, ServerTrust};
use hyper::StatusCode;
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::SqliteStore;
use x509_cert::Certificate;

const DAY: Duration = Duration::from_secs(86400);

struct Server {
    url: String,
    ca: Certificate,
    server_cert: Certificate,
    approve: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let ca_cert = create_ca("CN=Client Test CA", &ca_key, 3650 * DAY, None).unwrap();
    let ca = CertificateAuthority::new(ca_cert.clone(), Box::new(ca_key)).unwrap();
    let srv_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let srv_csr = Csr::verify_der(
        &build_csr(&parse_name("CN=localhost").unwrap(), &[San::Ip("127.0.0.1".parse().unwrap())], &srv_key)
            .unwrap(),
    )
    .unwrap();
    let server_cert = ca.issue(&srv_csr, &Profile::end_entity(DAY)).unwrap();
    let users: std::collections::HashMap<String, String> =
        [("dev".to_string(), hash_password("s3cret").unwrap())].into_iter().collect();
    let mut default = LabelPolicy::new(Profile::end_entity(30 * DAY));
    default.basic_users = users.clone();
    default.client_cert_anchors = vec![ca_cert.clone()];
    default.serverkeygen = true;
    let mut bound = LabelPolicy::new(Profile::end_entity(30 * DAY));
    bound.basic_users = users.clone();
    bound.auth = AuthRequirement::Basic;
    bound.binding = BindingPolicy::Require;
    let mut certonly = LabelPolicy::new(Profile::end_entity(30 * DAY));
    certonly.client_cert_anchors = vec![ca_cert.clone()];
    certonly.auth = AuthRequirement::ClientCert;
    let mut manual = LabelPolicy::new(Profile::end_entity(30 * DAY));
    manual.basic_users = users;
    let config = EstServerConfig::default()
        .with_label("", default)
        .with_label("ldevid", bound)
        .with_label("devices", certonly)
        .with_label("manual", manual);
    let store = Arc::new(SqliteStore::open(&dir.path().join("est.db")).await.unwrap());
    let approve = Arc::new(AtomicBool::new(false));
    let flag = approve.clone();
    let authority = LocalCa::new(ca, store, config.profiles()).with_approval(Arc::new(move |ctx| {
        if ctx.label == "manual" && !flag.load(Ordering::SeqCst) {
            Decision::Pending { retry_after_secs: 1 }
        } else {
            Decision::Approve
        }
    }));
    let app = router(config, Arc::new(authority)).unwrap();
    let chain = vec![rustls::pki_types::CertificateDer::from(cert_to_der(&server_cert).unwrap())];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(srv_key.to_pkcs8_der().unwrap().to_vec().into());
    let tls = Arc::new(server_tls_config(chain, key).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, tls, app));
    Server { url, ca: ca_cert, server_cert, approve, _dir: dir }
}

fn client(
    s: &Server,
    label: Option<&str>,
    identity: Option<(Vec<Certificate>, Arc<dyn Signer>)>,
) -> EstClient {
    EstClient::new(
        &s.url,
        label,
        client_config(&ServerTrust::Explicit(vec![s.ca.clone()]), identity).unwrap(),
    )
    .unwrap()
}

fn csr(conn: &EstConnection, subject: &str, key: &dyn Signer, bind: bool) -> Vec<u8> {
    let name = parse_name(subject).unwrap();
    match conn.channel_binding().filter(|_| bind) {
        Some(pw) => {
            est::binding::csr_with_challenge_password(&name, &[San::Dns("dev.example".into())], key, &pw)
                .unwrap()
        }
        None => build_csr(&name, &[San::Dns("dev.example".into())], key).unwrap(),
    }
}

fn done<T: std::fmt::Debug>(e: Enrollment<T>) -> T {
    match e {
        Enrollment::Done(t) => t,
        other => panic!("expected an issued certificate, got {other:?}"),
    }
}

fn status(e: ClientError) -> StatusCode {
    match e {
        ClientError::Status { status, .. } => status,
        other => panic!("expected an HTTP status, got {other}"),
    }
}

#[tokio::test]
async fn basic_auth_enroll_cacerts_and_csrattrs() {
    let s = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let mut conn = client(&s, None, None).with_basic("dev", "s3cret").connect().await.unwrap();
    assert_eq!(conn.cacerts().await.unwrap(), vec![s.ca.clone()]);
    let certs = done(conn.simpleenroll(&csr(&conn, "CN=basic-1", &key, true)).await.unwrap());
    assert_eq!(spki_der(&certs[0]), key.public_key_der());
    verify_chain(&certs[0], &[], std::slice::from_ref(&s.ca), time::OffsetDateTime::now_utc()).unwrap();
    // Keep-alive: a second request on the same connection.
    let key2 = SoftwareKey::generate(Algorithm::Es384).unwrap();
    assert!(matches!(
        conn.simpleenroll(&csr(&conn, "CN=basic-2", &key2, true)).await.unwrap(),
        Enrollment::Done(_)
    ));
    let _ = conn.csrattrs().await.unwrap();
}

#[tokio::test]
async fn wrong_password_and_no_credentials_are_401() {
    let s = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let mut conn = client(&s, None, None).with_basic("dev", "nope").connect().await.unwrap();
    let err = conn.simpleenroll(&csr(&conn, "CN=x", &key, false)).await.unwrap_err();
    assert_eq!(status(err), StatusCode::UNAUTHORIZED);
    let mut anon = client(&s, None, None).connect().await.unwrap();
    assert_eq!(
        status(anon.simpleenroll(&csr(&anon, "CN=x", &key, false)).await.unwrap_err()),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn client_certificate_enroll_renew_and_rekey() {
    let s = start().await;
    let key = Arc::new(SoftwareKey::generate(Algorithm::Es256).unwrap());
    let mut first = client(&s, None, None).with_basic("dev", "s3cret").connect().await.unwrap();
    let cert =
        done(first.simpleenroll(&csr(&first, "CN=device-9", key.as_ref(), true)).await.unwrap()).remove(0);
    // Authenticated by that certificate alone on a label that only takes certificates.
    let id: (Vec<Certificate>, Arc<dyn Signer>) = (vec![cert.clone()], key.clone());
    let mut by_cert = client(&s, Some("devices"), Some(id.clone())).connect().await.unwrap();
    let other = SoftwareKey::generate(Algorithm::Es256).unwrap();
    assert!(matches!(
        by_cert.simpleenroll(&csr(&by_cert, "CN=device-9b", &other, true)).await.unwrap(),
        Enrollment::Done(_)
    ));
    // Renew (same key) and rekey (new key) with the current certificate.
    let mut re = client(&s, None, Some(id)).connect().await.unwrap();
    let renewed =
        done(re.simplereenroll(&csr(&re, "CN=device-9", key.as_ref(), true)).await.unwrap()).remove(0);
    assert_eq!(spki_der(&renewed), spki_der(&cert));
    assert_ne!(renewed.tbs_certificate().serial_number(), cert.tbs_certificate().serial_number());
    let new_key = SoftwareKey::generate(Algorithm::EdDsa).unwrap();
    let rekeyed = done(re.simplereenroll(&csr(&re, "CN=device-9", &new_key, true)).await.unwrap()).remove(0);
    assert_eq!(spki_der(&rekeyed), new_key.public_key_der());
    assert_eq!(rekeyed.tbs_certificate().subject(), cert.tbs_certificate().subject());
    // Changing the subject on reenroll is refused.
    let err = re.simplereenroll(&csr(&re, "CN=someone-else", &new_key, true)).await.unwrap_err();
    assert_eq!(status(err), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn required_binding_accepts_this_connection_only() {
    let s = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let c = client(&s, Some("ldevid"), None).with_basic("dev", "s3cret");
    let mut conn = c.connect().await.unwrap();
    assert!(conn.channel_binding().is_some(), "TLS 1.3 exporter available");
    let attrs = conn.csrattrs().await.unwrap();
    assert!(
        attrs.contains(&est::wire::CsrAttr::Oid(CHALLENGE_PASSWORD)),
        "csrattrs lists challengePassword: {attrs:?}"
    );
    assert!(matches!(
        conn.simpleenroll(&csr(&conn, "CN=bound", &key, true)).await.unwrap(),
        Enrollment::Done(_)
    ));
    // Missing binding.
    assert_eq!(
        status(conn.simpleenroll(&csr(&conn, "CN=unbound", &key, false)).await.unwrap_err()),
        StatusCode::BAD_REQUEST
    );
    // A CSR bound to another TLS connection.
    let other = c.connect().await.unwrap();
    let foreign = csr(&other, "CN=replayed", &key, true);
    assert_eq!(status(conn.simpleenroll(&foreign).await.unwrap_err()), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pending_then_issued_after_approval() {
    let s = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let c = client(&s, Some("manual"), None).with_basic("dev", "s3cret");
    let mut conn = c.connect().await.unwrap();
    let request = csr(&conn, "CN=waiting", &key, false);
    match conn.simpleenroll(&request).await.unwrap() {
        Enrollment::Pending { retry_after } => assert_eq!(retry_after, Duration::from_secs(1)),
        other => panic!("expected 202, got {other:?}"),
    }
    s.approve.store(true, Ordering::SeqCst);
    let mut again = c.connect().await.unwrap();
    assert!(matches!(again.simpleenroll(&request).await.unwrap(), Enrollment::Done(_)));
}

#[tokio::test]
async fn serverkeygen_returns_a_key_matching_its_certificate() {
    let s = start().await;
    let throwaway = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let mut conn = client(&s, None, None).with_basic("dev", "s3cret").connect().await.unwrap();
    let got = done(conn.serverkeygen(&csr(&conn, "CN=skg", &throwaway, true)).await.unwrap());
    let key = SoftwareKey::from_pkcs8_der(&got.pkcs8).unwrap();
    assert_eq!(spki_der(&got.certs[0]), key.public_key_der());
    assert_ne!(key.public_key_der(), throwaway.public_key_der(), "the server must ignore the CSR key");
}

#[tokio::test]
async fn pinned_and_bootstrap_trust() {
    let s = start().await;
    let fp = shared::crypto::sha256(&cert_to_der(&s.server_cert).unwrap());
    let pinned =
        EstClient::new(&s.url, None, client_config(&ServerTrust::PinnedSha256(fp), None).unwrap()).unwrap();
    assert_eq!(pinned.connect().await.unwrap().cacerts().await.unwrap(), vec![s.ca.clone()]);
    let mut wrong = fp;
    wrong[0] ^= 1;
    let bad = EstClient::new(&s.url, None, client_config(&ServerTrust::PinnedSha256(wrong), None).unwrap())
        .unwrap();
    assert!(matches!(bad.connect().await, Err(ClientError::Connect { .. })));
    let boot =
        EstClient::new(&s.url, None, client_config(&ServerTrust::InsecureBootstrap, None).unwrap()).unwrap();
    boot.connect().await.unwrap().cacerts().await.unwrap();
    assert_eq!(boot.server_fingerprint(), Some(fp));
    // A client trusting another CA refuses the server.
    let other_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let other = create_ca("CN=Other", &other_key, DAY, None).unwrap();
    let strict =
        EstClient::new(&s.url, None, client_config(&ServerTrust::Explicit(vec![other]), None).unwrap())
            .unwrap();
    assert!(strict.connect().await.is_err());
}
