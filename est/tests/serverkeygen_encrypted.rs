//! serverkeygen with the generated key encrypted to the client (RFC 7030 §4.4.1.1, §4.4.1.2,
//! §4.4.2), over real TLS on loopback: our client decrypting a kari (P-256, P-384) and a kekri,
//! OpenSSL 3 `cms -decrypt` / `cms -verify` opening what the server sends, curl posting an
//! encryption request with its client certificate (EC: kari, RSA: ktri), and the refusals.

use cms::content_info::ContentInfo;
use der::{Any, Decode, Encode};
use est::authority::{Authority, AuthorityError, AuthorityFuture, Decision, EnrollContext, LocalCa};
use est::client::{ClientError, Enrollment, EstClient, EstConnection, ServerKey};
use est::http::{serve, server_tls_config};
use est::keypackage::{request_attributes, Decryptor, KeyWrap, RequestedKey, SharedKey};
use est::server::{hash_password, router, EstServerConfig, LabelPolicy};
use est::tls::{client_config, ServerTrust};
use est::wire::{self, CsrAttr};
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki::*;
use shared::Verified;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use store::SqliteStore;
use x509_cert::Certificate;

const DAY: Duration = Duration::from_secs(86400);
const USER: &str = "alice";
const PASS: &str = "s3cret-pw";
const KEK_ID: &[u8] = b"kek-1";
const KEK: [u8; 32] = [0x5a; 32];

struct Fixture {
    dir: tempfile::TempDir,
    url: String,
    ca: Certificate,
    /// The same CA key as the server's, for issuing client certificates directly.
    issuer: CertificateAuthority,
    store: Arc<SqliteStore>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A LocalCa that hides its key generator, as an authority without a signing key would.
struct NoKeyGenerator(LocalCa);

impl Authority for NoKeyGenerator {
    fn ca_certs(&self, label: &str) -> Vec<Certificate> {
        self.0.ca_certs(label)
    }
    fn csr_attrs(&self, label: &str) -> Vec<CsrAttr> {
        self.0.csr_attrs(label)
    }
    fn authorize<'a>(&'a self, req: &'a EnrollContext<'a>) -> AuthorityFuture<'a, Decision> {
        self.0.authorize(req)
    }
    fn issue<'a>(
        &'a self,
        label: &'a str,
        csr: &'a Verified<Csr>,
    ) -> AuthorityFuture<'a, Result<Certificate, AuthorityError>> {
        self.0.issue(label, csr)
    }
    fn is_revoked<'a>(&'a self, serial_hex: &'a str) -> AuthorityFuture<'a, Result<bool, AuthorityError>> {
        self.0.is_revoked(serial_hex)
    }
}

fn clone_key(k: &SoftwareKey) -> SoftwareKey {
    SoftwareKey::from_pkcs8_der(&k.to_pkcs8_der().unwrap()).unwrap()
}

