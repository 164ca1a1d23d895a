//! `brski voucher` and `brski demo` as a user runs them: every published signed vector
//! through `brski voucher verify` (exit 0), the must-fail vectors (exit 1 with the reason on
//! one line), `inspect` on all formats, and `sign` output verified by `verify`.
//! (A test of the root `brski` package; the cross-role suites are in e2e/tests/.)

use std::path::Path;
use std::process::{Command, Output};
use testkit::success_stdout as ok;
use testkit::vector;

fn brski(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brski")).args(args).output().expect("run brski")
}

fn v(rel: &str) -> String {
    vector(rel).display().to_string()
}

fn rejected(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "expected exit 1: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "reason must be one line: {err}");
    err
}

/// Writes the PEM certificate(s) `der` into `dir/name` and returns the path.
fn pem_file(dir: &Path, name: &str, der: &[u8]) -> String {
    let cert = shared::pki::cert_from_der(der).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, shared::pki::cert_to_pem(&cert).unwrap()).unwrap();
    p.display().to_string()
}

#[test]
fn rfc8995_vectors_verify_with_the_cli() {
    let vendor = v("rfc8995-appendix-c/vendor-ca.crt.pem");
    let at = "2021-04-14T00:00:00Z";
    let out = ok(&brski(&[
        "voucher",
        "verify",
        &v("rfc8995-appendix-c/voucher.cms.der"),
        "--trust",
        &vendor,
        "--at",
        at,
        "--nonce",
        "-_XE9zK9q8Ll1qylMtLKeg",
        "--serial",
        "00-D0-E5-F2-00-02",
        "--registrar-cert",
        &v("rfc8995-appendix-c/registrar.crt.pem"),
        "--require-nonce",
    ]));
    assert!(out.starts_with("OK: voucher (CMS)"), "{out}");
    // base64-wrapped input, and the voucher-requests.
    ok(&brski(&[
        "voucher",
        "verify",
        &v("rfc8995-appendix-c/voucher.cms.b64"),
        "--trust",
        &vendor,
        "--at",
        at,
    ]));
    ok(&brski(&[
        "voucher",
        "verify",
        &v("rfc8995-appendix-c/pledge-voucher-request.cms.b64"),
        "--trust",
        &vendor,
        "--at",
        at,
    ]));
    let rvr = ok(&brski(&[
        "voucher",
        "verify",
        &v("rfc8995-appendix-c/registrar-voucher-request.cms.der"),
        "--trust",
        &v("rfc8995-appendix-c/registrar-ca.crt.pem"),
        "--at",
        at,
    ]));
    assert!(rvr.starts_with("OK: voucher-request (CMS)"), "{rvr}");
}

#[test]
fn rfc8366bis_jws_and_cose_vectors_verify_with_the_cli() {
    let at = "2022-07-11T00:00:00Z";
    let vendor = v("rfc8995-appendix-c/vendor-ca.crt.pem");
    ok(&brski(&[
        "voucher",
        "verify",
        &v("rfc8366bis-examples/voucher_00-D0-E5-F2-00-02.pkcs"),
        "--trust",
        &vendor,
        "--at",
        at,
        "--nonce",
        "4vTsppS2CeqBzhEdoifM2g",
    ]));
    ok(&brski(&[
        "voucher",
        "verify",
        &v("rfc8366bis-examples/vr_00-D0-E5-F2-00-02.b64"),
        "--trust",
        &vendor,
        "--at",
        at,
    ]));
    ok(&brski(&[
        "voucher",
        "verify",
        &v("rfc8366bis-examples/jws-voucher-example.jws.json"),
        "--trust",
        &v("rfc8995-appendix-c/masa.crt.pem"),
        "--at",
        "2021-06-01T00:00:00Z",
    ]));
    let dir = tempfile::tempdir().unwrap();
    for (obj, signer) in
        [("voucher", "voucher-signer.pem"), ("pvr", "pvr-signer.pem"), ("rvr", "rvr-signer.pem")]
    {
        let ca =
            shared::pki::certs_from_pem(&std::fs::read(vector(&format!("jws-voucher/{signer}"))).unwrap())
                .unwrap()
                .pop()
                .unwrap();
        let ca_path = pem_file(dir.path(), signer, &shared::pki::cert_to_der(&ca).unwrap());
        ok(&brski(&[
            "voucher",
            "verify",
            &v(&format!("jws-voucher/{obj}.jws.json")),
            "--trust",
            &ca_path,
            "--at",
            "2024-12-01T00:00:00Z",
        ]));
    }
    let cose_at = "2023-01-01T00:00:00Z";
    let out = ok(&brski(&[
        "voucher",
        "verify",
        &v("cbrski-cose-examples/voucher.hex"),
        "--trust",
        &v("cbrski-cose-examples/masa_ca.crt.pem"),
        "--at",
        cose_at,
        "--nonce-hex",
        "57EED786AD404907",
        "--serial",
        "JADA123456789",
    ]));
    assert!(out.starts_with("OK: voucher (COSE)"), "{out}");
    ok(&brski(&[
        "voucher",
        "verify",
        &v("cbrski-cose-examples/pvr.hex"),
        "--trust",
        &v("cbrski-cose-examples/pledge.crt.pem"),
        "--at",
        cose_at,
    ]));
    ok(&brski(&[
        "voucher",
        "verify",
        &v("cbrski-cose-examples/rvr.hex"),
        "--trust",
        &v("cbrski-cose-examples/registrar.crt.pem"),
        "--at",
        cose_at,
    ]));
}

