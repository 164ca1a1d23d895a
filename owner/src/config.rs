//! `owner.toml`: who the owner is (id, kid), where its Identity Server is, and the gateway's
//! rules. Flags of `brski owner ...` override it. Relative paths are relative to the owner
//! directory.

use crate::OwnerError;
use serde::Deserialize;
use shared::agent::{check_owner_id, check_trust_domain};
use shared::conf::{resolve_key_uri, toml_string};
use shared::keys::{redact_pin, KeyUri};
use std::path::{Path, PathBuf};

/// The configuration file's name inside the owner directory.
pub const CONFIG_FILE: &str = "owner.toml";
/// The private key `init` generates (PKCS#8 PEM, 0600), used unless `key` names another.
pub const KEY_FILE: &str = "owner.key";
/// The key URI used when `owner.toml` has no `key`.
pub(crate) const DEFAULT_KEY_URI: &str = "file:owner.key";
/// The self-signed owner certificate (TLS client certificate, gateway `x5c`).
pub const CERT_FILE: &str = "owner.pem";
/// The public key to provision at the Identity Server.
pub const PUBLIC_FILE: &str = "owner-public.pem";

/// `owner.toml` as written. `Debug` shows `key` with any PIN redacted.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerConfig {
    /// The owner id (`mailto:`, `https://`, `wimse://<td>/owner/<name>`).
    pub id: String,
    /// The key id the Identity Server knows this key by (`kid` of `[[owner]]`).
    pub kid: String,
    /// The owner key as a key URI: `file:<path>` (relative to the owner directory) or
    /// `pkcs11:<RFC 7512 URI>` for a key in a token. Default: [`DEFAULT_KEY_URI`].
    #[serde(default)]
    pub key: Option<String>,
    /// The trust domain (OA `aud`); the ACR audience is `wimse://<trust_domain>`.
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// `spiffe://` instead of `wimse://` issuance URIs.
    #[serde(default)]
    pub spiffe: bool,
    /// The Identity Server, `https://host:port`.
    #[serde(default)]
    pub server: Option<String>,
    /// PEM file of the trust domain's CA (verifies the server and its challenges).
    #[serde(default)]
    pub domain_ca: Option<PathBuf>,
    /// The gateway (model 2).
    #[serde(default)]
    pub gateway: GatewaySection,
}

impl std::fmt::Debug for OwnerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerConfig")
            .field("id", &self.id)
            .field("kid", &self.kid)
            .field("key", &self.key.as_deref().map(redact_pin))
            .field("trust_domain", &self.trust_domain)
            .field("spiffe", &self.spiffe)
            .field("server", &self.server)
            .field("domain_ca", &self.domain_ca)
            .field("gateway", &self.gateway)
            .finish()
    }
}

/// `[gateway]`: the owner gateway's listener and rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Agent id patterns (exact, or a prefix ending in `*`) this gateway approves.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Requests per second each proxy may make (burst of the same size).
    #[serde(default = "default_rate")]
    pub rate_per_sec: u32,
    /// Requests in flight or waiting for a person, at most.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Every request waits for `brski owner gateway approve|deny`.
    #[serde(default)]
    pub manual: bool,
    /// Largest credential lifetime the gateway approves (OA constraint `max_ttl`).
    #[serde(default)]
    pub max_ttl_secs: Option<u64>,
    /// Grant lifetime in seconds (renewals with the same agent key reuse the approval).
    #[serde(default = "default_grant")]
    pub grant_secs: i64,
}

fn default_listen() -> String {
    "127.0.0.1:8444".into()
}
fn default_rate() -> u32 {
    5
}
fn default_queue() -> usize {
    64
}
fn default_grant() -> i64 {
    86400
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            listen: default_listen(),
            agents: Vec::new(),
            rate_per_sec: default_rate(),
            queue: default_queue(),
            manual: false,
            max_ttl_secs: None,
            grant_secs: default_grant(),
        }
    }
}