/// A server whose default label offers serverkeygen (Basic alice or a certificate of the CA),
/// issues certificates usable for key agreement and key transport, and holds the shared key
/// `kek-1`. `key_generator: false` hides the CA key from the key-package signing.
async fn start(key_generator: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let ca = create_ca("CN=Keygen Test CA", &ca_key, 3650 * DAY, None).unwrap();
    let issuer = CertificateAuthority::new(ca.clone(), Box::new(clone_key(&ca_key))).unwrap();
    let srv_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let srv_csr = Csr::verify_der(
        &build_csr(
            &parse_name("CN=localhost").unwrap(),
            &[San::Dns("localhost".into()), San::Ip("127.0.0.1".parse().unwrap())],
            &srv_key,
        )
        .unwrap(),
    )
    .unwrap();
    let server_cert = issuer.issue(&srv_csr, &Profile::end_entity(DAY)).unwrap();
    let mut profile = Profile::end_entity(30 * DAY);
    profile.key_usage =
        vec![KeyUsageBit::DigitalSignature, KeyUsageBit::KeyEncipherment, KeyUsageBit::KeyAgreement];
    let mut policy = LabelPolicy::new(profile);
    policy.basic_users = [(USER.to_string(), hash_password(PASS).unwrap())].into_iter().collect();
    policy.client_cert_anchors = vec![ca.clone()];
    policy.serverkeygen = true;
    policy.serverkeygen_shared_keys = vec![SharedKey::new(KEK_ID.to_vec(), KEK.to_vec()).unwrap()];
    let config = EstServerConfig::default().with_label("", policy);
    let store = Arc::new(SqliteStore::open(&dir.path().join("est.db")).await.unwrap());
    let ca_authority = CertificateAuthority::new(ca.clone(), Box::new(ca_key)).unwrap();
    let local = LocalCa::new(ca_authority, store.clone(), config.profiles());
    let authority: Arc<dyn Authority> =
        if key_generator { Arc::new(local) } else { Arc::new(NoKeyGenerator(local)) };
    let app = router(config, authority).unwrap();
    let chain = vec![rustls::pki_types::CertificateDer::from(cert_to_der(&server_cert).unwrap())];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(srv_key.to_pkcs8_der().unwrap().to_vec().into());
    let tls = Arc::new(server_tls_config(chain, key).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(serve(listener, tls, app));
    std::fs::write(dir.path().join("ca.pem"), cert_to_pem(&ca).unwrap()).unwrap();
    Fixture { dir, url, ca, issuer, store, server }
}

/// A client certificate for `key` with these key usages, issued by the fixture's CA.
fn client_cert(fx: &Fixture, key: &dyn Signer, cn: &str, ku: Vec<KeyUsageBit>) -> Certificate {
    let csr = Csr::verify_der(&build_csr(&parse_name(cn).unwrap(), &[], key).unwrap()).unwrap();
    let mut p = Profile::end_entity(DAY);
    p.key_usage = ku;
    fx.issuer.issue(&csr, &p).unwrap()
}

fn agreement() -> Vec<KeyUsageBit> {
    vec![KeyUsageBit::DigitalSignature, KeyUsageBit::KeyAgreement]
}

async fn connect(fx: &Fixture, identity: Option<(Certificate, Arc<SoftwareKey>)>) -> EstConnection {
    let identity = identity.map(|(c, k)| (vec![c], k as Arc<dyn Signer>));
    let client = EstClient::new(
        &fx.url,
        None,
        client_config(&ServerTrust::Explicit(vec![fx.ca.clone()]), identity).unwrap(),
    )
    .unwrap();
    client.with_basic(USER, PASS).connect().await.unwrap()
}

/// A serverkeygen CSR (channel-bound to `conn`) asking for encryption with `key`; its own key
/// is a throwaway the server ignores.
fn encryption_csr(conn: &EstConnection, subject: &str, key: &RequestedKey, wraps: &[KeyWrap]) -> Vec<u8> {
    let throwaway = SoftwareKey::generate(Algorithm::Es256).unwrap();
    est::binding::csr_with_binding(
        &parse_name(subject).unwrap(),
        &[San::Dns("keygen.example".into())],
        &throwaway,
        conn.channel_binding().as_deref(),
        request_attributes(key, wraps).unwrap(),
    )
    .unwrap()
}

fn done(e: Enrollment<ServerKey>) -> ServerKey {
    match e {
        Enrollment::Done(k) => k,
        Enrollment::Pending { .. } => panic!("unexpected 202"),
    }
}

/// Posts a serverkeygen CSR and returns the reply as received.
async fn post(conn: &mut EstConnection, csr: &[u8]) -> est::client::RawReply {
    conn.post_raw(
        "/.well-known/est/serverkeygen",
        "application/pkcs10",
        None,
        wire::encode_body(csr).into_bytes(),
    )
    .await
    .unwrap()
}

/// Asserts a problem+json answer with `status` whose detail contains `needle`.
async fn refused(conn: &mut EstConnection, csr: &[u8], status: u16, needle: &str) -> serde_json::Value {
    let r = post(conn, csr).await;
    assert_eq!(r.status.as_u16(), status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.content_type, est::http::MEDIA_PROBLEM);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains(needle), "expected '{needle}' in: {detail}");
    v
}

