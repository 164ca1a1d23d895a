//! Unit tests of the agent client: credential checks, files, renewal.

use crate::*;
use shared::keys::{Algorithm, Signer, SoftwareKey};
use std::time::Duration;

#[test]
fn renewal_is_at_half_the_remaining_life() {
    assert_eq!(renew_at(1000, 4600), 2800);
    assert_eq!(renew_at(1000, 900), 1000);
}

#[test]
fn a_credential_for_another_key_or_missing_a_format_is_refused() {
    let (mine, other) =
        (SoftwareKey::generate(Algorithm::Es256).unwrap(), SoftwareKey::generate(Algorithm::Es256).unwrap());
    let jwk = shared::agent::jwk::jwk_from_spki(&other.public_key_der()).unwrap();
    let payload = serde_json::json!({"cnf": {"jwk": jwk}});
    let wit = format!("e30.{}.c2ln", shared::b64::encode_url(payload.to_string().as_bytes()));
    let c = Credential {
        id: "r".into(),
        agent_id: "wimse://td/agent/a".into(),
        model: shared::agent::Model::None,
        owner: None,
        x509: None,
        ca_pem: "CA".into(),
        wit: Some(wit),
        not_after: 0,
        grant_exp: None,
    };
    assert!(check_credential(&c, &other, &["wit".into()]).is_ok());
    let err = check_credential(&c, &mine, &["wit".into()]).unwrap_err();
    assert!(err.to_string().contains("not for this agent's key"), "{err}");
    let err = check_credential(&c, &other, &["x509".into()]).unwrap_err();
    assert!(err.to_string().contains("has no certificate"), "{err}");
}

#[tokio::test]
async fn files_are_written_and_an_existing_key_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let files = AgentFiles::in_dir(dir.path(), None);
    let key = SoftwareKey::generate(Algorithm::EdDsa).unwrap();
    save_new_key(&files.key, &key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777, 0o600);
    let again = SoftwareKey::generate(Algorithm::EdDsa).unwrap();
    assert!(save_new_key(&files.key, &again).is_err());
    let c = Credential {
        id: "r".into(),
        agent_id: "wimse://td/agent/a".into(),
        model: shared::agent::Model::None,
        owner: None,
        x509: Some("PEM".into()),
        ca_pem: "CA".into(),
        wit: Some("w.i.t".into()),
        not_after: 0,
        grant_exp: None,
    };
    let written = save_credential(&files, &c).unwrap();
    assert_eq!(written.len(), 4);
    assert_eq!(std::fs::read_to_string(&files.wit).unwrap(), "w.i.t\n");
    let client = AgentApiClient::new(Endpoint::Unix(dir.path().join("nope.sock")), Duration::from_secs(1));
    assert!(matches!(client.bundle().await, Err(AgentClientError::Connect { .. })));
}
