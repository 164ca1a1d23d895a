//! What a pledge holds and how it behaves. Defaults follow the directory `brski masa idevid`
//! writes (`idevid.key`, `idevid.pem`, `manufacturer-ca.pem`); every field can be overridden.

use shared::signed::Format;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The pledge's configuration.
#[derive(Debug, Clone)]
pub struct PledgeConfig {
    /// State directory (IDevID files by default; LDevID, domain anchors and voucher are written here).
    pub state: PathBuf,
    /// IDevID key URI.
    pub idevid_key: String,
    /// IDevID certificate (PEM; leaf first, then any intermediates).
    pub idevid_cert: PathBuf,
    /// Manufacturer trust anchors for vouchers (PEM).
    pub manufacturer_anchors: PathBuf,
    /// Registrar URL (`https://host:port`); without it, registrars are discovered by mDNS.
    pub registrar: Option<String>,
    /// How long mDNS discovery browses for `_brski-registrar._tcp` (per attempt).
    pub discovery_timeout: Duration,
    /// A pre-configured EST server trust anchor (PEM): EST-only, no BRSKI.
    pub est_server_anchor: Option<PathBuf>,
    /// EST server URL for EST-only mode (default: `registrar`).
    pub est_server: Option<String>,
    /// Voucher(-request) format.
    pub format: Format,
    /// Whether the device clock can be trusted (expires-on and certificate times are checked).
    pub trusted_clock: bool,
    /// Bootstrap attempts before giving up.
    pub max_attempts: u32,
    /// First backoff between attempts (doubles each time).
    pub initial_backoff: Duration,
    /// Longest backoff between attempts (RFC 8995: up to one hour).
    pub max_backoff: Duration,
    /// Longest total wait on 202 answers (pending approval) within one attempt.
    pub max_pending_wait: Duration,
    /// Timeout of each network step.
    pub timeout: Duration,
}

impl PledgeConfig {
    /// Defaults for a state directory written by `brski masa idevid`.
    pub fn in_dir(state: &Path) -> Self {
        PledgeConfig {
            state: state.to_path_buf(),
            idevid_key: format!("file:{}", state.join("idevid.key").display()),
            idevid_cert: state.join("idevid.pem"),
            manufacturer_anchors: state.join("manufacturer-ca.pem"),
            registrar: None,
            discovery_timeout: Duration::from_secs(10),
            est_server_anchor: None,
            est_server: None,
            format: Format::Cms,
            trusted_clock: true,
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3600),
            max_pending_wait: Duration::from_secs(600),
            timeout: Duration::from_secs(30),
        }
    }
}
