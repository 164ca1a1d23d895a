//! PKCS#11 keys on a real SoftHSM v2 token (feature `pkcs11`). Each test makes its own token;
//! without SoftHSM the tests skip loudly, or fail under `BRSKI_REQUIRE_PEERS=1`.
#![cfg(feature = "pkcs11")]

use shared::crypto::PublicKey;
use shared::keys::{load_signer, Algorithm, KeyError, Signer};
use testkit::softhsm::SoftHsmToken;

/// One test at a time in this process: SoftHSM refreshes its slot list when asked for it, and a
/// refresh racing another thread's C_InitToken aborts the process (`SlotManager::insertToken`
/// assertion, seen in CI).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SOFTHSM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SOFTHSM.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn token(label: &str) -> Option<SoftHsmToken> {
    if !SoftHsmToken::available() {
        if std::env::var("BRSKI_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("BRSKI_REQUIRE_PEERS=1 but SoftHSM (softhsm2-util, libsofthsm2.so) is not installed");
        }
        eprintln!("\n!!!!! SKIPPED: SoftHSM (package softhsm2) is not installed; this test needs it !!!!!\n");
        return None;
    }
    Some(SoftHsmToken::create(label).expect("create a SoftHSM token"))
}

fn round_trip(label: &str, alg: Algorithm) {
    let Some(t) = token(label) else { return };
    let uri = t.generate("k", alg).unwrap();
    let signer = load_signer(&uri).unwrap();
    assert_eq!(signer.algorithm(), alg);
    let public = PublicKey::from_spki_der(&signer.public_key_der()).unwrap();
    let msg = b"voucher bytes";
    let sig = signer.sign(msg).unwrap();
    public.verify_raw(alg, msg, &sig).unwrap();
    assert!(public.verify_raw(alg, b"other bytes", &sig).is_err());
    // Many threads share one signer (one session behind a mutex).
    let signer = std::sync::Arc::new(signer);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (s, p) = (signer.clone(), public.clone());
            std::thread::spawn(move || {
                let m = format!("message {i}");
                p.verify_raw(alg, m.as_bytes(), &s.sign(m.as_bytes()).unwrap()).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn p256_sign_verify_round_trip() {
    let _one = one_at_a_time();
    round_trip("p256", Algorithm::Es256);
}

#[test]
fn p384_sign_verify_round_trip() {
    let _one = one_at_a_time();
    round_trip("p384", Algorithm::Es384);
}

#[test]
fn pin_from_a_file() {
    let _one = one_at_a_time();
    let Some(t) = token("pinfile") else { return };
    t.generate("k", Algorithm::Es256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("pin");
    std::fs::write(&pin, format!("{}\n", SoftHsmToken::PIN)).unwrap();
    let uri = format!("pkcs11:token={};object=k;type=private?pin-source=file:{}", t.label, pin.display());
    let signer = load_signer(&uri).unwrap();
    let public = PublicKey::from_spki_der(&signer.public_key_der()).unwrap();
    public.verify_raw(Algorithm::Es256, b"m", &signer.sign(b"m").unwrap()).unwrap();
}

#[test]
fn wrong_pin_is_refused_without_showing_it() {
    let _one = one_at_a_time();
    let Some(t) = token("wrongpin") else { return };
    let uri = t.generate("k", Algorithm::Es256).unwrap();
    let uri = uri.replace("pin-value=1234", "pin-value=999999");
    let err = load_signer(&uri).err().expect("a wrong PIN must fail");
    let text = err.to_string();
    assert!(matches!(err, KeyError::Pkcs11 { .. }), "{text}");
    assert!(text.contains("wrong PIN"), "{text}");
    assert!(!text.contains("999999"), "the PIN leaked: {text}");
    assert!(text.contains("token=wrongpin"), "{text}");
}

#[test]
fn unknown_object_and_token_are_refused() {
    let _one = one_at_a_time();
    let Some(t) = token("unknown") else { return };
    t.generate("k", Algorithm::Es256).unwrap();
    let err = load_signer(&t.uri("nope")).err().expect("no such object").to_string();
    assert!(err.contains("no private key object"), "{err}");
    assert!(!err.contains(SoftHsmToken::PIN), "{err}");
    let other = t.uri("k").replace("token=unknown", "token=absent");
    let err = load_signer(&other).err().expect("no such token").to_string();
    assert!(err.contains("no initialised token"), "{err}");
}

#[test]
fn missing_module_is_a_clear_error() {
    let _one = one_at_a_time();
    let err = load_signer("pkcs11:object=k?module-path=/nonexistent/p11.so&pin-value=1")
        .err()
        .expect("no module")
        .to_string();
    assert!(err.contains("/nonexistent/p11.so"), "{err}");
    assert!(!err.contains("pin-value=1"), "{err}");
}

#[test]
fn ed25519_signs_or_is_refused_clearly() {
    let _one = one_at_a_time();
    let Some(t) = token("ed25519") else { return };
    match t.generate("k", Algorithm::EdDsa) {
        Ok(uri) => {
            let signer = load_signer(&uri).unwrap();
            assert_eq!(signer.algorithm(), Algorithm::EdDsa);
            let public = PublicKey::from_spki_der(&signer.public_key_der()).unwrap();
            public.verify_raw(Algorithm::EdDsa, b"m", &signer.sign(b"m").unwrap()).unwrap();
        }
        // A SoftHSM built without EdDSA cannot make the key at all.
        Err(e) => eprintln!("SoftHSM cannot generate Ed25519 keys here: {e}"),
    }
}
