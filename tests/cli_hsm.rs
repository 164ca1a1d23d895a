//! `brski masa init --voucher-signer-key` and `brski registrar init --domain-ca-key` with keys
//! in SoftHSM v2 (`pkcs11:` URIs, the PIN from a file). The tokens are made in this process;
//! the `brski` processes find them through the inherited `SOFTHSM2_CONF`.

use shared::keys::pkcs11::SoftHsmToken;
use shared::keys::Algorithm;
use std::process::{Command, Output};
use tests::success_stdout as ok;

fn brski(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brski")).args(args).output().expect("run brski")
}

/// A new token labelled `label`, or `None` (after a loud notice) without SoftHSM.
fn token(label: &str) -> Option<SoftHsmToken> {
    tests::softhsm_token(label)
}

#[test]
fn masa_and_registrar_init_with_keys_in_softhsm() {
    let (Some(masa_token), Some(ca_token)) = (token("cli-masa"), token("cli-ca")) else { return };
    masa_token.generate("vs", Algorithm::Es256).unwrap();
    ca_token.generate("ca", Algorithm::Es256).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).display().to_string();
    std::fs::write(tmp.path().join("pin"), format!("{}\n", SoftHsmToken::PIN)).unwrap();
    let uri = |token: &str, object: &str| {
        format!("pkcs11:token={token};object={object};type=private?pin-source=file:{}", p("pin"))
    };

    let out = ok(&brski(&[
        "masa",
        "init",
        "--state",
        &p("masa"),
        "--url",
        "127.0.0.1:9443",
        "--voucher-signer-key",
        &uri("cli-masa", "vs"),
    ]));
    assert!(!out.contains("voucher-signer.key"), "{out}");
    assert!(!tmp.path().join("masa/voucher-signer.key").exists());
    let toml = std::fs::read_to_string(tmp.path().join("masa/masa.toml")).unwrap();
    assert!(toml.contains(&format!("voucher_signer_key = \"{}\"", uri("cli-masa", "vs"))), "{toml}");

    let manufacturer = format!("lab={}", p("masa/manufacturer-ca.pem"));
    let args =
        ["registrar", "init", "--state", &p("reg"), "--manufacturer", &manufacturer, "--domain-ca-key"];
    let ca_uri = uri("cli-ca", "ca");
    ok(&brski(&[&args[..], &[ca_uri.as_str()]].concat()));
    assert!(!tmp.path().join("reg/domain-ca.key").exists());
    if tests::peer("openssl") {
        // The registrar certificate was signed inside the token by the domain CA key, and the
        // voucher-signing certificate certifies the token's voucher key.
        let verify = |ca: &str, cert: &str| {
            let out = tests::run_ok(tmp.path(), "openssl", &["verify", "-CAfile", &p(ca), &p(cert)]);
            assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
        };
        verify("reg/domain-ca.pem", "reg/registrar.pem");
        verify("masa/manufacturer-ca.pem", "masa/voucher-signer.pem");
    }

    // A wrong PIN: init fails, naming the key but not the PIN.
    let bad = "pkcs11:token=cli-ca;object=ca;type=private?pin-value=98765";
    let reg2 = p("reg2");
    let out = brski(&[
        "registrar",
        "init",
        "--state",
        &reg2,
        "--manufacturer",
        &manufacturer,
        "--domain-ca-key",
        bad,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrong PIN") && stderr.contains("token=cli-ca"), "{stderr}");
    assert!(!stderr.contains("98765"), "the PIN leaked: {stderr}");
}