impl OwnerConfig {
    /// Loads and checks `<dir>/owner.toml`.
    pub fn load(dir: &Path) -> Result<Self, OwnerError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(OwnerError::io(&path))?;
        let cfg: OwnerConfig = toml::from_str(&text)
            .map_err(|e| OwnerError::Config(format!("{}: {}", path.display(), e.message())))?;
        cfg.check().map_err(|e| OwnerError::Config(format!("{}: {e}", path.display())))?;
        Ok(cfg)
    }

    /// Checks the values.
    pub fn check(&self) -> Result<(), String> {
        check_owner_id(&self.id).map_err(|e| format!("id: {e}"))?;
        check_kid(&self.kid).map_err(|e| format!("kid: {e}"))?;
        if let Some(k) = &self.key {
            k.parse::<KeyUri>().map_err(|e| format!("key: {e}"))?;
        }
        if let Some(td) = &self.trust_domain {
            check_trust_domain(td).map_err(|e| format!("trust_domain: {e}"))?;
        }
        if self.gateway.rate_per_sec == 0 || self.gateway.queue == 0 {
            return Err("gateway.rate_per_sec and gateway.queue must be positive".into());
        }
        Ok(())
    }

    /// The trust domain, or an error saying how to configure it.
    pub fn trust_domain(&self) -> Result<&str, OwnerError> {
        self.trust_domain.as_deref().ok_or_else(|| {
            OwnerError::Config("no trust domain: set trust_domain in owner.toml or pass --audience".into())
        })
    }

    /// The ACR audience: `wimse://<trust_domain>` (or `spiffe://`).
    pub fn issuance_uri(&self) -> Result<String, OwnerError> {
        let scheme = if self.spiffe { "spiffe" } else { "wimse" };
        Ok(format!("{scheme}://{}", self.trust_domain()?))
    }

    /// The owner key's URI as written (`key`, else [`DEFAULT_KEY_URI`]); may hold a PIN, so
    /// show it with [`redact_pin`].
    pub fn key_uri(&self) -> &str {
        self.key.as_deref().unwrap_or(DEFAULT_KEY_URI)
    }

    /// The owner key's URI to load: a relative `file:` path resolved against `dir`, any
    /// other URI as written.
    pub fn resolved_key_uri(&self, dir: &Path) -> String {
        resolve_key_uri(dir, self.key_uri())
    }

    /// `domain_ca`, resolved against `dir`.
    pub fn domain_ca_path(&self, dir: &Path) -> Option<PathBuf> {
        self.domain_ca.as_ref().map(|p| if p.is_absolute() { p.clone() } else { dir.join(p) })
    }
}

/// A key id: 1 to 64 characters of `A-Za-z0-9._-`.
pub(crate) fn check_kid(kid: &str) -> Result<(), String> {
    let ok = !kid.is_empty()
        && kid.len() <= 64
        && kid.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("{kid:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -"))
    }
}

/// The trust domain of an issuance URI (`wimse://campus.example` -> `campus.example`).
pub(crate) fn trust_domain_of(issuance_uri: &str) -> &str {
    issuance_uri.split_once("://").map_or(issuance_uri, |(_, td)| td.trim_end_matches('/'))
}

