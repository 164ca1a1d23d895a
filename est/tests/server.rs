//! The EST server in-process on 127.0.0.1: real curl + openssl as clients (skipped loudly when
//! missing, required with BRSKI_REQUIRE_PEERS=1), and a tokio-rustls + hyper client for the
//! refusals (status + RFC 9457 problem body) and channel binding over TLS 1.3.

use bytes::Bytes;
use der::Encode;
use est::authority::{Decision, LocalCa};
use est::binding::{challenge_password_for, csr_with_challenge_password, exporter_value};
use est::http::{serve, server_tls_config};
use est::server::{hash_password, router, AuthRequirement, BindingPolicy, EstServerConfig, LabelPolicy};
use est::wire;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki::{
    build_csr, cert_to_pem, create_ca, parse_name, verify_chain, CertificateAuthority, Csr, Profile, San,
};
use shared::store::{RevocationReason, Store};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use store::SqliteStore;
use tempfile::TempDir;
use x509_cert::Certificate;

const USER: &str = "alice";
const PASS: &str = "s3cret-pw";

struct Fixture {
    dir: TempDir,
    addr: SocketAddr,
    ca_cert: Certificate,
    ca_key: SoftwareKey,
    store: Arc<SqliteStore>,
    /// Request keys the approval hook saw on the "pending" label.
    pending_keys: Arc<std::sync::Mutex<Vec<[u8; 32]>>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn clone_key(k: &SoftwareKey) -> SoftwareKey {
    SoftwareKey::from_pkcs8_der(&k.to_pkcs8_der().unwrap()).unwrap()
}

fn der(c: &Certificate) -> Vec<u8> {
    c.to_der().unwrap()
}

/// Starts a server with a fresh CA and these labels:
/// "" (Either: Basic alice or a cert of the CA; binding Accept; serverkeygen on),
/// "bound" (Basic, binding Require), "certonly" (ClientCert), "pending" (Basic, authorize ->
/// Pending 120 s), "short" (Basic, certificates valid for 1 s).
async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let ca_cert =
        create_ca("CN=EST Test CA,O=brski tests", &ca_key, Duration::from_secs(3650 * 86400), None).unwrap();
    let ca = CertificateAuthority::new(ca_cert.clone(), Box::new(clone_key(&ca_key))).unwrap();

    // Server certificate for 127.0.0.1 / localhost.
    let srv_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let srv_csr = Csr::verify_der(
        &build_csr(
            &parse_name("CN=localhost").unwrap(),
            &[San::Dns("localhost".into()), San::Ip("127.0.0.1".parse().unwrap())],
            &srv_key,
        )
        .unwrap(),
    )
    .unwrap();
    let mut srv_profile = Profile::end_entity(Duration::from_secs(86400));
    srv_profile.extended_key_usage = vec![const_oid::db::rfc5280::ID_KP_SERVER_AUTH];
    let srv_cert = ca.issue(&srv_csr, &srv_profile).unwrap();

    let users: std::collections::HashMap<String, String> =
        [(USER.to_string(), hash_password(PASS).unwrap())].into_iter().collect();
    let ee = Profile::end_entity(Duration::from_secs(30 * 86400));
    let mut default = LabelPolicy::new(ee.clone());
    default.basic_users = users.clone();
    default.client_cert_anchors = vec![ca_cert.clone()];
    default.serverkeygen = true;
    let mut bound = LabelPolicy::new(ee.clone());
    bound.basic_users = users.clone();
    bound.auth = AuthRequirement::Basic;
    bound.binding = BindingPolicy::Require;
    let mut certonly = LabelPolicy::new(ee.clone());
    certonly.client_cert_anchors = vec![ca_cert.clone()];
    certonly.auth = AuthRequirement::ClientCert;
    let mut pending = LabelPolicy::new(ee.clone());
    pending.basic_users = users.clone();
    pending.auth = AuthRequirement::Basic;
    let mut short_profile = ee.clone();
    short_profile.validity = Duration::from_secs(1);
    let mut short = LabelPolicy::new(short_profile);
    short.basic_users = users;
    short.auth = AuthRequirement::Basic;
    let config = EstServerConfig::default()
        .with_label("", default)
        .with_label("bound", bound)
        .with_label("certonly", certonly)
        .with_label("pending", pending)
        .with_label("short", short);

