//! OpenSSL both ways: our CMS verifies in `openssl cms -verify`, OpenSSL's CMS (DER and
//! streamed BER) verifies with us, OpenSSL CSRs are accepted, and the certificates we issue
//! pass `openssl verify` and show the IDevID fields in `openssl x509 -text`.

use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki::*;
use shared::signed::cms::{self, CmsSigned, ID_CT_ANIMA_JSON_VOUCHER};
use shared::signed::Trust;
use std::path::Path;
use std::time::Duration;
use testkit::{peer, run, run_ok};

const YEAR: Duration = Duration::from_secs(365 * 86400);
const VOUCHER: &[u8] = br#"{"ietf-voucher:voucher":{"assertion":"logged","serial-number":"SN-1","nonce":"abcdEFGH1234","created-on":"2026-11-26T10:00:00Z","pinned-domain-cert":"MAA="}}"#;

struct Pki {
    ca: CertificateAuthority,
    masa_key: SoftwareKey,
    masa_cert: x509_cert::Certificate,
}

fn pki(alg: Algorithm) -> Pki {
    let ca_key = SoftwareKey::generate(Algorithm::Es384).unwrap();
    let ca = CertificateAuthority::new(
        create_ca("CN=Interop Manufacturer CA", &ca_key, YEAR, None).unwrap(),
        Box::new(ca_key),
    )
    .unwrap();
    let masa_key = SoftwareKey::generate(alg).unwrap();
    let csr = Csr::verify_der(&build_csr(&parse_name("CN=Interop MASA").unwrap(), &[], &masa_key).unwrap())
        .unwrap();
    let masa_cert = ca.issue(&csr, &Profile::end_entity(YEAR)).unwrap();
    Pki { ca, masa_key, masa_cert }
}

fn write(dir: &Path, name: &str, data: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), data).unwrap();
}

#[test]
fn our_cms_voucher_passes_openssl_cms_verify() {
    if !peer("openssl") {
        return;
    }
    // Ed25519 is not here: OpenSSL 3.0 cannot sign or verify Ed25519 CMS at all
    // ("eddsa_digest_signverify_init: invalid digest"); our Ed25519 CMS is covered in `shared`.
    for alg in [Algorithm::Es256, Algorithm::Es384] {
        let p = pki(alg);
        let dir = tempfile::tempdir().unwrap();
        let signed =
            cms::sign(ID_CT_ANIMA_JSON_VOUCHER, VOUCHER, &p.masa_key, std::slice::from_ref(&p.masa_cert))
                .unwrap();
        write(dir.path(), "v.p7", &signed);
        write(dir.path(), "ca.pem", cert_to_pem(p.ca.certificate()).unwrap());
        run_ok(
            dir.path(),
            "openssl",
            &[
                "cms", "-verify", "-inform", "DER", "-in", "v.p7", "-binary", "-CAfile", "ca.pem", "-out",
                "payload",
            ],
        );
        assert_eq!(std::fs::read(dir.path().join("payload")).unwrap(), VOUCHER, "{alg}");
        let print =
            run_ok(dir.path(), "openssl", &["cms", "-cmsout", "-print", "-inform", "DER", "-in", "v.p7"]);
        let text = String::from_utf8_lossy(&print.stdout);
        assert!(text.contains("eContentType: undefined (1.2.840.113549.1.9.16.1.40)"), "{text}");
        // A different CA must not verify it.
        let other = pki(alg);
        write(dir.path(), "other.pem", cert_to_pem(other.ca.certificate()).unwrap());
        let bad = run(
            dir.path(),
            "openssl",
            &[
                "cms",
                "-verify",
                "-inform",
                "DER",
                "-in",
                "v.p7",
                "-binary",
                "-CAfile",
                "other.pem",
                "-out",
                "x",
            ],
        );
        assert!(!bad.status.success(), "{alg}: openssl accepted a voucher under the wrong CA");
    }
}

