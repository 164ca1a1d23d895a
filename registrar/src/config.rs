//! The registrar's configuration: a TOML file ([`RegistrarFile`]) whose relative paths are
//! resolved against the file's directory, loaded into [`RegistrarConfig`] with every
//! certificate parsed, so a wrong key or an unreadable file is reported at start with the key
//! and the file named.

use serde::Deserialize;
use shared::pki;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use x509_cert::Certificate;

/// The file name `brski registrar init` writes and `serve --state DIR` reads.
pub const CONFIG_FILE: &str = "registrar.toml";
/// The default SQLite store file in the state directory.
pub(crate) const STORE_FILE: &str = "registrar.db";

/// How pledges are approved.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Approval {
    /// Every pledge from a trusted manufacturer is accepted.
    #[default]
    Auto,
    /// Only serial numbers in `allowlist` (or approved with `brski registrar approve`).
    Allowlist,
    /// Every new pledge waits (202 + Retry-After) until `brski registrar approve`.
    Manual,
}

/// What the registrar does with the MASA audit log (RFC 8995 §5.8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuditLogPolicy {
    /// Fetch it after a successful voucher_status; refuse EST on a violation.
    #[default]
    Enforce,
    /// Fetch and record it; never refuse.
    Warn,
    /// Do not fetch it.
    Ignore,
}

/// One `[[manufacturer]]` table of the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManufacturerFile {
    /// A name for logs and `list`.
    pub name: String,
    /// PEM file with the manufacturer's IDevID trust anchors.
    pub idevid_anchors: PathBuf,
    /// MASA URL override (otherwise the IDevID's id-pe-masa-url is used).
    #[serde(default)]
    pub masa_url: Option<String>,
    /// PEM file with the anchors for the MASA's TLS certificate (default: `idevid_anchors`).
    #[serde(default)]
    pub masa_anchors: Option<PathBuf>,
}

/// The TOML file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistrarFile {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// State directory (database); default: the config file's directory.
    #[serde(default)]
    pub state: Option<PathBuf>,
    /// The store: a `postgres://` (or `postgresql://`) URL, which several registrars may
    /// share, or a SQLite file path (relative to the config file's directory); default:
    /// `registrar.db` in the state directory.
    #[serde(default)]
    pub store: Option<String>,
    /// Domain CA certificate (PEM).
    pub domain_ca_cert: PathBuf,
    /// Domain CA key URI (`file:...`).
    pub domain_ca_key: String,
    /// Registrar certificate (PEM; cmcRA + serverAuth + clientAuth, issued by the domain CA).
    pub registrar_cert: PathBuf,
    /// Registrar key URI.
    pub registrar_key: String,
    /// Approval policy.
    #[serde(default)]
    pub approval: Approval,
    /// Serial numbers accepted under `approval = "allowlist"`.
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// Seconds a pending pledge is told to wait.
    #[serde(default = "default_retry_after")]
    pub retry_after_secs: u64,
    /// Lifetime of issued LDevIDs, in days.
    #[serde(default = "default_ldevid_days")]
    pub ldevid_days: u64,
    /// Audit-log policy.
    #[serde(default)]
    pub audit_log: AuditLogPolicy,
    /// Require RFC 9266 channel binding in EST CSRs.
    #[serde(default = "default_true")]
    pub require_binding: bool,
    /// Announce the registrar by DNS-SD over mDNS (`_brski-registrar._tcp`) while it serves.
    #[serde(default = "default_true")]
    pub mdns: bool,
    /// Announce on this network interface only (default: where `listen` is reachable).
    #[serde(default)]
    pub mdns_interface: Option<String>,
    /// The service instance name (default: `brski-registrar-<hostname>`).
    #[serde(default)]
    pub mdns_instance: Option<String>,
    /// The host name of the announced address records, ending in `.local.` (default:
    /// `<hostname>-brski.local.`).
    #[serde(default)]
    pub mdns_hostname: Option<String>,
    /// Agent issuance policy file (`agent-policy.toml`); agent endpoints exist only with it.
    #[serde(default)]
    pub agent_policy: Option<PathBuf>,
    /// Trusted manufacturers.
    #[serde(default, rename = "manufacturer")]
    pub manufacturers: Vec<ManufacturerFile>,
}