/// The commented `owner.toml` that `init` writes.
pub(crate) fn render(
    id: &str,
    kid: &str,
    key: Option<&str>,
    trust_domain: Option<&str>,
    server: Option<&str>,
    domain_ca: Option<&str>,
) -> String {
    let opt = |k: &str, v: Option<&str>, example: &str| match v {
        Some(v) => format!("{k} = {}\n", toml_string(v)),
        None => format!("# {k} = \"{example}\"\n"),
    };
    let key = match key {
        Some(k) => format!("key = {}\n", toml_string(k)),
        None => format!("# key = \"{DEFAULT_KEY_URI}\"   # the default\n"),
    };
    let agents = match trust_domain {
        Some(td) => format!("agents = [{}]", toml_string(&format!("wimse://{td}/agent/*"))),
        None => "agents = []   # e.g. [\"wimse://campus.example/agent/*\"]".into(),
    };
    format!(
        "# brski owner configuration (written by `brski owner init`). Flags override it.\n\
         # Relative paths are relative to this directory.\n\n\
         # The owner id (URI SAN of owner.pem) and the key id the Identity Server knows the key by.\n\
         id = {}\nkid = {}\n\n\
         # The owner key as a key URI (owner.pem carries its public key): file:<path> (PKCS#8 PEM,\n\
         # mode 0600, relative to this directory), or pkcs11:<RFC 7512 URI> for a key in a token,\n\
         # e.g. \"pkcs11:token=owner;object=owner-key;type=private?pin-source=file:/etc/brski/owner.pin\".\n\
         {key}\n\
         # The trust domain: OA aud, and wimse://<trust_domain> is the ACR audience.\n{}\
         # spiffe = true   # spiffe:// instead of wimse:// issuance URIs\n\n\
         # The Identity Server (registrar) and the domain CA that verifies it and its challenges.\n{}{}\n\
         # Model 2: the owner gateway (`brski owner gateway serve`).\n\
         [gateway]\n\
         listen = \"127.0.0.1:8444\"\n\
         # Agent ids this gateway approves (exact, or a prefix ending in *).\n{agents}\n\
         # Requests per second per proxy (429 + Retry-After above), and requests in flight (503 above).\n\
         rate_per_sec = 5\nqueue = 64\n\
         # Every request waits for `brski owner gateway approve|deny --dir DIR ID`.\n\
         manual = false\n\
         # max_ttl_secs = 3600   # largest credential lifetime approved\n\
         grant_secs = 86400      # renewals with the same agent key reuse an approval this long\n",
        toml_string(id),
        toml_string(kid),
        opt("trust_domain", trust_domain, "campus.example"),
        opt("server", server, "https://registrar.example:8443"),
        opt("domain_ca", domain_ca, "domain-ca.pem"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_config_parses_with_and_without_options() {
        let text = render("mailto:a@example.com", "a-1", None, Some("campus.example"), None, Some("ca.pem"));
        let cfg: OwnerConfig = toml::from_str(&text).unwrap();
        cfg.check().unwrap();
        assert_eq!(cfg.issuance_uri().unwrap(), "wimse://campus.example");
        assert_eq!(cfg.gateway.agents, vec!["wimse://campus.example/agent/*".to_string()]);
        let cfg: OwnerConfig =
            toml::from_str(&render("mailto:a@example.com", "a", None, None, None, None)).unwrap();
        assert!(cfg.trust_domain().is_err());
        assert_eq!(cfg.key, None);
        assert_eq!(cfg.resolved_key_uri(Path::new("/o")), "file:/o/owner.key");
        assert!(check_kid("a b").is_err());
        assert_eq!(trust_domain_of("wimse://campus.example"), "campus.example");
    }

    #[test]
    fn key_uris_resolve_against_the_owner_directory() {
        let uri = "pkcs11:token=owner;object=k;type=private?pin-source=file:/run/pin";
        let text = render("mailto:a@example.com", "a", Some(uri), None, None, None);
        let cfg: OwnerConfig = toml::from_str(&text).unwrap();
        cfg.check().unwrap();
        assert_eq!(cfg.key_uri(), uri);
        assert_eq!(cfg.resolved_key_uri(Path::new("/o")), uri);
        let bad: OwnerConfig =
            toml::from_str("id = \"mailto:a@example.com\"\nkid = \"a\"\nkey = \"pkcs11:?pin-value=s3cret\"")
                .unwrap();
        let e = bad.check().unwrap_err();
        assert!(e.starts_with("key: ") && !e.contains("s3cret"), "{e}");
        assert!(!format!("{bad:?}").contains("s3cret"));
    }
}
