//! `brski masa init|idevid|claim|serve` as a user runs them: the files each verb writes, key
//! modes, the IDevID fields OpenSSL sees, config errors, and the server's banner.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use testkit::success_stdout as ok;

fn brski(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brski")).args(args).output().expect("run brski")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn assert_device_dir(dir: &Path) {
    assert_eq!(mode(&dir.join("idevid.key")), 0o600, "{}", dir.display());
    assert!(dir.join("idevid.pem").is_file() && dir.join("manufacturer-ca.pem").is_file());
}

#[test]
fn masa_init_idevid_claim_and_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("masa");
    let s = state.to_str().unwrap();
    let d = |name: &str| tmp.path().join(name).display().to_string();

    let out = ok(&brski(&[
        "masa",
        "init",
        "--state",
        s,
        "--url",
        "masa.example.com:9443",
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(out.contains("masa.toml") && out.contains("manufacturer-ca.pem"), "{out}");
    for key in ["manufacturer-ca.key", "voucher-signer.key", "tls.key"] {
        assert_eq!(mode(&state.join(key)), 0o600, "{key}");
    }
    for file in ["masa.toml", "manufacturer-ca.pem", "voucher-signer.pem", "tls.pem", "masa.db"] {
        assert!(state.join(file).is_file(), "{file}");
    }
    let again = brski(&["masa", "init", "--state", s, "--url", "masa.example.com:9443"]);
    assert!(!again.status.success(), "a second init must refuse");
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));

    // One device, then a batch of three.
    let out = ok(&brski(&["masa", "idevid", "--state", s, "--serial", "SN-42", "--out", &d("dev42")]));
    assert!(out.contains("SN-42") && out.contains("idevid.key"), "{out}");
    assert_device_dir(&tmp.path().join("dev42"));
    let batch = brski(&[
        "masa",
        "idevid",
        "--state",
        s,
        "--count",
        "3",
        "--serial-prefix",
        "B-",
        "--out",
        &d("batch"),
    ]);
    let out = ok(&batch);
    assert!(out.contains("minted 3 IDevIDs"), "{out}");
    assert!(String::from_utf8_lossy(&batch.stderr).contains("minted 3/3"), "progress on stderr");
    for serial in ["B-0001", "B-0002", "B-0003"] {
        assert_device_dir(&tmp.path().join("batch").join(serial));
    }
    let dup = brski(&["masa", "idevid", "--state", s, "--serial", "SN-42", "--out", &d("dup")]);
    assert!(!dup.status.success(), "a serial is minted once");

    // What OpenSSL sees in the IDevID.
    if testkit::peer("openssl") {
        let dev = tmp.path().join("dev42");
        let text = testkit::run_ok(&dev, "openssl", &["x509", "-in", "idevid.pem", "-noout", "-text"]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("serialNumber") && text.contains("SN-42"), "{text}");
        assert!(text.contains("1.3.6.1.5.5.7.1.32") && text.contains("masa.example.com:9443"), "{text}");
        assert!(text.contains("Not After : Dec 31 23:59:59 9999 GMT"), "{text}");
        assert!(
            text.contains("X509v3 Authority Key Identifier")
                && text.contains("X509v3 Subject Key Identifier")
        );
        assert!(!text.contains("Key Usage"), "no KU/EKU restrictions: {text}");
        testkit::run_ok(&dev, "openssl", &["verify", "-CAfile", "manufacturer-ca.pem", "idevid.pem"]);
    }

    // Claim by domain CA (from a PEM file) and by key hash.
    let ca_pem = state.join("tls.pem");
    let out = ok(&brski(&[
        "masa",
        "claim",
        "--state",
        s,
        "--serial",
        "SN-42",
        "--domain-ca",
        ca_pem.to_str().unwrap(),
        "--days",
        "30",
    ]));
    assert!(out.contains("recorded owner of serial SN-42") && out.contains("until"), "{out}");
    let out =
        ok(&brski(&["masa", "claim", "--state", s, "--serial", "B-0001", "--pubk-sha256", &"ab".repeat(32)]));
    assert!(out.contains("public key SHA-256") && out.contains("no expiry"), "{out}");
    let unknown =
        brski(&["masa", "claim", "--state", s, "--serial", "NOPE", "--pubk-sha256", &"ab".repeat(32)]);
    assert!(!unknown.status.success());

    // serve prints where it listens.
    let mut child = Command::new(env!("CARGO_BIN_EXE_brski"))
        .args(["masa", "serve", "--state", s, "--listen", "127.0.0.1:0", "--allow-any-owner"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("brski MASA on https://127.0.0.1:"), "{first}");

    // A wrong config key names the key and the file.
    let cfg = state.join("masa.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}\nallow_any = true\n")).unwrap();
    let bad = brski(&["masa", "serve", "--state", s]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("allow_any") && err.contains("masa.toml"), "{err}");
}
