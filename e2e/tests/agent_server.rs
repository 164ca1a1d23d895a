//! The Identity Server's agent endpoints over real mTLS on loopback: a pledge bootstrapped by
//! BRSKI acts as the proxy (its LDevID on the TLS connection, its key signing the evidence).
//! Each model issues; each refusal of the check order is refused with its reason and audited.

use brski::lab::{Lab, LabOptions};
use e2e::agent::{connect, json_of, proxy, Proxy};
use est::client::RawReply;
use serde_json::{json, Value};
use shared::agent::acr::{new_acr_claims, CREDENTIAL_REQUEST_MEDIA_TYPE};
use shared::agent::challenge::verify_challenge;
use shared::agent::evidence::{cmw_collection, eat_from_cmw};
use shared::agent::jwt::{new_jti, unix_now};
use shared::agent::oa::OrgBinding;
use shared::agent::tpm_quote::{
    marshal_quote_attest, pcr_digest, quote_nonce, TpmQuote, TCG_KP_AIK_CERTIFICATE, TPM_ALG_SHA256,
    TPM_QUOTE_MEDIA_TYPE,
};
use shared::agent::wit::keys_from_jwks;
use shared::agent::*;
use shared::b64;
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki::{self, create_ca};
use shared::signed::{Format, Trust};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const TD: &str = "campus.example";
const AUD: &str = "wimse://campus.example";
const OWNER: &str = "mailto:alice@example.com";
const GATEWAY: &str = "https://gateway.example.org";

fn agent(name: &str) -> String {
    format!("wimse://campus.example/agent/{name}")
}

fn public_pem(key: &dyn Signer) -> String {
    der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &key.public_key_der()).unwrap()
}

/// A lab whose agent policy lets every proxy ask for `agent/*` (but not `forbidden/*`), with
/// owner alice (all models) and a gateway owner (model 2).
async fn lab(dir: &Path, owner: &SoftwareKey, gateway: &SoftwareKey) -> Lab {
    lab_with(dir, owner, gateway, "", "").await
}

/// Like [`lab`], with extra top-level policy keys and extra keys for alice's `[[owner]]`.
async fn lab_with(dir: &Path, owner: &SoftwareKey, gateway: &SoftwareKey, top: &str, alice: &str) -> Lab {
    let owner_pem = dir.join("alice.pem");
    let gateway_pem = dir.join("gateway.pem");
    std::fs::write(&owner_pem, public_pem(owner)).unwrap();
    std::fs::write(&gateway_pem, public_pem(gateway)).unwrap();
    let policy = format!(
        r#"
trust_domain = "{TD}"
max_ttl_secs = 3600
subject_template = "CN={{name}},O={{org}},OU={{unit}}"
{top}

[[proxy]]
serial = "*"
agents = ["wimse://campus.example/agent/*"]

[[owner]]
id = "{OWNER}"
kid = "alice-1"
key = "{}"
agents = ["wimse://campus.example/agent/*"]
organization = "Example Corp"
unit = "Research"
{alice}

[[owner]]
id = "{GATEWAY}"
kid = "gw-1"
key = "{}"
agents = ["wimse://campus.example/agent/*"]
models = ["owner-mediated"]
"#,
        owner_pem.display(),
        gateway_pem.display()
    );
    let options = LabOptions { agent_policy: Some(policy), ..LabOptions::default() };
    Lab::start(&dir.join("lab"), options).await.expect("lab starts")
}

fn spec(id: &str, model: Model) -> CredentialSpec {
    CredentialSpec {
        id: Some(id.into()),
        formats: vec!["x509".into(), "wit".into()],
        ttl: 600,
        owner: (model != Model::None).then(|| OWNER.to_string()),
        model,
    }
}

fn key() -> SoftwareKey {
    SoftwareKey::generate(Algorithm::Es256).unwrap()
}

fn acr_of(acr: &str) -> Acr {
    verify_acr(acr, AUD, unix_now()).unwrap().into_inner()
}

fn oa(iss: &str, acr: &Acr, model: Model) -> OaClaims {
    let now = unix_now();
    OaClaims {
        iss: iss.into(),
        sub: acr.claims.req.id.clone().unwrap(),
        aud: TD.into(),
        iat: now,
        exp: now + 50,
        jti: new_jti().unwrap(),
        model,
        agent_jkt: acr.jkt.clone(),
        acr_hash: Some(acr.hash.clone()),
        chal_hash: None,
        nonce: None,
        grant_exp: Some(now + 86400),
        constraints: None,
        org: None,
    }
}

fn relying(lab: &Lab, bundle: &Value, owners: Vec<OwnerAnchor>) -> RelyingTrust {
    RelyingTrust {
        domain_anchors: vec![lab.registrar.domain_ca().clone()],
        wit_keys: keys_from_jwks(&bundle["jwks"]).unwrap(),
        owner_anchors: OwnerAnchors::new(owners),
        trust_domain: Some(TD.into()),
        at: time::OffsetDateTime::now_utc(),
    }
}

fn alice_anchor(owner: &SoftwareKey) -> OwnerAnchor {
    OwnerAnchor { owner: OWNER.into(), kid: "alice-1".into(), spki_der: owner.public_key_der() }
}

