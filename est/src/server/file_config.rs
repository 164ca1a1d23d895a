//! The TOML configuration file of a standalone EST server (`brski est serve --config FILE`):
//! where to listen, the CA and TLS identity, the store directory, and one section per CA
//! label. Relative paths are relative to the file's directory.

use super::config::{AuthRequirement, BindingPolicy, ConfigError, EstServerConfig, LabelPolicy};
use crate::http::{FailureLimits, ServeOptions};
use crate::keypackage::SharedKey;
use const_oid::ObjectIdentifier;
use serde::Deserialize;
use shared::conf::resolve_key_uri;
use shared::keys::Algorithm;
use shared::pki::{KeyUsageBit, Profile, SubjectRule};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use x509_cert::Certificate;
use zeroize::Zeroizing;

/// Largest configuration file read.
const MAX_CONFIG_LEN: u64 = 1024 * 1024;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstFileConfig {
    /// Address to listen on, e.g. `0.0.0.0:8443`.
    pub listen: SocketAddr,
    /// Directory of the store (`brski.db`).
    pub state: PathBuf,
    /// The issuing CA.
    pub ca: CaSection,
    /// The server's TLS identity.
    pub tls: TlsSection,
    /// CA labels; the label `default` is served at `/.well-known/est/<operation>`.
    pub labels: BTreeMap<String, LabelSection>,
    /// `[limits]`: bounds on what one client may cost (all optional).
    #[serde(default)]
    pub limits: LimitsSection,
}

/// `[limits]`: failed-authentication limits and the bound on password checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Failed HTTP Basic authentications per client address and minute (429 past it; 0: none).
    #[serde(default = "default_failures_per_address")]
    pub auth_failures_per_address: u32,
    /// Failed HTTP Basic authentications per user name and minute (429 past it; 0: none).
    #[serde(default = "default_failures_per_user")]
    pub auth_failures_per_user: u32,
    /// argon2 checks running at once (each holds ~19 MiB); 0: one per CPU.
    #[serde(default)]
    pub password_checks: usize,
    /// Seconds from the TLS handshake to the first byte of a request (the connection is
    /// closed after).
    #[serde(default = "default_first_byte_timeout_secs")]
    pub first_byte_timeout_secs: u64,
    /// Connections open at once (0: three quarters of the open-file limit).
    #[serde(default)]
    pub max_connections: usize,
}

impl LimitsSection {
    /// The accept loop's options these limits give.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            first_byte_timeout: Duration::from_secs(self.first_byte_timeout_secs.max(1)),
            max_connections: self.max_connections,
            ..ServeOptions::default()
        }
    }
}

fn default_first_byte_timeout_secs() -> u64 {
    ServeOptions::default().first_byte_timeout.as_secs()
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            auth_failures_per_address: default_failures_per_address(),
            auth_failures_per_user: default_failures_per_user(),
            password_checks: 0,
            first_byte_timeout_secs: default_first_byte_timeout_secs(),
            max_connections: 0,
        }
    }
}

fn default_failures_per_address() -> u32 {
    FailureLimits::default().per_address
}

fn default_failures_per_user() -> u32 {
    FailureLimits::default().per_user
}

/// `[ca]`: an existing CA, or one created on first start when `create_subject` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaSection {
    /// CA certificate (PEM).
    pub cert: PathBuf,
    /// Key URI of the CA key (`file:ca.key`; relative file paths are resolved like the rest).
    pub key: String,
    /// When set and the CA files do not exist yet: create a CA with this subject.
    #[serde(default)]
    pub create_subject: Option<String>,
}

/// `[tls]`: the server certificate; issued by the CA on first start when `names` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Key URI of the server key.
    pub key: String,
    /// DNS names and IP addresses for a server certificate issued on first start.
    #[serde(default)]
    pub names: Vec<String>,
}

