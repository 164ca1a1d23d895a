//! The same agent refusal gets the same status and the same `reason` from the Identity Proxy,
//! the owner gateway and the Identity Server (`docs/agent-api.md`, "Reasons"), with real
//! servers on loopback: a lab registrar whose policy provisions the gateway as an owner, the
//! gateway, a bootstrapped pledge serving the Agent API on a Unix socket, and a second
//! bootstrapped pledge that talks to the gateway and the server directly, as a proxy does.
//!
//! Before `est::http::Reason` the proxy answered 400 where the other two answered 403 for a
//! bad ACR signature and a wrong audience (it checks the ACR before forwarding).

use agent::{AgentApiClient, AgentClientError, Endpoint};
use brski::lab::{Lab, LabOptions};
use e2e::agent::{connect_pinned, json_of, Proxy};
use est::client::RawReply;
use est::http::MEDIA_PROBLEM;
use pledge::{ProxyConfig, RunningProxy};
use serde_json::Value;
use shared::agent::acr::{new_acr_claims, ACR_TYP};
use shared::agent::jwt::{sign_jwt, unix_now};
use shared::agent::wire::CredentialRequest;
use shared::agent::{sign_acr, CredentialSpec, Model};
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki;
use shared::signed::Format;
use std::sync::Arc;
use std::time::Duration;

const TD: &str = "campus.example";
const GATEWAY: &str = "https://gateway.example.org";
const GATEWAY_PATH: &str = "/gateway/v1/credentials";

/// Everything running, and the ways into it.
struct World {
    _dir: tempfile::TempDir,
    _lab: Lab,
    _running: RunningProxy,
    gw_task: tokio::task::JoinHandle<()>,
    /// The Agent API of the running proxy.
    api: AgentApiClient,
    /// A second proxy identity, connected to the server.
    direct: Proxy,
    /// Its mTLS connection to the gateway.
    gateway: est::client::EstConnection,
}

impl Drop for World {
    fn drop(&mut self) {
        self.gw_task.abort();
    }
}

fn init_gateway(dir: &std::path::Path) {
    owner::init(&owner::InitOptions {
        dir: dir.to_path_buf(),
        id: GATEWAY.into(),
        kid: Some("gw-1".into()),
        alg: Algorithm::Es256,
        key: None,
        trust_domain: Some(TD.into()),
        server: None,
        domain_ca: None,
        validity: Duration::from_secs(86400),
    })
    .unwrap();
}

