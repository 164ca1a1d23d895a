//! Who is calling the Agent API: the kernel's answer for a Unix socket peer (`SO_PEERCRED`:
//! uid, gid and pid at connect time), and the SHA-256 of the executable behind the pid
//! (`/proc/<pid>/exe`), cached by the file's identity (device, inode, size, mtime) so an
//! agent binary is hashed once.
//!
//! The pid is the one that connected; a process can exec another program after connecting,
//! so the digest describes the executable at the time the proxy looked, which is what the
//! evidence claims and no more.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::time::Duration;

/// Longest time spent hashing one executable.
pub(crate) const DIGEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Most executables remembered.
const CACHE_MAX: usize = 512;

/// The caller of one Agent API connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid (None over TCP).
    pub uid: Option<u32>,
    /// Effective gid (None over TCP).
    pub gid: Option<u32>,
    /// Process id (None over TCP or when the kernel does not say).
    pub pid: Option<u32>,
}

impl Peer {
    /// The credentials of a connected Unix socket's peer (all None if the kernel refuses).
    pub fn of_unix(stream: &tokio::net::UnixStream) -> Peer {
        match stream.peer_cred() {
            Ok(c) => Peer {
                uid: Some(c.uid()),
                gid: Some(c.gid()),
                pid: c.pid().and_then(|p| u32::try_from(p).ok()),
            },
            Err(e) => {
                tracing::warn!(error = %e, "SO_PEERCRED failed; the caller stays anonymous");
                Peer::default()
            }
        }
    }

    /// `uid=1000 pid=4242` (or `-` for unknown values), for log lines.
    pub fn describe(&self) -> String {
        let v = |x: Option<u32>| x.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        format!("uid={} pid={}", v(self.uid), v(self.pid))
    }
}

/// The executable of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executable {
    /// Its path as the kernel reports it (may end in ` (deleted)`).
    pub path: String,
    /// SHA-256 of its contents.
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// Executable digests by file identity.
#[derive(Debug, Default)]
pub(crate) struct ExeCache {
    map: Mutex<HashMap<FileKey, [u8; 32]>>,
    /// One hash at a time: concurrent first requests from one executable wait for the first
    /// hash instead of each reading the whole file.
    hashing: tokio::sync::Mutex<()>,
}

impl ExeCache {
    /// The executable of `pid` and its SHA-256, or None when the proxy may not read it (a
    /// process of another user when the proxy is not privileged), it vanished, or hashing
    /// took longer than [`DIGEST_TIMEOUT`].
    pub(crate) async fn executable(&self, pid: u32) -> Option<Executable> {
        self.executable_at(format!("/proc/{pid}/exe")).await
    }

    fn cached(&self, key: &FileKey) -> Option<[u8; 32]> {
        self.map.lock().ok().and_then(|m| m.get(key).copied())
    }

    async fn executable_at(&self, link: String) -> Option<Executable> {
        // readlink and stat of /proc/<pid>/exe are answered by the kernel from memory, so they
        // run here rather than as two hand-offs to the blocking pool per request.
        let path = match std::fs::read_link(&link) {
            Ok(p) => p.display().to_string(),
            Err(e) => {
                tracing::debug!(%link, error = %e, "cannot read the caller's executable link");
                return None;
            }
        };
        let meta = std::fs::metadata(&link).ok()?;
        let key = FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        };
        if let Some(d) = self.cached(&key) {
            return Some(Executable { path, sha256: d });
        }
        let _one = tokio::time::timeout(DIGEST_TIMEOUT, self.hashing.lock()).await.ok()?;
        if let Some(d) = self.cached(&key) {
            return Some(Executable { path, sha256: d });
        }
        let l = link.clone();
        let digest =
            match tokio::time::timeout(DIGEST_TIMEOUT, tokio::task::spawn_blocking(move || hash(&l))).await {
                Ok(Ok(Ok(d))) => d,
                Ok(Ok(Err(e))) => {
                    tracing::debug!(%link, error = %e, "cannot hash the caller's executable");
                    return None;
                }
                Ok(Err(_)) | Err(_) => {
                    tracing::warn!(%link, "hashing the caller's executable failed or took too long");
                    return None;
                }
            };
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= CACHE_MAX {
                m.clear();
            }
            m.insert(key, digest);
        }
        Some(Executable { path, sha256: digest })
    }
}

fn hash(path: &str) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn peer_credentials_of_a_socket_pair_are_this_process() {
        let (a, _b) = tokio::net::UnixStream::pair().unwrap();
        let p = Peer::of_unix(&a);
        assert_eq!(p.pid, Some(std::process::id()));
        let uid = std::fs::metadata("/proc/self").unwrap().uid();
        assert_eq!(p.uid, Some(uid));
        assert!(p.describe().starts_with(&format!("uid={uid} pid=")));
        assert_eq!(Peer::default().describe(), "uid=- pid=-");
    }

    #[tokio::test]
    async fn own_executable_is_hashed_once_and_matches_the_file() {
        let cache = ExeCache::default();
        let exe = cache.executable(std::process::id()).await.expect("own executable");
        let file = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(exe.sha256, shared::crypto::sha256(&file));
        assert_eq!(cache.map.lock().unwrap().len(), 1);
        let again = cache.executable(std::process::id()).await.unwrap();
        assert_eq!(again, exe);
        assert_eq!(cache.map.lock().unwrap().len(), 1);
        assert!(cache.executable(u32::MAX).await.is_none());
    }
}
