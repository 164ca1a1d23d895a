//! The MASA's configuration file, `masa.toml` in the state directory: where it listens, the
//! URL it writes into IDevIDs, and its voucher policy. `brski masa init` writes it with
//! comments; `brski masa serve` flags override single keys. Unknown keys are an error naming
//! the key and the file.

use crate::error::MasaError;
use serde::Deserialize;
use shared::conf::toml_string;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Largest configuration file read.
const MAX_CONFIG_LEN: u64 = 64 * 1024;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9443";
/// Default lifetime of a nonceless voucher, in minutes (RFC 8995 §5.6 recommends about 20).
pub(crate) const DEFAULT_NONCELESS_MINUTES: u64 = 20;
/// Default request body limit (128 KiB: an RVR carrying a PVR and two chains is a few KiB).
pub(crate) const DEFAULT_BODY_LIMIT: usize = 128 * 1024;
/// Default time limit of one request, body included, in seconds.
pub(crate) const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;

/// The MASA configuration (`masa.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasaConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The MASA URL authority (`host:port`) written into IDevIDs' id-pe-masa-url extension.
    pub url: String,
    /// Manufacturer name: `O=` of the manufacturer CA and of every IDevID.
    pub manufacturer: String,
    /// Issue "logged" vouchers for devices without an ownership record (test-lab policy).
    #[serde(default)]
    pub allow_any_owner: bool,
    /// Issue nonceless vouchers to registrars authenticated as the device's owner.
    #[serde(default)]
    pub nonceless: bool,
    /// Lifetime of a nonceless voucher, in minutes.
    #[serde(default = "default_nonceless_minutes")]
    pub nonceless_lifetime_minutes: u64,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
    /// Longest time one request may take (body included), in seconds.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// The voucher-signing key as a key URI (`file:<path>`, relative to the state directory,
    /// or `pkcs11:...` with the `pkcs11` feature); default: `file:voucher-signer.key`.
    /// `voucher-signer.pem` must certify it.
    #[serde(default)]
    pub voucher_signer_key: Option<String>,
}

fn default_nonceless_minutes() -> u64 {
    DEFAULT_NONCELESS_MINUTES
}

fn default_body_limit() -> usize {
    DEFAULT_BODY_LIMIT
}

fn default_request_timeout() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_SECS
}

impl MasaConfig {
    /// The defaults for a MASA reached at `url` (authority `host:port`).
    pub fn new(url: &str, listen: SocketAddr, manufacturer: &str) -> Self {
        MasaConfig {
            listen,
            url: url.to_string(),
            manufacturer: manufacturer.to_string(),
            allow_any_owner: false,
            nonceless: false,
            nonceless_lifetime_minutes: DEFAULT_NONCELESS_MINUTES,
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT_SECS,
            voucher_signer_key: None,
        }
    }