/// Checks a 200 credential: one URI SAN, `openssl verify` against the domain CA, the
/// relying-party library on the certificate and the WIT, and the expected owner.
async fn check_credential(
    lab: &Lab,
    p: &mut Proxy,
    cred: &Value,
    id: &str,
    owner: Option<(&str, Model)>,
    anchors: Vec<OwnerAnchor>,
) {
    assert_eq!(cred["agent_id"], id);
    let cert = pki::cert_from_pem(cred["x509"].as_str().unwrap()).unwrap();
    let sans = pki::certificate_san(&cert);
    assert_eq!(sans, vec![pki::San::Uri(id.into())], "exactly one URI SAN");
    let r = p.conn.get_raw("/agent/v1/bundle", None).await.unwrap();
    let bundle = json_of(&r);
    assert_eq!(bundle["issuance_uri"], AUD);
    let trust = relying(lab, &bundle, anchors);
    let who = verify_agent_certificate(std::slice::from_ref(&cert), &trust)
        .expect("relying party accepts the cert");
    let wit =
        verify_wit_credential(cred["wit"].as_str().unwrap(), &trust).expect("relying party accepts the WIT");
    let expect = owner.map(|(o, m)| (o.to_string(), m));
    assert_eq!(who.owner.as_ref().map(|o| (o.id.clone(), o.model)), expect);
    assert_eq!(wit.owner.as_ref().map(|o| (o.id.clone(), o.model)), expect);
    assert_eq!(who.key_thumbprint, wit.key_thumbprint, "X.509 and WIT over the same key");
    if testkit::peer("openssl") {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("agent.pem"), cred["x509"].as_str().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cred["ca_pem"].as_str().unwrap()).unwrap();
        let out = testkit::run_ok(dir.path(), "openssl", &["verify", "-CAfile", "ca.pem", "agent.pem"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("agent.pem: OK"));
        let text = testkit::run_ok(dir.path(), "openssl", &["x509", "-in", "agent.pem", "-noout", "-text"]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains(&format!("URI:{id}")), "{text}");
        if owner.is_some() {
            assert!(text.contains("1.3.6.1.4.1.32473.8995.1.1"), "owner binding extension: {text}");
        }
    }
}

async fn audit_actions(lab: &Lab, subject: &str) -> Vec<(String, Value)> {
    let events = lab.registrar.store().audit_events(Some(subject), 0, 1000).await.unwrap();
    events.into_iter().map(|e| (e.event.action, e.event.detail)).collect()
}

