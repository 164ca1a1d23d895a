//! Each body of `docs/agent-api.md`, written as the document shows it, parses into its type
//! and serializes back to the same members.

use super::*;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Parses `example` as `T` and checks that serializing it gives the same JSON back.
fn round_trip<T: DeserializeOwned + Serialize>(example: Value) -> T {
    let typed: T = serde_json::from_value(example.clone()).expect("the doc's example parses");
    assert_eq!(serde_json::to_value(&typed).unwrap(), example, "the same members back");
    typed
}

#[test]
fn nonce_reply_single_and_batch() {
    let one: NonceReply = round_trip(json!({"nonce": "bm9uY2U", "exp": 1_700_000_060}));
    assert_eq!(one.nonces, None);
    let batch: NonceReply =
        round_trip(json!({"nonce": "YQ", "exp": 1_700_000_060, "nonces": ["YQ", "Yg", "Yw"]}));
    assert_eq!(batch.nonces.as_deref().map(<[String]>::len), Some(3));
}

#[test]
fn bundle() {
    let b: Bundle = round_trip(json!({
        "trust_domain": "example.com",
        "issuance_uri": "wimse://example.com",
        "ca_pem": "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
        "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ", "kid": "k"}]},
    }));
    assert_eq!(b.issuance_uri, "wimse://example.com");
}

#[test]
fn agent_api_request_and_its_unknown_members_refused() {
    let r: AgentApiRequest = round_trip(json!({"acr": "h.p.s", "oa": null}));
    assert_eq!(r.oa, None);
    round_trip::<AgentApiRequest>(json!({"acr": "h.p.s", "oa": "h.p.s"}));
    let absent: AgentApiRequest = serde_json::from_value(json!({"acr": "h.p.s"})).unwrap();
    assert_eq!(absent.oa, None);
    let extra = serde_json::from_value::<AgentApiRequest>(json!({"acr": "a", "oa": null, "evidence": {}}));
    assert!(extra.unwrap_err().to_string().contains("unknown field"));
}

#[test]
fn credential_request() {
    let r: CredentialRequest = round_trip(json!({
        "acr": "h.p.s",
        "oa": null,
        "evidence": {"eat": ["application/eat+cwt", "2D3S", 4]},
        "proxy": {"ldevid_sha256": "aGFzaA"},
    }));
    assert_eq!(r.proxy.unwrap().ldevid_sha256, "aGFzaA");
    let bare: CredentialRequest = serde_json::from_value(json!({"acr": "a", "evidence": {}})).unwrap();
    assert_eq!((bare.oa, bare.proxy), (None, None));
    assert!(
        serde_json::from_value::<CredentialRequest>(json!({"acr": "a"})).is_err(),
        "evidence is required"
    );
}

#[test]
fn credential_with_and_without_owner() {
    let owned: Credential = round_trip(json!({
        "id": "cmVx", "agent_id": "wimse://example.com/agent/a", "model": "agent-mediated",
        "owner": "mailto:alice@example.com", "x509": "-----BEGIN CERTIFICATE-----\n", "ca_pem": "pem",
        "wit": "h.p.s", "not_after": 1_700_003_600, "grant_exp": 1_702_592_000,
    }));
    assert_eq!(owned.model, Model::AgentMediated);
    round_trip::<Credential>(json!({
        "id": "cmVx", "agent_id": "wimse://example.com/agent/a", "model": "none", "owner": null,
        "x509": null, "ca_pem": "pem", "wit": "h.p.s", "not_after": 1_700_003_600, "grant_exp": null,
    }));
}

#[test]
fn pending_challenges_and_answer() {
    assert_eq!(round_trip::<Pending>(json!({"id": "cmVx", "status": "pending"})), Pending::new("cmVx"));
    let list: Challenges = round_trip(json!({"challenges": [{"id": "cmVx", "challenge": "h.p.s"}]}));
    assert_eq!(list.challenges[0].id, "cmVx");
    round_trip::<Challenges>(json!({"challenges": []}));
    assert_eq!(round_trip::<Answered>(json!({"status": "approved"})), Answered::approved());
    assert!(serde_json::from_value::<Pending>(json!({"id": "x", "status": "done"})).is_err());
}
