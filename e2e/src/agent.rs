//! A test Identity Proxy for the agent-issuance tests: a pledge bootstrapped by BRSKI in a
//! [`Lab`], holding an mTLS connection to the registrar with its LDevID, that builds ACRs with
//! fresh server nonces and evidence signed by its LDevID key, like `brski pledge serve` does.

use brski::lab::Lab;
use est::client::{EstClient, EstConnection, RawReply};
use est::tls::{client_config, ServerTrust};
use serde::Serialize;
use serde_json::Value;
use shared::agent::acr::new_acr_claims;
use shared::agent::evidence::{cmw_collection, sign_eat, AgentSubmodule, EvidenceClaims, EAT_PROFILE};
use shared::agent::jwt::unix_now;
use shared::agent::wire::{CredentialRequest, NonceReply, ProxyRef};
use shared::agent::{sign_acr, CredentialSpec};
use shared::b64;
use shared::keys::{load_key_file, Signer, SoftwareKey};
use shared::pki;
use shared::signed::Format;
use std::sync::Arc;
use std::time::Duration;
use x509_cert::Certificate;

/// A bootstrapped pledge acting as the Identity Proxy.
pub struct Proxy {
    /// Its mTLS connection to the registrar.
    pub conn: EstConnection,
    /// Its LDevID chain (leaf first).
    pub chain: Vec<Certificate>,
    /// Its LDevID key.
    pub key: Arc<SoftwareKey>,
    /// The domain CA certificates it trusts.
    pub ca: Vec<Certificate>,
    /// The ACR audience (`wimse://<trust-domain>`).
    pub aud: String,
}

/// Opens an mTLS connection to `url`, trusting `ca`, presenting `chain` with `key`.
pub async fn connect(
    url: &str,
    ca: &[Certificate],
    chain: Vec<Certificate>,
    key: Arc<dyn Signer>,
) -> EstConnection {
    let tls = client_config(&ServerTrust::Explicit(ca.to_vec()), Some((chain, key))).unwrap();
    let client = EstClient::new(url, None, tls).unwrap().with_timeout(Duration::from_secs(10));
    client.connect().await.expect("mTLS connection to the registrar")
}

/// Bootstraps pledge `serial` in `lab` and connects it to the registrar as a proxy.
pub async fn proxy(lab: &Lab, serial: &str) -> Proxy {
    let (cfg, id) = lab.pledge(serial, Format::Cms).await.unwrap();
    let out = pledge::bootstrap(&cfg, &id).await.expect("bootstrap");
    let key = Arc::new(load_key_file(&out.files.key).unwrap());
    let conn = connect(&lab.registrar_url, &out.ca_certs, out.chain.clone(), key.clone()).await;
    let aud = lab.registrar.agent().expect("the lab has an agent policy").policy.issuance_uri();
    Proxy { conn, chain: out.chain, key, ca: out.ca_certs, aud }
}

/// The JSON body of a reply (panics with the problem detail otherwise).
pub fn json_of(r: &RawReply) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON ({}): {}", r.status, r.detail()))
}

impl Proxy {
    /// A fresh server nonce.
    pub async fn nonce(&mut self) -> String {
        let r = self.conn.get_raw("/agent/v1/nonce", None).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.detail());
        let reply: NonceReply = serde_json::from_slice(&r.body).expect("a nonce answer");
        reply.nonce
    }

    /// b64url SHA-256 of the LDevID.
    pub fn hash(&self) -> String {
        b64::encode_url(&shared::crypto::sha256(&pki::cert_to_der(&self.chain[0]).unwrap()))
    }

    /// Evidence binding `nonce` and the ACR's hash, signed with the LDevID key.
    pub fn evidence(&self, nonce: &str, acr: &str, agent_id: &str) -> Value {
        let acr_hash = b64::decode_url(&shared::agent::jwt::jwt_hash(acr)).unwrap();
        self.evidence_raw(vec![b64::decode_url(nonce).unwrap(), acr_hash], agent_id)
    }

    /// Evidence with exactly these `eat_nonce` values.
    pub fn evidence_raw(&self, nonces: Vec<Vec<u8>>, agent_id: &str) -> Value {
        let claims = EvidenceClaims {
            nonces,
            iat: unix_now(),
            ueid: vec![1; 33],
            profile: EAT_PROFILE.into(),
            submods: vec![AgentSubmodule {
                agent_id: agent_id.into(),
                uid: Some(1000),
                pid: Some(7),
                ..Default::default()
            }],
            ..Default::default()
        };
        cmw_collection(&sign_eat(&claims, self.key.as_ref(), &self.chain[..1]).unwrap(), None)
    }

    /// The body a proxy sends for `acr` with `evidence`, naming this proxy's LDevID.
    pub fn credential_request(&self, acr: &str, oa: Option<&str>, evidence: Value) -> CredentialRequest {
        CredentialRequest {
            acr: acr.to_string(),
            oa: oa.map(str::to_string),
            evidence,
            proxy: Some(ProxyRef { ldevid_sha256: self.hash() }),
        }
    }

    /// POSTs a body (a [`CredentialRequest`], or raw JSON for a malformed one) to
    /// `/agent/v1/credentials`.
    pub async fn post(&mut self, body: impl Serialize) -> RawReply {
        self.conn
            .post_raw("/agent/v1/credentials", "application/json", None, serde_json::to_vec(&body).unwrap())
            .await
            .unwrap()
    }

    /// ACR + evidence for `spec`, signed by `agent_key`, with a fresh server nonce, posted.
    pub async fn request(
        &mut self,
        agent_key: &SoftwareKey,
        spec: CredentialSpec,
        oa: Option<&str>,
    ) -> RawReply {
        let (acr, evidence) = self.acr(agent_key, spec).await;
        let body = self.credential_request(&acr, oa, evidence);
        self.post(body).await
    }

    /// An ACR for `spec` with a fresh server nonce, and its evidence.
    pub async fn acr(&mut self, agent_key: &SoftwareKey, spec: CredentialSpec) -> (String, Value) {
        let nonce = self.nonce().await;
        let id = spec.id.clone().unwrap_or_default();
        let claims = new_acr_claims(&id, &self.aud, Some(nonce.clone()), spec, unix_now(), 60).unwrap();
        let acr = sign_acr(&claims, agent_key).unwrap();
        let ev = self.evidence(&nonce, &acr, &id);
        (acr, ev)
    }

    /// The full request body (`oa` null) for `spec`, as a proxy sends it to a gateway.
    pub async fn body(&mut self, agent_key: &SoftwareKey, spec: CredentialSpec) -> CredentialRequest {
        let (acr, ev) = self.acr(agent_key, spec).await;
        self.credential_request(&acr, None, ev)
    }
}

/// Opens an mTLS connection to a server whose certificate has SHA-256 `pin` (an owner
/// gateway's self-signed certificate), presenting `chain` with `key`.
pub async fn connect_pinned(
    url: &str,
    pin: [u8; 32],
    chain: Vec<Certificate>,
    key: Arc<dyn Signer>,
) -> EstConnection {
    let tls = client_config(&ServerTrust::PinnedSha256(pin), Some((chain, key))).unwrap();
    let client = EstClient::new(url, None, tls).unwrap().with_timeout(Duration::from_secs(20));
    client.connect().await.expect("mTLS connection to the server")
}
