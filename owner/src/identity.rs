//! The owner's loaded identity: configuration, private key and certificate, and the mTLS
//! client it uses towards the Identity Server.

use crate::config::{OwnerConfig, CERT_FILE, KEY_FILE};
use crate::OwnerError;
use est::client::{EstClient, EstConnection};
use est::tls::{client_config, ServerTrust};
use shared::b64;
use shared::keys::{load_key_file, Signer, SoftwareKey};
use shared::pki;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use x509_cert::Certificate;

/// Per-step timeout towards the Identity Server (connect, handshake, each request).
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(15);

/// An owner directory, loaded.
#[derive(Clone)]
pub struct OwnerIdentity {
    /// The directory.
    pub dir: PathBuf,
    /// `owner.toml`.
    pub config: OwnerConfig,
    /// The owner key.
    pub key: Arc<SoftwareKey>,
    /// The owner certificate (its key is `key`).
    pub cert: Certificate,
}

impl std::fmt::Debug for OwnerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OwnerIdentity({} in {})", self.config.id, self.dir.display())
    }
}

impl OwnerIdentity {
    /// Loads `owner.toml`, `owner.key` (refused unless 0600-like) and `owner.pem`.
    pub fn load(dir: &Path) -> Result<Self, OwnerError> {
        let config = OwnerConfig::load(dir)?;
        let key = Arc::new(load_key_file(&dir.join(KEY_FILE))?);
        let cert_path = dir.join(CERT_FILE);
        let pem = std::fs::read(&cert_path).map_err(OwnerError::io(&cert_path))?;
        let cert = pki::certs_from_pem(&pem)?
            .into_iter()
            .next()
            .ok_or_else(|| OwnerError::Config(format!("{}: no certificate", cert_path.display())))?;
        if pki::spki_der(&cert) != key.public_key_der() {
            return Err(OwnerError::Config(format!(
                "{} does not carry the key of {KEY_FILE}",
                cert_path.display()
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
        let key: Arc<dyn Signer> = self.key.clone();
        let tls = client_config(&ServerTrust::Explicit(ca.to_vec()), Some((vec![self.cert.clone()], key)))
            .map_err(|e| OwnerError::Tls(e.to_string()))?;
        let client = EstClient::new(server, None, tls)?.with_timeout(SERVER_TIMEOUT);
        Ok(client.connect().await?)
    }
}

/// b64url SHA-256 of a certificate's DER.
pub fn cert_hash(cert: &Certificate) -> String {
    b64::encode_url(&shared::crypto::sha256(&pki::cert_to_der(cert).unwrap_or_default()))
}
