//! Round trips through [`seal`] and [`open`] for each recipient kind, and the request-side checks.

use super::oids::ID_AES256_CBC;
use super::*;
use shared::keys::{Algorithm, SoftwareKey};
use shared::pki::{build_csr, create_ca, parse_name, CertificateAuthority, Csr, KeyUsageBit, Profile};
use shared::signed::Trust;
use spki::AlgorithmIdentifierOwned;
use std::time::Duration;
use x509_cert::Certificate;

fn new_ca() -> (CertificateAuthority, Certificate) {
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let cert = create_ca("CN=KP CA", &key, Duration::from_secs(86400), None).unwrap();
    (CertificateAuthority::new(cert.clone(), Box::new(key)).unwrap(), cert)
}

fn client_cert(ca: &CertificateAuthority, key: &SoftwareKey, ku: Vec<KeyUsageBit>) -> Certificate {
    let csr = Csr::verify_der(&build_csr(&parse_name("CN=client").unwrap(), &[], key).unwrap()).unwrap();
    let mut p = Profile::end_entity(Duration::from_secs(86400));
    p.key_usage = ku;
    ca.issue(&csr, &p).unwrap()
}

fn round_trip(alg: Algorithm, caps: Option<Vec<AlgorithmIdentifierOwned>>) -> Algorithms {
    let (ca, ca_cert) = new_ca();
    let client = SoftwareKey::generate(alg).unwrap();
    let cert = client_cert(&ca, &client, vec![KeyUsageBit::DigitalSignature, KeyUsageBit::KeyAgreement]);
    check_recipient_certificate(&cert).unwrap();
    let generated = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let pkcs8 = generated.to_pkcs8_der().unwrap();
    let recipient = Recipient::Certificate(Box::new(cert));
    let algs = choose_algorithms(&recipient, caps.as_deref()).unwrap();
    let der = seal(&pkcs8, ca.signer(), std::slice::from_ref(&ca_cert), &recipient, &algs).unwrap();
    let opened = open(&der, &Decryptor::Key(&client), &Trust::now(vec![ca_cert.clone()])).unwrap();
    assert_eq!(opened.pkcs8.as_slice(), pkcs8.as_slice());
    assert_eq!(opened.signer_chain[0], ca_cert);
    // Another key of the same curve cannot open it.
    let other = SoftwareKey::generate(alg).unwrap();
    assert!(matches!(
        open(&der, &Decryptor::Key(&other), &Trust::now(vec![ca_cert.clone()])),
        Err(KeyPackageError::NoRecipient(_))
    ));
    // A package from an untrusted signer is refused.
    let (_, stranger) = new_ca();
    assert!(matches!(
        open(&der, &Decryptor::Key(&client), &Trust::now(vec![stranger])),
        Err(KeyPackageError::Signature(_))
    ));
    algs
}

#[test]
fn kari_p256_and_p384_round_trip() {
    let a = round_trip(Algorithm::Es256, None);
    assert_eq!((a.wrap, a.kdf, a.content), (KeyWrap::Aes256, KdfScheme::Sha256, ContentCipher::Aes256Cbc));
    let caps = vec![KeyWrap::Aes128.algorithm_identifier(), KeyWrap::Aes192.algorithm_identifier()];
    let a = round_trip(Algorithm::Es384, Some(caps));
    assert_eq!((a.wrap, a.kdf), (KeyWrap::Aes192, KdfScheme::Sha384));
}

#[test]
fn kekri_round_trip_and_wrong_key() {
    let (ca, ca_cert) = new_ca();
    let shared = SharedKey::new(b"kek-1".to_vec(), vec![7u8; 16]).unwrap();
    let pkcs8 = SoftwareKey::generate(Algorithm::Es256).unwrap().to_pkcs8_der().unwrap();
    let recipient = Recipient::Shared(shared.clone());
    let caps = vec![KeyWrap::Aes128.algorithm_identifier()];
    let algs = choose_algorithms(&recipient, Some(&caps)).unwrap();
    let der = seal(&pkcs8, ca.signer(), std::slice::from_ref(&ca_cert), &recipient, &algs).unwrap();
    let trust = Trust::now(vec![ca_cert]);
    assert_eq!(open(&der, &Decryptor::Shared(&shared), &trust).unwrap().pkcs8.as_slice(), pkcs8.as_slice());
    let wrong = SharedKey::new(b"kek-1".to_vec(), vec![8u8; 16]).unwrap();
    assert!(matches!(open(&der, &Decryptor::Shared(&wrong), &trust), Err(KeyPackageError::NoRecipient(_))));
    // The shared key's wrap must be among the listed capabilities.
    let only256 = vec![KeyWrap::Aes256.algorithm_identifier()];
    assert!(matches!(choose_algorithms(&recipient, Some(&only256)), Err(KeyPackageError::Request(_))));
}

#[test]
fn recipient_checks() {
    let (ca, _) = new_ca();
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let signing_only = client_cert(&ca, &key, vec![KeyUsageBit::DigitalSignature]);
    assert!(check_recipient_certificate(&signing_only).unwrap_err().to_string().contains("keyAgreement"));
    let unrestricted = client_cert(&ca, &key, vec![]);
    check_recipient_certificate(&unrestricted).unwrap();
    let ed = SoftwareKey::generate(Algorithm::EdDsa).unwrap();
    let ed_cert = client_cert(&ca, &ed, vec![]);
    assert!(check_recipient_certificate(&ed_cert).is_err());
    assert!(key_id_matches(&unrestricted, &shared::pki::subject_key_id(&unrestricted)));
    assert!(!key_id_matches(&unrestricted, b"nope"));
    let recipient = Recipient::Certificate(Box::new(unrestricted));
    let none = vec![AlgorithmIdentifierOwned { oid: ID_AES256_CBC, parameters: None }];
    assert!(matches!(choose_algorithms(&recipient, Some(&none)), Err(KeyPackageError::Request(_))));
}

#[test]
fn request_attributes_are_read_back() {
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let attrs =
        request_attributes(&RequestedKey::Asymmetric(vec![1, 2, 3]), &[KeyWrap::Aes256, KeyWrap::Aes128])
            .unwrap();
    let der = crate::binding::csr_with_attributes(&parse_name("CN=x").unwrap(), &[], &key, attrs).unwrap();
    let csr = Csr::verify_der(&der).unwrap();
    let req = encryption_request(&csr).unwrap().unwrap();
    assert_eq!(req.key, RequestedKey::Asymmetric(vec![1, 2, 3]));
    let caps = req.capabilities.unwrap();
    assert_eq!(caps[0].oid, KeyWrap::Aes256.oid());
    assert_eq!(caps.len(), 3);
    let plain = build_csr(&parse_name("CN=x").unwrap(), &[], &key).unwrap();
    assert_eq!(encryption_request(&Csr::verify_der(&plain).unwrap()).unwrap(), None);
}
