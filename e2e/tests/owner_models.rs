//! The `owner` crate against a real registrar lab over TLS on loopback: model 1 (`sign`, the
//! proxy submits), model 3 (`respond` answers the server's challenge), model 2 (the gateway
//! service between a proxy and the server: issuance, rate limit, queue, a person's approval),
//! and refusals (a gateway key the server does not know, a challenge answered twice).

use brski::lab::{Lab, LabOptions};
use e2e::agent::{connect_pinned, json_of, proxy, Proxy};
use est::client::{EstConnection, RawReply};
use owner::{init, InitOptions};
use owner::{respond, Decision, OutcomeKind, RespondOptions, Responder};
use owner::{review, sign, SignOptions};
use owner::{GatewayOptions, PendingDir};
use owner::{OwnerError, OwnerIdentity};
use serde_json::{json, Value};
use shared::agent::acr::new_acr_claims;
use shared::agent::jwt::unix_now;
use shared::agent::wire::ProxyRef;
use shared::agent::{sign_acr, CredentialSpec, Model};
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use x509_cert::Certificate;

const TD: &str = "campus.example";
const AUD: &str = "wimse://campus.example";
const ALICE: &str = "mailto:alice@example.com";
const GATEWAY: &str = "https://gateway.example.org";

fn agent(name: &str) -> String {
    format!("wimse://campus.example/agent/{name}")
}

fn key() -> SoftwareKey {
    SoftwareKey::generate(Algorithm::Es256).unwrap()
}

fn spec(id: &str, model: Model, owner: &str) -> CredentialSpec {
    CredentialSpec {
        id: Some(id.into()),
        formats: vec!["x509".into(), "wit".into()],
        ttl: 600,
        owner: Some(owner.into()),
        model,
    }
}

/// `owner init` (library) for `id` in `dir/name`, with `alg`.
fn new_owner(dir: &Path, name: &str, id: &str, alg: Algorithm) -> OwnerIdentity {
    let o = InitOptions {
        dir: dir.join(name),
        id: id.into(),
        kid: Some(format!("{name}-1")),
        alg,
        key: None,
        trust_domain: Some(TD.into()),
        server: None,
        domain_ca: None,
        validity: Duration::from_secs(86400),
    };
    init(&o).unwrap();
    OwnerIdentity::load(&o.dir).unwrap()
}

/// A lab whose policy provisions alice (all models) and the gateway (model 2) from their
/// `owner-public.pem`, and lets every proxy ask for `agent/*`.
async fn lab(dir: &Path, alice: &OwnerIdentity, gw: &OwnerIdentity) -> Lab {
    let entry = |o: &OwnerIdentity, models: &str| {
        format!(
            "[[owner]]\nid = \"{}\"\nkid = \"{}\"\nkey = \"{}\"\nagents = [\"wimse://{TD}/agent/*\"]\n{models}\n",
            o.config.id,
            o.config.kid,
            o.dir.join("owner-public.pem").display()
        )
    };
    let policy = format!(
        "trust_domain = \"{TD}\"\nmax_ttl_secs = 3600\n\n[[proxy]]\nserial = \"*\"\n\
         agents = [\"wimse://{TD}/agent/*\"]\n\n{}{}",
        entry(alice, ""),
        entry(gw, "models = [\"owner-mediated\"]")
    );
    let options = LabOptions { agent_policy: Some(policy), ..LabOptions::default() };
    Lab::start(&dir.join("lab"), options).await.expect("lab starts")
}

fn domain_ca(lab: &Lab) -> Vec<Certificate> {
    vec![lab.registrar.domain_ca().clone()]
}

fn issued(r: &RawReply, id: &str, owner: &str, model: &str) -> Value {
    assert_eq!(r.status, 200, "{}", r.detail());
    let cred = json_of(r);
    assert_eq!(cred["agent_id"], id);
    assert_eq!(cred["owner"], owner);
    assert_eq!(cred["model"], model);
    assert!(cred["x509"].as_str().is_some_and(|p| p.contains("BEGIN CERTIFICATE")));
    cred
}

