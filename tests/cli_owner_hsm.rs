//! `brski owner init --key pkcs11:...` and `brski owner sign` with the owner key in SoftHSM v2
//! (RFC 7512 URI, the PIN from a file): no owner.key, owner.toml names the token key, owner.pem
//! is signed in the token, the OA verifies with the token's public key, and wrong PINs or
//! other algorithms fail without showing the PIN. The tokens are made in this process; the
//! `brski` processes find them through the inherited `SOFTHSM2_CONF`.

use owner::OwnerConfig;
use shared::agent::acr::new_acr_claims;
use shared::agent::jwt::unix_now;
use shared::agent::oa::verify_oa_signature;
use shared::agent::{sign_acr, verify_acr, CredentialSpec, Model};
use shared::keys::{load_signer, Algorithm, SoftwareKey};
use shared::pki;
use std::path::Path;
use std::process::{Command, Output};
use testkit::success_stdout as ok;

const ALICE: &str = "mailto:alice@example.com";
const AUD: &str = "wimse://campus.example";
const AGENT: &str = "wimse://campus.example/agent/hsm-1";

fn brski(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brski")).args(args).output().expect("run brski")
}

/// A model 1 ACR for `AGENT` owned by alice, signed by a fresh agent key, in `dir/acr.jwt`.
fn acr_file(dir: &Path) -> String {
    let spec = CredentialSpec {
        id: Some(AGENT.into()),
        formats: vec!["x509".into()],
        ttl: 600,
        owner: Some(ALICE.into()),
        model: Model::AgentMediated,
    };
    let claims = new_acr_claims(AGENT, AUD, None, spec, unix_now(), 60).unwrap();
    let acr = sign_acr(&claims, &SoftwareKey::generate(Algorithm::Es256).unwrap()).unwrap();
    let path = dir.join("acr.jwt");
    std::fs::write(&path, &acr).unwrap();
    path.display().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn owner_init_and_sign_with_the_owner_key_in_softhsm() {
    let Some(t) = testkit::softhsm_token("cli-owner") else { return };
    t.generate("owner", Algorithm::Es256).unwrap();
    t.generate("p384", Algorithm::Es384).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).display().to_string();
    std::fs::write(tmp.path().join("pin"), format!("{}\n", testkit::softhsm::SoftHsmToken::PIN)).unwrap();
    let uri = |object: &str| {
        format!("pkcs11:token=cli-owner;object={object};type=private?pin-source=file:{}", p("pin"))
    };
    let token_spki = load_signer(&uri("owner")).expect("the test opens the token key").public_key_der();

    let dir = p("alice");
    let init = |dir: &str, key: &str| {
        brski(&[
            "owner",
            "init",
            "--dir",
            dir,
            "--id",
            ALICE,
            "--kid",
            "alice-hsm",
            "--trust-domain",
            "campus.example",
            "--key",
            key,
        ])
    };
    let out = ok(&init(&dir, &uri("owner")));
    assert!(out.contains("key pkcs11:token=cli-owner;object=owner"), "{out}");
    assert!(out.contains("[[owner]]") && out.contains("kid = \"alice-hsm\""), "{out}");
    let d = Path::new(&dir);
    assert!(!d.join("owner.key").exists(), "no software copy of the owner key");
    assert!(!out.contains("owner.key"), "{out}");
    let toml = std::fs::read_to_string(d.join("owner.toml")).unwrap();
    assert!(toml.contains(&format!("key = \"{}\"", uri("owner"))), "{toml}");
    let cfg = OwnerConfig::load(d).unwrap();
    assert_eq!(cfg.key.as_deref(), Some(uri("owner").as_str()));

    // owner.pem and owner-public.pem carry the token's key; owner.pem was signed in the token.
    let cert = pki::cert_from_pem(&std::fs::read_to_string(d.join("owner.pem")).unwrap()).unwrap();
    assert_eq!(pki::spki_der(&cert), token_spki);
    pki::verify_chain(&cert, &[], std::slice::from_ref(&cert), time::OffsetDateTime::now_utc())
        .expect("owner.pem's signature verifies with the token key");
    let public = std::fs::read_to_string(d.join("owner-public.pem")).unwrap();
    assert_eq!(der::pem::decode_vec(public.as_bytes()).unwrap().1, token_spki);
    if testkit::peer("openssl") {
        let pem = d.join("owner.pem").display().to_string();
        let text = testkit::run_ok(d, "openssl", &["x509", "-in", &pem, "-noout", "-text"]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("CN = alice-hsm") || text.contains("CN=alice-hsm"), "{text}");
        assert!(text.contains("prime256v1") && text.contains("URI:mailto:alice@example.com"), "{text}");
        let key = testkit::run_ok(d, "openssl", &["x509", "-in", &pem, "-noout", "-pubkey"]);
        assert_eq!(String::from_utf8_lossy(&key.stdout).trim(), public.trim());
    }

    // Model 1: the OA is signed in the token and verifies with the token's public key.
    let acr = acr_file(tmp.path());
    let oa_path = p("oa.jwt");
    ok(&brski(&["owner", "sign", "--dir", &dir, "--acr", &acr, "--yes", "--out", &oa_path]));
    let oa = std::fs::read_to_string(&oa_path).unwrap();
    let claims = verify_oa_signature(oa.trim(), &token_spki).expect("signed by the token key");
    let verified = verify_acr(&std::fs::read_to_string(&acr).unwrap(), AUD, unix_now()).unwrap();
    assert_eq!((claims.iss.as_str(), claims.sub.as_str()), (ALICE, AGENT));
    assert_eq!(claims.acr_hash.as_deref(), Some(verified.hash.as_str()));
    assert_eq!(claims.agent_jkt, verified.jkt);

    // A wrong PIN in owner.toml: sign fails naming the key, the PIN shown as ***.
    std::fs::write(
        d.join("owner.toml"),
        toml.replace(&format!("pin-source=file:{}", p("pin")), "pin-value=98765"),
    )
    .unwrap();
    let r = brski(&["owner", "sign", "--dir", &dir, "--acr", &acr, "--yes"]);
    assert!(!r.status.success());
    let e = stderr(&r);
    assert!(e.contains("wrong PIN") && e.contains("token=cli-owner;object=owner"), "{e}");
    assert!(e.contains("pin-value=***") && !e.contains("98765"), "the PIN leaked: {e}");

    // A wrong PIN at init: nothing is created, the PIN is not shown.
    let bad = "pkcs11:token=cli-owner;object=owner;type=private?pin-value=98765";
    let r = init(&p("bob"), bad);
    assert!(!r.status.success());
    let e = stderr(&r);
    assert!(e.contains("wrong PIN") && e.contains("token=cli-owner;object=owner"), "{e}");
    assert!(!e.contains("98765"), "the PIN leaked: {e}");
    assert!(!tmp.path().join("bob").exists());

    // A P-384 key is not an owner key; --alg does not go with --key.
    let r = init(&p("carol"), &uri("p384"));
    assert!(!r.status.success());
    let e = stderr(&r);
    assert!(e.contains("P-256 (ES256) or Ed25519") && e.contains("object=p384"), "{e}");
    assert!(!tmp.path().join("carol").exists());
    let r = brski(&[
        "owner",
        "init",
        "--dir",
        &p("dave"),
        "--id",
        ALICE,
        "--alg",
        "ed25519",
        "--key",
        &uri("owner"),
    ]);
    assert!(!r.status.success());
    assert!(stderr(&r).contains("--alg"), "{}", stderr(&r));
}
