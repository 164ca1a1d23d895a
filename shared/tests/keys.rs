//! Keys: generation, signing, PKCS#8 files with safe permissions, key URIs.

use shared::crypto::{raw_to_der, PublicKey};
use shared::keys::{
    generate_key_file, load_key_file, load_signer, Algorithm, KeyError, KeyUri, Signer, SoftwareKey,
};
use std::os::unix::fs::PermissionsExt;

const ALGS: [Algorithm; 3] = [Algorithm::Es256, Algorithm::Es384, Algorithm::EdDsa];

#[test]
fn every_algorithm_signs_and_verifies_raw_and_x509() {
    for alg in ALGS {
        let key = SoftwareKey::generate(alg).unwrap();
        assert_eq!(key.algorithm(), alg);
        let pk = PublicKey::from_spki_der(&key.public_key_der()).unwrap();
        let sig = key.sign(b"voucher").unwrap();
        pk.verify_raw(alg, b"voucher", &sig).unwrap();
        assert!(pk.verify_raw(alg, b"tampered", &sig).is_err(), "{alg}: tampered message must fail");
        let der = raw_to_der(alg, &sig).unwrap();
        pk.verify_x509(&alg.x509_oid(), b"voucher", &der).unwrap();
    }
}

#[test]
fn key_file_is_written_0600_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ALGS {
        let path = dir.path().join(format!("{alg}.pem"));
        let key = generate_key_file(&path, alg).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{alg}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM expected");
        let loaded = load_key_file(&path).unwrap();
        assert_eq!(loaded.public_key_der(), key.public_key_der());
        let via_uri = load_signer(&format!("file:{}", path.display())).unwrap();
        assert_eq!(via_uri.public_key_der(), key.public_key_der());
    }
}

#[test]
fn world_readable_key_is_refused_with_chmod_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    generate_key_file(&path, Algorithm::Es256).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = load_key_file(&path).unwrap_err();
    assert!(matches!(err, KeyError::InsecurePermissions { mode: 0o644, .. }), "{err}");
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn existing_key_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    let first = generate_key_file(&path, Algorithm::Es256).unwrap();
    assert!(matches!(generate_key_file(&path, Algorithm::Es256), Err(KeyError::Exists(_))));
    assert_eq!(load_key_file(&path).unwrap().public_key_der(), first.public_key_der());
}

#[test]
fn key_uris() {
    assert_eq!("file:/etc/k.pem".parse::<KeyUri>().unwrap(), KeyUri::File("/etc/k.pem".into()));
    assert_eq!("file:///etc/k.pem".parse::<KeyUri>().unwrap(), KeyUri::File("/etc/k.pem".into()));
    assert_eq!("file:rel/k.pem".parse::<KeyUri>().unwrap(), KeyUri::File("rel/k.pem".into()));
    for bad in ["tpm:0x81000001", "pkcs11:token=x", "/etc/k.pem", "file:"] {
        assert!(matches!(bad.parse::<KeyUri>(), Err(KeyError::UnsupportedUri(_))), "{bad}");
    }
}

#[test]
fn sec1_pem_from_openssl_style_vectors_loads() {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/vectors/rfc8995-appendix-c/masa.key.pem"
    ))
    .unwrap();
    let key = SoftwareKey::from_pem(&pem).unwrap();
    assert_eq!(key.algorithm(), Algorithm::Es256);
    let cert = shared::pki::certs_from_pem(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/vectors/rfc8995-appendix-c/masa.crt.pem"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(shared::pki::spki_der(&cert[0]), key.public_key_der());
    assert!(SoftwareKey::from_pem("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n").is_err());
}

#[test]
fn p256_signatures_verify_with_rustcrypto_whichever_library_signed() {
    // With the default feature the signature is made in aws-lc; RustCrypto must accept it, for
    // a generated key and for one loaded back from PKCS#8, and must refuse it for other bytes.
    let generated = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let loaded = SoftwareKey::from_pkcs8_der(&generated.to_pkcs8_der().unwrap()).unwrap();
    let spki = generated.public_key_der();
    let vk = <p256::ecdsa::VerifyingKey as p256::pkcs8::DecodePublicKey>::from_public_key_der(&spki).unwrap();
    for (i, key) in [&generated, &loaded].into_iter().enumerate() {
        let msg = format!("message {i}");
        let raw = key.sign(msg.as_bytes()).unwrap();
        assert_eq!(raw.len(), 64, "r || s");
        let sig = p256::ecdsa::Signature::from_slice(&raw).unwrap();
        use p256::ecdsa::signature::Verifier;
        vk.verify(msg.as_bytes(), &sig).unwrap();
        assert!(vk.verify(b"other", &sig).is_err());
    }
}