fn refused(r: &RawReply, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{}", r.detail());
    assert_eq!(r.content_type, est::http::MEDIA_PROBLEM);
    assert_eq!(json_of(r)["reason"], reason, "{}", r.detail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_1_the_owner_signs_offline_and_the_proxy_submits() {
    let dir = tempfile::tempdir().unwrap();
    let alice = new_owner(dir.path(), "alice", ALICE, Algorithm::EdDsa);
    let gw = new_owner(dir.path(), "gateway", GATEWAY, Algorithm::Es256);
    let lab = lab(dir.path(), &alice, &gw).await;
    let mut p = proxy(&lab, "proxy-m1").await;

    // The agent creates its ACR offline (no proxy nonce, up to 10 minutes).
    let a = key();
    let id = agent("m1");
    let now = unix_now();
    let acr = sign_acr(
        &new_acr_claims(&id, AUD, None, spec(&id, Model::AgentMediated, ALICE), now, 300).unwrap(),
        &a,
    )
    .unwrap();
    let opts = SignOptions { formats: Some(vec!["x509".into(), "wit".into()]), ..Default::default() };
    let reviewed = review(&alice, &acr, &opts, now).unwrap();
    let summary = owner::approval_summary(&reviewed, now);
    assert!(summary.contains(&id) && summary.contains("offline"), "{summary}");
    let oa = sign(&alice, &reviewed, &opts, now).unwrap();

    // The proxy binds a fresh server nonce in its evidence.
    let nonce = p.nonce().await;
    let ev = p.evidence(&nonce, &acr, &id);
    let r = p.post(json!({"acr": acr, "oa": oa, "evidence": ev, "proxy": {"ldevid_sha256": p.hash()}})).await;
    issued(&r, &id, ALICE, "agent-mediated");

    // The owner refuses another model, another owner, a format it does not allow.
    let other =
        |s: CredentialSpec| sign_acr(&new_acr_claims(&id, AUD, None, s, now, 300).unwrap(), &a).unwrap();
    let wrong_model = other(CredentialSpec { model: Model::ServerMediated, ..spec(&id, Model::None, ALICE) });
    assert!(
        review(&alice, &wrong_model, &opts, now).is_err(),
        "a server-mediated ACR has a nonce requirement"
    );
    let nonce = Some(shared::b64::encode_url(&[1u8; 32]));
    let wrong_model = sign_acr(
        &new_acr_claims(&id, AUD, nonce, spec(&id, Model::ServerMediated, ALICE), now, 60).unwrap(),
        &a,
    )
    .unwrap();
    assert!(
        matches!(review(&alice, &wrong_model, &opts, now), Err(OwnerError::Refused(m)) if m.contains("model"))
    );
    let bob = other(spec(&id, Model::AgentMediated, "mailto:bob@example.com"));
    assert!(matches!(review(&alice, &bob, &opts, now), Err(OwnerError::Refused(m)) if m.contains("bob")));
    let x509_only = SignOptions { formats: Some(vec!["x509".into()]), ..Default::default() };
    assert!(
        matches!(review(&alice, &acr, &x509_only, now), Err(OwnerError::Refused(m)) if m.contains("wit"))
    );
}

/// An owner whose key is an Ed25519 key in SoftHSM (`owner init` with a `pkcs11:` key URI):
/// its model 1 approval is signed in the token and the registrar issues; its model 3 answer
/// goes over mTLS authenticated by the token key, and the registrar issues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_key_in_softhsm_approves_models_1_and_3() {
    let Some(t) = testkit::softhsm_token("owner-models") else { return };
    let uri = t.generate("alice", Algorithm::EdDsa).unwrap();
    let token_spki = shared::keys::load_signer(&uri).unwrap().public_key_der();
    let dir = tempfile::tempdir().unwrap();
    let o = InitOptions {
        dir: dir.path().join("alice"),
        id: ALICE.into(),
        kid: Some("alice-1".into()),
        alg: Algorithm::Es256,
        key: Some(uri.clone()),
        trust_domain: Some(TD.into()),
        server: None,
        domain_ca: None,
        validity: Duration::from_secs(86400),
    };
    let report = init(&o).unwrap();
    assert!(!o.dir.join(owner::KEY_FILE).exists());
    assert!(report.key_uri.contains("pin-value=***"), "{}", report.key_uri);
    let alice = OwnerIdentity::load(&o.dir).unwrap();
    assert_eq!(alice.key.algorithm(), Algorithm::EdDsa);
    assert_eq!(alice.key.public_key_der(), token_spki);
    assert_eq!(pki::spki_der(&alice.cert), token_spki);
    // The URI holds the PIN (pin-value), so owner.toml is readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(o.dir.join(owner::CONFIG_FILE)).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "owner.toml holds a PIN: {mode:o}");
    let gw = new_owner(dir.path(), "gateway", GATEWAY, Algorithm::Es256);
    let lab = lab(dir.path(), &alice, &gw).await;
    let mut p = proxy(&lab, "proxy-hsm").await;

    // Model 1: the OA is signed in the token; the proxy submits and the registrar issues.
    let a = key();
    let id = agent("hsm-m1");
    let now = unix_now();
    let acr = sign_acr(
        &new_acr_claims(&id, AUD, None, spec(&id, Model::AgentMediated, ALICE), now, 300).unwrap(),
        &a,
    )
    .unwrap();
    let opts = SignOptions::default();
    let oa = sign(&alice, &review(&alice, &acr, &opts, now).unwrap(), &opts, now).unwrap();
    assert!(shared::agent::oa::verify_oa_signature(&oa, &token_spki).is_ok());
    let nonce = p.nonce().await;
    let ev = p.evidence(&nonce, &acr, &id);
    let r = p.post(json!({"acr": acr, "oa": oa, "evidence": ev, "proxy": {"ldevid_sha256": p.hash()}})).await;
    issued(&r, &id, ALICE, "agent-mediated");

    // Model 3: respond authenticates with owner.pem and the token key, and answers.
    let id = agent("hsm-m3");
    let r = p.request(&key(), spec(&id, Model::ServerMediated, ALICE), None).await;
    assert_eq!(r.status, 202, "{}", r.detail());
    let pending = json_of(&r)["id"].as_str().unwrap().to_string();
    let out = respond(&alice, &respond_opts(&lab, false), &mut Decision::Approve).await.unwrap();
    assert!(out.iter().any(|o| o.id == pending && o.result == OutcomeKind::Approved), "{out:?}");
    let r = p.conn.get_raw(&format!("/agent/v1/credentials/{pending}"), None).await.unwrap();
    issued(&r, &id, ALICE, "server-mediated");
}

fn respond_opts(lab: &Lab, decision_watch: bool) -> RespondOptions {
    RespondOptions {
        server: lab.registrar_url.clone(),
        ca: domain_ca(lab),
        watch: decision_watch,
        interval: Duration::from_millis(300),
        max_duration: Some(Duration::from_secs(3)),
        grant_secs: 3600,
        max_ttl: Some(300),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_3_respond_answers_the_servers_challenge_once() {
    let dir = tempfile::tempdir().unwrap();
    let alice = new_owner(dir.path(), "alice", ALICE, Algorithm::Es256);
    let gw = new_owner(dir.path(), "gateway", GATEWAY, Algorithm::Es256);
    let lab = lab(dir.path(), &alice, &gw).await;
    let mut p = proxy(&lab, "proxy-m3").await;
    let opts = respond_opts(&lab, false);

    // Nothing pending: nothing to do.
    assert!(respond(&alice, &opts, &mut Decision::Approve).await.unwrap().is_empty());

    // Denied: not answered, the proxy keeps waiting.
    let id = agent("m3-denied");
    let r = p.request(&key(), spec(&id, Model::ServerMediated, ALICE), None).await;
    assert_eq!(r.status, 202, "{}", r.detail());
    let denied_id = json_of(&r)["id"].as_str().unwrap().to_string();
    let out = respond(&alice, &opts, &mut Decision::Deny).await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].id.as_str(), &out[0].result), (denied_id.as_str(), &OutcomeKind::Denied));
    let r = p.conn.get_raw(&format!("/agent/v1/credentials/{denied_id}"), None).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.detail());

    // Approved (watch mode, which also answers a request that arrives while watching).
    let id = agent("m3");
    let r = p.request(&key(), spec(&id, Model::ServerMediated, ALICE), None).await;
    assert_eq!(r.status, 202, "{}", r.detail());
    let pending = json_of(&r)["id"].as_str().unwrap().to_string();
    let watch = respond_opts(&lab, true);
    let out = respond(&alice, &watch, &mut Decision::Approve).await.unwrap();
    let mine: Vec<_> = out.iter().filter(|o| o.id == pending).collect();
    assert_eq!(mine.len(), 1, "{out:?}");
    assert_eq!(mine[0].result, OutcomeKind::Approved);
    assert_eq!(mine[0].agent_id, id);
    let r = p.conn.get_raw(&format!("/agent/v1/credentials/{pending}"), None).await.unwrap();
    let cred = issued(&r, &id, ALICE, "server-mediated");
    assert!(cred["grant_exp"].as_i64().unwrap() > unix_now());

    // A second answer to the same challenge is refused (409).
    let id = agent("m3-twice");
    let r = p.request(&key(), spec(&id, Model::ServerMediated, ALICE), None).await;
    let pending = json_of(&r)["id"].as_str().unwrap().to_string();
    let mut responder = Responder::new(&alice, &opts);
    let (cid, text) = responder.list().await.unwrap().into_iter().find(|(i, _)| *i == pending).unwrap();
    let ch = responder.check(&cid, &text, unix_now()).unwrap();
    assert_eq!(ch.claims.sub, id);
    let first = responder.approval(&ch, unix_now()).unwrap();
    assert_eq!(responder.answer(&cid, &first).await.unwrap().0, 200);
    let second = responder.approval(&ch, unix_now()).unwrap();
    let (status, detail) = responder.answer(&cid, &second).await.unwrap();
    assert_eq!(status, 409, "{detail}");

    // A challenge listed under another id does not verify as this one.
    assert!(responder.check("another-id", &text, unix_now()).is_err());
}