fn gateway_options(lab: &Lab) -> owner::GatewayOptions {
    owner::GatewayOptions {
        server: lab.registrar_url.clone(),
        ca: vec![lab.registrar.domain_ca().clone()],
        issuance_uri: format!("wimse://{TD}"),
        agents: vec![format!("wimse://{TD}/agent/*")],
        rate_per_sec: 50,
        queue: 16,
        manual: false,
        max_ttl: None,
        grant_secs: 3600,
    }
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let gw_dir = dir.path().join("gateway");
    init_gateway(&gw_dir);
    let policy = format!(
        "trust_domain = \"{TD}\"\n[[proxy]]\nserial = \"*\"\nagents = [\"wimse://{TD}/agent/*\"]\n\
         [[owner]]\nid = \"{GATEWAY}\"\nkid = \"gw-1\"\nkey = \"{}\"\nagents = [\"wimse://{TD}/agent/*\"]\n\
         models = [\"owner-mediated\"]\n",
        gw_dir.join(owner::PUBLIC_FILE).display()
    );
    let options = LabOptions { agent_policy: Some(policy), ..LabOptions::default() };
    let lab = Lab::start(&dir.path().join("lab"), options).await.expect("lab starts");

    let gw = owner::OwnerIdentity::load(&gw_dir).unwrap();
    let pin = shared::crypto::sha256(&pki::cert_to_der(&gw.cert).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw_url = format!("https://{}", listener.local_addr().unwrap());
    let opts = gateway_options(&lab);
    let gw_task = tokio::spawn(async move {
        let _ = owner::serve_gateway(gw, opts, listener).await;
    });

    let (cfg, id) = lab.pledge("refusal-host-1", Format::Cms).await.unwrap();
    pledge::bootstrap(&cfg, &id).await.expect("bootstrap");
    let mut pcfg = ProxyConfig::in_dir(&cfg.state);
    pcfg.renew = false;
    pcfg.gateway = Some((gw_url.clone(), pin));
    let running = pledge::start_proxy(&pcfg, None).await.expect("proxy starts");
    let api = AgentApiClient::new(Endpoint::Unix(running.socket.clone()), Duration::from_secs(30));

    let direct = e2e::agent::proxy(&lab, "refusal-host-2").await;
    let key: Arc<dyn Signer> = direct.key.clone();
    let gateway = connect_pinned(&gw_url, pin, direct.chain.clone(), key).await;
    World { _dir: dir, _lab: lab, _running: running, gw_task, api, direct, gateway }
}

/// A model 2 request for the gateway's owner: the gateway approves it, the server checks it.
fn spec(name: &str) -> CredentialSpec {
    CredentialSpec {
        id: Some(format!("wimse://{TD}/agent/{name}")),
        formats: vec!["x509".into()],
        ttl: 600,
        owner: Some(GATEWAY.into()),
        model: Model::OwnerMediated,
    }
}

/// An ACR whose `jwk` is `agent`'s key but whose signature is another key's.
fn forged_acr(agent: &SoftwareKey, aud: &str, nonce: String, name: &str) -> String {
    let thief = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let claims =
        new_acr_claims(&spec(name).id.unwrap(), aud, Some(nonce), spec(name), unix_now(), 60).unwrap();
    let mut h = serde_json::Map::new();
    let jwk = shared::agent::jwk::jwk_from_spki(&agent.public_key_der()).unwrap();
    h.insert("jwk".into(), Value::Object(jwk));
    sign_jwt(&claims, ACR_TYP, &h, &[], &thief).unwrap()
}

/// A correctly signed ACR with the given audience and nonce.
fn acr(agent: &SoftwareKey, aud: &str, nonce: String, name: &str) -> String {
    let claims =
        new_acr_claims(&spec(name).id.unwrap(), aud, Some(nonce), spec(name), unix_now(), 60).unwrap();
    sign_acr(&claims, agent).unwrap()
}

/// (status, reason) of a problem reply.
fn answer_of(r: &RawReply) -> (u16, String) {
    assert_eq!(r.content_type, MEDIA_PROBLEM, "{} {}", r.status, r.detail());
    (r.status.as_u16(), json_of(r)["reason"].as_str().unwrap_or_default().to_string())
}

impl World {
    /// The Agent API's answer to `acr` (the proxy adds evidence for the ACR's nonce).
    async fn via_proxy(&self, acr: &str) -> (u16, String) {
        match self.api.submit(acr, None).await {
            Err(AgentClientError::Refused { status, reason, .. }) => (status, reason),
            other => panic!("the proxy did not refuse: {other:?}"),
        }
    }

    /// The body a proxy sends for `acr`, with evidence binding `nonce`.
    fn body(&self, acr: &str, nonce: &str, name: &str) -> CredentialRequest {
        let ev = self.direct.evidence(nonce, acr, &spec(name).id.unwrap());
        self.direct.credential_request(acr, None, ev)
    }

    async fn via_gateway(&mut self, body: CredentialRequest) -> (u16, String) {
        let bytes = serde_json::to_vec(&body).unwrap();
        answer_of(&self.gateway.post_raw(GATEWAY_PATH, "application/json", None, bytes).await.unwrap())
    }

    async fn at_server_directly(&mut self, body: CredentialRequest) -> (u16, String) {
        answer_of(&self.direct.post(body).await)
    }
}

/// All three answered `status` with `reason`.
fn same(answers: [(&str, (u16, String)); 3], status: u16, reason: &str) {
    for (who, got) in answers {
        assert_eq!(got, (status, reason.to_string()), "{who}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_refusal_gets_the_same_status_and_reason_from_proxy_gateway_and_server() {
    let mut w = world().await;
    let agent = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let aud = format!("wimse://{TD}");

    // A bad ACR signature: the proxy and the gateway see it before forwarding.
    let at_proxy = w.via_proxy(&forged_acr(&agent, &aud, w.api.nonce().await.unwrap(), "forged")).await;
    let n = w.direct.nonce().await;
    let body = w.body(&forged_acr(&agent, &aud, n.clone(), "forged"), &n, "forged");
    let at_gateway = w.via_gateway(body).await;
    let n = w.direct.nonce().await;
    let at_server =
        w.at_server_directly(w.body(&forged_acr(&agent, &aud, n.clone(), "forged"), &n, "forged")).await;
    same([("proxy", at_proxy), ("gateway", at_gateway), ("server", at_server)], 403, "bad-signature");

    // A wrong audience: also checked before forwarding.
    let other = "wimse://other.example";
    let at_proxy = w.via_proxy(&acr(&agent, other, w.api.nonce().await.unwrap(), "lost")).await;
    let n = w.direct.nonce().await;
    let at_gateway = w.via_gateway(w.body(&acr(&agent, other, n.clone(), "lost"), &n, "lost")).await;
    let n = w.direct.nonce().await;
    let at_server = w.at_server_directly(w.body(&acr(&agent, other, n.clone(), "lost"), &n, "lost")).await;
    same([("proxy", at_proxy), ("gateway", at_gateway), ("server", at_server)], 403, "wrong-audience");

    // A stale nonce (never issued by this server): the server finds it, the proxy and the
    // gateway relay its answer unchanged.
    let stale = shared::b64::encode_url(&[7u8; 32]);
    let at_proxy = w.via_proxy(&acr(&agent, &aud, stale.clone(), "late")).await;
    let at_gateway = w.via_gateway(w.body(&acr(&agent, &aud, stale.clone(), "late"), &stale, "late")).await;
    let at_server =
        w.at_server_directly(w.body(&acr(&agent, &aud, stale.clone(), "late"), &stale, "late")).await;
    same([("proxy", at_proxy), ("gateway", at_gateway), ("server", at_server)], 403, "nonce");
}
