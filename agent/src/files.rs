//! The files an agent keeps ([`AgentFiles`]): its key (0600, never replaced), its credential
//! (each file replaced atomically) and the trust bundle; and when to renew ([`renew_at`]).

use crate::api::{Bundle, Credential};
use crate::error::AgentClientError;

use shared::keys::SoftwareKey;
use std::path::{Path, PathBuf};

/// Where an agent keeps its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFiles {
    /// The private key (PKCS#8 PEM, 0600).
    pub key: PathBuf,
    /// The agent certificate (PEM).
    pub cert: PathBuf,
    /// The domain CA (PEM).
    pub ca: PathBuf,
    /// The WIT.
    pub wit: PathBuf,
    /// The whole answer (JSON).
    pub credential: PathBuf,
    /// The trust bundle (JSON), for relying parties (`brski verify ... --bundle`).
    pub bundle: PathBuf,
}

impl AgentFiles {
    /// `agent.key`, `agent.pem`, `ca.pem`, `agent.wit`, `credential.json`, `bundle.json` in
    /// `dir`; the key may live elsewhere.
    pub fn in_dir(dir: &Path, key: Option<&Path>) -> Self {
        AgentFiles {
            key: key.map(Path::to_path_buf).unwrap_or_else(|| dir.join("agent.key")),
            cert: dir.join("agent.pem"),
            ca: dir.join("ca.pem"),
            wit: dir.join("agent.wit"),
            credential: dir.join("credential.json"),
            bundle: dir.join("bundle.json"),
        }
    }
}

/// Writes a new key file (0600); refuses to replace an existing key.
pub fn save_new_key(path: &Path, key: &SoftwareKey) -> Result<(), AgentClientError> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(|e| AgentClientError::Files(format!("{}: {e}", d.display())))?;
    }
    shared::keys::write_key_file(path, key).map_err(|e| AgentClientError::Files(e.to_string()))
}

/// Replaces `path` atomically with `text`.
fn put_file(path: &Path, text: &str) -> Result<(), AgentClientError> {
    let err = |e: std::io::Error| AgentClientError::Files(format!("{}: {e}", path.display()));
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(err)?;
    }
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Writes the trust bundle as JSON.
pub fn save_bundle(files: &AgentFiles, b: &Bundle) -> Result<PathBuf, AgentClientError> {
    let json = serde_json::to_string_pretty(b).map_err(|e| AgentClientError::Files(e.to_string()))?;
    put_file(&files.bundle, &json)?;
    Ok(files.bundle.clone())
}

/// Writes the credential files (each replaced atomically; the key file is not touched).
pub fn save_credential(files: &AgentFiles, c: &Credential) -> Result<Vec<PathBuf>, AgentClientError> {
    let mut written = Vec::new();
    let mut put = |path: &Path, text: &str| -> Result<(), AgentClientError> {
        put_file(path, text)?;
        written.push(path.to_path_buf());
        Ok(())
    };
    if let Some(x) = &c.x509 {
        put(&files.cert, x)?;
    }
    put(&files.ca, &c.ca_pem)?;
    if let Some(w) = &c.wit {
        put(&files.wit, &format!("{w}\n"))?;
    }
    let json = serde_json::to_string_pretty(c).map_err(|e| AgentClientError::Files(e.to_string()))?;
    put(&files.credential, &json)?;
    Ok(written)
}

/// When to renew a credential received at `received` (Unix seconds) that expires at
/// `not_after`: at half its remaining life.
pub fn renew_at(received: i64, not_after: i64) -> i64 {
    received + (not_after - received).max(0) / 2
}
