//! The Identity Proxy's Agent API over a real Unix socket, forwarding over real mutual TLS to
//! a stand-in Identity Server that checks what a real one checks (the proxy's LDevID, the
//! ACR, the evidence's signature and its binding to the nonce and the ACR) and issues with
//! the shared agent formats. The registrar's own endpoints are tested in `e2e/tests/agent_*`.

use agent::{self as agent_client, AgentApiClient, Endpoint, Submitted};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use der::Decode;
use est::http::ConnectionInfo;
use pledge::Caller;
use pledge::{Identity, Proxy, ProxyConfig, RunningProxy};
use serde_json::{json, Value};
use shared::agent::cert::{issue_agent_certificate, AgentCertRequest};
use shared::agent::evidence::{eat_from_cmw, verify_eat, EvidenceClaims};
use shared::agent::jwt::{new_jti, unix_now};
use shared::agent::wit::{jwks, sign_wit, Confirmation, WitClaims, WitKey};
use shared::agent::{verify_acr, AgentId, CredentialSpec, Model};
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki::{self, create_ca, parse_name, CertificateAuthority, Profile, San};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x509_cert::Certificate;

const TD: &str = "td.example";
const AUD: &str = "wimse://td.example";
const AGENT: &str = "wimse://td.example/agent/build-7";

fn key() -> SoftwareKey {
    SoftwareKey::generate(Algorithm::Es256).unwrap()
}

fn issue(ca: &CertificateAuthority, k: &dyn Signer, subject: &str, san: &[San], server: bool) -> Certificate {
    let mut profile = Profile::end_entity(Duration::from_secs(3600));
    profile.copy_csr_san = false;
    if server {
        profile.extended_key_usage = vec![const_oid::db::rfc5280::ID_KP_SERVER_AUTH];
    }
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(&k.public_key_der()).unwrap();
    ca.issue_for_key(spki, parse_name(subject).unwrap(), san, &profile).unwrap()
}

/// What the stand-in server saw.
#[derive(Default)]
struct Seen {
    bundles: usize,
    posts: usize,
    nonces: Vec<Vec<u8>>,
    evidence: Vec<EvidenceClaims>,
    pending: HashMap<String, (String, u32)>,
}

struct FakeServer {
    ca: CertificateAuthority,
    proxy_cert: Certificate,
    wit_key: SoftwareKey,
    seen: Mutex<Seen>,
}

fn problem(status: StatusCode, reason: &str, detail: &str) -> Response {
    let body = json!({"title": "refused", "status": status.as_u16(), "detail": detail, "reason": reason});
    (status, [(header::CONTENT_TYPE, est::http::MEDIA_PROBLEM)], body.to_string()).into_response()
}

fn client_is_proxy(s: &FakeServer, info: &ConnectionInfo) -> bool {
    info.peer_certs.first().map(|c| c.as_ref().to_vec()) == Some(pki::cert_to_der(&s.proxy_cert).unwrap())
}

async fn f_bundle(
    State(s): State<Arc<FakeServer>>,
    Extension(info): Extension<Arc<ConnectionInfo>>,
) -> Response {
    if !client_is_proxy(&s, &info) {
        return problem(StatusCode::UNAUTHORIZED, "unauthorized", "not the proxy");
    }
    s.seen.lock().unwrap().bundles += 1;
    let keys = vec![WitKey { kid: "wit-1".into(), spki_der: s.wit_key.public_key_der() }];
    Json(json!({
        "trust_domain": TD,
        "issuance_uri": AUD,
        "ca_pem": pki::cert_to_pem(s.ca.certificate()).unwrap(),
        "jwks": jwks(&keys).unwrap(),
    }))
    .into_response()
}

async fn f_nonce(
    State(s): State<Arc<FakeServer>>,
    Extension(info): Extension<Arc<ConnectionInfo>>,
) -> Response {
    if !client_is_proxy(&s, &info) {
        return problem(StatusCode::UNAUTHORIZED, "unauthorized", "not the proxy");
    }
    let n: [u8; 32] = shared::agent::jwt::random().unwrap();
    s.seen.lock().unwrap().nonces.push(n.to_vec());
    Json(json!({"nonce": shared::b64::encode_url(&n), "exp": unix_now() + 60})).into_response()
}

