//! The agent wire formats of spec/agent-issuance.md: each object signs and verifies, and each
//! refusal the Identity Server and relying parties depend on is refused with its reason.

use der::Decode;
use serde_json::{json, Map, Value};
use shared::agent::binding::{
    generalized_time, owner_general_name, AgentOwnerBinding, BindingModel, APPROVAL_FORMAT_JWS,
};
use shared::agent::cert::{issue_agent_certificate, AgentCertRequest};
use shared::agent::challenge::{
    sign_challenge, verify_challenge, AttestationStatus, ChallengeClaims, Requested,
};
use shared::agent::evidence::{
    cmw_collection, eat_from_cmw, sign_eat, verify_eat, AgentSubmodule, EvidenceClaims,
};
use shared::agent::jwk::{jwk_from_spki, spki_thumbprint};
use shared::agent::jwt::{jwt_hash, new_jti, sign_jwt, unix_now};
use shared::agent::oa::{oa_max_life, OaBinding, OaCheck};
use shared::agent::wit::{sign_wpt, verify_wpt, Confirmation, OwnerClaim};
use shared::agent::*;
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki::{create_ca, CertificateAuthority, Profile, San};
use shared::signed::Trust;
use std::time::Duration;
use x509_cert::Certificate;

const TD: &str = "campus.example";
const AUD: &str = "wimse://campus.example";
const AGENT: &str = "wimse://campus.example/agent/build-7";
const OWNER: &str = "mailto:alice@example.com";

fn key() -> SoftwareKey {
    SoftwareKey::generate(Algorithm::Es256).unwrap()
}

fn spec(model: Model) -> CredentialSpec {
    CredentialSpec {
        id: Some(AGENT.into()),
        formats: vec!["x509".into(), "wit".into()],
        ttl: 600,
        owner: (model != Model::None).then(|| OWNER.to_string()),
        model,
    }
}

fn acr_claims(model: Model, now: i64) -> AcrClaims {
    acr::new_acr_claims(AGENT, AUD, Some("bm9uY2Utbm9uY2Utbm9uY2U".into()), spec(model), now, 60).unwrap()
}

fn ca() -> CertificateAuthority {
    let k = key();
    let cert = create_ca("CN=Campus Domain CA", &k, Duration::from_secs(86400), None).unwrap();
    CertificateAuthority::new(cert, Box::new(k)).unwrap()
}

fn anchors_for(owner_key: &SoftwareKey) -> OwnerAnchors {
    OwnerAnchors::new(vec![OwnerAnchor {
        owner: OWNER.into(),
        kid: "alice-1".into(),
        spki_der: owner_key.public_key_der(),
    }])
}

fn oa_claims(acr: &Acr, model: Model, now: i64) -> OaClaims {
    OaClaims {
        iss: OWNER.into(),
        sub: AGENT.into(),
        aud: TD.into(),
        iat: now,
        exp: now + 300,
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

fn check<'a>(acr: &'a Acr, now: i64) -> OaCheck<'a> {
    OaCheck {
        audience: TD,
        now,
        agent_id: AGENT,
        agent_jkt: &acr.jkt,
        model: Model::AgentMediated,
        owner: OWNER,
        binding: OaBinding::Acr(&acr.hash),
    }
}

#[test]
fn acr_round_trip_binds_key_and_hash() {
    let agent = key();
    let now = unix_now();
    let text = sign_acr(&acr_claims(Model::None, now), &agent).unwrap();
    let acr = verify_acr(&text, AUD, now).unwrap();
    assert_eq!(acr.spki_der, agent.public_key_der());
    assert_eq!(acr.hash, jwt_hash(&text));
    assert_eq!(acr.jkt, spki_thumbprint(&agent.public_key_der()).unwrap());
    assert_eq!(acr.agent_id.as_ref().unwrap().as_str(), AGENT);
}

#[test]
fn acr_signed_by_another_key_than_its_jwk_is_refused() {
    let (agent, thief) = (key(), key());
    let mut header = Map::new();
    header.insert("jwk".into(), Value::Object(jwk_from_spki(&agent.public_key_der()).unwrap()));
    let now = unix_now();
    let text = sign_jwt(&acr_claims(Model::None, now), acr::ACR_TYP, &header, &[], &thief).unwrap();
    let err = verify_acr(&text, AUD, now).unwrap_err();
    assert_eq!(err.reason(), "bad-signature", "{err}");
}

