//! TPM keys, PCRs and quotes on a real swtpm (feature `tpm`). Each test starts its own swtpm;
//! without swtpm the tests skip loudly, or fail under `BRSKI_REQUIRE_PEERS=1`.
#![cfg(feature = "tpm")]

use shared::crypto::PublicKey;
use shared::keys::{load_signer, Algorithm, Signer, TpmUri};
use shared::tpm::{self, KeyKind};
use testkit::swtpm::SwTpm;

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
    checked_by_tpm2_tools(&t, &ak.spki, &q, &nonce);
}

/// tpm2-tools as an independent verifier: `tpm2_checkquote` accepts the quote (signature by the
/// AK, the nonce, and the PCR values we report against the quoted digest) and refuses a changed
/// PCR value; `tpm2_readpublic` shows the keys are TPM-born and the AK restricted.
fn checked_by_tpm2_tools(t: &SwTpm, ak_spki: &[u8], q: &tpm::TpmQuoteData, nonce: &[u8]) {
    if !tests_peer("tpm2_checkquote") {
        return;
    }
    use tss_esapi::interface_types::algorithm::HashingAlgorithm;
    use tss_esapi::structures::{EccParameter, EccSignature, Signature};
    use tss_esapi::traits::Marshall;
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).display().to_string();
    let raw = p256::ecdsa::Signature::from_der(&q.signature).unwrap().to_bytes();
    let (r, s) = raw.split_at(32);
    let ecc = EccSignature::create(
        HashingAlgorithm::Sha256,
        EccParameter::try_from(r.to_vec()).unwrap(),
        EccParameter::try_from(s.to_vec()).unwrap(),
    )
    .unwrap();
    std::fs::write(path("sig.tss"), Signature::EcDsa(ecc).marshall().unwrap()).unwrap();
    std::fs::write(path("attest.bin"), &q.attest).unwrap();
    let pem = der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, ak_spki).unwrap();
    std::fs::write(path("ak.pem"), pem).unwrap();
    let values: Vec<u8> = q.pcrs.values().flatten().copied().collect();
    std::fs::write(path("pcrs.bin"), &values).unwrap();
    let check = |pcrs: &str| {
        std::process::Command::new("tpm2_checkquote")
            .args(["-u", &path("ak.pem"), "-m", &path("attest.bin"), "-s", &path("sig.tss"), "-g", "sha256"])
            .args(["-f", &path(pcrs), "-l", "sha256:0,7,16", "-q", &hex::encode(nonce)])
            .output()
            .unwrap()
    };
    let out = check("pcrs.bin");
    assert!(out.status.success(), "tpm2_checkquote: {}", String::from_utf8_lossy(&out.stderr));
    let mut tampered = values.clone();
    tampered[values.len() - 1] ^= 1;
    std::fs::write(path("tampered.bin"), &tampered).unwrap();
    assert!(!check("tampered.bin").status.success(), "a changed PCR value does not match the quote");

    let readpublic = |handle: u32| {
        let out = std::process::Command::new("tpm2_readpublic")
            .args(["-c", &format!("0x{handle:08x}")])
            .env("TPM2TOOLS_TCTI", t.tcti())
            .output()
            .unwrap();
        assert!(out.status.success(), "tpm2_readpublic: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let ak = readpublic(tpm::IAK_HANDLE);
    assert!(
        ak.contains("fixedtpm") && ak.contains("sensitivedataorigin") && ak.contains("restricted"),
        "{ak}"
    );
}

/// Like the workspace's `testkit::peer`: true when `tool` is installed, else a loud skip notice,
/// or a panic under `BRSKI_REQUIRE_PEERS=1`.
fn tests_peer(tool: &str) -> bool {
    let found =
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        assert!(
            std::env::var("BRSKI_REQUIRE_PEERS").as_deref() != Ok("1"),
            "BRSKI_REQUIRE_PEERS=1 but {tool} is not installed"
        );
        eprintln!("\n!!!!! SKIPPED: {tool} (package tpm2-tools) is not installed !!!!!\n");
    }
    found
}
