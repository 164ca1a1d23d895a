//! `brski masa idevid --tpm`: a device minted into a software TPM (swtpm started by the test),
//! its key references and certificates checked with openssl; and, in a build without the `tpm`
//! feature, the clear refusal.

use std::process::{Command, Output};
use testkit::success_stdout as ok;

fn brski(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brski")).args(args).output().expect("run brski")
}

fn masa(dir: &std::path::Path) -> String {
    let state = dir.join("masa").display().to_string();
    ok(&brski(&["masa", "init", "--state", &state, "--url", "127.0.0.1:9443"]));
    state
}

#[cfg(feature = "tpm")]
#[test]
fn masa_idevid_mints_a_device_into_its_tpm() {
    use testkit::swtpm::SwTpm;
    let Some(t) = SwTpm::for_test() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let state = masa(tmp.path());
    let dev = tmp.path().join("dev").display().to_string();
    let out = ok(&brski(&[
        "masa",
        "idevid",
        "--state",
        &state,
        "--serial",
        "TPM-0001",
        "--out",
        &dev,
        "--tpm",
        &t.tcti(),
    ]));
    assert!(out.contains("into the TPM") && out.contains("tpm:handle=0x81020001"), "{out}");
    let read = |f: &str| std::fs::read_to_string(tmp.path().join("dev").join(f)).unwrap();
    assert_eq!(read("idevid.key-uri").trim(), format!("tpm:handle=0x81020001?tcti={}", t.tcti()));
    assert_eq!(read("iak.key-uri").trim(), format!("tpm:handle=0x81020000?tcti={}", t.tcti()));
    assert!(!tmp.path().join("dev/idevid.key").exists(), "no private key file");
    let tpm_idevid = shared::tpm::read_key(&t.tcti(), shared::tpm::IDEVID_HANDLE).unwrap();
    let cert = shared::pki::certs_from_pem(read("idevid.pem").as_bytes()).unwrap().remove(0);
    assert_eq!(shared::pki::spki_der(&cert), tpm_idevid.spki, "the IDevID certifies the TPM's key");
    if testkit::peer("openssl") {
        let d = tmp.path().join("dev");
        for cert in ["idevid.pem", "iak.pem"] {
            let v = testkit::run_ok(&d, "openssl", &["verify", "-CAfile", "manufacturer-ca.pem", cert]);
            assert!(String::from_utf8_lossy(&v.stdout).contains(": OK"));
        }
        let text = testkit::run_ok(&d, "openssl", &["x509", "-in", "iak.pem", "-noout", "-text"]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("2.23.133.8.3") && text.contains("serialNumber") && text.contains("TPM-0001"),
            "{text}"
        );
    }
    // The TPM already holds a device's keys: a second mint is refused and names the handle.
    let again = tmp.path().join("dev2").display().to_string();
    let out = brski(&[
        "masa",
        "idevid",
        "--state",
        &state,
        "--serial",
        "TPM-0002",
        "--out",
        &again,
        "--tpm",
        &t.tcti(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists") && err.contains("0x81020001"), "{err}");
}

#[cfg(not(feature = "tpm"))]
#[test]
fn without_the_tpm_feature_masa_idevid_tpm_says_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let state = masa(tmp.path());
    let dev = tmp.path().join("dev").display().to_string();
    let out =
        brski(&["masa", "idevid", "--state", &state, "--serial", "X1", "--out", &dev, "--tpm", "swtpm"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without TPM support") && err.contains("--features tpm"), "{err}");
    assert!(!tmp.path().join("dev").exists(), "nothing written");
}

/// The default build links no TPM (or PKCS#11) library; the `tpm` build links libtss2-esys.
#[test]
fn only_the_tpm_build_links_libtss2() {
    if !testkit::peer("ldd") {
        return;
    }
    let out = testkit::run_ok(std::path::Path::new("."), "ldd", &[env!("CARGO_BIN_EXE_brski")]);
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(!libs.contains("softhsm") && !libs.contains("p11"), "PKCS#11 modules are dlopen()ed: {libs}");
    assert_eq!(libs.contains("libtss2-esys"), cfg!(feature = "tpm"), "{libs}");
}
