//! `brski masa init --voucher-signer-key`, `brski registrar init --domain-ca-key` and
//! `brski registrar init --registrar-key` with keys in SoftHSM v2 (`pkcs11:` URIs, the PIN from
//! a file or in the URI). The tokens are made in this process; the `brski` processes find them
//! through the inherited `SOFTHSM2_CONF`.

use shared::keys::{load_signer, Algorithm};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use testkit::free_port;
use testkit::softhsm::SoftHsmToken;
use testkit::success_stdout as ok;

fn brski(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brski")).args(args).output().expect("run brski")
}

/// Starts `brski args...` and waits for the first line of its banner.
fn serve(args: &[&str], expect: &str) -> testkit::Server {
    testkit::serve(env!("CARGO_BIN_EXE_brski"), args, expect)
}

/// A new token labelled `label`, or `None` (after a loud notice) without SoftHSM.
fn token(label: &str) -> Option<SoftHsmToken> {
    testkit::softhsm_token(label)
}

/// One test at a time: a token made while another test's `brski` child scans the token
/// directory can be seen half-written, and SoftHSM's in-process slot refresh is not safe
/// against a concurrent C_InitToken.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SOFTHSM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SOFTHSM.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn masa_and_registrar_init_with_keys_in_softhsm() {
    let _one = one_at_a_time();
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
    if testkit::peer("openssl") {
        // The registrar certificate was signed inside the token by the domain CA key, and the
        // voucher-signing certificate certifies the token's voucher key.
        let verify = |ca: &str, cert: &str| {
            let out = testkit::run_ok(tmp.path(), "openssl", &["verify", "-CAfile", &p(ca), &p(cert)]);
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

#[test]
fn registrar_init_with_the_registrar_tls_key_in_softhsm() {
    let _one = one_at_a_time();
    let Some(t) = token("cli-reg") else { return };
    // With the PIN in the URI: it must not be printed, and registrar.toml is a secret.
    let key_uri = t.generate("tls", Algorithm::Es256).unwrap();
    assert!(key_uri.contains("pin-value=1234"), "{key_uri}");
    let token_spki = load_signer(&key_uri).expect("the test opens the token key").public_key_der();
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    // `registrar serve` needs a trusted manufacturer.
    ok(&brski(&["masa", "init", "--state", &p("masa"), "--url", "127.0.0.1:9443"]));
    let manufacturer = format!("lab={}", p("masa/manufacturer-ca.pem"));

    let out = brski(&[
        "registrar",
        "init",
        "--state",
        &p("reg"),
        "--listen",
        &listen,
        "--manufacturer",
        &manufacturer,
        "--registrar-key",
        &key_uri,
    ]);
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("registrar.key") && stdout.contains("registrar.pem"), "{stdout}");
    assert!(!stdout.contains("pin-value=1234") && !stderr.contains("pin-value=1234"), "{stdout}{stderr}");
    // No software copy of the registrar key; the domain CA key is still a new file.
    assert!(!tmp.path().join("reg/registrar.key").exists());
    assert!(tmp.path().join("reg/domain-ca.key").exists());
    let config = tmp.path().join("reg/registrar.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    assert!(toml.contains(&format!("registrar_key = \"{key_uri}\"")), "{toml}");
    assert!(toml.contains("domain_ca_key = \"file:domain-ca.key\""), "{toml}");
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);

    // The registrar certificate certifies the token's key (and chains to the domain CA).
    let pem = std::fs::read_to_string(tmp.path().join("reg/registrar.pem")).unwrap();
    let cert = shared::pki::cert_from_pem(&pem).unwrap();
    assert_eq!(shared::pki::spki_der(&cert), token_spki);
    if testkit::peer("openssl") {
        let out = testkit::run_ok(
            tmp.path(),
            "openssl",
            &["x509", "-noout", "-pubkey", "-in", &p("reg/registrar.pem")],
        );
        let token_pem = der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &token_spki).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), token_pem);
        let out = testkit::run_ok(
            tmp.path(),
            "openssl",
            &["verify", "-CAfile", &p("reg/domain-ca.pem"), &p("reg/registrar.pem")],
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
    }

    // `registrar serve` does its TLS handshakes with the key in the token: curl, trusting only
    // the domain CA, fetches the EST CA certificates.
    if testkit::peer("curl") {
        let _reg =
            serve(&["registrar", "serve", "--state", &p("reg"), "--no-mdns"], "brski registrar on https://");
        let url = format!("https://{listen}/.well-known/est/cacerts");
        let out = testkit::run_ok(
            tmp.path(),
            "curl",
            &["-sS", "--fail", "--cacert", &p("reg/domain-ca.pem"), "-o", &p("cacerts.p7"), &url],
        );
        assert!(out.status.success());
        assert!(!std::fs::read(tmp.path().join("cacerts.p7")).unwrap().is_empty());
    }

    // A wrong PIN: init fails before writing any key or certificate, naming the key but not the PIN.
    let bad = key_uri.replace("pin-value=1234", "pin-value=98765");
    let out = brski(&["registrar", "init", "--state", &p("reg2"), "--registrar-key", &bad]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrong PIN") && stderr.contains("token=cli-reg"), "{stderr}");
    assert!(!stderr.contains("98765"), "the PIN leaked: {stderr}");
    for f in ["domain-ca.key", "domain-ca.pem", "registrar.pem", "registrar.toml"] {
        assert!(!tmp.path().join("reg2").join(f).exists(), "{f} written");
    }
}