    let store = Arc::new(SqliteStore::open(&dir.path().join("est.db")).await.unwrap());
    let dyn_store: Arc<dyn Store> = store.clone();
    let pending_keys = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = pending_keys.clone();
    let authority = LocalCa::new(ca, dyn_store, config.profiles()).with_approval(Arc::new(move |ctx| {
        if ctx.label == "pending" {
            seen.lock().unwrap().push(ctx.request_key);
            Decision::Pending { retry_after_secs: 120 }
        } else {
            Decision::Approve
        }
    }));
    let app = router(config, Arc::new(authority)).unwrap();
    let tls = server_tls_config(
        vec![CertificateDer::from(der(&srv_cert)), CertificateDer::from(der(&ca_cert))],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(srv_key.to_pkcs8_der().unwrap().to_vec())),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(listener, Arc::new(tls), app));
    std::fs::write(dir.path().join("ca.pem"), cert_to_pem(&ca_cert).unwrap()).unwrap();
    Fixture { dir, addr, ca_cert, ca_key, store, pending_keys, server }
}

// ------------------------------------------------------------------------------------------
// A minimal Rust client: tokio-rustls + hyper http1 over one connection.
// ------------------------------------------------------------------------------------------

struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    exporter: [u8; 32],
    version: rustls::ProtocolVersion,
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

async fn connect(fx: &Fixture, client: Option<(&Certificate, &SoftwareKey)>) -> Conn {
    connect_with(fx, client, &rustls::version::TLS13).await
}

async fn connect_with(
    fx: &Fixture,
    client: Option<(&Certificate, &SoftwareKey)>,
    version: &'static rustls::SupportedProtocolVersion,
) -> Conn {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(der(&fx.ca_cert))).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from(der(cert))],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_pkcs8_der().unwrap().to_vec())),
            )
            .unwrap(),
    };
    let tcp = tokio::net::TcpStream::connect(fx.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (_, c) = tls.get_ref();
    let exporter = exporter_value(c).expect("exporter");
    let version = c.protocol_version().unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    Conn { sender, exporter, version }
}

