//! TPM keys, PCRs and quotes on a real swtpm (feature `tpm`). Each test starts its own swtpm;
//! without swtpm the tests skip loudly, or fail under `BRSKI_REQUIRE_PEERS=1`.
#![cfg(feature = "tpm")]

use shared::crypto::PublicKey;
use shared::keys::{load_signer, Algorithm, Signer, TpmUri};
use shared::tpm::{self, swtpm::SwTpm, KeyKind};

const LDEVID: u32 = 0x8100_0002;

#[test]
fn a_tpm_key_signs_through_its_uri_and_never_leaves() {
    let Some(t) = SwTpm::for_test() else { return };
    let info = tpm::create_key(&t.tcti(), tpm::IDEVID_HANDLE, KeyKind::Signing, false).unwrap();
    let uri = TpmUri::new(tpm::IDEVID_HANDLE, &t.tcti()).to_string();
    let signer = load_signer(&uri).unwrap();
    assert_eq!(signer.algorithm(), Algorithm::Es256);
    assert_eq!(signer.public_key_der(), info.spki);
    let public = PublicKey::from_spki_der(&info.spki).unwrap();
    // More signatures than swtpm has object slots: each operation flushes what it loaded.
    for i in 0..8 {
        let msg = format!("voucher-request {i}");
        let sig = signer.sign(msg.as_bytes()).unwrap();
        public.verify_raw(Algorithm::Es256, msg.as_bytes(), &sig).unwrap();
        assert!(public.verify_raw(Algorithm::Es256, b"other", &sig).is_err());
    }
    // Threads share the TPM (one connection at a time).
    let signer = std::sync::Arc::new(signer);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (s, p) = (signer.clone(), public.clone());
            std::thread::spawn(move || {
                let m = format!("thread {i}");
                p.verify_raw(Algorithm::Es256, m.as_bytes(), &s.sign(m.as_bytes()).unwrap()).unwrap();
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
}

#[test]
fn an_occupied_handle_is_kept_unless_replaced_and_evict_removes_it() {
    let Some(t) = SwTpm::for_test() else { return };
    let first = tpm::create_key(&t.tcti(), LDEVID, KeyKind::Signing, false).unwrap();
    let e = tpm::create_key(&t.tcti(), LDEVID, KeyKind::Signing, false).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(tpm::read_key(&t.tcti(), LDEVID).unwrap(), first);
    let second = tpm::create_key(&t.tcti(), LDEVID, KeyKind::Signing, true).unwrap();
    assert_ne!(first.spki, second.spki, "a new key each time");
    assert!(tpm::evict_key(&t.tcti(), LDEVID).unwrap());
    assert!(!tpm::evict_key(&t.tcti(), LDEVID).unwrap());
    let e = load_signer(&TpmUri::new(LDEVID, &t.tcti()).to_string()).err().expect("refused");
    assert!(e.to_string().contains("no key at this handle"), "{e}");
}

#[test]
fn an_attestation_key_quotes_pcrs_with_the_nonce_and_cannot_sign_data() {
    let Some(t) = SwTpm::for_test() else { return };
    let ak = tpm::create_key(&t.tcti(), tpm::IAK_HANDLE, KeyKind::Attestation, false).unwrap();
    assert_eq!(ak.kind, KeyKind::Attestation);
    let e = load_signer(&TpmUri::new(tpm::IAK_HANDLE, &t.tcti()).to_string()).err().expect("refused");
    assert!(e.to_string().contains("restricted"), "{e}");

    let before = tpm::pcr_read(&t.tcti(), &[16]).unwrap();
    assert_eq!(before[&16], vec![0u8; 32]);
    tpm::pcr_extend(&t.tcti(), 16, [7u8; 32]).unwrap();
    let mut concat = vec![0u8; 32];
    concat.extend([7u8; 32]);
    let after = tpm::pcr_read(&t.tcti(), &[16]).unwrap();
    assert_eq!(after[&16], shared::crypto::sha256(&concat).to_vec(), "extend = SHA-256(old || digest)");

    let nonce = [0xA5u8; 32];
    let q = tpm::quote(&t.tcti(), tpm::IAK_HANDLE, &nonce, &[0, 7, 16]).unwrap();
    assert_eq!(q.pcrs.keys().copied().collect::<Vec<_>>(), [0, 7, 16]);
    assert_eq!(q.pcrs[&16], after[&16]);
    let public = PublicKey::from_spki_der(&ak.spki).unwrap();
    use shared::crypto::{Hash, SigForm};
    public.verify_ecdsa(Hash::Sha256, SigForm::Der, &q.attest, &q.signature).unwrap();
    assert_eq!(&q.attest[..4], &[0xff, 0x54, 0x43, 0x47], "TPM_GENERATED_VALUE");
    assert!(q.attest.windows(32).any(|w| w == nonce), "the nonce is the quote's extraData");
}