#[test]
fn prm_vectors_verify_with_their_signers() {
    let dir = tempfile::tempdir().unwrap();
    for obj in ["pvr.jws.json", "voucher.jws.json", "voucher-countersigned.jws.json"] {
        let bytes = std::fs::read(vector(&format!("brski-prm-examples/{obj}"))).unwrap();
        let signed = shared::voucher::SignedVoucher::parse(&bytes).unwrap();
        let signer = signed.envelope().certificates().remove(0);
        let trust = pem_file(dir.path(), &format!("{obj}.pem"), &shared::pki::cert_to_der(&signer).unwrap());
        ok(&brski(&[
            "voucher",
            "verify",
            &v(&format!("brski-prm-examples/{obj}")),
            "--trust",
            &trust,
            "--at",
            "2024-06-25T00:00:00Z",
        ]));
    }
}

#[test]
fn must_fail_vectors_exit_1_with_the_reason() {
    // Stale RSA vendor CA: it signs none of these artifacts.
    let err = rejected(&brski(&[
        "voucher",
        "verify",
        &v("rfc8366bis-examples/voucher_00-D0-E5-F2-00-02.pkcs"),
        "--trust",
        &v("rfc8366bis-examples/vendor-00-D0-E5-F2-00-02.crt"),
        "--at",
        "2022-07-11T00:00:00Z",
    ]));
    assert!(err.contains("not issued by a trusted anchor"), "{err}");
    // cBRSKI voucher whose nonce differs from the PVR's (h'23BFBBC9C2BCF213').
    let err = rejected(&brski(&[
        "voucher",
        "verify",
        &v("cbrski-cose-examples/voucher.hex"),
        "--trust",
        &v("cbrski-cose-examples/masa_ca.crt.pem"),
        "--at",
        "2023-01-01T00:00:00Z",
        "--nonce-hex",
        "23BFBBC9C2BCF213",
    ]));
    assert!(err.contains("nonce does not match"), "{err}");
    // Wrong signer: the pledge's certificate did not sign the voucher.
    let err = rejected(&brski(&[
        "voucher",
        "verify",
        &v("cbrski-cose-examples/voucher.hex"),
        "--trust",
        &v("cbrski-cose-examples/pledge.crt.pem"),
        "--at",
        "2023-01-01T00:00:00Z",
    ]));
    assert!(err.contains("signature does not verify"), "{err}");
    // PRM voucher from another run: its nonce differs from the PVR's (khNyKpMthccia1rXw44/vQ==).
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(vector("brski-prm-examples/voucher.jws.json")).unwrap();
    let masa = shared::voucher::SignedVoucher::parse(&bytes).unwrap().envelope().certificates().remove(0);
    let trust = pem_file(dir.path(), "masa.pem", &shared::pki::cert_to_der(&masa).unwrap());
    let err = rejected(&brski(&[
        "voucher",
        "verify",
        &v("brski-prm-examples/voucher.jws.json"),
        "--trust",
        &trust,
        "--at",
        "2024-06-25T00:00:00Z",
        "--nonce",
        "khNyKpMthccia1rXw44/vQ==",
    ]));
    assert!(err.contains("nonce does not match"), "{err}");
    // RFC 8995 voucher checked at a time its MASA certificate had expired.
    let err = rejected(&brski(&[
        "voucher",
        "verify",
        &v("rfc8995-appendix-c/voucher.cms.der"),
        "--trust",
        &v("rfc8995-appendix-c/vendor-ca.crt.pem"),
        "--at",
        "2030-01-01T00:00:00Z",
    ]));
    assert!(err.contains("expired"), "{err}");
    // Another serial number.
    let err = rejected(&brski(&[
        "voucher",
        "verify",
        &v("rfc8995-appendix-c/voucher.cms.der"),
        "--trust",
        &v("rfc8995-appendix-c/vendor-ca.crt.pem"),
        "--at",
        "2021-04-14T00:00:00Z",
        "--serial",
        "00-D0-E5-F2-00-03",
    ]));
    assert!(err.contains("serial"), "{err}");
    // A voucher-request for another serial number.
    let err = rejected(&brski(&[
        "voucher",
        "verify",
        &v("rfc8995-appendix-c/pledge-voucher-request.cms.der"),
        "--trust",
        &v("rfc8995-appendix-c/vendor-ca.crt.pem"),
        "--at",
        "2021-04-14T00:00:00Z",
        "--serial",
        "00-D0-E5-F2-00-03",
    ]));
    assert!(err.contains("00-D0-E5-F2-00-03"), "{err}");
}

