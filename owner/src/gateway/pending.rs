//! Requests waiting for a person (`[gateway] manual = true`). The gateway keeps the request in
//! memory and writes a small record to `<owner dir>/gateway/pending/<id>.json`;
//! `brski owner gateway approve|deny` (another process) changes its `status`; the gateway reads
//! it when the proxy polls.

use crate::OwnerError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A pending record on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    /// The request id.
    pub id: String,
    /// The agent id asked for.
    pub agent_id: String,
    /// b64url SHA-256 of the proxy's LDevID.
    pub proxy: String,
    /// The proxy's LDevID subject.
    pub proxy_subject: String,
    /// When it arrived (Unix seconds).
    pub created: i64,
    /// When the ACR expires: a decision after that comes too late.
    pub acr_exp: i64,
    /// `pending`, `approved` or `denied`.
    pub status: String,
}

/// The directory of pending records.
#[derive(Debug, Clone)]
pub struct PendingDir(PathBuf);

impl PendingDir {
    /// `<owner dir>/gateway/pending`.
    pub fn of(owner_dir: &Path) -> Self {
        PendingDir(owner_dir.join("gateway").join("pending"))
    }

    fn path(&self, id: &str) -> Result<PathBuf, OwnerError> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(OwnerError::Config(format!("{id:?} is not a request id")));
        }
        Ok(self.0.join(format!("{id}.json")))
    }

    /// Writes (or replaces) a record atomically.
    pub fn write(&self, r: &PendingRecord) -> Result<(), OwnerError> {
        std::fs::create_dir_all(&self.0).map_err(OwnerError::io(&self.0))?;
        let path = self.path(&r.id)?;
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string_pretty(r).map_err(|e| OwnerError::Config(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(OwnerError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(OwnerError::io(&path))
    }

    /// Reads a record.
    pub fn read(&self, id: &str) -> Result<PendingRecord, OwnerError> {
        let path = self.path(id)?;
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => OwnerError::Config(format!("no pending request {id}")),
            _ => OwnerError::Io { path: path.display().to_string(), source: e },
        })?;
        serde_json::from_str(&text).map_err(|e| OwnerError::Config(format!("{}: {e}", path.display())))
    }

    /// Removes a record (the request was resolved).
    pub fn remove(&self, id: &str) {
        if let Ok(p) = self.path(id) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Every record, oldest first.
    pub fn list(&self) -> Result<Vec<PendingRecord>, OwnerError> {
        let rd = match std::fs::read_dir(&self.0) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(OwnerError::io(&self.0)(e)),
        };
        let mut out: Vec<PendingRecord> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
            .filter_map(|id| self.read(&id).ok())
            .collect();
        out.sort_by_key(|r| r.created);
        Ok(out)
    }

    /// Sets a pending record's status to `approved` or `denied` (the `approve|deny` verbs).
    pub fn decide(&self, id: &str, approve: bool) -> Result<PendingRecord, OwnerError> {
        let mut r = self.read(id)?;
        if r.status != "pending" {
            return Err(OwnerError::Config(format!("request {id} was already {}", r.status)));
        }
        r.status = if approve { "approved" } else { "denied" }.into();
        self.write(&r)?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_once_and_refuse_odd_ids() {
        let dir = tempfile::tempdir().unwrap();
        let p = PendingDir::of(dir.path());
        assert!(p.list().unwrap().is_empty());
        let r = PendingRecord {
            id: "abc_-1".into(),
            agent_id: "wimse://td/agent/a".into(),
            proxy: "h".into(),
            proxy_subject: "CN=p".into(),
            created: 1,
            acr_exp: 2,
            status: "pending".into(),
        };
        p.write(&r).unwrap();
        assert_eq!(p.list().unwrap(), vec![r]);
        assert_eq!(p.decide("abc_-1", true).unwrap().status, "approved");
        assert!(p.decide("abc_-1", false).is_err());
        assert!(p.decide("../x", true).is_err());
        p.remove("abc_-1");
        assert!(p.read("abc_-1").is_err());
    }
}