#[test]
fn openssl_cms_voucher_verifies_with_us_der_and_streamed_ber() {
    if !peer("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_ok(
        d,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=OpenSSL Vendor CA",
        ],
    );
    run_ok(
        d,
        "openssl",
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "masa.key",
            "-out",
            "masa.csr",
            "-subj",
            "/CN=OpenSSL MASA",
        ],
    );
    run_ok(
        d,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "masa.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-out",
            "masa.pem",
        ],
    );
    write(d, "v.json", VOUCHER);
    let anchors = certs_from_pem(&std::fs::read(d.join("ca.pem")).unwrap()).unwrap();
    let trust = Trust::now(anchors);
    for (out, extra) in [("der.p7", vec![]), ("ber.p7", vec!["-stream"]), ("noattr.p7", vec!["-noattr"])] {
        let mut args = vec![
            "cms",
            "-sign",
            "-nodetach",
            "-binary",
            "-md",
            "sha256",
            "-econtent_type",
            "1.2.840.113549.1.9.16.1.40",
            "-in",
            "v.json",
            "-signer",
            "masa.pem",
            "-inkey",
            "masa.key",
            "-outform",
            "DER",
            "-out",
            out,
        ];
        args.extend(extra);
        run_ok(d, "openssl", &args);
        let parsed = CmsSigned::parse(&std::fs::read(d.join(out)).unwrap()).unwrap();
        let result = parsed.verify(&trust, &[ID_CT_ANIMA_JSON_VOUCHER]);
        if out == "noattr.p7" {
            // eContentType other than id-data requires signed attributes (RFC 5652 §5.3).
            assert_eq!(result.unwrap_err(), shared::signed::SignatureError::MissingSignedAttrs);
        } else {
            let v = result.unwrap_or_else(|e| panic!("{out}: {e}"));
            assert_eq!(v.value().as_slice(), VOUCHER, "{out}");
            assert_eq!(v.signer_chain().len(), 2);
        }
    }
}

#[test]
fn openssl_csrs_are_accepted_and_issued_certs_pass_openssl_verify() {
    if !peer("openssl") {
        return;
    }
    let p = pki(Algorithm::Es256);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "ca.pem", cert_to_pem(p.ca.certificate()).unwrap());
    for (name, keyargs) in [
        ("p256", vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        ("p384", vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"]),
        ("ed25519", vec!["-newkey", "ed25519"]),
    ] {
        let mut args = vec![
            "req",
            "-new",
            "-nodes",
            "-keyout",
            "k.pem",
            "-outform",
            "DER",
            "-out",
            "r.der",
            "-subj",
            "/CN=openssl-client/O=Interop",
        ];
        args.extend(keyargs);
        args.extend(["-addext", "subjectAltName=DNS:client.example"]);
        run_ok(d, "openssl", &args);
        let csr = Csr::verify_der(&std::fs::read(d.join("r.der")).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(csr.requested_san(), vec![San::Dns("client.example".into())]);
        let cert = p.ca.issue(&csr, &Profile::end_entity(YEAR)).unwrap();
        write(d, "c.pem", cert_to_pem(&cert).unwrap());
        let out = run_ok(d, "openssl", &["verify", "-CAfile", "ca.pem", "c.pem"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "c.pem: OK", "{name}");
        // The issued certificate carries the CSR's key.
        run_ok(d, "openssl", &["x509", "-in", "c.pem", "-noout", "-pubkey", "-out", "cert.pub"]);
        run_ok(d, "openssl", &["pkey", "-in", "k.pem", "-pubout", "-out", "key.pub"]);
        assert_eq!(
            std::fs::read(d.join("cert.pub")).unwrap(),
            std::fs::read(d.join("key.pub")).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn openssl_shows_idevid_masa_url_and_serial_number() {
    if !peer("openssl") {
        return;
    }
    let p = pki(Algorithm::Es256);
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let mut profile = Profile::end_entity(YEAR * 20);
    profile.extra_extensions.push(masa_url_extension("https://masa.example.com/.well-known/brski").unwrap());
    let spki = <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(&key.public_key_der()).unwrap();
    let idevid =
        p.ca.issue_for_key(
            spki,
            name_with_serial("CN=Widget,O=Example Manufacturer", "00-D0-E5-F2-00-99").unwrap(),
            &[],
            &profile,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "idevid.pem", cert_to_pem(&idevid).unwrap());
    write(dir.path(), "ca.pem", cert_to_pem(p.ca.certificate()).unwrap());
    let text = run_ok(dir.path(), "openssl", &["x509", "-in", "idevid.pem", "-noout", "-text"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("serialNumber = 00-D0-E5-F2-00-99"), "{text}");
    assert!(text.contains("1.3.6.1.5.5.7.1.32"), "{text}");
    assert!(text.contains("https://masa.example.com/.well-known/brski"), "{text}");
    run_ok(dir.path(), "openssl", &["verify", "-CAfile", "ca.pem", "idevid.pem"]);
}