#[test]
fn acr_window_audience_nonce_and_csr_are_checked() {
    let agent = key();
    let now = unix_now();
    let mut c = acr_claims(Model::None, now - 600);
    let err = verify_acr(&sign_acr(&c, &agent).unwrap(), AUD, now).unwrap_err();
    assert_eq!(err.reason(), "time", "expired: {err}");
    c = acr_claims(Model::None, now);
    c.exp = now + 3600;
    assert_eq!(verify_acr(&sign_acr(&c, &agent).unwrap(), AUD, now).unwrap_err().reason(), "time");
    c = acr_claims(Model::None, now);
    assert_eq!(
        verify_acr(&sign_acr(&c, &agent).unwrap(), "wimse://other", now).unwrap_err().reason(),
        "wrong-audience"
    );
    c.nonce = None;
    assert_eq!(verify_acr(&sign_acr(&c, &agent).unwrap(), AUD, now).unwrap_err().reason(), "nonce");
    c = acr_claims(Model::None, now);
    let other = key();
    let csr = shared::pki::build_csr(&shared::pki::parse_name("CN=x").unwrap(), &[], &other).unwrap();
    c.csr = Some(shared::b64::encode_url(&csr));
    assert_eq!(verify_acr(&sign_acr(&c, &agent).unwrap(), AUD, now).unwrap_err().reason(), "key-mismatch");
    c = acr_claims(Model::None, now);
    c.req.owner = Some(OWNER.into());
    assert_eq!(verify_acr(&sign_acr(&c, &agent).unwrap(), AUD, now).unwrap_err().reason(), "malformed");
}

#[test]
fn offline_model_1_acr_may_omit_the_nonce_and_live_ten_minutes() {
    let agent = key();
    let now = unix_now();
    let mut c = acr_claims(Model::AgentMediated, now);
    c.nonce = None;
    c.exp = now + 500;
    assert!(verify_acr(&sign_acr(&c, &agent).unwrap(), AUD, now).is_ok());
}

#[test]
fn oa_by_kid_jwk_and_x5c_verifies_and_binds_the_acr() {
    let (agent, owner) = (key(), key());
    let now = unix_now();
    let acr =
        verify_acr(&sign_acr(&acr_claims(Model::AgentMediated, now), &agent).unwrap(), AUD, now).unwrap();
    let anchors = anchors_for(&owner);
    let owner_ca = ca();
    let owner_cert = owner_ca
        .issue_for_key(
            spki::SubjectPublicKeyInfoOwned::from_der(&owner.public_key_der()).unwrap(),
            shared::pki::parse_name("CN=alice").unwrap(),
            &[],
            &Profile::end_entity(Duration::from_secs(3600)),
        )
        .unwrap();
    for header in
        [OwnerKeyHeader::Kid("alice-1".into()), OwnerKeyHeader::Jwk, OwnerKeyHeader::X5c(vec![owner_cert])]
    {
        let text = sign_oa(&oa_claims(&acr, Model::AgentMediated, now), &owner, &header).unwrap();
        let oa = verify_oa(&text, &anchors, &check(&acr, now)).unwrap();
        assert_eq!(oa.claims.iss, OWNER);
        assert_eq!(oa.owner_key.kid, "alice-1");
    }
}