/// `[labels.<name>]`: issuance and authentication policy of one CA label.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSection {
    /// Lifetime of issued certificates, in days.
    pub validity_days: u64,
    /// extendedKeyUsage: `clientAuth`, `serverAuth`, `cmcRA` or dotted OIDs.
    #[serde(default)]
    pub extended_key_usage: Vec<String>,
    /// RFC 4514 subject template with `{cn}` / `{serialNumber}`; default: the CSR's subject.
    #[serde(default)]
    pub subject_template: Option<String>,
    /// Allowed key types (`p256`, `p384`, `ed25519`); empty allows all.
    #[serde(default)]
    pub key_types: Vec<String>,
    /// `client-cert`, `basic`, `either` (default) or `both`.
    #[serde(default = "default_auth")]
    pub auth: String,
    /// Channel binding: `require`, `accept` (default) or `ignore`.
    #[serde(default = "default_binding")]
    pub binding: String,
    /// Offer /serverkeygen.
    #[serde(default)]
    pub serverkeygen: bool,
    /// Anchors for client certificates (PEM files); default: the CA itself.
    #[serde(default)]
    pub client_cert_anchors: Vec<PathBuf>,
    /// Basic users: name = argon2 PHC hash (make one with `brski est hash-password`).
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// keyUsage of issued certificates: `digitalSignature` (the default), `keyEncipherment`,
    /// `keyAgreement`. A certificate that should later receive an encrypted serverkeygen key
    /// (AsymmetricDecryptKeyIdentifier) needs `keyAgreement` (EC) or `keyEncipherment` (RSA).
    #[serde(default)]
    pub key_usage: Vec<String>,
    /// Shared key-encryption keys for serverkeygen (RFC 7030 §4.4.1.1): DecryptKeyIdentifier
    /// (hex) = file holding the AES key as hex (16, 24 or 32 bytes; not readable by others).
    #[serde(default)]
    pub serverkeygen_shared_keys: BTreeMap<String, PathBuf>,
    /// Most subjectAltName entries a CSR may ask for (default 16).
    #[serde(default = "default_max_sans")]
    pub max_sans: usize,
}

fn default_max_sans() -> usize {
    super::config::DEFAULT_MAX_SANS
}

fn default_auth() -> String {
    "either".into()
}

fn default_binding() -> String {
    "accept".into()
}

impl EstFileConfig {
    /// Reads and parses `path`, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let meta = std::fs::metadata(path).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        if meta.len() > MAX_CONFIG_LEN {
            return Err(ConfigError(format!("{}: larger than {MAX_CONFIG_LEN} bytes", path.display())));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let mut cfg: EstFileConfig =
            toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        cfg.resolve(path.parent().unwrap_or(Path::new(".")));
        Ok(cfg)
    }

    fn resolve(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut self.state);
        abs(&mut self.ca.cert);
        abs(&mut self.tls.cert);
        self.ca.key = resolve_key_uri(base, &self.ca.key);
        self.tls.key = resolve_key_uri(base, &self.tls.key);
        for label in self.labels.values_mut() {
            label.client_cert_anchors.iter_mut().for_each(abs);
            label.serverkeygen_shared_keys.values_mut().for_each(abs);
        }
    }

    /// The server configuration: label policies, with `ca` as the default client anchor.
    pub fn server_config(&self, ca: &Certificate) -> Result<EstServerConfig, ConfigError> {
        let mut config = EstServerConfig::default();
        config.auth_failures.per_address = self.limits.auth_failures_per_address;
        config.auth_failures.per_user = self.limits.auth_failures_per_user;
        config.password_checks = self.limits.password_checks;
        for (name, section) in &self.labels {
            let label = if name == "default" { "" } else { name.as_str() };
            config = config.with_label(
                label,
                section.policy(ca).map_err(|e| ConfigError(format!("[labels.{name}]: {}", e.0)))?,
            );
        }
        config.check()?;
        Ok(config)
    }
}