/// Starts a gateway for `owner` on a free loopback port; returns its URL.
async fn start_gateway(owner: &OwnerIdentity, lab: &Lab, f: impl FnOnce(&mut GatewayOptions)) -> String {
    let mut opts = GatewayOptions {
        server: lab.registrar_url.clone(),
        ca: domain_ca(lab),
        issuance_uri: AUD.into(),
        agents: vec![format!("wimse://{TD}/agent/gw-*")],
        rate_per_sec: 50,
        queue: 8,
        manual: false,
        max_ttl: Some(900),
        grant_secs: 3600,
    };
    f(&mut opts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let owner = owner.clone();
    tokio::spawn(async move { owner::serve_gateway(owner, opts, listener).await });
    url
}

/// The proxy's mTLS connection to a gateway, pinning the gateway's certificate.
async fn to_gateway(p: &Proxy, url: &str, gw: &OwnerIdentity) -> EstConnection {
    let pin = shared::crypto::sha256(&pki::cert_to_der(&gw.cert).unwrap());
    let key: Arc<dyn Signer> = p.key.clone();
    connect_pinned(url, pin, p.chain.clone(), key).await
}

async fn post(c: &mut EstConnection, body: &impl serde::Serialize) -> RawReply {
    c.post_raw(owner::CREDENTIALS_PATH, "application/json", None, serde_json::to_vec(body).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_2_gateway_checks_limits_and_submits() {
    let dir = tempfile::tempdir().unwrap();
    let alice = new_owner(dir.path(), "alice", ALICE, Algorithm::Es256);
    let gw = new_owner(dir.path(), "gateway", GATEWAY, Algorithm::Es256);
    let lab = lab(dir.path(), &alice, &gw).await;
    let mut p = proxy(&lab, "proxy-m2").await;
    let url = start_gateway(&gw, &lab, |o| o.rate_per_sec = 1).await;
    let mut g = to_gateway(&p, &url, &gw).await;

    // Issued through the gateway; the relying-party view names the gateway as owner.
    let a = key();
    let id = agent("gw-1");
    let body = p.body(&a, spec(&id, Model::OwnerMediated, GATEWAY)).await;
    let cred = issued(&post(&mut g, &body).await, &id, GATEWAY, "owner-mediated");
    let cert = pki::cert_from_pem(cred["x509"].as_str().unwrap()).unwrap();
    assert_eq!(pki::certificate_san(&cert), vec![pki::San::Uri(id.clone())]);

    // One request per second per proxy: the next one at once is refused with Retry-After.
    let body = p.body(&a, spec(&id, Model::OwnerMediated, GATEWAY)).await;
    let r = post(&mut g, &body).await;
    refused(&r, 429, "rate-limited");
    assert!(r.retry_after.is_some_and(|d| d >= Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // The gateway's rules: agent ids outside its patterns, another model, a body naming
    // another proxy, an OA sent by the proxy.
    let other = agent("not-gw");
    let body = p.body(&key(), spec(&other, Model::OwnerMediated, GATEWAY)).await;
    refused(&post(&mut g, &body).await, 403, "policy");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut body = p.body(&key(), spec(&id, Model::OwnerMediated, GATEWAY)).await;
    body.proxy = Some(ProxyRef { ldevid_sha256: shared::b64::encode_url(&[0u8; 32]) });
    refused(&post(&mut g, &body).await, 403, "evidence");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut body = p.body(&key(), spec(&id, Model::OwnerMediated, GATEWAY)).await;
    body.oa = Some("a.b.c".into());
    refused(&post(&mut g, &body).await, 400, "malformed");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A proxy member without ldevid_sha256 does not parse: 400 malformed at the gateway, as
    // at the Identity Server (the gateway used to probe a map and answer 403 evidence).
    let mut no_hash =
        serde_json::to_value(p.body(&key(), spec(&id, Model::OwnerMediated, GATEWAY)).await).unwrap();
    no_hash["proxy"] = json!({});
    refused(&post(&mut g, &no_hash).await, 400, "malformed");
    refused(&p.post(&no_hash).await, 400, "malformed");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = g.post_raw(owner::CREDENTIALS_PATH, "text/plain", None, b"{}".to_vec()).await.unwrap();
    refused(&r, 415, "unsupported-media-type");

    // A client without an LDevID of the trust domain (the owner's own certificate).
    let pin = shared::crypto::sha256(&pki::cert_to_der(&gw.cert).unwrap());
    let key_a: Arc<dyn Signer> = alice.key.clone();
    let mut c = connect_pinned(&url, pin, vec![alice.cert.clone()], key_a).await;
    refused(&post(&mut c, &body).await, 401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_2_a_person_approves_or_denies_and_the_queue_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let alice = new_owner(dir.path(), "alice", ALICE, Algorithm::Es256);
    let gw = new_owner(dir.path(), "gateway", GATEWAY, Algorithm::EdDsa);
    let lab = lab(dir.path(), &alice, &gw).await;
    let mut p = proxy(&lab, "proxy-m2m").await;
    let url = start_gateway(&gw, &lab, |o| {
        o.manual = true;
        o.queue = 1;
    })
    .await;
    let mut g = to_gateway(&p, &url, &gw).await;
    let queue = PendingDir::of(&gw.dir);

    let id = agent("gw-manual");
    let body = p.body(&key(), spec(&id, Model::OwnerMediated, GATEWAY)).await;
    let r = post(&mut g, &body).await;
    assert_eq!(r.status, 202, "{}", r.detail());
    assert!(r.retry_after.is_some());
    let pid = json_of(&r)["id"].as_str().unwrap().to_string();
    let location = format!("{}/{pid}", owner::CREDENTIALS_PATH);
    assert_eq!(g.get_raw(&location, None).await.unwrap().status, 202);

    // The queue holds one request.
    let body2 = p.body(&key(), spec(&agent("gw-manual-2"), Model::OwnerMediated, GATEWAY)).await;
    let r = post(&mut g, &body2).await;
    refused(&r, 503, "queue-full");
    assert!(r.retry_after.is_some());

    // Another proxy may not poll it.
    let mut other = proxy(&lab, "proxy-m2m-b").await;
    let mut og = to_gateway(&other, &url, &gw).await;
    refused(&og.get_raw(&location, None).await.unwrap(), 403, "not-yours");

    // A person approves (as `brski owner gateway approve` does); the next poll submits.
    let listed = queue.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id.as_str(), listed[0].agent_id.as_str()), (pid.as_str(), id.as_str()));
    queue.decide(&pid, true).unwrap();
    issued(&g.get_raw(&location, None).await.unwrap(), &id, GATEWAY, "owner-mediated");
    // The answer stays available; the record is gone; the slot is free again.
    issued(&g.get_raw(&location, None).await.unwrap(), &id, GATEWAY, "owner-mediated");
    assert!(queue.list().unwrap().is_empty());

    // Denied.
    let body = other.body(&key(), spec(&agent("gw-denied"), Model::OwnerMediated, GATEWAY)).await;
    let r = post(&mut og, &body).await;
    assert_eq!(r.status, 202, "{}", r.detail());
    let did = json_of(&r)["id"].as_str().unwrap().to_string();
    queue.decide(&did, false).unwrap();
    assert!(queue.decide(&did, true).is_err(), "decided once");
    let r = og.get_raw(&format!("{}/{did}", owner::CREDENTIALS_PATH), None).await.unwrap();
    refused(&r, 403, "denied");
    refused(&g.get_raw(&format!("{}/nope", owner::CREDENTIALS_PATH), None).await.unwrap(), 404, "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_2_a_gateway_key_the_server_does_not_know_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let alice = new_owner(dir.path(), "alice", ALICE, Algorithm::Es256);
    let gw = new_owner(dir.path(), "gateway", GATEWAY, Algorithm::Es256);
    let lab = lab(dir.path(), &alice, &gw).await;
    let mut p = proxy(&lab, "proxy-rogue").await;
    // Same owner id, a key the Identity Server never provisioned.
    let rogue = new_owner(dir.path(), "rogue", GATEWAY, Algorithm::Es256);
    let url = start_gateway(&rogue, &lab, |_| {}).await;
    let mut g = to_gateway(&p, &url, &rogue).await;
    let body = p.body(&key(), spec(&agent("gw-rogue"), Model::OwnerMediated, GATEWAY)).await;
    let r = post(&mut g, &body).await;
    refused(&r, 401, "unauthorized");
    assert!(r.detail().contains("not an LDevID"), "{}", r.detail());

    // alice is provisioned, but not for model 2 as this gateway: her gateway's OA names her
    // while the request names the gateway owner.
    let url = start_gateway(&alice, &lab, |_| {}).await;
    let mut g = to_gateway(&p, &url, &alice).await;
    let body = p.body(&key(), spec(&agent("gw-alice"), Model::OwnerMediated, GATEWAY)).await;
    refused(&post(&mut g, &body).await, 403, "policy");
    let body = p.body(&key(), spec(&agent("gw-alice"), Model::OwnerMediated, ALICE)).await;
    let r = post(&mut g, &body).await;
    issued(&r, &agent("gw-alice"), ALICE, "owner-mediated");
}
