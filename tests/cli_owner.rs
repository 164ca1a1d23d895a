//! `brski owner init` and `brski owner sign` as a person runs them: the owner directory (key
//! 0600, never overwritten, the [[owner]] policy entry) and a model 1 approval over an ACR.

use shared::agent::acr::new_acr_claims;
use shared::agent::jwt::unix_now;
use shared::agent::oa::verify_oa_signature;
use shared::agent::{sign_acr, verify_acr, CredentialSpec, Model};
use shared::keys::{Algorithm, SoftwareKey};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use testkit::success_stdout as ok;

const ALICE: &str = "mailto:alice@example.com";
const AUD: &str = "wimse://campus.example";

fn brski(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brski")).args(args).output().expect("run brski")
}

fn acr_file(dir: &Path, name: &str, model: Model, owner: &str) -> String {
    let id = "wimse://campus.example/agent/cli-1";
    let spec = CredentialSpec {
        id: Some(id.into()),
        formats: vec!["x509".into()],
        ttl: 600,
        owner: Some(owner.into()),
        model,
    };
    let nonce = (model != Model::AgentMediated).then(|| shared::b64::encode_url(&[3u8; 32]));
    let claims = new_acr_claims(id, AUD, nonce, spec, unix_now(), 60).unwrap();
    let acr = sign_acr(&claims, &SoftwareKey::generate(Algorithm::Es256).unwrap()).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &acr).unwrap();
    path.display().to_string()
}

#[test]
fn owner_init_writes_a_private_key_once_and_prints_the_policy_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("alice").display().to_string();
    let out = ok(&brski(&[
        "owner",
        "init",
        "--dir",
        &dir,
        "--id",
        ALICE,
        "--kid",
        "alice-1",
        "--alg",
        "ed25519",
        "--trust-domain",
        "campus.example",
    ]));
    assert!(out.contains("[[owner]]") && out.contains("kid = \"alice-1\""), "{out}");
    assert!(out.contains("wimse://campus.example/agent/*"), "{out}");
    let d = Path::new(&dir);
    for f in ["owner.key", "owner.pem", "owner-public.pem", "owner.toml"] {
        assert!(d.join(f).is_file(), "{f}");
    }
    let mode = std::fs::metadata(d.join("owner.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(d.join("owner.key")).unwrap();
    let again = brski(&["owner", "init", "--dir", &dir, "--id", ALICE]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(d.join("owner.key")).unwrap(), before);
}

#[test]
fn owner_sign_approves_an_agent_mediated_acr_and_refuses_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("alice").display().to_string();
    ok(&brski(&["owner", "init", "--dir", &dir, "--id", ALICE, "--trust-domain", "campus.example"]));
    let acr = acr_file(tmp.path(), "acr.jwt", Model::AgentMediated, ALICE);
    let oa_path = tmp.path().join("oa.jwt").display().to_string();

    // Without --yes and without a terminal: nothing is signed.
    let r = brski(&["owner", "sign", "--dir", &dir, "--acr", &acr]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("--yes"));

    let r = brski(&[
        "owner",
        "sign",
        "--dir",
        &dir,
        "--acr",
        &acr,
        "--yes",
        "--max-ttl",
        "900",
        "--out",
        &oa_path,
    ]);
    ok(&r);
    let summary = String::from_utf8_lossy(&r.stderr);
    assert!(
        summary.contains("wimse://campus.example/agent/cli-1") && summary.contains("thumbprint"),
        "{summary}"
    );
    let oa = std::fs::read_to_string(&oa_path).unwrap();
    let pem = std::fs::read_to_string(Path::new(&dir).join("owner-public.pem")).unwrap();
    let (_, spki) = der::pem::decode_vec(pem.as_bytes()).unwrap();
    let claims = verify_oa_signature(oa.trim(), &spki).expect("signed by the owner key");
    let acr_text = std::fs::read_to_string(&acr).unwrap();
    let verified = verify_acr(&acr_text, AUD, unix_now()).unwrap();
    assert_eq!(claims.model, Model::AgentMediated);
    assert_eq!(claims.iss, ALICE);
    assert_eq!(claims.aud, "campus.example");
    assert_eq!(claims.sub, "wimse://campus.example/agent/cli-1");
    assert_eq!(claims.acr_hash.as_deref(), Some(verified.hash.as_str()));
    assert_eq!(claims.agent_jkt, verified.jkt);
    assert!(claims.exp - claims.iat <= 600);
    assert_eq!(claims.constraints.and_then(|c| c.max_ttl), Some(900));

    // Another model or another owner: refused.
    let m3 = acr_file(tmp.path(), "m3.jwt", Model::ServerMediated, ALICE);
    let r = brski(&["owner", "sign", "--dir", &dir, "--acr", &m3, "--yes"]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("agent-mediated"));
    let bob = acr_file(tmp.path(), "bob.jwt", Model::AgentMediated, "mailto:bob@example.com");
    let r = brski(&["owner", "sign", "--dir", &dir, "--acr", &bob, "--yes"]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("bob@example.com"));
}