impl LabelSection {
    fn policy(&self, ca: &Certificate) -> Result<LabelPolicy, ConfigError> {
        let mut profile = Profile::end_entity(Duration::from_secs(self.validity_days.saturating_mul(86400)));
        profile.extended_key_usage =
            self.extended_key_usage.iter().map(|e| eku(e)).collect::<Result<_, _>>()?;
        if let Some(t) = &self.subject_template {
            profile.subject = SubjectRule::Template(t.clone());
        }
        if !self.key_usage.is_empty() {
            profile.key_usage = self.key_usage.iter().map(|k| key_usage(k)).collect::<Result<_, _>>()?;
        }
        let mut policy = LabelPolicy::new(profile);
        policy.allowed_key_algorithms = self
            .key_types
            .iter()
            .map(|k| {
                Algorithm::from_cli_name(k).ok_or_else(|| ConfigError(format!("unknown key type '{k}'")))
            })
            .collect::<Result<_, _>>()?;
        policy.auth = match self.auth.as_str() {
            "client-cert" => AuthRequirement::ClientCert,
            "basic" => AuthRequirement::Basic,
            "either" => AuthRequirement::Either,
            "both" => AuthRequirement::Both,
            other => {
                return Err(ConfigError(format!("auth '{other}': use client-cert, basic, either or both")))
            }
        };
        policy.binding = match self.binding.as_str() {
            "require" => BindingPolicy::Require,
            "accept" => BindingPolicy::Accept,
            "ignore" => BindingPolicy::Ignore,
            other => return Err(ConfigError(format!("binding '{other}': use require, accept or ignore"))),
        };
        policy.serverkeygen = self.serverkeygen;
        policy.max_sans = self.max_sans;
        policy.client_cert_anchors = self.anchors(ca)?;
        for (id, path) in &self.serverkeygen_shared_keys {
            policy.serverkeygen_shared_keys.push(shared_key(id, path)?);
        }
        for (user, hash) in &self.users {
            if argon2::PasswordHash::new(hash).is_err() {
                return Err(ConfigError(format!(
                    "user '{user}': not an argon2 PHC hash (brski est hash-password makes one)"
                )));
            }
            policy.basic_users.insert(user.clone(), hash.clone());
        }
        Ok(policy)
    }

    fn anchors(&self, ca: &Certificate) -> Result<Vec<Certificate>, ConfigError> {
        if self.client_cert_anchors.is_empty() {
            return Ok(vec![ca.clone()]);
        }
        let mut out = Vec::new();
        for p in &self.client_cert_anchors {
            let pem = std::fs::read(p).map_err(|e| ConfigError(format!("{}: {e}", p.display())))?;
            out.extend(
                shared::pki::certs_from_pem(&pem)
                    .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?,
            );
        }
        Ok(out)
    }
}

fn key_usage(name: &str) -> Result<KeyUsageBit, ConfigError> {
    Ok(match name {
        "digitalSignature" => KeyUsageBit::DigitalSignature,
        "keyEncipherment" => KeyUsageBit::KeyEncipherment,
        "keyAgreement" => KeyUsageBit::KeyAgreement,
        other => {
            return Err(ConfigError(format!(
                "key usage '{other}': use digitalSignature, keyEncipherment or keyAgreement"
            )))
        }
    })
}

/// Reads a shared key-encryption key: hex in a file only its owner may read.
fn shared_key(id_hex: &str, path: &Path) -> Result<SharedKey, ConfigError> {
    let err = |m: String| ConfigError(format!("serverkeygen_shared_keys '{id_hex}': {m}"));
    let id = hex::decode(id_hex).map_err(|_| err("the key identifier must be hex".into()))?;
    let meta = std::fs::metadata(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "{} is accessible by group or others (mode {mode:o}); run: chmod 600 {}",
                path.display(),
                path.display()
            )));
        }
    }
    if meta.len() > 1024 {
        return Err(err(format!("{}: not a hex AES key", path.display())));
    }
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(format!("{}: {e}", path.display())))?);
    let hex_text: Zeroizing<String> = Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
    let key = hex::decode(hex_text.as_str()).map_err(|_| err(format!("{}: not hex", path.display())))?;
    SharedKey::new(id, key).map_err(|e| err(e.to_string()))
}