#[tokio::test]
async fn our_client_decrypts_a_key_encrypted_to_its_ec_certificate() {
    let fx = start(true).await;
    for alg in [Algorithm::Es256, Algorithm::Es384] {
        let key = Arc::new(SoftwareKey::generate(alg).unwrap());
        let cert = client_cert(&fx, key.as_ref(), "CN=device-enc", agreement());
        let mut conn = connect(&fx, Some((cert.clone(), key.clone()))).await;
        let wanted = RequestedKey::Asymmetric(subject_key_id(&cert));
        let csr = encryption_csr(&conn, "CN=keygen-enc", &wanted, &[KeyWrap::Aes256, KeyWrap::Aes128]);
        // Anchors from /cacerts on the same connection.
        let got = done(conn.serverkeygen_encrypted(&csr, &Decryptor::Key(&key), &[]).await.unwrap());
        let generated = SoftwareKey::from_pkcs8_der(&got.pkcs8).unwrap();
        assert_eq!(spki_der(&got.certs[0]), generated.public_key_der(), "key matches the issued certificate");
        assert_ne!(generated.public_key_der(), key.public_key_der());
        assert_eq!(got.certs[0].tbs_certificate().subject().to_string(), "CN=keygen-enc");
        verify_chain(&got.certs[0], &[], std::slice::from_ref(&fx.ca), time::OffsetDateTime::now_utc())
            .unwrap();
        // Explicit anchors; the SHA-1 key id (RFC 5280 method 1) names the key as well.
        use sha1::Digest;
        let method1 = sha1::Sha1::digest(
            cert.tbs_certificate().subject_public_key_info().subject_public_key.raw_bytes(),
        )
        .to_vec();
        let csr =
            encryption_csr(&conn, "CN=keygen-enc-2", &RequestedKey::Asymmetric(method1), &[KeyWrap::Aes128]);
        let again = done(
            conn.serverkeygen_encrypted(&csr, &Decryptor::Key(&key), std::slice::from_ref(&fx.ca))
                .await
                .unwrap(),
        );
        assert_ne!(again.pkcs8, got.pkcs8);
        // Decrypting with another key fails, and the plain call refuses an encrypted answer.
        let stranger = SoftwareKey::generate(alg).unwrap();
        let csr = encryption_csr(&conn, "CN=keygen-enc-3", &wanted, &[KeyWrap::Aes256]);
        let err = conn.serverkeygen_encrypted(&csr, &Decryptor::Key(&stranger), &[]).await.unwrap_err();
        assert!(matches!(err, ClientError::KeyPackage(_)), "{err}");
        let err = conn.serverkeygen(&csr).await.unwrap_err();
        assert!(err.to_string().contains("encrypted"), "{err}");
    }
}

#[tokio::test]
async fn shared_key_encryption_round_trip_and_unknown_identifier() {
    let fx = start(true).await;
    let mut conn = connect(&fx, None).await;
    let shared_key = SharedKey::new(KEK_ID.to_vec(), KEK.to_vec()).unwrap();
    let csr =
        encryption_csr(&conn, "CN=kek-device", &RequestedKey::Symmetric(KEK_ID.to_vec()), &[KeyWrap::Aes256]);
    let got = done(conn.serverkeygen_encrypted(&csr, &Decryptor::Shared(&shared_key), &[]).await.unwrap());
    let generated = SoftwareKey::from_pkcs8_der(&got.pkcs8).unwrap();
    assert_eq!(spki_der(&got.certs[0]), generated.public_key_der());

    let csr = encryption_csr(
        &conn,
        "CN=kek-device",
        &RequestedKey::Symmetric(b"kek-9".to_vec()),
        &[KeyWrap::Aes256],
    );
    let p = refused(&mut conn, &csr, 400, "unknown DecryptKeyIdentifier").await;
    assert_eq!(p["type"], "tag:brski.dev,2026:problem/est/key-encryption");
    // The shared key is AES-256: a client that only accepts id-aes128-wrap cannot be served.
    let csr =
        encryption_csr(&conn, "CN=kek-device", &RequestedKey::Symmetric(KEK_ID.to_vec()), &[KeyWrap::Aes128]);
    refused(&mut conn, &csr, 400, "SMIMECapabilities").await;
}