impl Conn {
    async fn send(&mut self, method: &str, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let resp = self.sender.send_request(req.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply { status, headers, body }
    }
}

fn basic() -> (&'static str, String) {
    ("authorization", format!("Basic {}", shared::b64::encode(format!("{USER}:{PASS}").as_bytes())))
}

fn pkcs10() -> (&'static str, String) {
    ("content-type", "application/pkcs10".to_string())
}

/// Asserts the status and an RFC 9457 body; returns the body.
fn problem(r: &Reply, status: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "body: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["content-type"], est::http::MEDIA_PROBLEM);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("problem+json body");
    assert_eq!(v["status"], status);
    for k in ["type", "title", "detail"] {
        assert!(v[k].as_str().is_some_and(|s| !s.is_empty()), "problem member {k} in {v}");
    }
    v
}

fn csr(subject: &str, san: &[San], key: &dyn Signer) -> Vec<u8> {
    build_csr(&parse_name(subject).unwrap(), san, key).unwrap()
}

fn issued(r: &Reply) -> Certificate {
    assert_eq!(r.status, 200, "body: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["content-type"], "application/pkcs7-mime; smime-type=certs-only");
    assert_eq!(r.headers["content-length"].to_str().unwrap().parse::<usize>().unwrap(), r.body.len());
    let certs = wire::parse_certs_only(&wire::decode_body(&r.body).unwrap()).unwrap();
    assert_eq!(certs.len(), 1);
    certs.into_iter().next().unwrap()
}

/// Enrolls `key` as `subject` on the default label with Basic auth.
async fn enroll_basic(
    fx: &Fixture,
    label: &str,
    subject: &str,
    san: &[San],
    key: &dyn Signer,
) -> Certificate {
    let mut c = connect(fx, None).await;
    let path = if label.is_empty() {
        "/.well-known/est/simpleenroll".to_string()
    } else {
        format!("/.well-known/est/{label}/simpleenroll")
    };
    let r =
        c.send("POST", &path, &[basic(), pkcs10()], wire::encode_body(&csr(subject, san, key)).into()).await;
    let cert = issued(&r);
    verify_chain(&cert, &[], std::slice::from_ref(&fx.ca_cert), time::OffsetDateTime::now_utc()).unwrap();
    cert
}

// ------------------------------------------------------------------------------------------
// Rust client: success paths and refusals
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn binding_required_label_accepts_tls13_exporter_and_refuses_missing_or_wrong() {
    let fx = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let mut c = connect(&fx, None).await;
    assert_eq!(c.version, rustls::ProtocolVersion::TLSv1_3);
    let path = "/.well-known/est/bound/simpleenroll";

    // Missing challengePassword: 400 saying binding is required.
    let r =
        c.send("POST", path, &[basic(), pkcs10()], wire::encode_body(&csr("CN=b1", &[], &key)).into()).await;
    let p = problem(&r, 400);
    assert!(p["detail"].as_str().unwrap().contains("channel binding is required"), "{p}");

    // Wrong value (another connection's exporter): 400 mismatch.
    let wrong = challenge_password_for(&[0u8; 32]);
    let der = csr_with_challenge_password(&parse_name("CN=b1").unwrap(), &[], &key, &wrong).unwrap();
    let r = c.send("POST", path, &[basic(), pkcs10()], wire::encode_body(&der).into()).await;
    let p = problem(&r, 400);
    assert!(p["type"].as_str().unwrap().ends_with("binding-mismatch"), "{p}");

    // This connection's exporter: issued.
    let pw = challenge_password_for(&c.exporter);
    let der = csr_with_challenge_password(&parse_name("CN=b1").unwrap(), &[], &key, &pw).unwrap();
    let r = c.send("POST", path, &[basic(), pkcs10()], wire::encode_body(&der).into()).await;
    let cert = issued(&r);
    assert_eq!(cert.tbs_certificate().subject().to_string(), "CN=b1");
    // Recorded in the store before it was returned.
    let serial = hex::encode(cert.tbs_certificate().serial_number().as_bytes());
    assert!(fx.store.certificate(&serial).await.unwrap().is_some());
    let audit = fx.store.audit_events(Some(&serial), 0, 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].event.action, "est.cert.issued");

    // csrattrs of this label lists challengePassword.
    let r = c.send("GET", "/.well-known/est/bound/csrattrs", &[], Vec::new()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/csrattrs");
    let attrs = wire::parse_csrattrs(&wire::decode_body(&r.body).unwrap()).unwrap();
    assert!(attrs.contains(&wire::CsrAttr::Oid(shared::pki::CHALLENGE_PASSWORD)));
    // The default label has no attributes: 204.
    let r = c.send("GET", "/.well-known/est/csrattrs", &[], Vec::new()).await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn bad_csr_signature_is_400() {
    let fx = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let mut der = csr("CN=tampered", &[], &key);
    // Change one letter of the subject: the signature no longer covers the content.
    let pos = der.windows(8).position(|w| w == b"tampered").unwrap();
    der[pos] = b'T';
    let mut c = connect(&fx, None).await;
    let r = c
        .send("POST", "/.well-known/est/simpleenroll", &[basic(), pkcs10()], wire::encode_body(&der).into())
        .await;
    let p = problem(&r, 400);
    assert!(p["detail"].as_str().unwrap().contains("signature"), "{p}");
}

/// The dev server copied 1,000 requested DNS names into a certificate; a label now certifies
/// at most `max_sans` (16 by default), and 16 still enroll.
#[tokio::test]
async fn a_csr_asking_for_too_many_names_is_400() {
    let fx = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let names = |n: usize| (0..n).map(|i| San::Dns(format!("h{i}.example"))).collect::<Vec<_>>();
    let der = csr("CN=many", &names(1000), &key);
    let mut c = connect(&fx, None).await;
    let r = c
        .send("POST", "/.well-known/est/simpleenroll", &[basic(), pkcs10()], wire::encode_body(&der).into())
        .await;
    let p = problem(&r, 400);
    assert!(p["detail"].as_str().unwrap().contains("1000 subjectAltName entries"), "{p}");
    let cert = enroll_basic(&fx, "", "CN=enough", &names(16), &key).await;
    assert_eq!(shared::pki::certificate_san(&cert).len(), 16);
}

#[tokio::test]
async fn csr_with_the_ca_key_is_400() {
    let fx = start().await;
    let der = csr("CN=EST Test CA,O=brski tests", &[], &fx.ca_key);
    let mut c = connect(&fx, None).await;
    let r = c
        .send("POST", "/.well-known/est/simpleenroll", &[basic(), pkcs10()], wire::encode_body(&der).into())
        .await;
    let p = problem(&r, 400);
    assert!(p["type"].as_str().unwrap().ends_with("ca-key-reuse"), "{p}");
}

#[tokio::test]
async fn reenroll_must_keep_subject_and_san_and_may_rekey() {
    let fx = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let san = [San::Dns("dev-1.example".into())];
    let cert = enroll_basic(&fx, "", "CN=dev-1", &san, &key).await;
    let path = "/.well-known/est/simplereenroll";
    let mut c = connect(&fx, Some((&cert, &key))).await;

    let r = c.send("POST", path, &[pkcs10()], wire::encode_body(&csr("CN=dev-2", &san, &key)).into()).await;
    let p = problem(&r, 400);
    assert!(p["detail"].as_str().unwrap().contains("subject"), "{p}");
    let other_san = [San::Dns("dev-2.example".into())];
    let r =
        c.send("POST", path, &[pkcs10()], wire::encode_body(&csr("CN=dev-1", &other_san, &key)).into()).await;
    let p = problem(&r, 400);
    assert!(p["detail"].as_str().unwrap().contains("subjectAltName"), "{p}");

    // Rekey: same names, new key.
    let new_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let r =
        c.send("POST", path, &[pkcs10()], wire::encode_body(&csr("CN=dev-1", &san, &new_key)).into()).await;
    let renewed = issued(&r);
    assert_eq!(shared::pki::spki_der(&renewed), new_key.public_key_der());

    // Without a client certificate: 403.
    let mut anon = connect(&fx, None).await;
    let r = anon
        .send("POST", path, &[basic(), pkcs10()], wire::encode_body(&csr("CN=dev-1", &san, &key)).into())
        .await;
    problem(&r, 403);

    // A revoked certificate cannot re-enroll.
    let serial = hex::encode(cert.tbs_certificate().serial_number().as_bytes());
    fx.store
        .revoke_certificate(&serial, RevocationReason::Superseded, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let mut c = connect(&fx, Some((&cert, &key))).await;
    let r = c.send("POST", path, &[pkcs10()], wire::encode_body(&csr("CN=dev-1", &san, &key)).into()).await;
    let p = problem(&r, 403);
    assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let fx = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let cert = enroll_basic(&fx, "short", "CN=short-lived", &[], &key).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut c = connect(&fx, Some((&cert, &key))).await;
    let body: Vec<u8> = wire::encode_body(&csr("CN=short-lived", &[], &key)).into();
    let r = c.send("POST", "/.well-known/est/certonly/simpleenroll", &[pkcs10()], body.clone()).await;
    let p = problem(&r, 403);
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    let r = c.send("POST", "/.well-known/est/simplereenroll", &[pkcs10()], body).await;
    let p = problem(&r, 403);
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
}

#[tokio::test]
async fn client_certificate_label_without_certificate_is_403() {
    let fx = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let mut c = connect(&fx, None).await;
    let r = c
        .send(
            "POST",
            "/.well-known/est/certonly/simpleenroll",
            &[basic(), pkcs10()],
            wire::encode_body(&csr("CN=x", &[], &key)).into(),
        )
        .await;
    problem(&r, 403);
}

#[tokio::test]
async fn unknown_label_and_resource_are_404() {
    let fx = start().await;
    let mut c = connect(&fx, None).await;
    let p = problem(&c.send("GET", "/.well-known/est/nolabel/cacerts", &[], Vec::new()).await, 404);
    assert!(p["detail"].as_str().unwrap().contains("nolabel"), "{p}");
    problem(&c.send("GET", "/.well-known/est/nosuchop", &[], Vec::new()).await, 404);
    problem(&c.send("GET", "/other", &[], Vec::new()).await, 404);
    let r = c.send("POST", "/.well-known/est/cacerts", &[], Vec::new()).await;
    problem(&r, 405);
    assert_eq!(r.headers["allow"], "GET");
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let fx = start().await;
    let mut c = connect(&fx, None).await;
    let body = vec![b'A'; 64 * 1024 + 100];
    let r = c.send("POST", "/.well-known/est/simpleenroll", &[basic(), pkcs10()], body).await;
    problem(&r, 413);
}

#[tokio::test]
async fn wrong_media_type_is_415() {
    let fx = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let mut c = connect(&fx, None).await;
    let body: Vec<u8> = wire::encode_body(&csr("CN=x", &[], &key)).into();
    let r = c
        .send(
            "POST",
            "/.well-known/est/simpleenroll",
            &[basic(), ("content-type", "text/plain".into())],
            body.clone(),
        )
        .await;
    problem(&r, 415);
    // Parameters and case are tolerated, as is Content-Transfer-Encoding.
    let r = c
        .send(
            "POST",
            "/.well-known/est/simpleenroll",
            &[
                basic(),
                ("content-type", "Application/PKCS10; charset=x".into()),
                ("content-transfer-encoding", "binary".into()),
            ],
            body.clone(),
        )
        .await;
    issued(&r);
    // base64 with CRLF line ends and stray spaces (RFC 8951: whitespace tolerated).
    let messy = String::from_utf8(body).unwrap().replace('\n', "\r\n  ");
    let r = c.send("POST", "/.well-known/est/simpleenroll", &[basic(), pkcs10()], messy.into_bytes()).await;
    issued(&r);
    // Not base64 at all: 400.
    let r = c.send("POST", "/.well-known/est/simpleenroll", &[basic(), pkcs10()], b"%%%".to_vec()).await;
    problem(&r, 400);
}

#[tokio::test]
async fn wrong_or_missing_password_is_401_with_challenge() {
    let fx = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let body: Vec<u8> = wire::encode_body(&csr("CN=x", &[], &key)).into();
    let mut c = connect(&fx, None).await;
    let bad = ("authorization", format!("Basic {}", shared::b64::encode(format!("{USER}:nope").as_bytes())));
    let r = c.send("POST", "/.well-known/est/simpleenroll", &[bad, pkcs10()], body.clone()).await;
    let p = problem(&r, 401);
    assert_eq!(r.headers["www-authenticate"], "Basic realm=\"est\"");
    assert!(p["detail"].as_str().unwrap().contains("wrong"), "{p}");
    let r = c.send("POST", "/.well-known/est/simpleenroll", &[pkcs10()], body).await;
    problem(&r, 401);
    assert_eq!(r.headers["www-authenticate"], "Basic realm=\"est\"");
}

#[tokio::test]
async fn pending_authorization_is_202_with_retry_after() {
    let fx = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let path = "/.well-known/est/pending/simpleenroll";
    // The same request twice, on two connections: both pending, one request key.
    for _ in 0..2 {
        let mut c = connect(&fx, None).await;
        let r = c
            .send("POST", path, &[basic(), pkcs10()], wire::encode_body(&csr("CN=p", &[], &key)).into())
            .await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.headers["retry-after"], "120");
    }
    // Another key: another request.
    let other = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let mut c = connect(&fx, None).await;
    let r =
        c.send("POST", path, &[basic(), pkcs10()], wire::encode_body(&csr("CN=p", &[], &other)).into()).await;
    assert_eq!(r.status, 202);
    let keys = fx.pending_keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0], keys[1], "a retried identical request maps to the same pending entry");
    assert_ne!(keys[0], keys[2]);
    // Nothing was issued.
    assert!(fx.store.list_certificates(10, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn binding_over_tls12_with_extended_master_secret() {
    let fx = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let mut c = connect_with(&fx, None, &rustls::version::TLS12).await;
    assert_eq!(c.version, rustls::ProtocolVersion::TLSv1_2);
    let pw = challenge_password_for(&c.exporter);
    let der = csr_with_challenge_password(&parse_name("CN=b12").unwrap(), &[], &key, &pw).unwrap();
    let r = c
        .send(
            "POST",
            "/.well-known/est/bound/simpleenroll",
            &[basic(), pkcs10()],
            wire::encode_body(&der).into(),
        )
        .await;
    issued(&r);
}

#[tokio::test]
async fn serverkeygen_encryption_to_a_client_key_without_client_certificate_is_400() {
    let fx = start().await;
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let id = der::Any::encode_from(&der::asn1::OctetString::new(vec![1u8, 2, 3, 4]).unwrap()).unwrap();
    let attr = x509_cert::attr::Attribute {
        oid: est::server::ASYMM_DECRYPT_KEY_ID,
        values: der::asn1::SetOfVec::try_from(vec![id]).unwrap(),
    };
    let der = est::binding::csr_with_attributes(&parse_name("CN=k").unwrap(), &[], &key, vec![attr]).unwrap();
    let mut c = connect(&fx, None).await;
    let r = c
        .send("POST", "/.well-known/est/serverkeygen", &[basic(), pkcs10()], wire::encode_body(&der).into())
        .await;
    let p = problem(&r, 400);
    assert!(p["detail"].as_str().unwrap().contains("AsymmetricDecryptKeyIdentifier"), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("no TLS client certificate"), "{p}");
    // serverkeygen is off on labels that do not enable it.
    let r = c
        .send(
            "POST",
            "/.well-known/est/bound/serverkeygen",
            &[basic(), pkcs10()],
            wire::encode_body(&der).into(),
        )
        .await;
    problem(&r, 501);
}

#[tokio::test]
async fn fullcmc_is_501() {
    let fx = start().await;
    let mut c = connect(&fx, None).await;
    let r = c
        .send(
            "POST",
            "/.well-known/est/fullcmc",
            &[("content-type", "application/pkcs7-mime".into())],
            b"MA==".to_vec(),
        )
        .await;
    let p = problem(&r, 501);
    assert_eq!(p["detail"], "Full CMC is not implemented; use simpleenroll");
}

// ------------------------------------------------------------------------------------------
// curl + openssl as the client
// ------------------------------------------------------------------------------------------

fn peers() -> bool {
    testkit::peer("curl") && testkit::peer("openssl")
}

fn url(fx: &Fixture, rest: &str) -> String {
    format!("https://127.0.0.1:{}/.well-known/est/{rest}", fx.addr.port())
}

/// Runs a command off the async threads (the server runs on them).
async fn sh(dir: &Path, program: &'static str, args: Vec<String>) -> std::process::Output {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        testkit::run_ok(&dir, program, &a)
    })
    .await
    .unwrap()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// openssl key + DER CSR -> base64 file.
async fn openssl_csr(dir: &Path, name: &str, subject: &str, existing_key: bool) {
    let key = format!("{name}.key");
    let der = format!("{name}.csr.der");
    let mut args = s(&["req", "-new", "-subj", subject, "-outform", "DER", "-out", &der]);
    if existing_key {
        args.extend(s(&["-key", &key]));
    } else {
        args.extend(s(&["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", &key]));
    }
    sh(dir, "openssl", args).await;
    sh(dir, "openssl", s(&["base64", "-in", &der, "-out", &format!("{name}.csr.b64")])).await;
}

/// Decodes a base64 certs-only file to PEM and checks it with `openssl verify`.
async fn openssl_certs(dir: &Path, b64: &str, pem: &str) -> String {
    let der = format!("{b64}.der");
    sh(dir, "openssl", s(&["base64", "-d", "-in", b64, "-out", &der])).await;
    sh(dir, "openssl", s(&["pkcs7", "-inform", "DER", "-in", &der, "-print_certs", "-out", pem])).await;
    let out = sh(dir, "openssl", s(&["verify", "-CAfile", "ca.pem", pem])).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains(": OK"), "{text}");
    std::fs::read_to_string(dir.join(pem)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_openssl_enroll_reenroll_cacerts_csrattrs() {
    if !peers() {
        return;
    }
    let fx = start().await;
    let d = fx.dir.path();

    // cacerts, with openssl base64 -d -A on the body joined into one line as well.
    let out =
        sh(d, "curl", s(&["-sS", "--fail", "--cacert", "ca.pem", &url(&fx, "cacerts"), "-o", "cacerts.b64"]))
            .await;
    assert!(out.status.success());
    let body = std::fs::read_to_string(d.join("cacerts.b64")).unwrap();
    assert!(body.lines().all(|l| l.len() <= 64) && !body.contains('\r'));
    std::fs::write(d.join("cacerts.one"), body.replace('\n', "")).unwrap();
    sh(d, "openssl", s(&["base64", "-d", "-A", "-in", "cacerts.one", "-out", "cacerts.der"])).await;
    let out = sh(d, "openssl", s(&["pkcs7", "-inform", "DER", "-in", "cacerts.der", "-print_certs"])).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("CN = EST Test CA"));

    // simpleenroll with Basic auth.
    openssl_csr(d, "agent", "/CN=agent-42", false).await;
    let out = sh(
        d,
        "curl",
        s(&[
            "-sS",
            "--cacert",
            "ca.pem",
            "-u",
            &format!("{USER}:{PASS}"),
            "-H",
            "Content-Type: application/pkcs10",
            "-H",
            "Content-Transfer-Encoding: base64",
            "--data-binary",
            "@agent.csr.b64",
            &url(&fx, "simpleenroll"),
            "-o",
            "agent.p7.b64",
            "-w",
            "%{http_code}",
        ]),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let pem = openssl_certs(d, "agent.p7.b64", "agent.pem").await;
    assert!(pem.contains("subject=CN = agent-42"), "{pem}");

    // simpleenroll authenticated by the client certificate just issued.
    openssl_csr(d, "second", "/CN=agent-42-second", false).await;
    let out = sh(
        d,
        "curl",
        s(&[
            "-sS",
            "--cacert",
            "ca.pem",
            "--cert",
            "agent.pem",
            "--key",
            "agent.key",
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            "@second.csr.b64",
            &url(&fx, "simpleenroll"),
            "-o",
            "second.p7.b64",
            "-w",
            "%{http_code}",
        ]),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    openssl_certs(d, "second.p7.b64", "second.pem").await;

    // simplereenroll with the enrolled certificate (renew: same key, same subject).
    openssl_csr(d, "agent", "/CN=agent-42", true).await;
    let out = sh(
        d,
        "curl",
        s(&[
            "-sS",
            "--cacert",
            "ca.pem",
            "--cert",
            "agent.pem",
            "--key",
            "agent.key",
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            "@agent.csr.b64",
            &url(&fx, "simplereenroll"),
            "-o",
            "renewed.p7.b64",
            "-w",
            "%{http_code}",
        ]),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let renewed = openssl_certs(d, "renewed.p7.b64", "renewed.pem").await;
    assert!(renewed.contains("subject=CN = agent-42"), "{renewed}");
    assert_ne!(renewed, pem, "a new certificate");

    // csrattrs: challengePassword listed on the binding label; 204 on the default one.
    let out = sh(
        d,
        "curl",
        s(&["-sS", "--fail", "--cacert", "ca.pem", &url(&fx, "bound/csrattrs"), "-o", "attrs.b64"]),
    )
    .await;
    assert!(out.status.success());
    sh(d, "openssl", s(&["base64", "-d", "-in", "attrs.b64", "-out", "attrs.der"])).await;
    let out = sh(d, "openssl", s(&["asn1parse", "-inform", "DER", "-in", "attrs.der"])).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("challengePassword"));
    let out = sh(
        d,
        "curl",
        s(&["-sS", "--cacert", "ca.pem", &url(&fx, "csrattrs"), "-o", "/dev/null", "-w", "%{http_code}"]),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "204");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_serverkeygen_returns_matching_key_and_certificate() {
    if !peers() {
        return;
    }
    let fx = start().await;
    let d = fx.dir.path();
    openssl_csr(d, "skg", "/CN=keygen-1", false).await;
    let out = sh(
        d,
        "curl",
        s(&[
            "-sS",
            "--cacert",
            "ca.pem",
            "-u",
            &format!("{USER}:{PASS}"),
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            "@skg.csr.b64",
            &url(&fx, "serverkeygen"),
            "-D",
            "skg.headers",
            "-o",
            "skg.body",
            "-w",
            "%{http_code}",
        ]),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let headers = std::fs::read_to_string(d.join("skg.headers")).unwrap();
    let ct = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-type: ").or_else(|| l.strip_prefix("Content-Type: ")))
        .unwrap()
        .trim()
        .to_string();
    assert!(ct.starts_with("multipart/mixed; boundary="), "{ct}");
    let boundary = ct.split("boundary=").nth(1).unwrap();
    let body = std::fs::read_to_string(d.join("skg.body")).unwrap();
    let mut parts = Vec::new();
    for chunk in body.split(&format!("--{boundary}")).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let (head, content) = chunk.split_once("\r\n\r\n").unwrap();
        let ctype = head.lines().find_map(|l| l.strip_prefix("Content-Type: ")).unwrap().to_string();
        parts.push((ctype, content.trim().to_string()));
    }
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].0, "application/pkcs8");
    assert_eq!(parts[1].0, "application/pkcs7-mime; smime-type=certs-only");
    std::fs::write(d.join("key.b64"), format!("{}\n", parts[0].1)).unwrap();
    std::fs::write(d.join("cert.p7.b64"), format!("{}\n", parts[1].1)).unwrap();
    sh(d, "openssl", s(&["base64", "-d", "-in", "key.b64", "-out", "key.der"])).await;
    let cert_pem = openssl_certs(d, "cert.p7.b64", "cert.pem").await;
    assert!(cert_pem.contains("CN = keygen-1"));
    let k = sh(d, "openssl", s(&["pkey", "-inform", "DER", "-in", "key.der", "-pubout"])).await;
    let c = sh(d, "openssl", s(&["x509", "-in", "cert.pem", "-pubkey", "-noout"])).await;
    assert_eq!(k.stdout, c.stdout, "the certificate certifies the generated key");
    let csr_pub = sh(d, "openssl", s(&["pkey", "-in", "skg.key", "-pubout"])).await;
    assert_ne!(csr_pub.stdout, c.stdout, "the CSR's key is ignored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_tls12_http2_and_connection_close() {
    if !peers() {
        return;
    }
    let fx = start().await;
    let d = fx.dir.path();

    // TLS 1.2 forced (Extended Master Secret is negotiated by OpenSSL by default).
    let out = sh(
        d,
        "curl",
        s(&[
            "-sS",
            "-v",
            "--fail",
            "--tls-max",
            "1.2",
            "--cacert",
            "ca.pem",
            &url(&fx, "cacerts"),
            "-o",
            "c12.b64",
        ]),
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLSv1.2"), "{err}");
    sh(d, "openssl", s(&["base64", "-d", "-in", "c12.b64", "-out", "c12.der"])).await;
    sh(d, "openssl", s(&["pkcs7", "-inform", "DER", "-in", "c12.der", "-print_certs"])).await;

    // Enrollment over TLS 1.2 with Basic.
    openssl_csr(d, "t12", "/CN=tls12", false).await;
    let out = sh(
        d,
        "curl",
        s(&[
            "-sS",
            "--tls-max",
            "1.2",
            "--cacert",
            "ca.pem",
            "-u",
            &format!("{USER}:{PASS}"),
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            "@t12.csr.b64",
            &url(&fx, "simpleenroll"),
            "-o",
            "t12.p7.b64",
            "-w",
            "%{http_code}",
        ]),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    openssl_certs(d, "t12.p7.b64", "t12.pem").await;

    // HTTP/2 by ALPN.
    let out = sh(
        d,
        "curl",
        s(&[
            "-sS",
            "--http2",
            "--cacert",
            "ca.pem",
            &url(&fx, "cacerts"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
        ]),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2");

    // Connection: close is honoured over HTTP/1.1.
    let out = sh(
        d,
        "curl",
        s(&[
            "-sS",
            "-v",
            "--http1.1",
            "-H",
            "Connection: close",
            "--cacert",
            "ca.pem",
            &url(&fx, "cacerts"),
            "-o",
            "/dev/null",
        ]),
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("< connection: close"), "{err}");
    assert!(!err.contains("left intact"), "{err}");
}

/// HTTP/1.1 responses use conventional header capitalization and a correct Content-Length,
/// as strict EST clients (libest) expect.
#[tokio::test(flavor = "multi_thread")]
async fn http1_headers_are_title_case_with_exact_content_length() {
    if !peers() {
        return;
    }
    let fx = start().await;
    let d = fx.dir.path();
    let out = sh(
        d,
        "curl",
        s(&["-sS", "-i", "--http1.1", "--tls-max", "1.2", "--cacert", "ca.pem", &url(&fx, "cacerts")]),
    )
    .await;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body split");
    assert!(head.contains("\r\nContent-Type: application/pkcs7-mime\r\n"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length header in title case")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(len, body.len(), "Content-Length matches the body");
}
