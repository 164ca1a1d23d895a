//! `pledge.toml`: the pledge's configuration file in its state directory, written (commented)
//! by `brski pledge init`. Every key is optional; command-line flags override it. Relative paths
//! are relative to the file. Unknown keys are errors naming the key and the file.

use crate::config::PledgeConfig;
use serde::Deserialize;
use shared::signed::Format;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name `brski pledge init` writes and `bootstrap`/`serve` read from `--state`.
pub const PLEDGE_FILE: &str = "pledge.toml";

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PledgeFile {
    /// Registrar URL (none: mDNS discovery).
    pub registrar: Option<String>,
    /// Seconds mDNS discovery browses per attempt.
    pub discovery_timeout_secs: Option<u64>,
    /// Voucher format: cms, jws or cose.
    pub format: Option<String>,
    /// IDevID key URI (default `file:idevid.key`).
    pub idevid_key: Option<String>,
    /// IDevID certificate (default `idevid.pem`).
    pub idevid_cert: Option<PathBuf>,
    /// Manufacturer anchors (default `manufacturer-ca.pem`).
    pub manufacturer_anchors: Option<PathBuf>,
    /// EST-only: the EST server's trust anchor (PEM).
    pub est_anchor: Option<PathBuf>,
    /// EST-only: the EST server URL (default: `registrar`).
    pub est_server: Option<String>,
    /// Bootstrap attempts.
    pub max_attempts: Option<u32>,
    /// Longest wait for an operator's approval (seconds).
    pub max_wait_secs: Option<u64>,
    /// The device clock cannot be trusted.
    pub untrusted_clock: Option<bool>,
    /// TPM attestation key URI (default: the URI in `iak.key-uri`).
    pub attestation_key: Option<String>,
    /// The attestation key's certificate (default `iak.pem`).
    pub attestation_cert: Option<PathBuf>,
    /// SHA-256 PCRs each quote covers (default 0..7).
    pub quote_pcrs: Option<Vec<u8>>,
}