#[test]
fn oa_refusals() {
    let (agent, owner, stranger) = (key(), key(), key());
    let now = unix_now();
    let acr =
        verify_acr(&sign_acr(&acr_claims(Model::AgentMediated, now), &agent).unwrap(), AUD, now).unwrap();
    let anchors = anchors_for(&owner);
    let sign = |c: &OaClaims, k: &SoftwareKey| sign_oa(c, k, &OwnerKeyHeader::Jwk).unwrap();

    let err =
        verify_oa(&sign(&oa_claims(&acr, Model::AgentMediated, now), &stranger), &anchors, &check(&acr, now));
    assert_eq!(err.unwrap_err().reason(), "unknown-owner");

    let mut c = oa_claims(&acr, Model::AgentMediated, now);
    c.acr_hash = Some(jwt_hash("another.acr.value"));
    assert_eq!(
        verify_oa(&sign(&c, &owner), &anchors, &check(&acr, now)).unwrap_err().reason(),
        "owner-binding"
    );

    c = oa_claims(&acr, Model::AgentMediated, now);
    c.agent_jkt = spki_thumbprint(&stranger.public_key_der()).unwrap();
    assert_eq!(
        verify_oa(&sign(&c, &owner), &anchors, &check(&acr, now)).unwrap_err().reason(),
        "owner-binding"
    );

    c = oa_claims(&acr, Model::AgentMediated, now - 1000);
    assert_eq!(verify_oa(&sign(&c, &owner), &anchors, &check(&acr, now)).unwrap_err().reason(), "time");

    c = oa_claims(&acr, Model::OwnerMediated, now);
    c.exp = now + oa_max_life(Model::OwnerMediated) + 100;
    let mut chk = check(&acr, now);
    chk.model = Model::OwnerMediated;
    assert_eq!(verify_oa(&sign(&c, &owner), &anchors, &chk).unwrap_err().reason(), "time");

    c = oa_claims(&acr, Model::AgentMediated, now);
    c.aud = "other.example".into();
    assert_eq!(
        verify_oa(&sign(&c, &owner), &anchors, &check(&acr, now)).unwrap_err().reason(),
        "wrong-audience"
    );
}

#[test]
fn challenge_verifies_against_the_domain_and_not_otherwise() {
    let domain = ca();
    let server_key = key();
    let server_cert = domain
        .issue_for_key(
            spki::SubjectPublicKeyInfoOwned::from_der(&server_key.public_key_der()).unwrap(),
            shared::pki::parse_name("CN=registrar").unwrap(),
            &[],
            &Profile::end_entity(Duration::from_secs(3600)),
        )
        .unwrap();
    let now = unix_now();
    let claims = ChallengeClaims {
        iss: "https://registrar.campus.example".into(),
        aud: OWNER.into(),
        sub: AGENT.into(),
        iat: now,
        exp: now + 120,
        jti: new_jti().unwrap(),
        nonce: shared::b64::encode_url(&[9u8; 32]),
        acr_hash: jwt_hash("a.b.c"),
        agent_jkt: spki_thumbprint(&key().public_key_der()).unwrap(),
        proxy: jwt_hash("ldevid"),
        attestation: AttestationStatus { status: "affirming".into() },
        requested: Requested { ttl: 600, formats: vec!["x509".into()] },
        binding_message: "build-7 on host ci-3".into(),
        response_uri: "https://registrar.campus.example/owner/v1/challenges/1".into(),
    };
    let text = sign_challenge(&claims, &server_key, &[server_cert], "reg-1").unwrap();
    let ok = verify_challenge(&text, &Trust::now(vec![domain.certificate().clone()]), now).unwrap();
    assert_eq!(ok.claims, claims);
    assert_eq!(ok.hash, jwt_hash(&text));
    let other = ca();
    assert_eq!(
        verify_challenge(&text, &Trust::now(vec![other.certificate().clone()]), now).unwrap_err().reason(),
        "chain"
    );
    assert_eq!(
        verify_challenge(&text, &Trust::now(vec![domain.certificate().clone()]), now + 400)
            .unwrap_err()
            .reason(),
        "time"
    );
}

fn relying(domain: &CertificateAuthority, owner: &SoftwareKey, wit_keys: Vec<WitKey>) -> RelyingTrust {
    RelyingTrust {
        domain_anchors: vec![domain.certificate().clone()],
        wit_keys,
        owner_anchors: anchors_for(owner),
        trust_domain: Some(TD.into()),
        at: time::OffsetDateTime::now_utc(),
    }
}

fn binding(oa_text: &str, owner: &SoftwareKey, now: i64) -> AgentOwnerBinding {
    AgentOwnerBinding {
        version: 1,
        model: BindingModel::AgentMediated,
        owner_id: owner_general_name(OWNER).unwrap(),
        owner_key: spki::SubjectPublicKeyInfoOwned::from_der(&owner.public_key_der()).unwrap(),
        approved_at: generalized_time(now).unwrap(),
        grant_not_after: generalized_time(now + 86400).unwrap(),
        approval_format: APPROVAL_FORMAT_JWS,
        approval: der::asn1::OctetString::new(oa_text.as_bytes().to_vec()).unwrap(),
        org_credential_hash: None,
        challenge_hash: None,
    }
}