#[tokio::test]
async fn refusals_are_400_problems_and_nothing_is_issued() {
    let fx = start(true).await;
    let key = Arc::new(SoftwareKey::generate(Algorithm::Es256).unwrap());
    let cert = client_cert(&fx, key.as_ref(), "CN=device-r", agreement());
    let wanted = RequestedKey::Asymmetric(subject_key_id(&cert));

    // Encryption to a client key without a client certificate on the connection.
    let mut anon = connect(&fx, None).await;
    let csr = encryption_csr(&anon, "CN=r1", &wanted, &[KeyWrap::Aes256]);
    let p = refused(&mut anon, &csr, 400, "no TLS client certificate").await;
    assert_eq!(p["type"], "tag:brski.dev,2026:problem/est/key-encryption");

    // An identifier that is not the connection's client certificate key.
    let mut conn = connect(&fx, Some((cert.clone(), key.clone()))).await;
    let csr = encryption_csr(&conn, "CN=r2", &RequestedKey::Asymmetric(vec![0xAB; 20]), &[KeyWrap::Aes256]);
    refused(&mut conn, &csr, 400, "unknown AsymmetricDecryptKeyIdentifier abab").await;

    // SMIMECapabilities without any key wrap this server supports.
    let csr = encryption_csr(&conn, "CN=r3", &wanted, &[]);
    refused(&mut conn, &csr, 400, "none of the key-wrap algorithms").await;

    // A certificate whose keyUsage forbids key agreement.
    let signing_key = Arc::new(SoftwareKey::generate(Algorithm::Es256).unwrap());
    let signing_cert =
        client_cert(&fx, signing_key.as_ref(), "CN=signer", vec![KeyUsageBit::DigitalSignature]);
    let mut conn2 = connect(&fx, Some((signing_cert.clone(), signing_key))).await;
    let csr = encryption_csr(
        &conn2,
        "CN=r4",
        &RequestedKey::Asymmetric(subject_key_id(&signing_cert)),
        &[KeyWrap::Aes256],
    );
    refused(&mut conn2, &csr, 400, "keyAgreement").await;

    // An Ed25519 client key cannot do key agreement at all.
    let ed = Arc::new(SoftwareKey::generate(Algorithm::EdDsa).unwrap());
    let ed_cert = client_cert(&fx, ed.as_ref(), "CN=ed", vec![]);
    let mut conn3 = connect(&fx, Some((ed_cert.clone(), ed))).await;
    let csr = encryption_csr(
        &conn3,
        "CN=r5",
        &RequestedKey::Asymmetric(subject_key_id(&ed_cert)),
        &[KeyWrap::Aes256],
    );
    refused(&mut conn3, &csr, 400, "cannot receive an encrypted key").await;

    // Both identifiers at once.
    let mut attrs = request_attributes(&wanted, &[KeyWrap::Aes256]).unwrap();
    attrs.extend(
        request_attributes(&RequestedKey::Symmetric(KEK_ID.to_vec()), &[KeyWrap::Aes256]).unwrap().pop(),
    );
    let throwaway = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let csr =
        est::binding::csr_with_attributes(&parse_name("CN=r6").unwrap(), &[], &throwaway, attrs).unwrap();
    refused(&mut conn, &csr, 400, "send one").await;

    // Every refusal came before issuance.
    use shared::store::Store;
    assert!(fx.store.list_certificates(10, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_authority_without_a_key_generator_answers_501() {
    let fx = start(false).await;
    let key = Arc::new(SoftwareKey::generate(Algorithm::Es256).unwrap());
    let cert = client_cert(&fx, key.as_ref(), "CN=device-n", agreement());
    let mut conn = connect(&fx, Some((cert.clone(), key))).await;
    let csr =
        encryption_csr(&conn, "CN=n1", &RequestedKey::Asymmetric(subject_key_id(&cert)), &[KeyWrap::Aes256]);
    refused(&mut conn, &csr, 501, "cannot sign key packages").await;
    // The unencrypted path is unaffected.
    let throwaway = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let plain = build_csr(&parse_name("CN=n2").unwrap(), &[], &throwaway).unwrap();
    let got = done(conn.serverkeygen(&plain).await.unwrap());
    assert_eq!(spki_der(&got.certs[0]), SoftwareKey::from_pkcs8_der(&got.pkcs8).unwrap().public_key_der());
}

// ------------------------------------------------------------------------------------------
// OpenSSL and curl as peers
// ------------------------------------------------------------------------------------------

/// Runs a command off the async threads (the server runs on them).
async fn sh(dir: &Path, program: &'static str, args: Vec<String>) -> std::process::Output {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        testkit::run_ok(&dir, program, &a)
    })
    .await
    .unwrap()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Splits a serverkeygen answer into (key part content type, key DER, issued certificate).
fn split_answer(content_type: &str, body: &[u8]) -> (String, Vec<u8>, Certificate) {
    let parts = est::multipart::parse(content_type, body).unwrap();
    assert_eq!(parts.len(), 2);
    let key = wire::decode_body(&parts[0].body).unwrap();
    assert_eq!(parts[1].content_type, wire::MEDIA_CERTS_ONLY);
    let cert = wire::parse_certs_only(&wire::decode_body(&parts[1].body).unwrap()).unwrap().remove(0);
    (parts[0].content_type.clone(), key, cert)
}

/// `openssl cms -decrypt` output (a DER SignedData) -> ContentInfo -> `openssl cms -verify`
/// against the CA -> the AsymmetricKeyPackage's one key, checked with `openssl pkey` against
/// the issued certificate.
async fn verify_with_openssl(d: &Path, name: &str, issued: &Certificate) {
    let sd = std::fs::read(d.join(format!("{name}.sd.der"))).unwrap();
    let ci = ContentInfo {
        content_type: const_oid::db::rfc5911::ID_SIGNED_DATA,
        content: Any::from_der(&sd).unwrap(),
    };
    std::fs::write(d.join(format!("{name}.p7")), ci.to_der().unwrap()).unwrap();
    let out = sh(
        d,
        "openssl",
        s(&[
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-in",
            &format!("{name}.p7"),
            "-CAfile",
            "ca.pem",
            "-out",
            &format!("{name}.akp"),
        ]),
    )
    .await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("Verification successful"));
    let printed =
        sh(d, "openssl", s(&["cms", "-cmsout", "-print", "-inform", "DER", "-in", &format!("{name}.p7")]))
            .await;
    let printed = String::from_utf8_lossy(&printed.stdout).to_string();
    assert!(
        printed.contains("eContentType: undefined (2.16.840.1.101.2.1.2.78.5)")
            || printed.contains("eContentType: id-ct-KP-aKeyPackage"),
        "{printed}"
    );
    let package = Vec::<Any>::from_der(&std::fs::read(d.join(format!("{name}.akp"))).unwrap()).unwrap();
    assert_eq!(package.len(), 1, "one OneAsymmetricKey");
    std::fs::write(d.join(format!("{name}.key.der")), package[0].to_der().unwrap()).unwrap();
    std::fs::write(d.join(format!("{name}.issued.pem")), cert_to_pem(issued).unwrap()).unwrap();
    let k =
        sh(d, "openssl", s(&["pkey", "-inform", "DER", "-in", &format!("{name}.key.der"), "-pubout"])).await;
    let c = sh(d, "openssl", s(&["x509", "-in", &format!("{name}.issued.pem"), "-pubkey", "-noout"])).await;
    assert_eq!(k.stdout, c.stdout, "the key package holds the issued certificate's key");
    sh(d, "openssl", s(&["verify", "-CAfile", "ca.pem", &format!("{name}.issued.pem")])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_decrypts_kari_and_kekri_and_verifies_the_key_package() {
    if !testkit::peer("openssl") {
        return;
    }
    let fx = start(true).await;
    let d = fx.dir.path();
    for (name, alg, scheme) in [
        ("p256", Algorithm::Es256, "dhSinglePass-stdDH-sha256kdf-scheme"),
        ("p384", Algorithm::Es384, "dhSinglePass-stdDH-sha384kdf-scheme"),
    ] {
        let key = Arc::new(SoftwareKey::generate(alg).unwrap());
        let cert = client_cert(&fx, key.as_ref(), "CN=openssl-client", agreement());
        std::fs::write(d.join(format!("{name}.client.pem")), cert_to_pem(&cert).unwrap()).unwrap();
        std::fs::write(d.join(format!("{name}.client.key")), key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
        let mut conn = connect(&fx, Some((cert.clone(), key))).await;
        let csr = encryption_csr(
            &conn,
            "CN=openssl-keygen",
            &RequestedKey::Asymmetric(subject_key_id(&cert)),
            &[KeyWrap::Aes256],
        );
        let r = post(&mut conn, &csr).await;
        assert_eq!(r.status.as_u16(), 200, "{}", String::from_utf8_lossy(&r.body));
        let (ct, env, issued) = split_answer(&r.content_type, &r.body);
        assert_eq!(ct, "application/pkcs7-mime; smime-type=server-generated-key");
        std::fs::write(d.join(format!("{name}.env.der")), &env).unwrap();
        let printed = sh(
            d,
            "openssl",
            s(&["cms", "-cmsout", "-print", "-inform", "DER", "-in", &format!("{name}.env.der")]),
        )
        .await;
        let printed = String::from_utf8_lossy(&printed.stdout).to_string();
        for want in [
            "pkcs7-envelopedData",
            "d.kari",
            scheme,
            "id-aes256-wrap",
            "aes-256-cbc",
            "contentType: pkcs7-signedData",
        ] {
            assert!(printed.contains(want), "{want} in:\n{printed}");
        }
        sh(
            d,
            "openssl",
            s(&[
                "cms",
                "-decrypt",
                "-inform",
                "DER",
                "-in",
                &format!("{name}.env.der"),
                "-recip",
                &format!("{name}.client.pem"),
                "-inkey",
                &format!("{name}.client.key"),
                "-out",
                &format!("{name}.sd.der"),
            ]),
        )
        .await;
        verify_with_openssl(d, name, &issued).await;
    }

    // kekri: openssl -secretkey / -secretkeyid.
    let mut conn = connect(&fx, None).await;
    let csr = encryption_csr(
        &conn,
        "CN=openssl-kek",
        &RequestedKey::Symmetric(KEK_ID.to_vec()),
        &[KeyWrap::Aes256],
    );
    let r = post(&mut conn, &csr).await;
    assert_eq!(r.status.as_u16(), 200, "{}", String::from_utf8_lossy(&r.body));
    let (_, env, issued) = split_answer(&r.content_type, &r.body);
    std::fs::write(d.join("kek.env.der"), &env).unwrap();
    sh(
        d,
        "openssl",
        s(&[
            "cms",
            "-decrypt",
            "-inform",
            "DER",
            "-in",
            "kek.env.der",
            "-secretkey",
            &hex::encode(KEK),
            "-secretkeyid",
            &hex::encode(KEK_ID),
            "-out",
            "kek.sd.der",
        ]),
    )
    .await;
    verify_with_openssl(d, "kek", &issued).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_requests_encryption_to_its_client_certificate_ec_and_rsa() {
    if !(testkit::peer("curl") && testkit::peer("openssl")) {
        return;
    }
    let fx = start(true).await;
    let d = fx.dir.path();
    let port = fx.url.rsplit(':').next().unwrap().to_string();
    let url = |op: &str| format!("https://127.0.0.1:{port}/.well-known/est/{op}");
    for (name, newkey, recipient_info) in [
        ("ec", vec!["ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "d.kari"),
        ("rsa", vec!["rsa:2048"], "d.ktri"),
    ] {
        // An openssl key and a certificate for it, enrolled with curl (HTTP Basic).
        let mut args = s(&["req", "-new", "-subj", &format!("/CN=curl-{name}"), "-nodes"]);
        args.push("-newkey".into());
        args.extend(s(&newkey));
        args.extend(s(&[
            "-keyout",
            &format!("{name}.key"),
            "-outform",
            "DER",
            "-out",
            &format!("{name}.csr.der"),
        ]));
        sh(d, "openssl", args).await;
        sh(
            d,
            "openssl",
            s(&["base64", "-in", &format!("{name}.csr.der"), "-out", &format!("{name}.csr.b64")]),
        )
        .await;
        let out = sh(
            d,
            "curl",
            s(&[
                "-sS",
                "--cacert",
                "ca.pem",
                "-u",
                &format!("{USER}:{PASS}"),
                "-H",
                "Content-Type: application/pkcs10",
                "--data-binary",
                &format!("@{name}.csr.b64"),
                &url("simpleenroll"),
                "-o",
                &format!("{name}.p7.b64"),
                "-w",
                "%{http_code}",
            ]),
        )
        .await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
        let p7 = wire::decode_body(&std::fs::read(d.join(format!("{name}.p7.b64"))).unwrap()).unwrap();
        let client = wire::parse_certs_only(&p7).unwrap().remove(0);
        std::fs::write(d.join(format!("{name}.pem")), cert_to_pem(&client).unwrap()).unwrap();

        // The serverkeygen CSR with SMIMECapabilities + AsymmetricDecryptKeyIdentifier (openssl
        // req cannot write these attribute types, so it is built here), posted by curl with
        // the client certificate.
        let throwaway = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let csr = est::binding::csr_with_attributes(
            &parse_name(&format!("CN=curl-keygen-{name}")).unwrap(),
            &[],
            &throwaway,
            request_attributes(&RequestedKey::Asymmetric(subject_key_id(&client)), &[KeyWrap::Aes128])
                .unwrap(),
        )
        .unwrap();
        std::fs::write(d.join(format!("{name}.skg.b64")), wire::encode_body(&csr)).unwrap();
        let out = sh(
            d,
            "curl",
            s(&[
                "-sS",
                "--cacert",
                "ca.pem",
                "--cert",
                &format!("{name}.pem"),
                "--key",
                &format!("{name}.key"),
                "-H",
                "Content-Type: application/pkcs10",
                "--data-binary",
                &format!("@{name}.skg.b64"),
                &url("serverkeygen"),
                "-D",
                &format!("{name}.headers"),
                "-o",
                &format!("{name}.body"),
                "-w",
                "%{http_code}",
            ]),
        )
        .await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
        let headers = std::fs::read_to_string(d.join(format!("{name}.headers"))).unwrap();
        let ct = headers
            .lines()
            .find_map(|l| {
                l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v)
            })
            .unwrap()
            .trim()
            .to_string();
        let (key_ct, env, issued) =
            split_answer(&ct, &std::fs::read(d.join(format!("{name}.body"))).unwrap());
        assert_eq!(key_ct, "application/pkcs7-mime; smime-type=server-generated-key");
        assert_eq!(issued.tbs_certificate().subject().to_string(), format!("CN=curl-keygen-{name}"));
        std::fs::write(d.join(format!("{name}.env.der")), &env).unwrap();
        let printed = sh(
            d,
            "openssl",
            s(&["cms", "-cmsout", "-print", "-inform", "DER", "-in", &format!("{name}.env.der")]),
        )
        .await;
        assert!(String::from_utf8_lossy(&printed.stdout).contains(recipient_info));
        sh(
            d,
            "openssl",
            s(&[
                "cms",
                "-decrypt",
                "-inform",
                "DER",
                "-in",
                &format!("{name}.env.der"),
                "-recip",
                &format!("{name}.pem"),
                "-inkey",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.sd.der"),
            ]),
        )
        .await;
        verify_with_openssl(d, name, &issued).await;
    }
}