/// A file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct PledgeFileError {
    /// The file.
    pub file: String,
    /// The key (or "syntax").
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl PledgeFile {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Self, PledgeFileError> {
        let err = |key: &str, reason: String| PledgeFileError {
            file: path.display().to_string(),
            key: key.into(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err("file", e.to_string()))?;
        toml::from_str(&text).map_err(|e| err("syntax", e.message().to_string()))
    }

    /// The configuration for state directory `state` with this file's keys applied.
    pub fn apply(&self, state: &Path, path: &Path) -> Result<PledgeConfig, PledgeFileError> {
        let rel =
            |p: &Path| if p.is_absolute() { p.to_path_buf() } else { path.parent().unwrap_or(state).join(p) };
        let mut cfg = PledgeConfig::in_dir(state);
        cfg.registrar = self.registrar.clone();
        if let Some(s) = self.discovery_timeout_secs {
            cfg.discovery_timeout = Duration::from_secs(s.max(1));
        }
        if let Some(f) = &self.format {
            cfg.format = Format::from_name(f).ok_or_else(|| PledgeFileError {
                file: path.display().to_string(),
                key: "format".into(),
                reason: format!("{f:?} is not cms, jws or cose"),
            })?;
        }
        if let Some(k) = &self.idevid_key {
            cfg.idevid_key = shared::conf::resolve_key_uri(path.parent().unwrap_or(state), k);
        }
        if let Some(p) = &self.idevid_cert {
            cfg.idevid_cert = rel(p);
        }
        if let Some(p) = &self.manufacturer_anchors {
            cfg.manufacturer_anchors = rel(p);
        }
        cfg.est_server_anchor = self.est_anchor.as_deref().map(rel);
        cfg.est_server = self.est_server.clone();
        if let Some(n) = self.max_attempts {
            cfg.max_attempts = n.max(1);
        }
        if let Some(s) = self.max_wait_secs {
            cfg.max_pending_wait = Duration::from_secs(s);
        }
        if let Some(u) = self.untrusted_clock {
            cfg.trusted_clock = !u;
        }
        if let Some(k) = &self.attestation_key {
            cfg.attestation_key = Some(k.clone());
        }
        if let Some(p) = &self.attestation_cert {
            cfg.attestation_cert = rel(p);
        }
        if let Some(pcrs) = &self.quote_pcrs {
            if pcrs.is_empty() || pcrs.iter().any(|&p| p > 23) {
                return Err(PledgeFileError {
                    file: path.display().to_string(),
                    key: "quote_pcrs".into(),
                    reason: "list 1 to 24 PCR indices, each 0..=23".into(),
                });
            }
            cfg.quote_pcrs = pcrs.clone();
        }
        Ok(cfg)
    }
}

/// The commented file `brski pledge init` writes.
pub fn commented(registrar: Option<&str>, format: Format) -> String {
    let registrar = match registrar {
        Some(r) => format!("registrar = {}", shared::conf::toml_string(r)),
        None => {
            "# registrar = \"https://registrar.example:8443\"   # none: found by mDNS (_brski-registrar._tcp)"
                .into()
        }
    };
    format!(
        "# brski pledge configuration (written by `brski pledge init`). Flags of `brski pledge\n\
         # bootstrap` override single keys; relative paths are relative to this file.\n\n\
         {registrar}\n\
         # Seconds mDNS discovery browses for registrars (each attempt).\n\
         discovery_timeout_secs = 10\n\
         # Voucher format: cms, jws or cose.\n\
         format = \"{format}\"\n\n\
         # The IDevID (as `brski masa idevid` writes it) and the manufacturer's anchors.\n\
         idevid_key = \"file:idevid.key\"\nidevid_cert = \"idevid.pem\"\nmanufacturer_anchors = \"manufacturer-ca.pem\"\n\n\
         # EST only, without BRSKI: a pre-configured EST server anchor and URL.\n\
         # est_anchor = \"est-ca.pem\"\n# est_server = \"https://est.example:8443\"\n\n\
         # Attempts (a fresh nonce each, exponential backoff) and the longest wait for an approval.\n\
         max_attempts = 5\nmax_wait_secs = 600\n\
         # The device clock cannot be trusted: skip expiry checks.\n\
         untrusted_clock = false\n\n\
         # A device whose keys are in its TPM (`brski masa idevid --tpm`): idevid.key-uri and\n\
         # iak.key-uri are used when idevid.key is absent. `brski pledge serve` attaches a TPM quote\n\
         # of these PCRs, made by the attestation key, to every agent request's evidence.\n\
         # attestation_key = \"tpm:handle=0x81020000\"\n# attestation_cert = \"iak.pem\"\n\
         # quote_pcrs = [0, 1, 2, 3, 4, 5, 6, 7]\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_file_loads_and_applies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PLEDGE_FILE);
        std::fs::write(&path, commented(Some("https://r.example:8443"), Format::Jws)).unwrap();
        let cfg = PledgeFile::load(&path).unwrap().apply(dir.path(), &path).unwrap();
        assert_eq!(cfg.registrar.as_deref(), Some("https://r.example:8443"));
        assert_eq!(cfg.format, Format::Jws);
        assert_eq!(cfg.idevid_cert, dir.path().join("idevid.pem"));
        assert_eq!(cfg.max_attempts, 5);
    }

    #[test]
    fn unknown_and_wrong_keys_name_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PLEDGE_FILE);
        std::fs::write(&path, "registar = \"x\"\n").unwrap();
        let e = PledgeFile::load(&path).unwrap_err();
        assert!(e.reason.contains("registar") && e.file.ends_with(PLEDGE_FILE), "{e}");
        std::fs::write(&path, "format = \"xml\"\n").unwrap();
        let e = PledgeFile::load(&path).unwrap().apply(dir.path(), &path).unwrap_err();
        assert_eq!(e.key, "format");
    }
}