#[test]
fn inspect_shows_every_format_from_file_and_stdin() {
    let out = ok(&brski(&["voucher", "inspect", &v("rfc8995-appendix-c/voucher.cms.b64")]));
    assert!(
        out.contains("format:    CMS")
            && out.contains("NOT VERIFIED")
            && out.contains("-_XE9zK9q8Ll1qylMtLKeg"),
        "{out}"
    );
    let out = ok(&brski(&["voucher", "inspect", &v("jws-voucher/rvr.jws.json")]));
    assert!(
        out.contains("format:    JWS") && out.contains("voucher-request") && out.contains("idevid-issuer"),
        "{out}"
    );
    let out = ok(&brski(&["voucher", "inspect", "--json", &v("cbrski-cose-examples/voucher.hex")]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["ietf-voucher:voucher"]["serial-number"], "JADA123456789");
    let mut child = Command::new(env!("CARGO_BIN_EXE_brski"))
        .args(["voucher", "inspect", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(vector("rfc8995-appendix-c/voucher.cms.der")).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(ok(&out).contains("00-D0-E5-F2-00-02"));
    let err = brski(&["voucher", "inspect", &v("rfc8995-appendix-c/vendor-ca.crt.pem")]);
    assert!(!err.status.success());
}

#[test]
fn sign_then_verify_in_all_formats() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // The published MASA key, copied with the permissions brski insists on.
    let key = dir.path().join("masa.key");
    std::fs::copy(vector("rfc8995-appendix-c/masa.key.pem"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let input = dir.path().join("v.json");
    std::fs::write(&input, br#"{"ietf-voucher:voucher":{"assertion":"logged","serial-number":"00-D0-E5-F2-00-02","nonce":"bm9uY2Utbm9uY2U=","created-on":"2021-04-13T20:00:00Z","pinned-domain-cert":"MAA="}}"#).unwrap();
    for format in ["cms", "jws", "cose"] {
        let out = dir.path().join(format!("v.{format}"));
        ok(&brski(&[
            "voucher",
            "sign",
            "--in",
            input.to_str().unwrap(),
            "--key",
            &format!("file:{}", key.display()),
            "--cert",
            &v("rfc8995-appendix-c/masa.crt.pem"),
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
            "--base64",
        ]));
        let res = ok(&brski(&[
            "voucher",
            "verify",
            out.to_str().unwrap(),
            "--trust",
            &v("rfc8995-appendix-c/vendor-ca.crt.pem"),
            "--at",
            "2021-04-14T00:00:00Z",
            "--nonce",
            "bm9uY2Utbm9uY2U=",
        ]));
        assert!(res.contains("00-D0-E5-F2-00-02"), "{format}: {res}");
    }
    // A world-readable key is refused with the reason.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = brski(&[
        "voucher",
        "sign",
        "--in",
        input.to_str().unwrap(),
        "--key",
        &format!("file:{}", key.display()),
        "--cert",
        &v("rfc8995-appendix-c/masa.crt.pem"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    // Unknown leaves are refused when signing.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&input, br#"{"ietf-voucher:voucher":{"serial-number":"x","bogus":1}}"#).unwrap();
    let out = brski(&[
        "voucher",
        "sign",
        "--in",
        input.to_str().unwrap(),
        "--key",
        &format!("file:{}", key.display()),
        "--cert",
        &v("rfc8995-appendix-c/masa.crt.pem"),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bogus"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn demo_runs_the_whole_chain_and_reuses_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = ok(&brski(&["demo", "--state", state.to_str().unwrap()]));
    for step in [
        "MASA (manufacturer) and registrar",
        "bootstraps with BRSKI",
        "Identity Proxy",
        "a credential with no owner",
        "model 1: the owner signs",
        "model 3: the server challenges the owner",
        "owner mailto:alice@campus.example (agent-mediated)",
        "owner mailto:alice@campus.example (server-mediated)",
        "model 2: the owner's gateway approves",
        "owner https://gateway.research.campus.example (owner-mediated)",
        "brski_issued_total{role=\"registrar\",kind=\"agent-credential\"} 4",
        "brski_issued_total{role=\"masa\",kind=\"voucher\"} 1",
        "brski_requests_total{role=\"proxy\",route=\"/v1/credentials\",method=\"POST\",status=\"200\"} 3",
    ] {
        assert!(out.contains(step), "missing {step:?} in\n{out}");
    }
    let pledge = state.join("lab/pledges/demo-0001");
    // The voucher the pledge stored verifies with the manufacturer's anchor, pinned to the
    // registrar the pledge enrolled with.
    ok(&brski(&[
        "voucher",
        "verify",
        pledge.join("voucher.vcj").to_str().unwrap(),
        "--trust",
        state.join("lab/masa/manufacturer-ca.pem").to_str().unwrap(),
        "--serial",
        "demo-0001",
    ]));
    // A second run reuses the state: same domain CA, a new pledge.
    let ca = std::fs::read(state.join("lab/registrar/domain-ca.pem")).unwrap();
    let again = ok(&brski(&["demo", "--state", state.to_str().unwrap()]));
    assert!(again.contains("pledge demo-0002"), "{again}");
    assert_eq!(std::fs::read(state.join("lab/registrar/domain-ca.pem")).unwrap(), ca);
}
