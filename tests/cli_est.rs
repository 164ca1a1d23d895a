//! `brski est ...` and `brski bench est` as a user runs them, against `brski est serve --dev`
//! started as a real process on loopback.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use testkit::success_stdout as ok;

fn brski(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brski")).args(args).output().expect("run brski")
}

/// The dev server process; killed when dropped.
struct DevServer {
    child: Child,
    url: String,
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(state: &Path) -> DevServer {
    let state = state.to_str().unwrap();
    let args = ["--state", state, "--listen", "127.0.0.1:0", "--user", "dev", "--password", "s3cret"];
    spawn_server(&[&["est", "serve", "--dev"][..], &args[..]].concat())
}

/// Starts `brski <args>` and reads the server URL from the first line it prints.
fn spawn_server(args: &[&str]) -> DevServer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_brski"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start brski est serve");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    // Keep draining the banner so the server never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let url = first.split_whitespace().find(|t| t.starts_with("https://")).unwrap_or_default().to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "banner: {first}");
    DevServer { child, url }
}

#[test]
fn est_client_commands_against_the_dev_server() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let srv = start(&state);
    let ca = state.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let d = |name: &str| dir.path().join(name).display().to_string();
    let common = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["--server".into(), srv.url.clone()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |cmd: &str, extra: &[&str]| {
        let mut args: Vec<String> = vec!["est".into(), cmd.into()];
        args.extend(common(extra));
        brski(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Bootstrap: confirm the CA fingerprint the server printed; the result equals ca.pem.
    let ca_der =
        shared::pki::cert_to_der(&shared::pki::certs_from_pem(&std::fs::read(ca).unwrap()).unwrap()[0])
            .unwrap();
    let fp = hex::encode(shared::crypto::sha256(&ca_der));
    ok(&run("cacerts", &["--insecure-bootstrap", "--confirm-fingerprint", &fp, "--out", &d("boot.pem")]));
    assert_eq!(std::fs::read(d("boot.pem")).unwrap(), std::fs::read(ca).unwrap());
    let refused = run("cacerts", &["--insecure-bootstrap"]);
    assert!(!refused.status.success(), "bootstrap without confirmation must not succeed");

    // Enroll with Basic auth: key 0600, certificate, chain.
    let out = ok(&run(
        "enroll",
        &[
            "--ca",
            ca,
            "--user",
            "dev",
            "--password",
            "s3cret",
            "--subject",
            "CN=cli-1",
            "--san",
            "dns:cli-1.example",
            "--out-dir",
            &d("e1"),
        ],
    ));
    assert!(out.contains("issued 'CN=cli-1'"), "{out}");
    let mode = std::fs::metadata(dir.path().join("e1/key.pem")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let cert = shared::pki::certs_from_pem(&std::fs::read(dir.path().join("e1/cert.pem")).unwrap())
        .unwrap()
        .remove(0);
    let anchors = shared::pki::certs_from_pem(&std::fs::read(ca).unwrap()).unwrap();
    shared::pki::verify_chain(&cert, &[], &anchors, time::OffsetDateTime::now_utc()).unwrap();

    // Rekey with the enrolled certificate; the new key differs, the subject stays.
    ok(&run(
        "reenroll",
        &[
            "--ca",
            ca,
            "--cert",
            &d("e1/cert.pem"),
            "--key",
            &format!("file:{}", d("e1/key.pem")),
            "--rekey",
            "--out-dir",
            &d("e2"),
        ],
    ));
    let renewed = shared::pki::certs_from_pem(&std::fs::read(dir.path().join("e2/cert.pem")).unwrap())
        .unwrap()
        .remove(0);
    assert_eq!(renewed.tbs_certificate().subject(), cert.tbs_certificate().subject());
    assert_ne!(shared::pki::spki_der(&renewed), shared::pki::spki_der(&cert));

    // Server-side key generation, CSR attributes, and a wrong password.
    ok(&run(
        "serverkeygen",
        &[
            "--ca",
            ca,
            "--user",
            "dev",
            "--password",
            "s3cret",
            "--subject",
            "CN=cli-skg",
            "--out-dir",
            &d("s1"),
        ],
    ));
    let key = shared::keys::load_key_file(&dir.path().join("s1/key.pem")).unwrap();
    let skg = shared::pki::certs_from_pem(&std::fs::read(dir.path().join("s1/cert.pem")).unwrap())
        .unwrap()
        .remove(0);
    assert_eq!(shared::pki::spki_der(&skg), shared::keys::Signer::public_key_der(&key));
    ok(&run("csrattrs", &["--ca", ca]));
    let bad = run(
        "enroll",
        &["--ca", ca, "--user", "dev", "--password", "wrong", "--subject", "CN=x", "--out-dir", &d("x")],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("401"), "{}", String::from_utf8_lossy(&bad.stderr));

    // The load generator reports and exits 0 when every enrollment succeeded.
    let mut args =
        vec!["bench", "est", "--server", &srv.url, "--ca", ca, "--user", "dev", "--password", "s3cret"];
    args.extend(["--count", "20", "--concurrency", "2"]);
    let out = ok(&brski(&args));
    assert!(out.contains("20 enrollments") && out.contains("0 failed"), "{out}");
    args.push("--new-connection");
    assert!(ok(&brski(&args)).contains("20 enrollments"));
    // A bench against a wrong password fails loudly.
    let out = brski(&[
        "bench",
        "est",
        "--server",
        &srv.url,
        "--ca",
        ca,
        "--user",
        "dev",
        "--password",
        "x",
        "--count",
        "3",
        "--concurrency",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn est_serve_from_a_config_file_with_labels_and_hashed_users() {
    let dir = tempfile::tempdir().unwrap();
    let mut hash = Command::new(env!("CARGO_BIN_EXE_brski"))
        .args(["est", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    hash.stdin.take().unwrap().write_all(b"pa55word\n").unwrap();
    let phc = ok(&hash.wait_with_output().unwrap()).trim().to_string();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/est/est-serve.example.toml")).unwrap();
    let config = example
        .replace("127.0.0.1:8443", "127.0.0.1:0")
        .lines()
        .map(|l| if l.starts_with("dev = ") { format!("ops = \"{phc}\"") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = dir.path().join("est.toml");
    std::fs::write(&cfg, config).unwrap();
    let srv = spawn_server(&["est", "serve", "--config", cfg.to_str().unwrap()]);
    let ca = dir.path().join("est-state/ca.pem").display().to_string();
    let d = |name: &str| dir.path().join(name).display().to_string();
    ok(&brski(&[
        "est",
        "enroll",
        "--server",
        &srv.url,
        "--ca",
        &ca,
        "--user",
        "ops",
        "--password",
        "pa55word",
        "--subject",
        "CN=cfg-1",
        "--out-dir",
        &d("d1"),
    ]));
    // The ldevid label takes client certificates only, requires binding and templates the subject.
    let key = format!("file:{}", d("d1/key.pem"));
    let out = ok(&brski(&[
        "est",
        "enroll",
        "--server",
        &srv.url,
        "--label",
        "ldevid",
        "--ca",
        &ca,
        "--cert",
        &d("d1/cert.pem"),
        "--key",
        &key,
        "--subject",
        "CN=cfg-2",
        "--out-dir",
        &d("d2"),
    ]));
    assert!(out.contains("CN=cfg-2,O=Example"), "{out}");
    let refused = brski(&[
        "est",
        "enroll",
        "--server",
        &srv.url,
        "--label",
        "ldevid",
        "--ca",
        &ca,
        "--user",
        "ops",
        "--password",
        "pa55word",
        "--subject",
        "CN=x",
        "--out-dir",
        &d("d3"),
    ]);
    assert!(!refused.status.success(), "basic auth is not accepted on a client-cert label");
}

#[test]
fn est_init_writes_a_config_that_serves() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).display().to_string();
    ok(&brski(&["est", "init", "--dir", &d("ca"), "--listen", "127.0.0.1:0"]));
    assert!(!brski(&["est", "init", "--dir", &d("ca")]).status.success(), "no overwrite");
    let mut hash = Command::new(env!("CARGO_BIN_EXE_brski"))
        .args(["est", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    hash.stdin.take().unwrap().write_all(b"init-pw\n").unwrap();
    let phc = ok(&hash.wait_with_output().unwrap()).trim().to_string();
    let cfg = dir.path().join("ca/est.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}op = \"{phc}\"\n")).unwrap();
    let srv = spawn_server(&["est", "serve", "--config", cfg.to_str().unwrap()]);
    let out = ok(&brski(&[
        "est",
        "enroll",
        "--server",
        &srv.url,
        "--ca",
        &d("ca/ca.pem"),
        "--user",
        "op",
        "--password",
        "init-pw",
        "--subject",
        "CN=from-init",
        "--out-dir",
        &d("e1"),
    ]));
    let cert = std::fs::read_to_string(d("e1/cert.pem")).unwrap_or_else(|e| panic!("{e}: {out}"));
    let issued = shared::pki::cert_from_pem(&cert).unwrap();
    assert_eq!(issued.tbs_certificate().subject().to_string(), "CN=from-init");
}