fn refused(r: &RawReply, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{}", r.detail());
    assert_eq!(r.content_type, est::http::MEDIA_PROBLEM);
    let body = json_of(r);
    assert_eq!(body["reason"], reason, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_none_and_model_1_issue_renew_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, gw) = (key(), key());
    let lab = lab(dir.path(), &owner, &gw).await;
    let mut p = proxy(&lab, "proxy-1").await;

    // No owner.
    let a = key();
    let id = agent("plain-1");
    let r = p.request(&a, spec(&id, Model::None), None).await;
    assert_eq!(r.status, 200, "{}", r.detail());
    let cred = json_of(&r);
    check_credential(&lab, &mut p, &cred, &id, None, vec![]).await;
    let audit = audit_actions(&lab, &id).await;
    assert!(audit.iter().any(|(a, d)| a == "agent.credential.issued"
        && d["acr_jti"].is_string()
        && d["wit_jti"].is_string()));

    // Model 1: the owner signs over the ACR the agent shows it.
    let a = key();
    let id = agent("owned-1");
    let (acr, ev) = p.acr(&a, spec(&id, Model::AgentMediated)).await;
    let oa_text = sign_oa(
        &oa(OWNER, &acr_of(&acr), Model::AgentMediated),
        &owner,
        &OwnerKeyHeader::Kid("alice-1".into()),
    )
    .unwrap();
    let r = p.post(json!({"acr": acr, "oa": oa_text, "evidence": ev})).await;
    assert_eq!(r.status, 200, "{}", r.detail());
    let cred = json_of(&r);
    assert!(cred["x509"].as_str().unwrap().len() > 100);
    check_credential(
        &lab,
        &mut p,
        &cred,
        &id,
        Some((OWNER, Model::AgentMediated)),
        vec![alice_anchor(&owner)],
    )
    .await;
    let cert = pki::cert_from_pem(cred["x509"].as_str().unwrap()).unwrap();
    assert_eq!(cert.tbs_certificate().subject().to_string(), "CN=owned-1,O=Example Corp,OU=Research");

    // Renewal with the same key and no OA reuses the grant.
    let r = p.request(&a, spec(&id, Model::AgentMediated), None).await;
    assert_eq!(r.status, 200, "renewal under the grant: {}", r.detail());
    assert_eq!(json_of(&r)["owner"], OWNER);
    // A different key for the same id has no grant.
    let r = p.request(&key(), spec(&id, Model::AgentMediated), None).await;
    refused(&r, 403, "owner-binding");

    // Revoking the grant stops renewals.
    let store = lab.registrar.store().clone();
    let n =
        registrar::revoke(store.as_ref(), &registrar::RevokeTarget::Grant(id.clone()), "test", unix_now())
            .await
            .unwrap();
    assert_eq!(n, 1);
    let r = p.request(&a, spec(&id, Model::AgentMediated), None).await;
    refused(&r, 403, "revoked");
    // Revoking the agent stops everything for it, even without an owner.
    registrar::revoke(store.as_ref(), &registrar::RevokeTarget::Agent(id.clone()), "test", unix_now())
        .await
        .unwrap();
    let r = p.request(&a, spec(&id, Model::None), None).await;
    refused(&r, 403, "revoked");
    let audit = audit_actions(&lab, &id).await;
    assert!(audit.iter().filter(|(a, _)| a == "agent.credential.refused").count() >= 3, "{audit:?}");

    // The registrar's metrics count issuance and refusals by reason; it is ready.
    let r = p.conn.get_raw("/metrics", None).await.unwrap();
    let text = String::from_utf8_lossy(&r.body);
    for want in [
        "brski_issued_total{role=\"registrar\",kind=\"agent-credential\"} 3",
        "brski_issued_total{role=\"registrar\",kind=\"voucher\"} 1",
        "brski_refusals_total{role=\"registrar\",reason=\"revoked\"} 2",
        "brski_requests_total{role=\"registrar\",route=\"/agent/v1/credentials\",method=\"POST\",status=\"200\"} 3",
        "route=\"/.well-known/est/simpleenroll\"",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    assert_eq!(p.conn.get_raw("/readyz", None).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_3_server_challenges_the_owner_who_answers_once() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, gw) = (key(), key());
    let lab = lab(dir.path(), &owner, &gw).await;
    let mut p = proxy(&lab, "proxy-3").await;
    let a = key();
    let id = agent("challenged-1");
    let r = p.request(&a, spec(&id, Model::ServerMediated), None).await;
    assert_eq!(r.status, 202, "{}", r.detail());
    assert!(r.retry_after.is_some());
    let pending_id = json_of(&r)["id"].as_str().unwrap().to_string();
    let gauge = |n: u32| format!("brski_pending_approvals{{role=\"registrar\"}} {n}");
    assert!(lab.registrar.metrics().render().contains(&gauge(1)), "one request waits for its owner");

    // The owner authenticates with its provisioned key (a self-signed certificate).
    let owner = Arc::new(owner);
    let owner_cert = create_ca("CN=alice", owner.as_ref(), Duration::from_secs(3600), None).unwrap();
    let ca = vec![lab.registrar.domain_ca().clone()];
    let mut oc = connect(&lab.registrar_url, &ca, vec![owner_cert], owner.clone()).await;
    let list = json_of(&oc.get_raw("/owner/v1/challenges", None).await.unwrap());
    let entry = list["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == pending_id)
        .expect("listed")
        .clone();
    let ch = verify_challenge(entry["challenge"].as_str().unwrap(), &Trust::now(ca.clone()), unix_now())
        .expect("challenge verifies against the domain");
    assert_eq!(ch.claims.sub, id);
    assert_eq!(ch.claims.aud, OWNER);
    let now = unix_now();
    let claims = OaClaims {
        iss: OWNER.into(),
        sub: id.clone(),
        aud: TD.into(),
        iat: now,
        exp: now + 120,
        jti: new_jti().unwrap(),
        model: Model::ServerMediated,
        agent_jkt: ch.claims.agent_jkt.clone(),
        acr_hash: None,
        chal_hash: Some(ch.hash.clone()),
        nonce: Some(ch.claims.nonce.clone()),
        grant_exp: Some(now + 3600),
        constraints: None,
        org: None,
    };
    // An OA over another challenge is refused and the challenge stays open.
    let mut wrong = claims.clone();
    wrong.chal_hash = Some(shared::agent::jwt::jwt_hash("x.y.z"));
    wrong.jti = new_jti().unwrap();
    let bad = sign_oa(&wrong, owner.as_ref(), &OwnerKeyHeader::Kid("alice-1".into())).unwrap();
    let path = format!("/owner/v1/challenges/{pending_id}");
    let r = oc.post_raw(&path, "application/jwt", None, bad.into_bytes()).await.unwrap();
    refused(&r, 403, "owner-binding");
    let good = sign_oa(&claims, owner.as_ref(), &OwnerKeyHeader::Kid("alice-1".into())).unwrap();
    let r = oc.post_raw(&path, "application/jwt", None, good.clone().into_bytes()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.detail());
    let r = oc.post_raw(&path, "application/jwt", None, good.into_bytes()).await.unwrap();
    refused(&r, 409, "answered");
    assert!(lab.registrar.metrics().render().contains(&gauge(0)), "nothing waits any more");

    let r = p.conn.get_raw(&format!("/agent/v1/credentials/{pending_id}"), None).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.detail());
    let cred = json_of(&r);
    check_credential(
        &lab,
        &mut p,
        &cred,
        &id,
        Some((OWNER, Model::ServerMediated)),
        vec![alice_anchor(&owner)],
    )
    .await;
    // Another proxy may not poll it.
    let mut other = proxy(&lab, "proxy-3b").await;
    let r = other.conn.get_raw(&format!("/agent/v1/credentials/{pending_id}"), None).await.unwrap();
    refused(&r, 403, "not-yours");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_2_gateway_must_be_the_oa_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, gw) = (key(), Arc::new(key()));
    let lab = lab(dir.path(), &owner, &gw).await;
    let mut p = proxy(&lab, "proxy-2").await;
    let gw_cert =
        create_ca("CN=gateway,O=Example Org", gw.as_ref(), Duration::from_secs(3600), None).unwrap();
    let ca = vec![lab.registrar.domain_ca().clone()];
    let mut g = connect(&lab.registrar_url, &ca, vec![gw_cert.clone()], gw.clone()).await;
    let gw_hash = b64::encode_url(&shared::crypto::sha256(&pki::cert_to_der(&gw_cert).unwrap()));

    let a = key();
    let id = agent("gw-owned-1");
    let mut s = spec(&id, Model::OwnerMediated);
    s.owner = Some(GATEWAY.into());
    let (acr, ev) = p.acr(&a, s.clone()).await;
    let mut c = oa(GATEWAY, &acr_of(&acr), Model::OwnerMediated);
    c.org = Some(OrgBinding { cred: gw_hash.clone(), via: p.hash() });
    let oa_text = sign_oa(&c, gw.as_ref(), &OwnerKeyHeader::X5c(vec![gw_cert.clone()])).unwrap();
    let body = json!({"acr": acr, "oa": oa_text, "evidence": ev, "proxy": {"ldevid_sha256": p.hash()}});
    // The proxy itself may not present a gateway's OA.
    let r = p.post(body.clone()).await;
    refused(&r, 403, "owner-binding");

    // Through the gateway (fresh ACR: the first one's jti and nonce are spent).
    let (acr, ev) = p.acr(&a, s.clone()).await;
    let mut c = oa(GATEWAY, &acr_of(&acr), Model::OwnerMediated);
    c.org = Some(OrgBinding { cred: gw_hash.clone(), via: p.hash() });
    let oa_text = sign_oa(&c, gw.as_ref(), &OwnerKeyHeader::X5c(vec![gw_cert.clone()])).unwrap();
    let body = json!({"acr": acr, "oa": oa_text, "evidence": ev, "proxy": {"ldevid_sha256": p.hash()}});
    let r = g
        .post_raw("/agent/v1/credentials", CREDENTIAL_REQUEST_MEDIA_TYPE, None, body.to_string().into_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.detail());
    let anchor = OwnerAnchor { owner: GATEWAY.into(), kid: "gw-1".into(), spki_der: gw.public_key_der() };
    check_credential(&lab, &mut p, &json_of(&r), &id, Some((GATEWAY, Model::OwnerMediated)), vec![anchor])
        .await;

    // org.via naming another proxy is refused.
    let (acr, ev) = p.acr(&a, s).await;
    let mut c = oa(GATEWAY, &acr_of(&acr), Model::OwnerMediated);
    c.org = Some(OrgBinding { cred: gw_hash, via: b64::encode_url(&[0u8; 32]) });
    let oa_text = sign_oa(&c, gw.as_ref(), &OwnerKeyHeader::X5c(vec![gw_cert])).unwrap();
    let body = json!({"acr": acr, "oa": oa_text, "evidence": ev, "proxy": {"ldevid_sha256": p.hash()}});
    let r = g
        .post_raw("/agent/v1/credentials", "application/json", None, body.to_string().into_bytes())
        .await
        .unwrap();
    refused(&r, 403, "owner-binding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_the_check_order() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, gw) = (key(), key());
    let lab = lab(dir.path(), &owner, &gw).await;
    let mut p = proxy(&lab, "proxy-r").await;
    let a = key();
    let id = agent("r-1");

    // Replayed ACR (same jti, same nonce).
    let (acr, ev) = p.acr(&a, spec(&id, Model::None)).await;
    let body = json!({"acr": acr, "oa": null, "evidence": ev});
    assert_eq!(p.post(body.clone()).await.status, 200);
    refused(&p.post(body).await, 403, "replay");

    // Replayed nonce in a new ACR.
    let nonce = p.nonce().await;
    let mk = |n: &str| {
        sign_acr(
            &new_acr_claims(&id, AUD, Some(n.into()), spec(&id, Model::None), unix_now(), 60).unwrap(),
            &a,
        )
        .unwrap()
    };
    let acr1 = mk(&nonce);
    assert_eq!(p.post(json!({"acr": acr1, "evidence": p.evidence(&nonce, &acr1, &id)})).await.status, 200);
    let acr2 = mk(&nonce);
    refused(&p.post(json!({"acr": acr2, "evidence": p.evidence(&nonce, &acr2, &id)})).await, 403, "nonce");
    // A nonce the server never issued.
    let made_up = b64::encode_url(&[7u8; 32]);
    let acr3 = mk(&made_up);
    refused(&p.post(json!({"acr": acr3, "evidence": p.evidence(&made_up, &acr3, &id)})).await, 403, "nonce");

    // Evidence whose eat_nonce does not bind this ACR.
    let (acr, _) = p.acr(&a, spec(&id, Model::None)).await;
    let n = acr_of(&acr).claims.nonce.unwrap();
    let ev = p.evidence_raw(vec![b64::decode_url(&n).unwrap(), vec![9u8; 32]], &id);
    refused(&p.post(json!({"acr": acr, "evidence": ev})).await, 403, "evidence");

    // ACR signed by a key other than its jwk.
    let nonce = p.nonce().await;
    let mut h = serde_json::Map::new();
    h.insert("jwk".into(), Value::Object(shared::agent::jwk::jwk_from_spki(&a.public_key_der()).unwrap()));
    let forged = shared::agent::jwt::sign_jwt(
        &new_acr_claims(&id, AUD, Some(nonce.clone()), spec(&id, Model::None), unix_now(), 60).unwrap(),
        shared::agent::acr::ACR_TYP,
        &h,
        &[],
        &key(),
    )
    .unwrap();
    refused(
        &p.post(json!({"acr": forged, "evidence": p.evidence(&nonce, &forged, &id)})).await,
        403,
        "bad-signature",
    );

    // Agent id outside the proxy's policy.
    let bad_id = "wimse://campus.example/forbidden/x";
    refused(&p.request(&a, spec(bad_id, Model::None), None).await, 403, "policy");

    // A second URI SAN asked for in the CSR.
    let nonce = p.nonce().await;
    let san = [pki::San::Uri(id.clone()), pki::San::Uri(OWNER.into())];
    let csr = pki::build_csr(&x509_cert::name::Name::default(), &san, &a).unwrap();
    let mut claims =
        new_acr_claims(&id, AUD, Some(nonce.clone()), spec(&id, Model::None), unix_now(), 60).unwrap();
    claims.csr = Some(b64::encode_url(&csr));
    let acr = sign_acr(&claims, &a).unwrap();
    refused(
        &p.post(json!({"acr": acr, "evidence": p.evidence(&nonce, &acr, &id)})).await,
        400,
        "second-uri-san",
    );

    // Model 1 refusals: OA over another acr_hash; owner key not provisioned; expired OA;
    // replayed OA jti.
    let (acr, ev) = p.acr(&a, spec(&id, Model::AgentMediated)).await;
    let mut c = oa(OWNER, &acr_of(&acr), Model::AgentMediated);
    c.acr_hash = Some(shared::agent::jwt::jwt_hash("another"));
    let t = sign_oa(&c, &owner, &OwnerKeyHeader::Kid("alice-1".into())).unwrap();
    refused(&p.post(json!({"acr": acr, "oa": t, "evidence": ev})).await, 403, "owner-binding");

    let (acr, ev) = p.acr(&a, spec(&id, Model::AgentMediated)).await;
    let stranger = key();
    let t =
        sign_oa(&oa(OWNER, &acr_of(&acr), Model::AgentMediated), &stranger, &OwnerKeyHeader::Jwk).unwrap();
    refused(&p.post(json!({"acr": acr, "oa": t, "evidence": ev})).await, 403, "unknown-owner");

    let (acr, ev) = p.acr(&a, spec(&id, Model::AgentMediated)).await;
    let mut c = oa(OWNER, &acr_of(&acr), Model::AgentMediated);
    c.iat -= 2000;
    c.exp = c.iat + 300;
    let t = sign_oa(&c, &owner, &OwnerKeyHeader::Kid("alice-1".into())).unwrap();
    refused(&p.post(json!({"acr": acr, "oa": t, "evidence": ev})).await, 403, "time");

    let (acr, ev) = p.acr(&a, spec(&id, Model::AgentMediated)).await;
    let c = oa(OWNER, &acr_of(&acr), Model::AgentMediated);
    let t = sign_oa(&c, &owner, &OwnerKeyHeader::Kid("alice-1".into())).unwrap();
    assert_eq!(p.post(json!({"acr": acr, "oa": t, "evidence": ev})).await.status, 200);
    let (acr2, ev2) = p.acr(&a, spec(&id, Model::AgentMediated)).await;
    let mut c2 = oa(OWNER, &acr_of(&acr2), Model::AgentMediated);
    c2.jti = c.jti.clone();
    let t2 = sign_oa(&c2, &owner, &OwnerKeyHeader::Kid("alice-1".into())).unwrap();
    refused(&p.post(json!({"acr": acr2, "oa": t2, "evidence": ev2})).await, 403, "replay");

    // Wrong media type, and a body over the limit.
    let r = p.conn.post_raw("/agent/v1/credentials", "text/plain", None, b"{}".to_vec()).await.unwrap();
    refused(&r, 415, "unsupported-media-type");
    let r = p
        .conn
        .post_raw("/agent/v1/credentials", "application/json", None, vec![b' '; 100_000])
        .await
        .unwrap();
    refused(&r, 413, "too-large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pledge_without_an_ldevid_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, gw) = (key(), key());
    let lab = lab(dir.path(), &owner, &gw).await;
    // Only the IDevID: the connection is accepted (BRSKI needs that), the agent API is not.
    let (_cfg, id) = lab.pledge("no-ldevid", Format::Cms).await.unwrap();
    let ca = vec![lab.registrar.domain_ca().clone()];
    let mut c = connect(&lab.registrar_url, &ca, id.chain.clone(), id.signer.clone()).await;
    let r = c.get_raw("/agent/v1/nonce", None).await.unwrap();
    refused(&r, 401, "unauthorized");
}

/// A webhook receiver over real TLS: every POSTed body goes into the channel.
async fn webhook_receiver(dir: &Path) -> (String, std::path::PathBuf, tokio::sync::mpsc::Receiver<Value>) {
    use axum::routing::post;
    let ca_key = key();
    let ca_cert = create_ca("CN=owner webhook CA", &ca_key, Duration::from_secs(3600), None).unwrap();
    let ca = pki::CertificateAuthority::new(ca_cert.clone(), Box::new(ca_key)).unwrap();
    let server_key: Arc<dyn Signer> = Arc::new(key());
    let mut profile = pki::Profile::end_entity(Duration::from_secs(3600));
    profile.extended_key_usage = vec![const_oid::db::rfc5280::ID_KP_SERVER_AUTH];
    let spki =
        <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(&server_key.public_key_der()).unwrap();
    let cert = ca
        .issue_for_key(
            spki,
            pki::parse_name("CN=owner").unwrap(),
            &[pki::San::Ip([127, 0, 0, 1].into())],
            &profile,
        )
        .unwrap();
    let ca_file = dir.join("webhook-ca.pem");
    std::fs::write(&ca_file, pki::cert_to_pem(&ca_cert).unwrap()).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body.0).await;
                "ok"
            }
        }),
    );
    let chain = vec![rustls::pki_types::CertificateDer::from(pki::cert_to_der(&cert).unwrap())];
    let tls = Arc::new(est::http::server_tls_config_with_signer(chain, server_key).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = est::http::serve(listener, tls, app).await;
    });
    (url, ca_file, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_3_challenge_pushed_by_webhook_and_expiring_unanswered() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, gw) = (Arc::new(key()), key());
    let (url, ca_file, mut rx) = webhook_receiver(dir.path()).await;
    let alice = format!("webhook = \"{url}\"\nwebhook_ca = \"{}\"", ca_file.display());
    let lab = lab_with(dir.path(), &owner, &gw, "challenge_ttl_secs = 1", &alice).await;
    let mut p = proxy(&lab, "proxy-w").await;
    let id = agent("late-1");
    let r = p.request(&key(), spec(&id, Model::ServerMediated), None).await;
    assert_eq!(r.status, 202, "{}", r.detail());
    let pending_id = json_of(&r)["id"].as_str().unwrap().to_string();
    let pushed =
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("webhook in time").unwrap();
    assert_eq!(pushed["id"], pending_id.as_str());
    let ca = vec![lab.registrar.domain_ca().clone()];
    let ch =
        verify_challenge(pushed["challenge"].as_str().unwrap(), &Trust::now(ca.clone()), unix_now()).unwrap();
    assert_eq!(pushed["response_uri"], format!("/owner/v1/challenges/{pending_id}"));

    // Nobody answers within the challenge's second: the answer and the poll are refused.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let now = unix_now();
    let claims = OaClaims {
        iss: OWNER.into(),
        sub: id.clone(),
        aud: TD.into(),
        iat: now,
        exp: now + 60,
        jti: new_jti().unwrap(),
        model: Model::ServerMediated,
        agent_jkt: ch.claims.agent_jkt.clone(),
        acr_hash: None,
        chal_hash: Some(ch.hash.clone()),
        nonce: Some(ch.claims.nonce.clone()),
        grant_exp: None,
        constraints: None,
        org: None,
    };
    let oa = sign_oa(&claims, owner.as_ref(), &OwnerKeyHeader::Kid("alice-1".into())).unwrap();
    let owner_cert = create_ca("CN=alice", owner.as_ref(), Duration::from_secs(3600), None).unwrap();
    let mut oc = connect(&lab.registrar_url, &ca, vec![owner_cert], owner.clone()).await;
    let r = oc
        .post_raw(&format!("/owner/v1/challenges/{pending_id}"), "application/jwt", None, oa.into_bytes())
        .await
        .unwrap();
    refused(&r, 403, "time");
    let r = p.conn.get_raw(&format!("/agent/v1/credentials/{pending_id}"), None).await.unwrap();
    refused(&r, 403, "time");
}

