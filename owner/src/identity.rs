//! The owner's loaded identity: configuration, private key and certificate, and the mTLS
//! client it uses towards the Identity Server.

use crate::config::{OwnerConfig, CERT_FILE};
use crate::OwnerError;
use est::client::{EstClient, EstConnection};
use est::tls::{client_config, ServerTrust};
use shared::b64;
use shared::keys::{load_signer, redact_pin, Algorithm, Signer};
use shared::pki;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use x509_cert::Certificate;

/// Per-step timeout towards the Identity Server (connect, handshake, each request).
pub(crate) const SERVER_TIMEOUT: Duration = Duration::from_secs(15);

/// An owner directory, loaded.
#[derive(Clone)]
pub struct OwnerIdentity {
    /// The directory.
    pub dir: PathBuf,
    /// `owner.toml`.
    pub config: OwnerConfig,
    /// The owner key (a file or a token key, named by `key` of `owner.toml`).
    pub key: Arc<dyn Signer>,
    /// The owner certificate (its key is `key`).
    pub cert: Certificate,
}

impl std::fmt::Debug for OwnerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OwnerIdentity({} in {})", self.config.id, self.dir.display())
    }
}

impl OwnerIdentity {
    /// Loads `owner.toml`, the owner key it names (default `owner.key`, refused unless
    /// 0600-like; a `pkcs11:` key is opened in its token) and `owner.pem`, which must carry
    /// that key.
    pub fn load(dir: &Path) -> Result<Self, OwnerError> {
        let config = OwnerConfig::load(dir)?;
        let key = open_owner_key(&config.resolved_key_uri(dir))?;
        let cert_path = dir.join(CERT_FILE);
        let pem = std::fs::read(&cert_path).map_err(OwnerError::io(&cert_path))?;
        let cert = pki::certs_from_pem(&pem)?
            .into_iter()
            .next()
            .ok_or_else(|| OwnerError::Config(format!("{}: no certificate", cert_path.display())))?;
        if pki::spki_der(&cert) != key.public_key_der() {
            return Err(OwnerError::Config(format!(
                "{} does not carry the owner key {}",
                cert_path.display(),
                redact_pin(config.key_uri())
            )));
        }
        Ok(OwnerIdentity { dir: dir.to_path_buf(), config, key, cert })
    }

    /// b64url SHA-256 of the owner certificate's DER (model 2's `org.cred`).
    pub fn cert_hash(&self) -> String {
        cert_hash(&self.cert)
    }

    /// The domain CA certificates: `override_path`, else `domain_ca` of the configuration.
    pub fn domain_ca(&self, override_path: Option<&Path>) -> Result<Vec<Certificate>, OwnerError> {
        let path = match override_path {
            Some(p) => p.to_path_buf(),
            None => self.config.domain_ca_path(&self.dir).ok_or_else(|| {
                OwnerError::Config("no domain CA: set domain_ca in owner.toml or pass --ca".into())
            })?,
        };
        let pem = std::fs::read(&path).map_err(OwnerError::io(&path))?;
        Ok(pki::certs_from_pem(&pem)?)
    }

    /// The server URL: `override_url`, else `server` of the configuration.
    pub fn server(&self, override_url: Option<&str>) -> Result<String, OwnerError> {
        override_url.map(str::to_string).or_else(|| self.config.server.clone()).ok_or_else(|| {
            OwnerError::Config("no Identity Server: set server in owner.toml or pass --server".into())
        })
    }

    /// Opens an mTLS connection to `server` (trusted through `ca`) with the owner certificate.
    pub async fn connect(&self, server: &str, ca: &[Certificate]) -> Result<EstConnection, OwnerError> {
        let tls = client_config(
            &ServerTrust::Explicit(ca.to_vec()),
            Some((vec![self.cert.clone()], self.key.clone())),
        )
        .map_err(|e| OwnerError::Tls(e.to_string()))?;
        let client = EstClient::new(server, None, tls)?.with_timeout(SERVER_TIMEOUT);
        Ok(client.connect().await?)
    }
}

/// Opens the owner key `uri` names (relative `file:` paths already resolved) and refuses
/// algorithms other than P-256 and Ed25519. Errors name the URI with any PIN redacted.
pub(crate) fn open_owner_key(uri: &str) -> Result<Arc<dyn Signer>, OwnerError> {
    let key: Arc<dyn Signer> = Arc::from(load_signer(uri)?);
    match key.algorithm() {
        Algorithm::Es256 | Algorithm::EdDsa => Ok(key),
        other => Err(OwnerError::Config(format!(
            "owner key {}: a {other} key; owner keys are P-256 (ES256) or Ed25519 (EdDSA)",
            redact_pin(uri)
        ))),
    }
}

/// b64url SHA-256 of a certificate's DER.
pub(crate) fn cert_hash(cert: &Certificate) -> String {
    b64::encode_url(&shared::crypto::sha256(&pki::cert_to_der(cert).unwrap_or_default()))
}
