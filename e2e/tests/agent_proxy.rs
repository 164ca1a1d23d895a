//! Agent issuance end to end on loopback: a lab registrar with an agent policy, a pledge that
//! bootstraps (BRSKI) and then serves the Agent API on a real Unix socket as the Identity
//! Proxy, agents that ask it for credentials, and relying parties (the shared checks and
//! `openssl verify`) that accept them. Models none, 1 (owner signs offline, then a renewal
//! under the grant), 2 (through the owner's gateway, whose certificate the proxy pins) and 3
//! (the owner answers the server's challenge while the agent polls), and the proxy renewing
//! its own LDevID.

use agent::{self as agent_client, AgentApiClient, Credential, Endpoint, Submitted};
use brski::lab::{Lab, LabOptions};
use est::client::EstClient;
use est::tls::{client_config, ServerTrust};
use pledge::{ProxyConfig, RunningProxy};
use serde_json::Value;
use shared::agent::challenge::verify_challenge;
use shared::agent::jwt::{jwt_hash, new_jti, unix_now};
use shared::agent::oa::{sign_oa, OaClaims, OwnerKeyHeader};
use shared::agent::wit::keys_from_jwks;
use shared::agent::{
    verify_acr, verify_agent_certificate, verify_wit_credential, CredentialSpec, Model, OwnerAnchor,
    OwnerAnchors, RelyingTrust,
};
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki;
use shared::signed::{Format, Trust};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use x509_cert::Certificate;

const TD: &str = "campus.example";
const OWNER: &str = "mailto:alice@example.com";

struct World {
    _dir: tempfile::TempDir,
    lab: Lab,
    pledge: (pledge::PledgeConfig, pledge::Idevid),
    running: RunningProxy,
    owner_key: Arc<SoftwareKey>,
    owner_cert: Certificate,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let owner_key = Arc::new(SoftwareKey::generate(Algorithm::Es256).unwrap());
    // A self-signed owner certificate: the policy's owner key, and model 3's TLS client cert.
    let owner_cert =
        pki::create_ca("CN=alice", owner_key.as_ref(), Duration::from_secs(86400), None).unwrap();
    let owner_pem = dir.path().join("alice.pem");
    std::fs::write(&owner_pem, pki::cert_to_pem(&owner_cert).unwrap()).unwrap();
    let policy = format!(
        r#"trust_domain = "{TD}"

[[proxy]]
serial = "*"
agents = ["wimse://{TD}/agent/*"]

[[owner]]
id = "{OWNER}"
kid = "alice-1"
key = "{}"
agents = ["wimse://{TD}/agent/*"]
"#,
        owner_pem.display()
    );
    let options = LabOptions { agent_policy: Some(policy), ..LabOptions::default() };
    let lab = Lab::start(&dir.path().join("lab"), options).await.expect("lab starts");
    let (cfg, id) = lab.pledge("agent-host-1", Format::Jws).await.expect("mint");
    pledge::bootstrap(&cfg, &id).await.expect("bootstrap");
    let mut pcfg = ProxyConfig::in_dir(&cfg.state);
    pcfg.renew = false;
    // No registrar URL: the proxy takes the one it bootstrapped with from pledge-status.json.
    let running = pledge::start_proxy(&pcfg, None).await.expect("proxy starts");
    World { _dir: dir, lab, pledge: (cfg, id), running, owner_key, owner_cert }
}

fn client(w: &World) -> AgentApiClient {
    AgentApiClient::new(Endpoint::Unix(w.running.socket.clone()), Duration::from_secs(30))
}

fn spec(name: &str, model: Model) -> CredentialSpec {
    CredentialSpec {
        id: Some(format!("wimse://{TD}/agent/{name}")),
        formats: vec!["x509".into(), "wit".into()],
        ttl: 900,
        owner: (model != Model::None).then(|| OWNER.to_string()),
        model,
    }
}

fn relying(bundle: &agent_client::Bundle, owner: Option<&World>) -> RelyingTrust {
    let mut anchors = OwnerAnchors::default();
    if let Some(w) = owner {
        // The kid must be the owner's own: a WIT's OA names its key by kid only.
        anchors.push(OwnerAnchor {
            owner: OWNER.into(),
            kid: "alice-1".into(),
            spki_der: w.owner_key.public_key_der(),
        });
    }
    RelyingTrust {
        domain_anchors: pki::certs_from_pem(bundle.ca_pem.as_bytes()).unwrap(),
        wit_keys: keys_from_jwks(&bundle.jwks).unwrap(),
        owner_anchors: anchors,
        trust_domain: Some(TD.into()),
        at: time::OffsetDateTime::now_utc(),
    }
}