#[test]
fn dual_identity_certificate_and_wit_verify_for_a_relying_party() {
    let (agent, owner, wit_key) = (key(), key(), key());
    let domain = ca();
    let now = unix_now();
    let acr =
        verify_acr(&sign_acr(&acr_claims(Model::AgentMediated, now), &agent).unwrap(), AUD, now).unwrap();
    let oa_text =
        sign_oa(&oa_claims(&acr, Model::AgentMediated, now), &owner, &OwnerKeyHeader::Kid("alice-1".into()))
            .unwrap();
    let b = binding(&oa_text, &owner, now);
    let id = AgentId::parse(AGENT).unwrap();
    let req = AgentCertRequest {
        agent_id: &id,
        ttl: Duration::from_secs(3600),
        subject: None,
        server_auth: false,
        binding: Some(&b),
    };
    let cert = issue_agent_certificate(&domain, &acr.spki_der, &req).unwrap();
    let wk = vec![WitKey { kid: "wit-1".into(), spki_der: wit_key.public_key_der() }];
    let trust = relying(&domain, &owner, wk.clone());
    let who = verify_agent_certificate(std::slice::from_ref(&cert), &trust).unwrap();
    assert_eq!(who.agent_id.as_str(), AGENT);
    assert_eq!(who.owner.as_ref().unwrap().id, OWNER);
    assert_eq!(who.owner.as_ref().unwrap().model, Model::AgentMediated);

    // A relying party that does not hold the owner's key refuses the owner binding.
    let mut stranger = trust.clone();
    stranger.owner_anchors = OwnerAnchors::default();
    assert_eq!(
        verify_agent_certificate(std::slice::from_ref(&cert), &stranger).unwrap_err().reason(),
        "unknown-owner"
    );

    let wit_claims = WitClaims {
        iss: AUD.into(),
        sub: AGENT.into(),
        iat: now,
        nbf: now,
        exp: now + 3600,
        jti: new_jti().unwrap(),
        cnf: Confirmation { jwk: acr.jwk.clone() },
        owner: Some(OwnerClaim {
            id: OWNER.into(),
            jkt: acr.jkt.clone(),
            model: Model::AgentMediated,
            grant_exp: now + 86400,
            oa: oa_text,
        }),
    };
    let wit = sign_wit(&wit_claims, &wit_key, "wit-1").unwrap();
    let who = verify_wit_credential(&wit, &trust).unwrap();
    assert_eq!(who.owner.as_ref().unwrap().id, OWNER);
    let verified = verify_wit(&wit, &wk, now).unwrap();
    let wpt = sign_wpt(&wit, "https://svc.other.example", &agent, now, 60).unwrap();
    assert!(verify_wpt(&wpt, &wit, &verified, "https://svc.other.example", now).is_ok());
    assert_eq!(
        verify_wpt(&wpt, &wit, &verified, "https://elsewhere", now).unwrap_err().reason(),
        "wrong-audience"
    );
    let forged = sign_wpt(&wit, "https://svc.other.example", &key(), now, 60).unwrap();
    assert_eq!(
        verify_wpt(&forged, &wit, &verified, "https://svc.other.example", now).unwrap_err().reason(),
        "bad-signature"
    );
}

#[test]
fn certificate_with_two_uri_sans_is_not_an_agent_credential() {
    let domain = ca();
    let agent = key();
    let cert = domain
        .issue_for_key(
            spki::SubjectPublicKeyInfoOwned::from_der(&agent.public_key_der()).unwrap(),
            Default::default(),
            &[San::Uri(AGENT.into()), San::Uri(OWNER.into())],
            &Profile::end_entity(Duration::from_secs(3600)),
        )
        .unwrap();
    let trust = relying(&domain, &key(), Vec::new());
    assert_eq!(verify_agent_certificate(&[cert], &trust).unwrap_err().reason(), "policy");
}

