//! What a pledge holds and how it behaves. Defaults follow the directory `brski masa idevid`
//! writes (`idevid.key`, `idevid.pem`, `manufacturer-ca.pem`; with `--tpm`, `idevid.key-uri`,
//! `iak.key-uri` and `iak.pem` instead of the key file); every field can be overridden.

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
    /// The TPM attestation key (a `tpm:` URI of a restricted signing key) whose quotes the
    /// Identity Proxy attaches to its evidence; default: the URI in `iak.key-uri`.
    pub attestation_key: Option<String>,
    /// That key's certificate (PEM, leaf first; default `iak.pem`), as the manufacturer issued it.
    pub attestation_cert: PathBuf,
    /// The SHA-256 PCRs each quote covers (default 0 to 7: firmware and boot).
    pub quote_pcrs: Vec<u8>,
}

/// The IDevID key reference `brski masa idevid --tpm` writes (a `tpm:` URI).
pub(crate) const IDEVID_KEY_URI: &str = "idevid.key-uri";
/// The attestation key reference `brski masa idevid --tpm` writes.
pub(crate) const IAK_KEY_URI: &str = "iak.key-uri";
/// The attestation key's certificate `brski masa idevid --tpm` writes.
pub(crate) const IAK_CERT: &str = "iak.pem";
/// The PCRs quoted by default: the platform firmware and boot measurements.
pub(crate) const DEFAULT_QUOTE_PCRS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

impl PledgeConfig {
    /// Where this pledge's LDevID keys are made: in the IDevID's TPM when it has one.
    pub fn ldevid_keys(&self) -> crate::ldevid_key::LdevidKeys {
        crate::ldevid_key::LdevidKeys::for_state(&self.state, Some(&self.idevid_key))
    }

    /// Defaults for a state directory written by `brski masa idevid`.
    pub fn in_dir(state: &Path) -> Self {
        PledgeConfig {
            state: state.to_path_buf(),
            idevid_key: default_idevid_key(state),
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
            attestation_key: crate::ldevid_key::read_key_uri(&state.join(IAK_KEY_URI)),
            attestation_cert: state.join(IAK_CERT),
            quote_pcrs: DEFAULT_QUOTE_PCRS.to_vec(),
        }
    }
}

/// `file:<state>/idevid.key`, unless only a key reference `idevid.key-uri` is there (a device
/// whose IDevID key is in its TPM).
fn default_idevid_key(state: &Path) -> String {
    let file = state.join("idevid.key");
    match crate::ldevid_key::read_key_uri(&state.join(IDEVID_KEY_URI)) {
        Some(uri) if !file.exists() => uri,
        _ => format!("file:{}", file.display()),
    }
}