fn default_retry_after() -> u64 {
    5
}
fn default_ldevid_days() -> u64 {
    365
}
fn default_true() -> bool {
    true
}

/// A trusted manufacturer, loaded.
#[derive(Debug, Clone)]
pub struct Manufacturer {
    /// Its name.
    pub name: String,
    /// IDevID trust anchors (also its vouchers' anchors, for the registrar's own inspection).
    pub idevid_anchors: Vec<Certificate>,
    /// MASA URL override.
    pub masa_url: Option<String>,
    /// Anchors for the MASA's TLS server certificate.
    pub masa_anchors: Vec<Certificate>,
}

/// The registrar's policy and parameters, loaded (keys are loaded by the caller).
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// State directory.
    pub state: PathBuf,
    /// The store: a PostgreSQL URL or a SQLite file path, resolved (see
    /// [`store::open_url`]).
    pub store: String,
    /// Approval policy.
    pub approval: Approval,
    /// Allow-listed serial numbers.
    pub allowlist: Vec<String>,
    /// Retry-After for pending pledges.
    pub retry_after: Duration,
    /// LDevID lifetime.
    pub ldevid_validity: Duration,
    /// Audit-log policy.
    pub audit_log: AuditLogPolicy,
    /// Require tls-exporter binding in EST CSRs.
    pub require_binding: bool,
    /// Trusted manufacturers.
    pub manufacturers: Vec<Manufacturer>,
    /// Timeout of each call to a MASA.
    pub masa_timeout: Duration,
    /// The mDNS announcement (`brski registrar serve` makes it; the lab and tests do not).
    pub mdns: MdnsConfig,
    /// The agent issuance policy file, resolved.
    pub agent_policy: Option<PathBuf>,
}

/// How the registrar announces itself by DNS-SD over mDNS (see [`crate::announce`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdnsConfig {
    /// Whether `brski registrar serve` announces (`--no-mdns` overrides it for one run).
    pub enabled: bool,
    /// The only interface to announce on.
    pub interface: Option<String>,
    /// Service instance name override.
    pub instance: Option<String>,
    /// Host name override (ends in `.local.`).
    pub hostname: Option<String>,
}