fn eku(name: &str) -> Result<ObjectIdentifier, ConfigError> {
    Ok(match name {
        "clientAuth" => const_oid::db::rfc5280::ID_KP_CLIENT_AUTH,
        "serverAuth" => const_oid::db::rfc5280::ID_KP_SERVER_AUTH,
        "cmcRA" => ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.28"),
        dotted => ObjectIdentifier::new(dotted)
            .map_err(|_| ConfigError(format!("extended key usage '{dotted}' is not a known name or OID")))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::keys::SoftwareKey;

    fn ca() -> Certificate {
        let k = SoftwareKey::generate(Algorithm::Es256).unwrap();
        shared::pki::create_ca("CN=cfg", &k, Duration::from_secs(86400), None).unwrap()
    }

    #[test]
    fn example_file_parses_into_label_policies() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("est-serve.example.toml");
        let cfg = EstFileConfig::load(&path).unwrap();
        assert!(cfg.state.is_absolute() && cfg.ca.key.starts_with("file:/"));
        let server = cfg.server_config(&ca()).unwrap();
        let default = &server.labels[""];
        assert_eq!(default.auth, AuthRequirement::Either);
        assert_eq!(default.profile.extended_key_usage, vec![const_oid::db::rfc5280::ID_KP_CLIENT_AUTH]);
        let ldevid = &server.labels["ldevid"];
        assert_eq!((ldevid.auth, ldevid.binding), (AuthRequirement::ClientCert, BindingPolicy::Require));
        assert_eq!(ldevid.allowed_key_algorithms, vec![Algorithm::Es256, Algorithm::Es384]);
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let write = |body: &str| {
            let p = dir.path().join("c.toml");
            std::fs::write(&p, body).unwrap();
            p
        };
        let base = "listen = \"127.0.0.1:1\"\nstate = \".\"\n[ca]\ncert = \"ca.pem\"\nkey = \"file:ca.key\"\n[tls]\ncert = \"s.pem\"\nkey = \"file:s.key\"\n";
        let typo = write(&format!("{base}[labels.default]\nvalidity_days = 1\nauht = \"basic\"\n"));
        assert!(EstFileConfig::load(&typo).unwrap_err().0.contains("auht"));
        let bad_auth = write(&format!("{base}[labels.default]\nvalidity_days = 1\nauth = \"magic\"\n"));
        let e = EstFileConfig::load(&bad_auth).unwrap().server_config(&ca()).unwrap_err();
        assert!(e.0.contains("[labels.default]") && e.0.contains("magic"), "{e}");
        let bad_user = write(&format!(
            "{base}[labels.default]\nvalidity_days = 1\n[labels.default.users]\nbob = \"plaintext\"\n"
        ));
        assert!(EstFileConfig::load(&bad_user).unwrap().server_config(&ca()).unwrap_err().0.contains("bob"));
        let bad_ku =
            write(&format!("{base}[labels.default]\nvalidity_days = 1\nkey_usage = [\"keyCertSign\"]\n"));
        assert!(EstFileConfig::load(&bad_ku)
            .unwrap()
            .server_config(&ca())
            .unwrap_err()
            .0
            .contains("keyCertSign"));
        let op_label = write(&format!("{base}[labels.cacerts]\nvalidity_days = 1\n"));
        assert!(EstFileConfig::load(&op_label).unwrap().server_config(&ca()).is_err());
    }

    #[test]
    fn key_usage_and_shared_keys() {
        let dir = tempfile::tempdir().unwrap();
        let kek = dir.path().join("kek.hex");
        std::fs::write(&kek, format!("{}\n", "ab".repeat(32))).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let p = dir.path().join("c.toml");
        let body = "listen = \"127.0.0.1:1\"\nstate = \".\"\n[ca]\ncert = \"ca.pem\"\nkey = \"file:ca.key\"\n[tls]\ncert = \"s.pem\"\nkey = \"file:s.key\"\n[labels.default]\nvalidity_days = 1\nserverkeygen = true\nkey_usage = [\"digitalSignature\", \"keyAgreement\"]\n[labels.default.serverkeygen_shared_keys]\n\"6b656b2d31\" = \"kek.hex\"\n";
        std::fs::write(&p, body).unwrap();
        let server = EstFileConfig::load(&p).unwrap().server_config(&ca()).unwrap();
        let policy = &server.labels[""];
        assert_eq!(policy.profile.key_usage, vec![KeyUsageBit::DigitalSignature, KeyUsageBit::KeyAgreement]);
        assert_eq!(policy.serverkeygen_shared_keys.len(), 1);
        assert_eq!(policy.serverkeygen_shared_keys[0].id(), b"kek-1");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = EstFileConfig::load(&p).unwrap().server_config(&ca()).unwrap_err();
            assert!(e.0.contains("chmod 600"), "{e}");
        }
    }
}