    /// Reads and checks `path`; errors name the file (and the key, for unknown or bad keys).
    pub fn load(path: &Path) -> Result<Self, MasaError> {
        let err = |e: &dyn std::fmt::Display| MasaError::Config(format!("{}: {e}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| err(&e))?;
        if meta.len() > MAX_CONFIG_LEN {
            return Err(err(&format!("larger than {MAX_CONFIG_LEN} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(&e))?;
        let cfg: MasaConfig = toml::from_str(&text).map_err(|e| err(&e))?;
        cfg.check().map_err(|e| err(&e))?;
        Ok(cfg)
    }

    /// Checks values serde cannot: a usable URL, a non-empty manufacturer, sane limits.
    pub fn check(&self) -> Result<(), String> {
        url_host(&self.url)?;
        if self.manufacturer.trim().is_empty() {
            return Err("manufacturer must not be empty".into());
        }
        if self.nonceless_lifetime_minutes == 0 {
            return Err("nonceless_lifetime_minutes must be at least 1".into());
        }
        if self.body_limit < 1024 {
            return Err("body_limit must be at least 1024 bytes".into());
        }
        if self.request_timeout_secs == 0 {
            return Err("request_timeout_secs must be at least 1".into());
        }
        Ok(())
    }

    /// Lifetime of a nonceless voucher.
    pub fn nonceless_lifetime(&self) -> Duration {
        Duration::from_secs(self.nonceless_lifetime_minutes.saturating_mul(60))
    }

    /// Time limit of one request.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// The file text `init` writes: every key with a comment saying what it does.
    pub fn to_commented_toml(&self) -> String {
        let s = |v: &str| toml_string(v);
        format!(
            "# brski MASA configuration, written by `brski masa init`.\n\
             # Flags of `brski masa serve` override single keys; unknown keys are an error.\n\
             \n\
             # Address the MASA listens on.\n\
             listen = {}\n\
             \n\
             # The MASA URL authority (host:port) written into every IDevID's id-pe-masa-url\n\
             # extension; registrars reach the MASA at https://<url>/.well-known/brski.\n\
             url = {}\n\
             \n\
             # Manufacturer name: O= of the manufacturer CA and of every IDevID.\n\
             manufacturer = {}\n\
             \n\
             # Issue \"logged\" vouchers for devices that have no ownership record, to any registrar\n\
             # whose request verifies. An explicit test-lab policy: keep it off in production.\n\
             allow_any_owner = {}\n\
             \n\
             # Issue nonceless vouchers (no nonce, with expires-on), only to registrars authenticated\n\
             # as the device's recorded owner (RFC 8995 §5.5.4, §7.4.2).\n\
             nonceless = {}\n\
             \n\
             # Lifetime of a nonceless voucher in minutes (never past the registrar certificate).\n\
             nonceless_lifetime_minutes = {}\n\
             \n\
             # Largest accepted request body, in bytes (413 above it).\n\
             body_limit = {}\n\
             \n\
             # Longest time one request may take, body included, in seconds.\n\
             request_timeout_secs = {}\n\
             \n\
             # The voucher-signing key as a key URI: file:<path> (relative to this directory) or an\n\
             # RFC 7512 pkcs11: URI (an HSM key; voucher-signer.pem must certify it).\n\
             {}\n",
            s(&self.listen.to_string()),
            s(&self.url),
            s(&self.manufacturer),
            self.allow_any_owner,
            self.nonceless,
            self.nonceless_lifetime_minutes,
            self.body_limit,
            self.request_timeout_secs,
            match &self.voucher_signer_key {
                Some(k) => format!("voucher_signer_key = {}", s(k)),
                None => "# voucher_signer_key = \"file:voucher-signer.key\"".to_string(),
            },
        )
    }
}

/// The host of a MASA URL (authority `host[:port]`, `[v6]:port`, or a full `https://` URI).
pub(crate) fn url_host(url: &str) -> Result<String, String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err(format!("MASA url '{url}' is not an authority such as masa.example.com:9443"));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.is_empty() {
        return Err(format!("MASA url '{url}' names no host"));
    }
    Ok(host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_file_round_trips() {
        let mut c =
            MasaConfig::new("masa.example:9443", "127.0.0.1:9443".parse().unwrap(), "Acme \"Widgets\"");
        c.nonceless = true;
        let parsed: MasaConfig = toml::from_str(&c.to_commented_toml()).unwrap();
        assert_eq!(parsed, c);
    }

    #[test]
    fn voucher_signer_key_round_trips() {
        let mut c = MasaConfig::new("m:1", "127.0.0.1:1".parse().unwrap(), "A");
        c.voucher_signer_key =
            Some("pkcs11:token=MASA;object=vs;type=private?pin-source=file:/run/pin".into());
        let parsed: MasaConfig = toml::from_str(&c.to_commented_toml()).unwrap();
        assert_eq!(parsed, c);
    }

    #[test]
    fn unknown_keys_name_the_key() {
        let text = MasaConfig::new("m:1", "127.0.0.1:1".parse().unwrap(), "A").to_commented_toml();
        let e = toml::from_str::<MasaConfig>(&format!("{text}\nallow_any = true\n")).unwrap_err();
        assert!(e.to_string().contains("allow_any"), "{e}");
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(url_host("masa.example:9443").unwrap(), "masa.example");
        assert_eq!(url_host("127.0.0.1").unwrap(), "127.0.0.1");
        assert_eq!(url_host("[::1]:9443").unwrap(), "::1");
        assert_eq!(url_host("https://m.example/.well-known/brski").unwrap(), "m.example");
        assert!(url_host("").is_err());
        assert!(url_host(":9443").is_err());
    }
}