fn cert_of(c: &Credential) -> Certificate {
    pki::certs_from_pem(c.x509.as_ref().expect("x509").as_bytes()).unwrap().remove(0)
}

fn openssl_verify(dir: &Path, ca_pem: &str, cert_pem: &str) {
    if !testkit::peer("openssl") {
        return;
    }
    std::fs::write(dir.join("domain-ca.pem"), ca_pem).unwrap();
    std::fs::write(dir.join("agent.pem"), cert_pem).unwrap();
    let out = testkit::run_ok(
        dir,
        "openssl",
        &["verify", "-CAfile", "domain-ca.pem", "-purpose", "sslclient", "agent.pem"],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("agent.pem: OK"));
    // The one URI SAN is the agent id, and the owner extension is not critical.
    let text = testkit::run_ok(dir, "openssl", &["x509", "-in", "agent.pem", "-noout", "-text"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains(&format!("URI:wimse://{TD}/agent/")), "{text}");
}

#[tokio::test]
async fn agent_gets_a_certificate_and_a_wit_through_the_proxy() {
    let w = world().await;
    let c = client(&w);
    let bundle = c.bundle().await.unwrap();
    assert_eq!(bundle.trust_domain, TD);
    assert_eq!(bundle.issuance_uri, format!("wimse://{TD}"));
    let agent = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let nonce = c.nonce().await.unwrap();
    let acr =
        agent_client::build_acr(&agent, &bundle.issuance_uri, Some(nonce), spec("build-7", Model::None), 60)
            .unwrap();
    let cred = c.obtain(&acr, None, Duration::from_secs(30), &mut |_, _, _| {}).await.expect("issued");
    agent_client::check_credential(&cred, &agent, &["x509".into(), "wit".into()]).unwrap();
    assert_eq!(cred.agent_id, format!("wimse://{TD}/agent/build-7"));
    assert_eq!(cred.owner, None);
    let trust = relying(&bundle, None);
    let who = verify_agent_certificate(&[cert_of(&cred)], &trust).expect("relying party accepts the cert");
    assert_eq!(who.agent_id.as_str(), cred.agent_id);
    assert!(who.owner.is_none());
    let who =
        verify_wit_credential(cred.wit.as_ref().unwrap(), &trust).expect("relying party accepts the WIT");
    assert_eq!(who.agent_id.as_str(), cred.agent_id);
    openssl_verify(w._dir.path(), &bundle.ca_pem, cred.x509.as_ref().unwrap());

    // Ed25519 agents too.
    let ed = SoftwareKey::generate(Algorithm::EdDsa).unwrap();
    let nonce = c.nonce().await.unwrap();
    let acr = agent_client::build_acr(&ed, &bundle.issuance_uri, Some(nonce), spec("ed-1", Model::None), 60)
        .unwrap();
    let cred = c.obtain(&acr, None, Duration::from_secs(30), &mut |_, _, _| {}).await.expect("issued");
    agent_client::check_credential(&cred, &ed, &["x509".into()]).unwrap();

    // A nonce is single use: replaying the same ACR is refused by the server, and relayed.
    let err = c.submit(&acr, None).await.unwrap_err();
    assert!(matches!(err, agent_client::AgentClientError::Refused { status: 400..=499, .. }), "{err}");
}

#[tokio::test]
async fn model_1_owner_signs_offline_and_the_renewal_reuses_the_grant() {
    let w = world().await;
    let c = client(&w);
    let bundle = c.bundle().await.unwrap();
    let agent = SoftwareKey::generate(Algorithm::Es256).unwrap();
    // The agent writes an ACR without a nonce; the owner signs over its hash.
    let acr = agent_client::build_acr(
        &agent,
        &bundle.issuance_uri,
        None,
        spec("helper", Model::AgentMediated),
        500,
    )
    .unwrap();
    let checked = verify_acr(&acr, &bundle.issuance_uri, unix_now()).unwrap();
    let now = unix_now();
    let oa = sign_oa(
        &OaClaims {
            iss: OWNER.into(),
            sub: format!("wimse://{TD}/agent/helper"),
            aud: TD.into(),
            iat: now,
            // The ACR may live only as long as its approval.
            exp: now + 590,
            jti: new_jti().unwrap(),
            model: Model::AgentMediated,
            agent_jkt: checked.jkt.clone(),
            acr_hash: Some(checked.hash.clone()),
            chal_hash: None,
            nonce: None,
            grant_exp: Some(now + 86400),
            constraints: None,
            org: None,
        },
        w.owner_key.as_ref(),
        &OwnerKeyHeader::Kid("alice-1".into()),
    )
    .unwrap();
    let cred = c.obtain(&acr, Some(&oa), Duration::from_secs(30), &mut |_, _, _| {}).await.expect("issued");
    assert_eq!(cred.owner.as_deref(), Some(OWNER));
    assert_eq!(cred.model, Model::AgentMediated);
    let trust = relying(&bundle, Some(&w));
    let who = verify_agent_certificate(&[cert_of(&cred)], &trust).expect("dual identity accepted");
    let owner = who.owner.as_ref().expect("owner bound");
    assert_eq!((owner.id.as_str(), owner.model), (OWNER, Model::AgentMediated));
    let who = verify_wit_credential(cred.wit.as_ref().unwrap(), &trust).unwrap();
    assert_eq!(who.owner.as_ref().unwrap().id, OWNER);
    // A relying party that does not trust the owner's key refuses the owner binding.
    let stranger = relying(&bundle, None);
    assert_eq!(verify_agent_certificate(&[cert_of(&cred)], &stranger).unwrap_err().reason(), "unknown-owner");
    openssl_verify(w._dir.path(), &bundle.ca_pem, cred.x509.as_ref().unwrap());

    // Renewal: a new ACR with the same key, same id and model, no OA.
    let nonce = c.nonce().await.unwrap();
    let renew = agent_client::build_acr(
        &agent,
        &bundle.issuance_uri,
        Some(nonce),
        spec("helper", Model::AgentMediated),
        60,
    )
    .unwrap();
    let again = c.obtain(&renew, None, Duration::from_secs(30), &mut |_, _, _| {}).await.expect("renewed");
    assert_eq!(again.owner.as_deref(), Some(OWNER));
    assert_ne!(again.x509, cred.x509);
    agent_client::check_credential(&again, &agent, &["x509".into(), "wit".into()]).unwrap();
    // Another key cannot ride on that grant.
    let thief = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let nonce = c.nonce().await.unwrap();
    let stolen = agent_client::build_acr(
        &thief,
        &bundle.issuance_uri,
        Some(nonce),
        spec("helper", Model::AgentMediated),
        60,
    )
    .unwrap();
    assert!(c.submit(&stolen, None).await.is_err());
}

#[tokio::test]
async fn model_3_owner_answers_the_challenge_while_the_agent_polls() {
    let w = world().await;
    let c = client(&w);
    let bundle = c.bundle().await.unwrap();
    let agent = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let nonce = c.nonce().await.unwrap();
    let acr = agent_client::build_acr(
        &agent,
        &bundle.issuance_uri,
        Some(nonce),
        spec("ops-bot", Model::ServerMediated),
        60,
    )
    .unwrap();
    let (id, location) = match c.submit(&acr, None).await.expect("submitted") {
        Submitted::Pending { id, location, .. } => (id, location),
        other => panic!("expected 202, got {other:?}"),
    };
    assert_eq!(location, format!("/v1/credentials/{id}"));
    assert!(matches!(c.poll(&location).await.unwrap(), Submitted::Pending { .. }));

    // The owner, over mTLS with its key, fetches and answers the challenge.
    let domain = pki::certs_from_pem(bundle.ca_pem.as_bytes()).unwrap();
    let signer: Arc<dyn Signer> = w.owner_key.clone();
    let tls =
        client_config(&ServerTrust::Explicit(domain.clone()), Some((vec![w.owner_cert.clone()], signer)))
            .unwrap();
    let owner = EstClient::new(&w.lab.registrar_url, None, tls).unwrap();
    let mut conn = owner.connect().await.unwrap();
    let list = conn.get_raw("/owner/v1/challenges", None).await.unwrap();
    assert_eq!(list.status.as_u16(), 200, "{}", list.detail());
    let list: Value = serde_json::from_slice(&list.body).unwrap();
    let entry =
        list["challenges"].as_array().unwrap().iter().find(|c| c["id"] == id.as_str()).expect("challenge");
    let text = entry["challenge"].as_str().unwrap();
    let ch = verify_challenge(text, &Trust::now(domain), unix_now()).expect("challenge from the domain");
    assert_eq!(ch.claims.sub, format!("wimse://{TD}/agent/ops-bot"));
    let now = unix_now();
    let oa = sign_oa(
        &OaClaims {
            iss: OWNER.into(),
            sub: ch.claims.sub.clone(),
            aud: TD.into(),
            iat: now,
            exp: now + 120,
            jti: new_jti().unwrap(),
            model: Model::ServerMediated,
            agent_jkt: ch.claims.agent_jkt.clone(),
            acr_hash: None,
            chal_hash: Some(jwt_hash(text)),
            nonce: Some(ch.claims.nonce.clone()),
            grant_exp: Some(now + 86400),
            constraints: None,
            org: None,
        },
        w.owner_key.as_ref(),
        &OwnerKeyHeader::Kid("alice-1".into()),
    )
    .unwrap();
    let path = format!("/owner/v1/challenges/{id}");
    let r = conn.post_raw(&path, "application/jwt", None, oa.into_bytes()).await.unwrap();
    assert_eq!(r.status.as_u16(), 200, "{}", r.detail());

    // The agent's next poll gets the dual-identity credential.
    let mut answer = c.poll(&location).await.unwrap();
    for _ in 0..5 {
        if matches!(answer, Submitted::Issued(_)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        answer = c.poll(&location).await.unwrap();
    }
    let Submitted::Issued(cred) = answer else { panic!("still pending") };
    assert_eq!(cred.model, Model::ServerMediated);
    let who = verify_agent_certificate(&[cert_of(&cred)], &relying(&bundle, Some(&w))).unwrap();
    assert_eq!(who.owner.as_ref().unwrap().model, Model::ServerMediated);
    openssl_verify(w._dir.path(), &bundle.ca_pem, cred.x509.as_ref().unwrap());
}

#[tokio::test]
async fn the_proxy_renews_its_ldevid_and_keeps_serving() {
    let w = world().await;
    let p = w.running.proxy.clone();
    let before = p.identity();
    let (nb, na) = before.validity();
    let at = pledge::renew_at(nb, na);
    let did = pledge::renew_once(&p, None, Duration::from_secs(30), at).await.expect("simplereenroll");
    assert_eq!(did, pledge::Due::Reenroll);
    let after = p.identity();
    assert_ne!(after.ldevid_sha256, before.ldevid_sha256);
    assert_eq!(
        after.leaf().tbs_certificate().subject(),
        before.leaf().tbs_certificate().subject(),
        "simplereenroll keeps the subject"
    );
    assert_ne!(after.key.public_key_der(), before.key.public_key_der(), "a fresh key");
    let c = client(&w);
    let bundle = c.bundle().await.unwrap();
    let agent = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let nonce = c.nonce().await.unwrap();
    let acr = agent_client::build_acr(
        &agent,
        &bundle.issuance_uri,
        Some(nonce),
        spec("after-renew", Model::None),
        60,
    )
    .unwrap();
    c.obtain(&acr, None, Duration::from_secs(30), &mut |_, _, _| {})
        .await
        .expect("issued with the new LDevID");
}

#[tokio::test]
async fn an_expired_ldevid_is_replaced_by_bootstrapping_again() {
    let w = world().await;
    let p = w.running.proxy.clone();
    let before = p.identity();
    let (nb, na) = before.validity();
    let t = Duration::from_secs(30);
    // Before two thirds of its life nothing happens.
    assert_eq!(pledge::renew_once(&p, Some(&w.pledge), t, nb + 10).await, Ok(pledge::Due::Wait));
    // Without an IDevID an expired LDevID cannot be replaced, and the proxy says so.
    let err = pledge::renew_once(&p, None, t, na + 1).await.unwrap_err();
    assert!(err.contains("brski pledge bootstrap"), "{err}");
    // As if the host slept past notAfter: a new BRSKI bootstrap with the IDevID.
    let did = pledge::renew_once(&p, Some(&w.pledge), t, na + 1).await.expect("bootstrapped again");
    assert_eq!(did, pledge::Due::Rebootstrap);
    let after = p.identity();
    assert_ne!(after.ldevid_sha256, before.ldevid_sha256);
    let c = client(&w);
    let bundle = c.bundle().await.unwrap();
    let agent = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let nonce = c.nonce().await.unwrap();
    let acr = agent_client::build_acr(
        &agent,
        &bundle.issuance_uri,
        Some(nonce),
        spec("after-sleep", Model::None),
        60,
    )
    .unwrap();
    c.obtain(&acr, None, Duration::from_secs(30), &mut |_, _, _| {})
        .await
        .expect("issued after re-bootstrap");
}

#[tokio::test]
async fn model_2_goes_through_the_owner_gateway_the_proxy_pins() {
    let dir = tempfile::tempdir().unwrap();
    const GATEWAY: &str = "https://gateway.example.org";
    let gw_dir = dir.path().join("gateway");
    owner::init(&owner::InitOptions {
        dir: gw_dir.clone(),
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
    let policy = format!(
        "trust_domain = \"{TD}\"\n[[proxy]]\nserial = \"*\"\nagents = [\"wimse://{TD}/agent/*\"]\n\
         [[owner]]\nid = \"{GATEWAY}\"\nkid = \"gw-1\"\nkey = \"{}\"\nagents = [\"wimse://{TD}/agent/*\"]\n\
         models = [\"owner-mediated\"]\n",
        gw_dir.join(owner::PUBLIC_FILE).display()
    );
    let options = LabOptions { agent_policy: Some(policy), ..LabOptions::default() };
    let lab = Lab::start(&dir.path().join("lab"), options).await.expect("lab starts");
    let (cfg, id) = lab.pledge("agent-host-2", Format::Cms).await.unwrap();
    pledge::bootstrap(&cfg, &id).await.expect("bootstrap");

    // The gateway: the owner's organization certificate on TLS, its rules, its signature.
    let gw = owner::OwnerIdentity::load(&gw_dir).unwrap();
    let pin = shared::crypto::sha256(&pki::cert_to_der(&gw.cert).unwrap());
    let opts = owner::GatewayOptions {
        server: lab.registrar_url.clone(),
        ca: vec![lab.registrar.domain_ca().clone()],
        issuance_uri: format!("wimse://{TD}"),
        agents: vec![format!("wimse://{TD}/agent/*")],
        rate_per_sec: 50,
        queue: 16,
        manual: false,
        max_ttl: None,
        grant_secs: 3600,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw_url = format!("https://{}", listener.local_addr().unwrap());
    let gw_task = tokio::spawn(owner::serve_gateway(gw, opts, listener));

    let mut pcfg = ProxyConfig::in_dir(&cfg.state);
    pcfg.renew = false;
    pcfg.gateway = Some((gw_url, pin));
    let running = pledge::start_proxy(&pcfg, None).await.expect("proxy starts");
    let c = AgentApiClient::new(Endpoint::Unix(running.socket.clone()), Duration::from_secs(30));
    let bundle = c.bundle().await.unwrap();
    let agent = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let mut s = spec("lab-bot", Model::OwnerMediated);
    s.owner = Some(GATEWAY.into());
    let acr =
        agent_client::build_acr(&agent, &bundle.issuance_uri, Some(c.nonce().await.unwrap()), s, 60).unwrap();
    let cred =
        c.obtain(&acr, None, Duration::from_secs(30), &mut |_, _, _| {}).await.expect("issued via gateway");
    assert_eq!(cred.owner.as_deref(), Some(GATEWAY));
    assert_eq!(cred.model, Model::OwnerMediated);
    let mut trust = relying(&bundle, None);
    let gw_key = owner::OwnerIdentity::load(&gw_dir).unwrap().key.public_key_der();
    trust.owner_anchors.push(OwnerAnchor { owner: GATEWAY.into(), kid: "gw-1".into(), spki_der: gw_key });
    let who = verify_agent_certificate(&[cert_of(&cred)], &trust).expect("dual identity accepted");
    assert_eq!(who.owner.as_ref().map(|o| o.model), Some(Model::OwnerMediated));
    verify_wit_credential(cred.wit.as_ref().unwrap(), &trust).expect("WIT accepted");
    openssl_verify(dir.path(), &bundle.ca_pem, cred.x509.as_ref().unwrap());
    gw_task.abort();
}