/// The expected value of PCR 16 in the attestation policy of the TPM tests.
const GOOD_PCR16: [u8; 32] = [0x16; 32];

/// A device's TPM in software: an attestation key certified by the manufacturer CA the policy
/// lists in `ak_anchors` (EKU tcg-kp-AIKCertificate, subject serialNumber = the device's), and
/// the PCR values it will quote.
struct SoftTpm {
    ak: SoftwareKey,
    ak_cert: x509_cert::Certificate,
    pcrs: BTreeMap<u8, Vec<u8>>,
}

/// A TPM manufacturer CA, its certificate written to `dir/tpm-ca.pem`.
fn tpm_manufacturer(dir: &Path) -> (pki::CertificateAuthority, std::path::PathBuf) {
    let key = key();
    let cert = create_ca("CN=Example TPM Manufacturer CA", &key, Duration::from_secs(3600), None).unwrap();
    let file = dir.join("tpm-ca.pem");
    std::fs::write(&file, pki::cert_to_pem(&cert).unwrap()).unwrap();
    (pki::CertificateAuthority::new(cert, Box::new(key)).unwrap(), file)
}

/// A software TPM of device `serial` whose PCR 16 holds `pcr16`.
fn soft_tpm(ca: &pki::CertificateAuthority, serial: &str, pcr16: [u8; 32]) -> SoftTpm {
    let ak = key();
    let mut profile = pki::Profile::end_entity(Duration::from_secs(3600));
    profile.extended_key_usage = vec![TCG_KP_AIK_CERTIFICATE];
    let spki = <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(&ak.public_key_der()).unwrap();
    let subject = pki::name_with_serial("CN=TPM attestation key", serial).unwrap();
    let ak_cert = ca.issue_for_key(spki, subject, &[], &profile).unwrap();
    let pcrs = BTreeMap::from([(0u8, vec![0xa0; 32]), (7, vec![0xa7; 32]), (16, pcr16.to_vec())]);
    SoftTpm { ak, ak_cert, pcrs }
}