#[test]
fn wit_with_an_audience_or_unknown_kid_is_refused() {
    let (agent, wit_key) = (key(), key());
    let now = unix_now();
    let wk = vec![WitKey { kid: "wit-1".into(), spki_der: wit_key.public_key_der() }];
    let claims = json!({"iss": AUD, "sub": AGENT, "iat": now, "nbf": now, "exp": now + 60, "jti": new_jti().unwrap(),
        "cnf": {"jwk": jwk_from_spki(&agent.public_key_der()).unwrap()}, "aud": "x"});
    let mut h = Map::new();
    h.insert("kid".into(), json!("wit-1"));
    let with_aud = sign_jwt(&claims, wit::WIT_TYP, &h, &[], &wit_key).unwrap();
    assert_eq!(verify_wit(&with_aud, &wk, now).unwrap_err().reason(), "malformed");
    h.insert("kid".into(), json!("nope"));
    let unknown = sign_jwt(&claims, wit::WIT_TYP, &h, &[], &wit_key).unwrap();
    assert_eq!(verify_wit(&unknown, &wk, now).unwrap_err().reason(), "chain");
}

fn proxy_cert(domain: &CertificateAuthority, k: &SoftwareKey) -> Certificate {
    domain
        .issue_for_key(
            spki::SubjectPublicKeyInfoOwned::from_der(&k.public_key_der()).unwrap(),
            shared::pki::parse_name("CN=proxy,serialNumber=SN-1").unwrap(),
            &[],
            &Profile::end_entity(Duration::from_secs(3600)),
        )
        .unwrap()
}

#[test]
fn evidence_signed_by_the_proxy_binds_nonce_and_acr() {
    let domain = ca();
    let (pk, other) = (key(), key());
    let cert = proxy_cert(&domain, &pk);
    let claims = EvidenceClaims {
        nonces: vec![vec![1u8; 32], vec![2u8; 32]],
        iat: unix_now(),
        ueid: vec![1; 33],
        profile: shared::agent::evidence::EAT_PROFILE.into(),
        submods: vec![AgentSubmodule {
            agent_id: AGENT.into(),
            swname: Some("/usr/bin/agent".into()),
            exe_sha256: Some(vec![5; 32]),
            uid: Some(1000),
            pid: Some(4242),
            ..Default::default()
        }],
        ..Default::default()
    };
    let eat = sign_eat(&claims, &pk, std::slice::from_ref(&cert)).unwrap();
    let cmw = cmw_collection(&eat, None);
    let back = verify_eat(&eat_from_cmw(&cmw).unwrap(), &cert).unwrap();
    assert_eq!(*back, claims);
    assert!(back.binds(&[1u8; 32], &[2u8; 32]));
    assert!(!back.binds(&[1u8; 32], &[3u8; 32]));
    let other_cert = proxy_cert(&domain, &other);
    assert_eq!(verify_eat(&eat, &other_cert).unwrap_err().reason(), "evidence");
    let forged = sign_eat(&claims, &other, std::slice::from_ref(&cert)).unwrap();
    assert_eq!(verify_eat(&forged, &cert).unwrap_err().reason(), "evidence");
}

#[test]
fn owner_key_filed_under_another_kid_still_verifies_and_a_stranger_does_not() {
    let (agent, owner, stranger) = (key(), key(), key());
    let now = unix_now();
    let acr =
        verify_acr(&sign_acr(&acr_claims(Model::AgentMediated, now), &agent).unwrap(), AUD, now).unwrap();
    let text =
        sign_oa(&oa_claims(&acr, Model::AgentMediated, now), &owner, &OwnerKeyHeader::Kid("alice-1".into()))
            .unwrap();
    // The relying party filed alice's key as "rp-alice"; a second key of hers does not verify.
    let rp = OwnerAnchors::new(vec![
        OwnerAnchor { owner: OWNER.into(), kid: "old".into(), spki_der: stranger.public_key_der() },
        OwnerAnchor { owner: OWNER.into(), kid: "rp-alice".into(), spki_der: owner.public_key_der() },
    ]);
    let (_, anchor) = shared::agent::oa::verify_oa_with_anchors(&text, &rp).unwrap();
    assert_eq!(anchor.kid, "rp-alice");
    let only_stranger = OwnerAnchors::new(vec![OwnerAnchor {
        owner: OWNER.into(),
        kid: "alice-1".into(),
        spki_der: stranger.public_key_der(),
    }]);
    assert_eq!(
        shared::agent::oa::verify_oa_with_anchors(&text, &only_stranger).unwrap_err().reason(),
        "bad-signature"
    );
}