fn credential(s: &FakeServer, id: &str, acr_text: &str) -> Value {
    let acr = verify_acr(acr_text, AUD, unix_now()).unwrap();
    let agent_id = AgentId::parse(acr.claims.req.id.as_deref().unwrap()).unwrap();
    let req = AgentCertRequest {
        agent_id: &agent_id,
        ttl: Duration::from_secs(600),
        subject: None,
        server_auth: false,
        binding: None,
    };
    let cert = issue_agent_certificate(&s.ca, &acr.spki_der, &req).unwrap();
    let now = unix_now();
    let wit = sign_wit(
        &WitClaims {
            iss: AUD.into(),
            sub: agent_id.as_str().into(),
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: new_jti().unwrap(),
            cnf: Confirmation { jwk: acr.jwk.clone() },
            owner: None,
        },
        &s.wit_key,
        "wit-1",
    )
    .unwrap();
    json!({"id": id, "agent_id": agent_id.as_str(), "model": acr.claims.req.model, "owner": acr.claims.req.owner,
           "x509": pki::cert_to_pem(&cert).unwrap(), "ca_pem": pki::cert_to_pem(s.ca.certificate()).unwrap(),
           "wit": wit, "not_after": now + 600, "grant_exp": null})
}

async fn f_post(
    State(s): State<Arc<FakeServer>>,
    Extension(info): Extension<Arc<ConnectionInfo>>,
    Json(body): Json<Value>,
) -> Response {
    if !client_is_proxy(&s, &info) {
        return problem(StatusCode::UNAUTHORIZED, "unauthorized", "not the proxy");
    }
    let acr_text = body["acr"].as_str().unwrap_or_default().to_string();
    let acr = match verify_acr(&acr_text, AUD, unix_now()) {
        Ok(a) => a,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.reason(), &e.to_string()),
    };
    let eat = match eat_from_cmw(&body["evidence"]).and_then(|e| verify_eat(&e, &s.proxy_cert)) {
        Ok(e) => e,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "evidence", &e.to_string()),
    };
    let ldevid_sha =
        shared::b64::encode_url(&shared::crypto::sha256(&pki::cert_to_der(&s.proxy_cert).unwrap()));
    if body["proxy"]["ldevid_sha256"] != json!(ldevid_sha) {
        return problem(StatusCode::BAD_REQUEST, "evidence", "ldevid_sha256");
    }
    let hash = shared::b64::decode_url(&acr.hash).unwrap();
    let mut seen = s.seen.lock().unwrap();
    seen.posts += 1;
    let issued_nonce = seen.nonces.iter().position(|n| eat.binds(n, &hash));
    let Some(i) = issued_nonce else {
        return problem(
            StatusCode::BAD_REQUEST,
            "nonce",
            "evidence does not bind an issued nonce and this ACR",
        );
    };
    seen.nonces.remove(i);
    seen.evidence.push((*eat).clone());
    if acr.claims.req.model == Model::None {
        drop(seen);
        return Json(credential(&s, "r-1", &acr_text)).into_response();
    }
    let id = format!("p-{}", seen.posts);
    seen.pending.insert(id.clone(), (acr_text, 0));
    let loc = format!("/agent/v1/credentials/{id}");
    (
        StatusCode::ACCEPTED,
        [(header::RETRY_AFTER, "1".to_string()), (header::LOCATION, loc)],
        Json(json!({"id": id, "status": "pending"})),
    )
        .into_response()
}

async fn f_poll(
    State(s): State<Arc<FakeServer>>,
    Extension(info): Extension<Arc<ConnectionInfo>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !client_is_proxy(&s, &info) {
        return problem(StatusCode::FORBIDDEN, "unauthorized", "another client");
    }
    let mut seen = s.seen.lock().unwrap();
    let Some((acr, polls)) = seen.pending.get_mut(&id) else {
        return problem(StatusCode::NOT_FOUND, "not-found", "no such request");
    };
    *polls += 1;
    if *polls < 2 {
        return (
            StatusCode::ACCEPTED,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"id": id, "status": "pending"})),
        )
            .into_response();
    }
    let acr = acr.clone();
    seen.pending.remove(&id);
    drop(seen);
    Json(credential(&s, &id, &acr)).into_response()
}

struct Setup {
    _dir: tempfile::TempDir,
    server: Arc<FakeServer>,
    running: RunningProxy,
    socket: PathBuf,
}