impl SoftTpm {
    /// TPM2_Quote over the PCRs with qualifying data `extra_data`, signed by the AK.
    fn quote(&self, extra_data: &[u8]) -> TpmQuote {
        let indices: Vec<u8> = self.pcrs.keys().copied().collect();
        let attest = marshal_quote_attest(
            b"\x00\x0bak-name",
            extra_data,
            42_000,
            5,
            0,
            1,
            &indices,
            &pcr_digest(&self.pcrs),
        );
        let raw = self.ak.sign(&attest).unwrap();
        TpmQuote {
            signature: shared::crypto::raw_to_der(Algorithm::Es256, &raw).unwrap(),
            attest,
            hash_alg: TPM_ALG_SHA256,
            pcrs: self.pcrs.clone(),
            ak_chain: vec![pki::cert_to_der(&self.ak_cert).unwrap()],
        }
    }
}

/// A request for `id` (model none) with a fresh nonce whose evidence carries the EAT and, when
/// `tpm` is given, its quote; `quote_for` overrides the (nonce, acr_hash) the quote binds.
async fn tpm_request(
    p: &mut Proxy,
    a: &SoftwareKey,
    id: &str,
    tpm: Option<&SoftTpm>,
    quote_for: Option<(&[u8], &[u8])>,
) -> Value {
    let (acr, ev) = p.acr(a, spec(id, Model::None)).await;
    let nonce = b64::decode_url(&acr_of(&acr).claims.nonce.unwrap()).unwrap();
    let acr_hash = b64::decode_url(&shared::agent::jwt::jwt_hash(&acr)).unwrap();
    let eat = eat_from_cmw(&ev).unwrap();
    let evidence = match tpm {
        None => cmw_collection(&eat, None),
        Some(t) => {
            let (n, h) = quote_for.unwrap_or((&nonce, &acr_hash));
            let quote = t.quote(&quote_nonce(n, h));
            cmw_collection(&eat, Some((TPM_QUOTE_MEDIA_TYPE, &quote.to_cbor())))
        }
    };
    json!({"acr": acr, "evidence": evidence})
}

