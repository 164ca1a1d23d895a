//! `init` writes an owner directory once, with the right modes, and refuses to overwrite it.

use super::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn init_writes_four_files_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = InitOptions {
        dir: dir.path().join("alice"),
        id: "mailto:alice@example.com".into(),
        kid: None,
        alg: Algorithm::EdDsa,
        key: None,
        trust_domain: Some("campus.example".into()),
        server: None,
        domain_ca: None,
        validity: Duration::from_secs(86400),
    };
    let r = init(&o).unwrap();
    let mode = std::fs::metadata(&r.files[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let id = crate::OwnerIdentity::load(&o.dir).unwrap();
    assert_eq!(id.config.kid, r.kid);
    assert_eq!(pki::certificate_san(&id.cert), vec![San::Uri("mailto:alice@example.com".into())]);
    pki::verify_chain(&id.cert, &[], std::slice::from_ref(&id.cert), time::OffsetDateTime::now_utc())
        .unwrap();
    assert!(r.policy_snippet.contains("kid = \"owner-"));
    assert!(matches!(init(&o), Err(OwnerError::Config(m)) if m.contains("refusing")));
}

#[test]
fn init_with_an_existing_key_writes_no_key_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("kept.pem");
    let key = shared::keys::generate_key_file(&key_path, Algorithm::Es256).unwrap();
    let o = InitOptions {
        dir: dir.path().join("alice"),
        id: "mailto:alice@example.com".into(),
        kid: Some("alice-1".into()),
        alg: Algorithm::EdDsa,
        key: Some(format!("file:{}", key_path.display())),
        trust_domain: None,
        server: None,
        domain_ca: None,
        validity: Duration::from_secs(86400),
    };
    let r = init(&o).unwrap();
    assert!(!o.dir.join(KEY_FILE).exists());
    assert_eq!(r.files.len(), 3);
    assert_eq!(r.key_uri, format!("file:{}", key_path.display()));
    let id = crate::OwnerIdentity::load(&o.dir).unwrap();
    assert_eq!(id.config.key.as_deref(), Some(r.key_uri.as_str()));
    assert_eq!(id.key.public_key_der(), key.public_key_der());
    assert_eq!(id.key.algorithm(), Algorithm::Es256, "the key's algorithm, not --alg");
    assert_eq!(pki::spki_der(&id.cert), key.public_key_der());
    let public = std::fs::read_to_string(o.dir.join(PUBLIC_FILE)).unwrap();
    assert_eq!(der::pem::decode_vec(public.as_bytes()).unwrap().1, key.public_key_der());

    // Another key behind the same owner.pem is refused on load.
    std::fs::remove_file(&key_path).unwrap();
    shared::keys::generate_key_file(&key_path, Algorithm::Es256).unwrap();
    let e = crate::OwnerIdentity::load(&o.dir).unwrap_err().to_string();
    assert!(e.contains("does not carry the owner key file:"), "{e}");

    // A relative file: path on the command line is relative to the current directory.
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(absolute_file_uri("file:k.pem").unwrap(), format!("file:{}", cwd.join("k.pem").display()));
    assert_eq!(absolute_file_uri("file:/k.pem").unwrap(), "file:/k.pem");

    // A P-384 key is not an owner key; nothing is written.
    let p384 = dir.path().join("p384.pem");
    shared::keys::generate_key_file(&p384, Algorithm::Es384).unwrap();
    let o = InitOptions { dir: dir.path().join("bob"), key: Some(format!("file:{}", p384.display())), ..o };
    let e = init(&o).unwrap_err().to_string();
    assert!(e.contains("P-256 (ES256) or Ed25519") && e.contains("ES384"), "{e}");
    assert!(!o.dir.exists());
}

/// With the crate's own `pkcs11` feature (`cargo test -p owner --features pkcs11`), an owner
/// key in a SoftHSM token: no owner.key, owner.toml names the token key (PIN kept out of
/// the report), owner.pem carries the token's public key. Skips loudly without SoftHSM
/// (fails under `BRSKI_REQUIRE_PEERS=1`).
#[cfg(feature = "pkcs11")]
#[test]
fn init_with_an_owner_key_in_softhsm() {
    use testkit::softhsm::SoftHsmToken;
    if !SoftHsmToken::available() {
        assert_ne!(
            std::env::var("BRSKI_REQUIRE_PEERS").as_deref(),
            Ok("1"),
            "BRSKI_REQUIRE_PEERS=1 but SoftHSM (softhsm2-util, libsofthsm2.so) is not installed"
        );
        eprintln!("\n!!!!! SKIPPED: SoftHSM (package softhsm2) is not installed; this test needs it !!!!!\n");
        return;
    }
    let token = SoftHsmToken::create("owner-crate").expect("create a SoftHSM token");
    let uri = token.generate("owner", Algorithm::Es256).unwrap();
    let token_spki = shared::keys::load_signer(&uri).unwrap().public_key_der();
    let dir = tempfile::tempdir().unwrap();
    let o = InitOptions {
        dir: dir.path().join("alice"),
        id: "mailto:alice@example.com".into(),
        kid: Some("alice-hsm".into()),
        alg: Algorithm::EdDsa,
        key: Some(uri.clone()),
        trust_domain: None,
        server: None,
        domain_ca: None,
        validity: Duration::from_secs(86400),
    };
    let r = init(&o).unwrap();
    assert!(!o.dir.join(KEY_FILE).exists(), "no software copy of the owner key");
    assert_eq!(r.files.len(), 3);
    let pin = format!("pin-value={}", SoftHsmToken::PIN);
    assert!(r.key_uri.contains("pin-value=***") && !r.key_uri.contains(&pin), "{}", r.key_uri);
    let id = crate::OwnerIdentity::load(&o.dir).unwrap();
    assert_eq!(id.config.key.as_deref(), Some(uri.as_str()));
    assert_eq!(id.key.public_key_der(), token_spki);
    assert_eq!(pki::spki_der(&id.cert), token_spki);
    // The PIN sits in the URI, so owner.toml is readable by its owner only.
    let mode = std::fs::metadata(o.dir.join(CONFIG_FILE)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
