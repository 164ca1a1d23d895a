//! The README's BRSKI walk-through with the `brski` binary: a MASA and a registrar as
//! separate processes, a device minted and claimed, `pledge bootstrap` to an LDevID, then
//! `pledge status` and `registrar list|approve|deny`.

use std::process::{Command, Output};
use testkit::free_port;
use testkit::success_stdout as ok;

fn brski(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brski")).args(args).output().expect("run brski")
}

/// Starts `brski args...` and waits for the first line of its banner.
fn serve(args: &[&str], expect: &str) -> testkit::Server {
    testkit::serve(env!("CARGO_BIN_EXE_brski"), args, expect)
}

#[test]
fn masa_registrar_and_pledge_processes_bootstrap_a_device() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).display().to_string();
    let (masa_port, reg_port) = (free_port(), free_port());
    let masa_addr = format!("127.0.0.1:{masa_port}");
    let reg_addr = format!("127.0.0.1:{reg_port}");

    ok(&brski(&["masa", "init", "--state", &p("masa"), "--url", &masa_addr, "--listen", &masa_addr]));
    ok(&brski(&["masa", "idevid", "--state", &p("masa"), "--serial", "SN-0001", "--out", &p("device")]));
    let manufacturer = format!("lab={}", p("masa/manufacturer-ca.pem"));
    let out = ok(&brski(&[
        "registrar",
        "init",
        "--state",
        &p("reg"),
        "--listen",
        &reg_addr,
        "--manufacturer",
        &manufacturer,
    ]));
    assert!(out.contains("registrar.toml"), "{out}");
    ok(&brski(&[
        "masa",
        "claim",
        "--state",
        &p("masa"),
        "--serial",
        "SN-0001",
        "--domain-ca",
        &p("reg/domain-ca.pem"),
    ]));

    let _masa = serve(&["masa", "serve", "--config", &p("masa/masa.toml")], "brski MASA on https://");
    // --no-mdns: no multicast announcement out of the test machine (tests/cli_mdns.rs covers mDNS
    // inside a network namespace).
    let _reg =
        serve(&["registrar", "serve", "--state", &p("reg"), "--no-mdns"], "brski registrar on https://");

    // An operator denies, then approves; the device bootstraps.
    let out = ok(&brski(&["registrar", "deny", "SN-0001", "--state", &p("reg")]));
    assert!(out.contains("denied"), "{out}");
    let url = format!("https://{reg_addr}");
    let denied =
        brski(&["pledge", "bootstrap", "--state", &p("device"), "--registrar", &url, "--max-attempts", "1"]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("denied"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    ok(&brski(&["registrar", "approve", "SN-0001", "--state", &p("reg")]));
    // The device's pledge.toml names the registrar and the format; a wrong key is refused
    // with the key and the file named.
    std::fs::write(tmp.path().join("device/pledge.toml"), "registar = \"x\"\n").unwrap();
    let bad = brski(&["pledge", "bootstrap", "--state", &p("device")]);
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(!bad.status.success() && err.contains("pledge.toml") && err.contains("registar"), "{err}");
    std::fs::remove_file(tmp.path().join("device/pledge.toml")).unwrap();
    ok(&brski(&["pledge", "init", "--state", &p("device"), "--registrar", &url, "--format", "jws"]));
    let out = ok(&brski(&["pledge", "bootstrap", "--state", &p("device")]));
    assert!(
        out.contains("enrolled (brski)") && out.contains("ldevid.pem") && out.contains("JWS voucher"),
        "{out}"
    );

    let status = ok(&brski(&["pledge", "status", "--state", &p("device")]));
    assert!(
        status.contains("LDevID:") && status.contains("days left") && status.contains("brski via"),
        "{status}"
    );
    let list = ok(&brski(&["registrar", "list", "--state", &p("reg")]));
    assert!(list.contains("SN-0001") && list.contains("enrolled"), "{list}");
    if testkit::peer("openssl") {
        let out = testkit::run_ok(
            tmp.path(),
            "openssl",
            &["verify", "-CAfile", "reg/domain-ca.pem", "device/ldevid.pem"],
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    }
}