/// The problem detail of a refusal with `status` and `reason`.
fn refusal_detail(r: &RawReply, status: u16, reason: &str) -> String {
    refused(r, status, reason);
    json_of(r)["detail"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_quote_appraised_against_the_attestation_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, gw) = (key(), key());
    let (manufacturer, ca_file) = tpm_manufacturer(dir.path());
    let top = format!(
        "[attestation]\nak_anchors = \"{}\"\n[attestation.pcrs]\n\"16\" = \"{}\"\n",
        ca_file.display(),
        hex::encode(GOOD_PCR16)
    );
    let lab = lab_with(dir.path(), &owner, &gw, &top, "").await;
    let mut p = proxy(&lab, "proxy-tpm").await;
    let serial = pki::serial_number(&p.chain[0]).unwrap();
    let tpm = soft_tpm(&manufacturer, &serial, GOOD_PCR16);
    let a = key();

    // A valid quote binding this request, with the PCR the policy wants: issued, and the
    // appraisal is in the audit record.
    let id = agent("tpm-1");
    let body = tpm_request(&mut p, &a, &id, Some(&tpm), None).await;
    let r = p.post(body).await;
    assert_eq!(r.status, 200, "{}", r.detail());
    check_credential(&lab, &mut p, &json_of(&r), &id, None, vec![]).await;
    let audit = audit_actions(&lab, &id).await;
    let (_, detail) = audit.iter().find(|(a, _)| a == "agent.credential.issued").expect("issued audited");
    assert_eq!(detail["tpm_quote"]["device_serial"], serial.as_str());
    assert_eq!(detail["tpm_quote"]["pcrs"]["16"], hex::encode(GOOD_PCR16));
    assert_eq!(detail["tpm_quote"]["pcrs"]["7"], hex::encode([0xa7; 32]));
    assert_eq!(detail["tpm_quote"]["reset_count"], 5);

    // No quote and require_quote = false: issued, nothing appraised.
    let id = agent("tpm-none");
    let body = tpm_request(&mut p, &a, &id, None, None).await;
    let r = p.post(body).await;
    assert_eq!(r.status, 200, "{}", r.detail());
    let audit = audit_actions(&lab, &id).await;
    assert!(audit.iter().any(|(a, d)| a == "agent.credential.issued" && d["tpm_quote"].is_null()));

    // PCR 16 differs from the policy (a correctly signed quote of a device in another state).
    let id = agent("tpm-2");
    let bad_state = soft_tpm(&manufacturer, &serial, [0x3f; 32]);
    let body = tpm_request(&mut p, &a, &id, Some(&bad_state), None).await;
    let detail = refusal_detail(&p.post(body).await, 403, "evidence");
    let want = format!("TPM quote: PCR 16 is {} where policy wants {}", "3f".repeat(32), "16".repeat(32));
    assert!(detail.contains(&want), "{detail}");
    let audit = audit_actions(&lab, &id).await;
    assert!(
        audit.iter().any(|(a, d)| a == "agent.credential.refused"
            && d["reason"] == "evidence"
            && d["detail"].as_str().is_some_and(|s| s.contains(&want))),
        "refusal audited: {audit:?}"
    );

    // A quote made for another request (another server nonce).
    let id = agent("tpm-3");
    let other_nonce = [0x55u8; 32];
    let other_hash = [0x66u8; 32];
    let body = tpm_request(&mut p, &a, &id, Some(&tpm), Some((&other_nonce, &other_hash))).await;
    let detail = refusal_detail(&p.post(body).await, 403, "evidence");
    assert!(detail.contains("TPM quote: extraData does not bind this request"), "{detail}");

    // An attestation key certified for another device.
    let id = agent("tpm-4");
    let stolen = soft_tpm(&manufacturer, "another-device", GOOD_PCR16);
    let body = tpm_request(&mut p, &a, &id, Some(&stolen), None).await;
    let detail = refusal_detail(&p.post(body).await, 403, "evidence");
    assert!(
        detail.contains("TPM quote: the attestation key certificate is for device \"another-device\""),
        "{detail}"
    );

    // An attestation key from a manufacturer the policy does not list.
    let id = agent("tpm-5");
    let rogue_dir = tempfile::tempdir().unwrap();
    let (rogue, _) = tpm_manufacturer(rogue_dir.path());
    let body = tpm_request(&mut p, &a, &id, Some(&soft_tpm(&rogue, &serial, GOOD_PCR16)), None).await;
    let detail = refusal_detail(&p.post(body).await, 403, "evidence");
    assert!(detail.contains("TPM quote: attestation key certificate path"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_quote_required_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, gw) = (key(), key());
    let (manufacturer, ca_file) = tpm_manufacturer(dir.path());
    let top = format!("[attestation]\nak_anchors = \"{}\"\nrequire_quote = true\n", ca_file.display());
    let lab = lab_with(dir.path(), &owner, &gw, &top, "").await;
    let mut p = proxy(&lab, "proxy-tpm-req").await;
    let a = key();
    let id = agent("tpm-req-1");
    let body = tpm_request(&mut p, &a, &id, None, None).await;
    let detail = refusal_detail(&p.post(body).await, 403, "evidence");
    assert!(detail.contains("TPM quote required by policy"), "{detail}");
    // The same proxy with a quote (no PCR policy: any values) is issued.
    let tpm = soft_tpm(&manufacturer, &pki::serial_number(&p.chain[0]).unwrap(), [0u8; 32]);
    let body = tpm_request(&mut p, &a, &id, Some(&tpm), None).await;
    let r = p.post(body).await;
    assert_eq!(r.status, 200, "{}", r.detail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_quote_not_appraised_without_an_attestation_table() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, gw) = (key(), key());
    let lab = lab(dir.path(), &owner, &gw).await;
    let mut p = proxy(&lab, "proxy-tpm-off").await;
    let (manufacturer, _) = tpm_manufacturer(dir.path());
    // A quote that would fail appraisal (another device, another request) is ignored.
    let tpm = soft_tpm(&manufacturer, "another-device", [0u8; 32]);
    let id = agent("tpm-off-1");
    let body = tpm_request(&mut p, &key(), &id, Some(&tpm), Some((&[1u8; 32], &[2u8; 32]))).await;
    let r = p.post(body).await;
    assert_eq!(r.status, 200, "{}", r.detail());
    let audit = audit_actions(&lab, &id).await;
    assert!(audit.iter().any(|(a, d)| a == "agent.credential.issued" && d["tpm_quote"].is_null()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_come_in_batches_each_single_use() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, gw) = (key(), key());
    let lab = lab(dir.path(), &owner, &gw).await;
    let mut p = proxy(&lab, "proxy-batch").await;
    let r = p.conn.get_raw("/agent/v1/nonce?count=16", None).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.detail());
    let body = json_of(&r);
    let all: Vec<String> =
        body["nonces"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
    assert_eq!(all.len(), 16);
    assert_eq!(body["nonce"], all[0].as_str());
    assert_eq!(all.iter().collect::<std::collections::HashSet<_>>().len(), 16, "all different");
    // Each one of the batch works once.
    let a = key();
    let id = agent("batch-1");
    for n in &all[..2] {
        let acr = sign_acr(
            &new_acr_claims(&id, AUD, Some(n.clone()), spec(&id, Model::None), unix_now(), 60).unwrap(),
            &a,
        )
        .unwrap();
        assert_eq!(p.post(json!({"acr": acr, "evidence": p.evidence(n, &acr, &id)})).await.status, 200);
        let again = sign_acr(
            &new_acr_claims(&id, AUD, Some(n.clone()), spec(&id, Model::None), unix_now(), 60).unwrap(),
            &a,
        )
        .unwrap();
        refused(&p.post(json!({"acr": again, "evidence": p.evidence(n, &again, &id)})).await, 403, "nonce");
    }
    for bad in ["count=0", "count=33", "count=x", "n=2"] {
        refused(&p.conn.get_raw(&format!("/agent/v1/nonce?{bad}"), None).await.unwrap(), 400, "malformed");
    }
}