async fn setup(tcp: bool) -> Setup {
    setup_with(tcp, None).await
}

async fn setup_with(tcp: bool, group: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = key();
    let ca_cert = create_ca("CN=fake domain CA", &ca_key, Duration::from_secs(86400), None).unwrap();
    let ca = CertificateAuthority::new(ca_cert.clone(), Box::new(ca_key)).unwrap();
    let server_key: Arc<dyn Signer> = Arc::new(key());
    let server_cert = issue(&ca, &server_key, "CN=registrar", &[San::Ip("127.0.0.1".parse().unwrap())], true);
    let proxy_key: Arc<dyn Signer> = Arc::new(key());
    let proxy_cert = issue(&ca, &proxy_key, "CN=proxy,serialNumber=SN-1", &[], false);
    let server =
        Arc::new(FakeServer { ca, proxy_cert: proxy_cert.clone(), wit_key: key(), seen: Default::default() });
    let router = Router::new()
        .route("/agent/v1/bundle", get(f_bundle))
        .route("/agent/v1/nonce", get(f_nonce))
        .route("/agent/v1/credentials", post(f_post))
        .route("/agent/v1/credentials/{id}", get(f_poll))
        .with_state(server.clone());
    let der = rustls::pki_types::CertificateDer::from(pki::cert_to_der(&server_cert).unwrap());
    let tls = est::http::server_tls_config_with_signer(vec![der], server_key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(est::http::serve(listener, Arc::new(tls), router));

    let identity = Identity::new(vec![proxy_cert], proxy_key, vec![ca_cert]).unwrap();
    let proxy = Proxy::with_identity(dir.path(), identity, &url, Duration::from_secs(10)).unwrap();
    let mut cfg = ProxyConfig::in_dir(dir.path());
    cfg.renew = false;
    cfg.socket_group = group.map(str::to_string);
    if tcp {
        cfg.tcp_listen = Some("127.0.0.1:0".parse().unwrap());
    }
    let running = pledge::start_proxy_with(&cfg, proxy, None).await.unwrap();
    let socket = running.socket.clone();
    Setup { _dir: dir, server, running, socket }
}

fn client(socket: &Path) -> AgentApiClient {
    AgentApiClient::new(Endpoint::Unix(socket.to_path_buf()), Duration::from_secs(20))
}

fn spec(model: Model) -> CredentialSpec {
    CredentialSpec {
        id: Some(AGENT.into()),
        formats: vec!["x509".into(), "wit".into()],
        ttl: 600,
        owner: (model != Model::None).then(|| "mailto:alice@example.com".into()),
        model,
    }
}

/// A raw HTTP/1.1 exchange on the socket, for requests the client library would not send.
async fn raw(socket: &Path, request: &[u8]) -> (u16, String) {
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn socket_is_0660_and_requests_without_the_api_header_get_400() {
    let s = setup(false).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&s.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let (status, text) =
        raw(&s.socket, b"GET /v1/bundle HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains(est::http::MEDIA_PROBLEM) && text.contains("Agent-Identity-Api"), "{text}");
    let (status, _) = raw(
        &s.socket,
        b"GET /v1/bundle HTTP/1.1\r\nHost: x\r\nAgent-Identity-Api: false\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
    let (status, text) = raw(
        &s.socket,
        b"GET /v1/nope HTTP/1.1\r\nHost: x\r\nAgent-Identity-Api: true\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404, "{text}");
    assert_eq!(s.server.seen.lock().unwrap().bundles, 0);
}

#[tokio::test]
async fn media_type_size_and_proof_of_possession_are_checked_before_forwarding() {
    let s = setup(false).await;
    let c = client(&s.socket);
    let r = c
        .call(axum::http::Method::POST, "/v1/credentials", Some(("application/json", b"{}".to_vec())))
        .await
        .unwrap();
    assert_eq!(r.status, 415);
    let big = vec![b'a'; 70 * 1024];
    let r = c
        .call(
            axum::http::Method::POST,
            "/v1/credentials",
            Some((shared::agent::acr::CREDENTIAL_REQUEST_MEDIA_TYPE, big)),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    // An ACR whose jwk is one key but whose signature is another's.
    let (agent, thief) = (key(), key());
    let nonce = c.nonce().await.unwrap();
    let claims =
        shared::agent::acr::new_acr_claims(AGENT, AUD, Some(nonce), spec(Model::None), unix_now(), 60)
            .unwrap();
    let mut h = serde_json::Map::new();
    h.insert(
        "jwk".into(),
        Value::Object(shared::agent::jwk::jwk_from_spki(&agent.public_key_der()).unwrap()),
    );
    let forged = shared::agent::jwt::sign_jwt(&claims, shared::agent::acr::ACR_TYP, &h, &[], &thief).unwrap();
    let err = c.submit(&forged, None).await.unwrap_err();
    // 403 as the Identity Server and the owner gateway answer it (the proxy said 400 before).
    assert!(
        matches!(&err, agent_client::AgentClientError::Refused { status: 403, reason, .. } if reason == "bad-signature"),
        "{err}"
    );
    // A wrong audience.
    let nonce = c.nonce().await.unwrap();
    let acr = agent_client::build_acr(&agent, "wimse://other", Some(nonce), spec(Model::None), 60).unwrap();
    let err = c.submit(&acr, None).await.unwrap_err();
    assert!(
        matches!(&err, agent_client::AgentClientError::Refused { status: 403, reason, .. } if reason == "wrong-audience"),
        "{err}"
    );
    // None of these reached the server.
    assert_eq!(s.server.seen.lock().unwrap().posts, 0);
}

#[tokio::test]
async fn issues_with_evidence_about_the_caller_and_caches_the_bundle() {
    let s = setup(false).await;
    let c = client(&s.socket);
    let agent = key();
    let bundle = c.bundle().await.unwrap();
    assert_eq!(bundle.issuance_uri, AUD);
    let _ = c.bundle().await.unwrap();
    let nonce = c.nonce().await.unwrap();
    let acr =
        agent_client::build_acr(&agent, &bundle.issuance_uri, Some(nonce), spec(Model::None), 60).unwrap();
    let cred = c.obtain(&acr, None, Duration::from_secs(30), &mut |_, _, _| {}).await.unwrap();
    assert_eq!(cred.agent_id, AGENT);
    agent_client::check_credential(&cred, &agent, &["x509".into(), "wit".into()]).unwrap();
    let seen = s.server.seen.lock().unwrap();
    assert_eq!(seen.bundles, 1, "the bundle is cached");
    let ev = &seen.evidence[0];
    let sub = &ev.submods[0];
    assert_eq!(sub.agent_id, AGENT);
    assert_eq!(sub.pid, Some(std::process::id()));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(sub.uid, Some(std::fs::metadata("/proc/self").unwrap().uid()));
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert_eq!(sub.exe_sha256.as_deref(), Some(&shared::crypto::sha256(&exe)[..]));
    let _ = Caller::default();
}

#[tokio::test]
async fn pending_requests_are_relayed_with_a_local_location_and_polled() {
    let s = setup(false).await;
    let c = client(&s.socket);
    let agent = key();
    let nonce = c.nonce().await.unwrap();
    let acr = agent_client::build_acr(&agent, AUD, Some(nonce), spec(Model::ServerMediated), 60).unwrap();
    match c.submit(&acr, None).await.unwrap() {
        Submitted::Pending { id, location, retry_after } => {
            assert_eq!(location, format!("/v1/credentials/{id}"));
            assert_eq!(retry_after, Duration::from_secs(1));
            // Unknown ids are refused by the proxy itself.
            let r = c.call(axum::http::Method::GET, "/v1/credentials/p-999", None).await.unwrap();
            assert_eq!(r.status, 404);
            let mut waits = 0;
            let mut answer = c.poll(&location).await.unwrap();
            while let Submitted::Pending { location, .. } = &answer {
                waits += 1;
                assert!(waits < 5);
                answer = c.poll(location).await.unwrap();
            }
            let Submitted::Issued(cred) = answer else { unreachable!() };
            assert_eq!(cred.id, id);
            agent_client::check_credential(&cred, &agent, &["x509".into()]).unwrap();
        }
        other => panic!("expected 202, got {other:?}"),
    }
    // obtain() does the same with progress reports.
    let nonce = c.nonce().await.unwrap();
    let acr = agent_client::build_acr(&agent, AUD, Some(nonce), spec(Model::ServerMediated), 60).unwrap();
    let mut reports = 0;
    let cred = c.obtain(&acr, None, Duration::from_secs(30), &mut |_, _, _| reports += 1).await.unwrap();
    assert!(reports >= 1);
    assert_eq!(cred.agent_id, AGENT);
}

#[tokio::test]
async fn offline_model_1_acr_gets_a_fresh_server_nonce_in_the_evidence() {
    let s = setup(false).await;
    let c = client(&s.socket);
    let agent = key();
    let acr = agent_client::build_acr(&agent, AUD, None, spec(Model::AgentMediated), 500).unwrap();
    // The stand-in server answers 202 for owner models; what matters is that it accepted the
    // evidence, which binds a nonce it issued to the proxy.
    assert!(matches!(c.submit(&acr, Some("x.y.z")).await.unwrap(), Submitted::Pending { .. }));
    assert_eq!(s.server.seen.lock().unwrap().evidence.len(), 1);
}

#[tokio::test]
async fn loopback_tcp_only_when_asked_and_callers_there_are_anonymous() {
    let s = setup(true).await;
    let addr = s.running.tcp.expect("tcp listener");
    let c = AgentApiClient::new(Endpoint::Tcp(addr), Duration::from_secs(20));
    let agent = key();
    let nonce = c.nonce().await.unwrap();
    let acr = agent_client::build_acr(&agent, AUD, Some(nonce), spec(Model::None), 60).unwrap();
    c.obtain(&acr, None, Duration::from_secs(30), &mut |_, _, _| {}).await.unwrap();
    let seen = s.server.seen.lock().unwrap();
    assert_eq!((seen.evidence[0].submods[0].uid, seen.evidence[0].submods[0].pid), (None, None));
}

/// Relays one Unix socket to another and records what the client side wrote.
async fn recording_relay(front: PathBuf, back: PathBuf, record: Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::UnixListener::bind(&front).unwrap();
    loop {
        let Ok((mut client, _)) = listener.accept().await else { return };
        let back = back.clone();
        let record = record.clone();
        tokio::spawn(async move {
            let mut server = tokio::net::UnixStream::connect(&back).await.unwrap();
            let (mut cr, mut cw) = client.split();
            let (mut sr, mut sw) = server.split();
            let up = async {
                let mut buf = [0u8; 8192];
                loop {
                    let n = cr.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        let _ = sw.shutdown().await;
                        break;
                    }
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            };
            let down = async {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
            };
            tokio::join!(up, down);
        });
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_agent_private_key_never_crosses_the_socket() {
    let s = setup(false).await;
    let front = s._dir.path().join("recorded.sock");
    let record = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(recording_relay(front.clone(), s.socket.clone(), record.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c = client(&front);
    for alg in [Algorithm::Es256, Algorithm::EdDsa] {
        let agent = SoftwareKey::generate(alg).unwrap();
        let bundle = c.bundle().await.unwrap();
        let nonce = c.nonce().await.unwrap();
        let acr = agent_client::build_acr(&agent, &bundle.issuance_uri, Some(nonce), spec(Model::None), 60)
            .unwrap();
        let cred = c.obtain(&acr, None, Duration::from_secs(30), &mut |_, _, _| {}).await.unwrap();
        agent_client::check_credential(&cred, &agent, &["x509".into(), "wit".into()]).unwrap();
        let sent = record.lock().unwrap().clone();
        assert!(contains(&sent, b"POST /v1/credentials"), "the relay saw the request");
        let pkcs8 = agent.to_pkcs8_der().unwrap();
        let scalar: Vec<u8> = match &agent {
            SoftwareKey::P256(k) => k.to_bytes().to_vec(),
            SoftwareKey::Ed25519(k) => k.to_bytes().to_vec(),
            SoftwareKey::P384(k) => k.to_bytes().to_vec(),
        };
        let pem = agent.to_pkcs8_pem().unwrap();
        let pem_body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        for (what, secret) in [
            ("PKCS#8 DER", pkcs8.to_vec()),
            ("raw private scalar", scalar.clone()),
            ("scalar as b64url (JWK d)", shared::b64::encode_url(&scalar).into_bytes()),
            ("scalar as base64", shared::b64::encode(&scalar).into_bytes()),
            ("scalar as hex", hex::encode(&scalar).into_bytes()),
            ("PKCS#8 as b64url", shared::b64::encode_url(&pkcs8).into_bytes()),
            ("PKCS#8 PEM body", pem_body.into_bytes()),
        ] {
            assert!(!contains(&sent, &secret), "{alg}: the {what} of the agent key crossed the socket");
        }
        // What did cross is the signed request (public key and proof of possession).
        assert!(contains(&sent, acr.as_bytes()));
        record.lock().unwrap().clear();
    }
}

/// `curl` over the socket as the unprivileged user `nobody` (uid/gid 65534), on a blocking
/// thread so the proxy keeps running: (exit code, status, body).
async fn curl_as_nobody(socket: &Path, args: &[&str]) -> (i32, u16, String) {
    let socket = socket.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        curl_blocking(&socket, &a)
    })
    .await
    .unwrap()
}

fn curl_blocking(socket: &Path, args: &[&str]) -> (i32, u16, String) {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "curl", "-s", "--max-time", "20"])
        .args(["-w", "\n%{http_code}"])
        .args(["--unix-socket", socket.to_str().unwrap(), "-H", "Agent-Identity-Api: true"])
        .args(args);
    let out = cmd.output().expect("run setpriv curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (out.status.code().unwrap_or(-1), code.trim().parse().unwrap_or(0), body.to_string())
}

/// Another user: refused by the socket's mode unless in `--socket-group`; then recorded with
/// its own uid, pid and executable in the evidence, and unable to poll someone else's request.
#[tokio::test]
async fn another_user_needs_the_socket_group_and_is_recorded_as_itself() {
    let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if root.ok() != Some(true) {
        eprintln!("\n!!!!! SKIPPED: switching to another uid needs root !!!!!\n");
        return;
    }
    if !testkit::peer("curl") || !testkit::peer("setpriv") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    // Without the group, mode 0660 root:root keeps nobody out.
    let closed = setup(false).await;
    std::fs::set_permissions(closed._dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, _) = curl_as_nobody(&closed.socket, &["http://localhost/v1/bundle"]).await;
    assert_eq!(code, 7, "curl must fail to connect");

    let s = setup_with(false, Some("nogroup")).await;
    std::fs::set_permissions(s._dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&s.socket).unwrap().gid(), 65534);
    let (_, status, body) = curl_as_nobody(&s.socket, &["http://localhost/v1/bundle"]).await;
    assert_eq!(status, 200, "{body}");

    // nobody submits a request (signed here; curl only carries it).
    let c = client(&s.socket);
    let agent = key();
    let nonce = c.nonce().await.unwrap();
    let acr = agent_client::build_acr(&agent, AUD, Some(nonce), spec(Model::None), 60).unwrap();
    let body =
        serde_json::to_string(&shared::agent::wire::AgentApiRequest { acr: acr.clone(), oa: None }).unwrap();
    let ct = format!("Content-Type: {}", shared::agent::acr::CREDENTIAL_REQUEST_MEDIA_TYPE);
    let (_, status, answer) =
        curl_as_nobody(&s.socket, &["-H", &ct, "--data-binary", &body, "http://localhost/v1/credentials"])
            .await;
    assert_eq!(status, 200, "{answer}");
    {
        let seen = s.server.seen.lock().unwrap();
        let sub = &seen.evidence[0].submods[0];
        assert_eq!(sub.uid, Some(65534));
        assert_ne!(sub.pid, Some(std::process::id()));
        assert!(sub.swname.as_deref().is_some_and(|p| p.ends_with("/curl")), "{:?}", sub.swname);
        let curl = std::fs::read(sub.swname.as_deref().unwrap()).unwrap();
        assert_eq!(sub.exe_sha256.as_deref(), Some(&shared::crypto::sha256(&curl)[..]));
    }

    // root's pending request cannot be polled by nobody.
    let nonce = c.nonce().await.unwrap();
    let acr = agent_client::build_acr(&agent, AUD, Some(nonce), spec(Model::ServerMediated), 60).unwrap();
    let Submitted::Pending { location, .. } = c.submit(&acr, None).await.unwrap() else {
        panic!("202 expected")
    };
    let url = format!("http://localhost{location}");
    let (_, status, body) = curl_as_nobody(&s.socket, &[&url]).await;
    assert_eq!(status, 403, "{body}");
    // The reason the Identity Server and the gateway give for another client's request.
    assert!(body.contains("\"reason\":\"not-yours\""), "{body}");
}
