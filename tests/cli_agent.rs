//! The agent walk-through with the `brski` binary: a lab registrar with an agent policy (in
//! this process), a pledge bootstrapped into it, `brski pledge serve` as the Identity Proxy,
//! `brski agent request` (model none, a renewal, and model 1 with `--acr-out` / `--acr --oa`),
//! and `brski verify agent-cert|wit` as the relying party.

use shared::agent::jwt::{new_jti, unix_now};
use shared::agent::oa::{sign_oa, OaClaims, OwnerKeyHeader};
use shared::agent::{verify_acr, Model};
use shared::keys::{Algorithm, SoftwareKey};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use testkit::Server;

const TD: &str = "campus.example";
const OWNER: &str = "mailto:alice@example.com";

fn brski(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brski")).args(args).output().expect("run brski")
}

async fn brski_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        brski(&a)
    })
    .await
    .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string())
}

fn ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "expected success:\nstdout: {out}\nstderr: {err}");
    out
}

/// A server process, killed when dropped.
fn s(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_request_and_verify_with_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let owner_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let owner_cert =
        shared::pki::create_ca("CN=alice", &owner_key, Duration::from_secs(86400), None).unwrap();
    let owner_pem = dir.path().join("alice.pem");
    std::fs::write(&owner_pem, shared::pki::cert_to_pem(&owner_cert).unwrap()).unwrap();
    let policy = format!(
        "trust_domain = \"{TD}\"\n\n[[proxy]]\nserial = \"*\"\nagents = [\"wimse://{TD}/agent/*\"]\n\n\
         [[owner]]\nid = \"{OWNER}\"\nkid = \"alice-1\"\nkey = \"{}\"\nagents = [\"wimse://{TD}/agent/*\"]\n",
        owner_pem.display()
    );
    let options = brski::lab::LabOptions { agent_policy: Some(policy), ..Default::default() };
    let lab = brski::lab::Lab::start(&dir.path().join("lab"), options).await.expect("lab");
    let (cfg, id) = lab.pledge("cli-host", shared::signed::Format::Cms).await.unwrap();
    pledge::bootstrap(&cfg, &id).await.expect("bootstrap");

    // The Identity Proxy.
    let socket = dir.path().join("run/agent.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_brski"))
        .args(["pledge", "serve", "--state", &s(&cfg.state), "--socket", &s(&socket), "--no-renew"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn brski pledge serve");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        line
    })
    .await
    .unwrap();
    let _proxy = Server(child);
    assert!(first.contains("Identity Proxy"), "{first}");
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o660);

    // Model none.
    let out1 = dir.path().join("agent1");
    let agent_id = format!("wimse://{TD}/agent/cli-1");
    let req = |extra: &[&str]| {
        let mut v = vec!["agent", "request", "--socket", socket.to_str().unwrap()];
        v.extend_from_slice(extra);
        v.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let o = brski_async(req(&["--id", &agent_id, "--ttl", "600", "--out", &s(&out1)])).await;
    let printed = ok(&o);
    assert!(printed.contains(&format!("agent:    {agent_id}")), "{printed}");
    let key_mode = std::fs::metadata(out1.join("agent.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);
    let key_before = std::fs::read(out1.join("agent.key")).unwrap();
    // The key is never replaced without --renew; --renew keeps it and gets a new certificate.
    let o = brski_async(req(&["--id", &agent_id, "--out", &s(&out1)])).await;
    assert!(!o.status.success());
    assert!(text(&o).1.contains("refusing to replace"), "{}", text(&o).1);
    let cert_before = std::fs::read(out1.join("agent.pem")).unwrap();
    ok(&brski_async(req(&["--id", &agent_id, "--out", &s(&out1), "--renew"])).await);
    assert_eq!(std::fs::read(out1.join("agent.key")).unwrap(), key_before);
    assert_ne!(std::fs::read(out1.join("agent.pem")).unwrap(), cert_before);

    // The relying party.
    let v = ok(&brski(&[
        "verify",
        "agent-cert",
        &s(&out1.join("agent.pem")),
        "--ca",
        &s(&out1.join("ca.pem")),
        "--trust-domain",
        TD,
    ]));
    assert!(v.contains(&format!("agent:    {agent_id}")) && v.contains("owner:    none"), "{v}");
    let v = ok(&brski(&[
        "verify",
        "wit",
        &s(&out1.join("agent.wit")),
        "--bundle",
        &s(&out1.join("bundle.json")),
    ]));
    assert!(v.contains(&agent_id), "{v}");
    let o = brski(&[
        "verify",
        "agent-cert",
        &s(&out1.join("agent.pem")),
        "--ca",
        &s(&out1.join("ca.pem")),
        "--trust-domain",
        "other.example",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("refused (policy)"), "{}", text(&o).1);

    // Model 1: the agent writes an ACR, the owner signs over it offline, the agent submits both.
    let out2 = dir.path().join("agent2");
    let helper = format!("wimse://{TD}/agent/helper");
    let acr_file = dir.path().join("acr.jws");
    let o = brski_async(req(&[
        "--id",
        &helper,
        "--owner",
        OWNER,
        "--model",
        "agent-mediated",
        "--out",
        &s(&out2),
        "--acr-out",
        &s(&acr_file),
    ]))
    .await;
    ok(&o);
    let acr = std::fs::read_to_string(&acr_file).unwrap();
    let checked = verify_acr(acr.trim(), &format!("wimse://{TD}"), unix_now()).unwrap();
    assert!(checked.claims.nonce.is_none());
    let now = unix_now();
    let oa = sign_oa(
        &OaClaims {
            iss: OWNER.into(),
            sub: helper.clone(),
            aud: TD.into(),
            iat: now,
            exp: now + 600,
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
        &owner_key,
        &OwnerKeyHeader::Kid("alice-1".into()),
    )
    .unwrap();
    let oa_file = dir.path().join("oa.jws");
    std::fs::write(&oa_file, &oa).unwrap();
    let printed =
        ok(&brski_async(req(&["--acr", &s(&acr_file), "--oa", &s(&oa_file), "--out", &s(&out2)])).await);
    assert!(printed.contains(&format!("owner:    {OWNER} (model agent-mediated)")), "{printed}");
    let anchor = format!("{OWNER}={}", s(&owner_pem));
    let v = ok(&brski(&[
        "verify",
        "agent-cert",
        &s(&out2.join("agent.pem")),
        "--bundle",
        &s(&out2.join("bundle.json")),
        "--owner-anchor",
        &anchor,
    ]));
    assert!(v.contains(&format!("owner:    {OWNER}")) && v.contains("model:    agent-mediated"), "{v}");
    let v = ok(&brski(&[
        "verify",
        "wit",
        &s(&out2.join("agent.wit")),
        "--bundle",
        &s(&out2.join("bundle.json")),
        "--owner-anchor",
        &anchor,
    ]));
    assert!(v.contains(&format!("owner:    {OWNER}")), "{v}");
    // Without the owner's key the relying party refuses the owner binding.
    let o = brski(&[
        "verify",
        "agent-cert",
        &s(&out2.join("agent.pem")),
        "--bundle",
        &s(&out2.join("bundle.json")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("unknown-owner"), "{}", text(&o).1);
    drop(lab);
}