/// A configuration that cannot be used, naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub(crate) struct ConfigError {
    /// The file.
    pub file: String,
    /// The key (or "syntax").
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl RegistrarFile {
    /// Reads and parses `path`; unknown keys are errors naming the key and the file.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| err(path, "file", e))?;
        toml::from_str(&text).map_err(|e| err(path, "syntax", e.message().to_string()))
    }

    /// Resolves a path of the file against the file's directory.
    pub(crate) fn resolve(path: &Path, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    /// Resolves a key URI of the file (a relative `file:` path) against the file's directory,
    /// by the one rule of [`shared::conf::resolve_key_uri`].
    pub(crate) fn resolve_key(path: &Path, uri: &str) -> String {
        shared::conf::resolve_key_uri(path.parent().unwrap_or(Path::new(".")), uri)
    }

    /// The state directory: `state`, resolved, or the config file's directory.
    pub(crate) fn state_dir(&self, path: &Path) -> PathBuf {
        match &self.state {
            Some(s) => Self::resolve(path, s),
            None => path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        }
    }

    /// Where the store is: the `store` URL as written, a `store` file path resolved against
    /// the config file's directory, or `registrar.db` in `state`.
    pub(crate) fn store_location(&self, path: &Path, state: &Path) -> String {
        match self.store.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(url) if store::is_postgres_url(url) => url.to_string(),
            Some(file) => Self::resolve(path, Path::new(file)).display().to_string(),
            None => state.join(STORE_FILE).display().to_string(),
        }
    }

    /// Loads every certificate the file names into a [`RegistrarConfig`].
    pub(crate) fn into_config(self, path: &Path) -> Result<RegistrarConfig, ConfigError> {
        let state = self.state_dir(path);
        let store = self.store_location(path, &state);
        let mut manufacturers = Vec::new();
        for (i, m) in self.manufacturers.iter().enumerate() {
            let key = |k: &str| format!("manufacturer[{i}].{k}");
            let idevid_anchors =
                read_certs(path, &Self::resolve(path, &m.idevid_anchors), &key("idevid_anchors"))?;
            let masa_anchors = match &m.masa_anchors {
                Some(p) => read_certs(path, &Self::resolve(path, p), &key("masa_anchors"))?,
                None => idevid_anchors.clone(),
            };
            manufacturers.push(Manufacturer {
                name: m.name.clone(),
                idevid_anchors,
                masa_url: m.masa_url.clone(),
                masa_anchors,
            });
        }
        if manufacturers.is_empty() {
            return Err(err(path, "manufacturer", "at least one [[manufacturer]] is needed"));
        }
        let mdns = MdnsConfig {
            enabled: self.mdns,
            interface: self.mdns_interface.filter(|i| !i.is_empty()),
            instance: self.mdns_instance.map(|i| check_instance(path, i)).transpose()?,
            hostname: self.mdns_hostname.map(|h| check_hostname(path, h)).transpose()?,
        };
        Ok(RegistrarConfig {
            listen: self.listen,
            store,
            state,
            approval: self.approval,
            allowlist: self.allowlist,
            retry_after: Duration::from_secs(self.retry_after_secs.max(1)),
            ldevid_validity: Duration::from_secs(self.ldevid_days.max(1) * 86400),
            audit_log: self.audit_log,
            require_binding: self.require_binding,
            manufacturers,
            masa_timeout: Duration::from_secs(10),
            mdns,
            agent_policy: self.agent_policy.map(|p| Self::resolve(path, &p)),
        })
    }
}

/// Reads a PEM file of certificates; errors name the config file and key.
pub(crate) fn read_certs(config: &Path, file: &Path, key: &str) -> Result<Vec<Certificate>, ConfigError> {
    let bytes = std::fs::read(file).map_err(|e| err(config, key, format!("{}: {e}", file.display())))?;
    let certs =
        pki::certs_from_pem(&bytes).map_err(|e| err(config, key, format!("{}: {e}", file.display())))?;
    if certs.is_empty() {
        return Err(err(config, key, format!("{} holds no certificate", file.display())));
    }
    Ok(certs)
}

/// A DNS-SD instance name is one DNS label: 1 to 63 bytes (RFC 6763 §4.1.1).
fn check_instance(path: &Path, name: String) -> Result<String, ConfigError> {
    if name.is_empty() || name.len() > 63 || name.chars().any(char::is_control) {
        return Err(err(path, "mdns_instance", "must be 1 to 63 bytes without control characters"));
    }
    Ok(name)
}

/// An mDNS host name: letters, digits and '-' in dot-separated labels, in `.local.`
/// (a missing `.local.` or final dot is added).
fn check_hostname(path: &Path, name: String) -> Result<String, ConfigError> {
    let bare = name.trim_end_matches('.');
    let bare = bare.strip_suffix(".local").unwrap_or(bare);
    let ok = !bare.is_empty()
        && bare.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !ok {
        return Err(err(
            path,
            "mdns_hostname",
            format!("{name:?} is not a host name like \"registrar1.local.\""),
        ));
    }
    Ok(format!("{bare}.local."))
}

