//! TLS client configuration for EST (and later BRSKI): how the server is trusted (explicit
//! CA, pinned certificate, implicit system anchors, or a provisional bootstrap connection),
//! and a client identity whose private key is any [`shared::keys::Signer`] (file, TPM, ...).

use der::Encode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use shared::keys::{Algorithm, Signer};
use std::sync::{Arc, Mutex};
use x509_cert::Certificate;

/// The system bundle used for implicit trust when `SSL_CERT_FILE` is not set.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How the client decides that it talks to the right EST server (RFC 7030 §3.6).
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// Explicit trust anchors (the EST CA): the server certificate must chain to one and
    /// match the host name or IP address.
    Explicit(Vec<Certificate>),
    /// The server's end-entity certificate must have this SHA-256 fingerprint.
    PinnedSha256([u8; 32]),
    /// Implicit trust: the system's anchors (`SSL_CERT_FILE` or the Debian bundle).
    Implicit,
    /// Provisional bootstrap (RFC 7030 §4.1.1): any server certificate is accepted for the
    /// handshake; its fingerprint is recorded so a person can confirm it before anything
    /// fetched is trusted. Only for /cacerts.
    InsecureBootstrap,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// Anchors could not be loaded.
    #[error("trust anchors: {0}")]
    Anchors(String),
    /// The client certificate could not be used.
    #[error("client certificate: {0}")]
    Identity(String),
}

/// The server certificate seen on a connection (filled in by the verifier during the handshake).
#[derive(Debug, Default)]
pub struct SeenServerCert(Mutex<Option<Vec<u8>>>);

impl SeenServerCert {
    /// SHA-256 of the server's end-entity certificate, once a handshake happened.
    pub fn sha256(&self) -> Option<[u8; 32]> {
        self.der().as_deref().map(shared::crypto::sha256)
    }

    /// DER of the server's end-entity certificate, once a handshake happened.
    pub fn der(&self) -> Option<Vec<u8>> {
        self.0.lock().ok()?.clone()
    }
}

/// The aws-lc-rs provider, explicitly (never rely on process-level auto-detection).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds a client configuration for `trust`, presenting `identity` (chain, key) if given.
/// ALPN offers http/1.1.
pub fn client_config(
    trust: &ServerTrust,
    identity: Option<(Vec<Certificate>, Arc<dyn Signer>)>,
) -> Result<(Arc<ClientConfig>, Arc<SeenServerCert>), TlsSetupError> {
    let provider = provider();
    let seen = Arc::new(SeenServerCert::default());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Anchors(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        ServerTrust::Explicit(anchors) => webpki_verifier(anchors, provider.clone())?,
        ServerTrust::Implicit => webpki_verifier(&system_anchors()?, provider.clone())?,
        ServerTrust::PinnedSha256(pin) => {
            Arc::new(Recording { pin: Some(*pin), algs: provider.signature_verification_algorithms })
        }
        ServerTrust::InsecureBootstrap => {
            Arc::new(Recording { pin: None, algs: provider.signature_verification_algorithms })
        }
    };
    let recording = Arc::new(RecordThen { inner: verifier, seen: seen.clone() });
    let builder = builder.dangerous().with_custom_certificate_verifier(recording);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_cert_resolver(Arc::new(client_identity(&chain, key)?)),
        None => builder.with_no_client_auth(),
    };
    // HTTP/1.1 only: an EST client sends one request at a time on a connection, so HTTP/2's
    // multiplexing buys nothing and its framing, flow control and connection task cost CPU and
    // wake-ups on every exchange (a caller that wants h2 can pass its own configuration to
    // `EstClient::new`; the client speaks whatever ALPN selected).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), seen))
}

fn webpki_verifier(
    anchors: &[Certificate],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for a in anchors {
        let der = a.to_der().map_err(|e| TlsSetupError::Anchors(e.to_string()))?;
        roots.add(CertificateDer::from(der)).map_err(|e| TlsSetupError::Anchors(e.to_string()))?;
    }
    let v = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsSetupError::Anchors(e.to_string()))?;
    Ok(v)
}

fn system_anchors() -> Result<Vec<Certificate>, TlsSetupError> {
    let path = std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| SYSTEM_BUNDLE.to_string());
    let pem = std::fs::read(&path).map_err(|e| TlsSetupError::Anchors(format!("{path}: {e}")))?;
    shared::pki::certs_from_pem(&pem).map_err(|e| TlsSetupError::Anchors(format!("{path}: {e}")))
}

fn client_identity(chain: &[Certificate], key: Arc<dyn Signer>) -> Result<SingleCertAndKey, TlsSetupError> {
    let leaf = chain.first().ok_or_else(|| TlsSetupError::Identity("empty certificate chain".into()))?;
    if shared::pki::spki_der(leaf) != key.public_key_der() {
        return Err(TlsSetupError::Identity("the key does not belong to the certificate".into()));
    }
    let ders = chain
        .iter()
        .map(|c| c.to_der().map(CertificateDer::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Identity(e.to_string()))?;
    Ok(SingleCertAndKey::from(CertifiedKey::new(ders, Arc::new(TlsSigningKey(key)))))
}

/// Records the server certificate, then delegates the decision.
#[derive(Debug)]
struct RecordThen {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Arc<SeenServerCert>,
}

impl ServerCertVerifier for RecordThen {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut s) = self.seen.0.lock() {
            *s = Some(end_entity.to_vec());
        }
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Pinned-fingerprint or bootstrap verifier: the certificate is judged by its SHA-256 (or
/// accepted provisionally), and the handshake signature is always checked, so the peer must
/// hold the certificate's key.
#[derive(Debug)]
struct Recording {
    pin: Option<[u8; 32]>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.pin {
            Some(pin) if shared::crypto::sha256(end_entity) != pin => {
                Err(rustls::Error::General("server certificate does not match the pinned SHA-256".into()))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A brski [`Signer`] as a rustls signing key: TLS client (and server) authentication with
/// any key URI.
#[derive(Clone)]
pub struct TlsSigningKey(pub Arc<dyn Signer>);

impl std::fmt::Debug for TlsSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsSigningKey({})", self.0.algorithm())
    }
}

impl TlsSigningKey {
    fn scheme(&self) -> SignatureScheme {
        match self.0.algorithm() {
            Algorithm::Es256 => SignatureScheme::ECDSA_NISTP256_SHA256,
            Algorithm::Es384 => SignatureScheme::ECDSA_NISTP384_SHA384,
            Algorithm::EdDsa => SignatureScheme::ED25519,
        }
    }
}

impl rustls::sign::SigningKey for TlsSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered.contains(&self.scheme()).then(|| Box::new(self.clone()) as Box<dyn rustls::sign::Signer>)
    }
    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        match self.0.algorithm() {
            Algorithm::Es256 | Algorithm::Es384 => rustls::SignatureAlgorithm::ECDSA,
            Algorithm::EdDsa => rustls::SignatureAlgorithm::ED25519,
        }
    }
}

impl rustls::sign::Signer for TlsSigningKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let raw = self.0.sign(message).map_err(|e| rustls::Error::General(e.to_string()))?;
        // TLS carries ECDSA signatures DER-encoded, like X.509.
        shared::crypto::raw_to_der(self.0.algorithm(), &raw)
            .map_err(|e| rustls::Error::General(e.to_string()))
    }
    fn scheme(&self) -> SignatureScheme {
        TlsSigningKey::scheme(self)
    }
}