fn err(path: &Path, key: &str, reason: impl ToString) -> ConfigError {
    ConfigError { file: path.display().to_string(), key: key.to_string(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_missing_files_name_the_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nbogus = 1\n").unwrap();
        let e = RegistrarFile::load(&path).unwrap_err().to_string();
        assert!(e.contains("bogus") && e.contains(CONFIG_FILE), "{e}");
        let text = "listen = \"127.0.0.1:1\"\ndomain_ca_cert = \"ca.pem\"\ndomain_ca_key = \"file:ca.key\"\n\
                    registrar_cert = \"r.pem\"\nregistrar_key = \"file:r.key\"\n\
                    [[manufacturer]]\nname = \"m\"\nidevid_anchors = \"missing.pem\"\n";
        std::fs::write(&path, text).unwrap();
        let e = RegistrarFile::load(&path).unwrap().into_config(&path).unwrap_err().to_string();
        assert!(e.contains("manufacturer[0].idevid_anchors") && e.contains("missing.pem"), "{e}");
    }

    #[test]
    fn store_is_a_postgres_url_or_a_sqlite_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        let base = "listen = \"127.0.0.1:1\"\ndomain_ca_cert = \"ca.pem\"\ndomain_ca_key = \"file:ca.key\"\n\
                    registrar_cert = \"r.pem\"\nregistrar_key = \"file:r.key\"\n";
        let location = |extra: &str| {
            std::fs::write(&path, format!("{extra}{base}")).unwrap();
            let file = RegistrarFile::load(&path).unwrap();
            file.store_location(&path, &file.state_dir(&path))
        };
        assert_eq!(location(""), dir.path().join(STORE_FILE).display().to_string());
        assert_eq!(
            location("state = \"st\"\n"),
            dir.path().join("st").join(STORE_FILE).display().to_string()
        );
        let url = "postgresql://brski:pw@db.example:5432/brski?sslmode=require";
        assert_eq!(location(&format!("store = \"{url}\"\n")), url);
        assert_eq!(location("store = \"other.db\"\n"), dir.path().join("other.db").display().to_string());
    }

    #[test]
    fn mdns_keys_default_on_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(dir.path().join("m.pem"), pki::cert_to_pem(&test_cert()).unwrap()).unwrap();
        let base = "listen = \"127.0.0.1:1\"\ndomain_ca_cert = \"ca.pem\"\ndomain_ca_key = \"file:ca.key\"\n\
                    registrar_cert = \"r.pem\"\nregistrar_key = \"file:r.key\"\n";
        let load = |extra: &str| {
            std::fs::write(
                &path,
                format!("{base}{extra}[[manufacturer]]\nname = \"m\"\nidevid_anchors = \"m.pem\"\n"),
            )
            .unwrap();
            RegistrarFile::load(&path).and_then(|f| f.into_config(&path))
        };
        let c = load("").unwrap();
        assert!(c.mdns.enabled && c.mdns.interface.is_none() && c.mdns.hostname.is_none());
        let c = load("mdns = false\nmdns_interface = \"eth1\"\nmdns_hostname = \"reg-1\"\nmdns_instance = \"Campus registrar\"\n")
            .unwrap();
        assert!(!c.mdns.enabled);
        assert_eq!(c.mdns.interface.as_deref(), Some("eth1"));
        assert_eq!(c.mdns.hostname.as_deref(), Some("reg-1.local."));
        assert_eq!(c.mdns.instance.as_deref(), Some("Campus registrar"));
        assert_eq!(
            load("mdns_hostname = \"a.local.\"\n").unwrap().mdns.hostname.as_deref(),
            Some("a.local.")
        );
        let e = load("mdns_hostname = \"bad name\"\n").unwrap_err().to_string();
        assert!(e.contains("mdns_hostname"), "{e}");
        let e = load(&format!("mdns_instance = \"{}\"\n", "x".repeat(64))).unwrap_err().to_string();
        assert!(e.contains("mdns_instance"), "{e}");
        let e = load("mdns = \"yes\"\n").unwrap_err().to_string();
        assert!(e.contains("expected a boolean"), "{e}");
    }

    fn test_cert() -> Certificate {
        let key = shared::keys::SoftwareKey::generate(shared::keys::Algorithm::Es256).unwrap();
        pki::create_ca("CN=test", &key, Duration::from_secs(86400), None).unwrap()
    }
}
