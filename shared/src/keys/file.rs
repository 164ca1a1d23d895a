//! Private keys in files: written PKCS#8 PEM with mode 0600, and never loaded when other
//! users could read them; and [`write_private`], the one way brski writes any secret file (keys,
//! configurations holding a PIN) so that it is 0600 from its first byte.

use super::{Algorithm, KeyError, SoftwareKey};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.display().to_string(), source }
}

/// Generates a key of `alg` and writes it to `path` as PKCS#8 PEM, mode 0600.
///
/// Refuses to overwrite an existing file: losing a private key is not undoable.
pub fn generate_key_file(path: &Path, alg: Algorithm) -> Result<SoftwareKey, KeyError> {
    let key = SoftwareKey::generate(alg)?;
    write_key_file(path, &key)?;
    Ok(key)
}

/// Writes `key` to a new file at `path` as PKCS#8 PEM, created with mode 0600.
pub fn write_key_file(path: &Path, key: &SoftwareKey) -> Result<(), KeyError> {
    let pem = key.to_pkcs8_pem()?;
    write_private(path, pem.as_bytes(), Existing::Refuse).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.display().to_string()),
        _ => KeyError::Io { path: path.display().to_string(), source: e },
    })
}

/// What [`write_private`] does when the file already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Leave it alone and fail with [`std::io::ErrorKind::AlreadyExists`].
    Refuse,
    /// Replace it. The old file's mode does not carry over: the result is 0600.
    Replace,
}

/// Writes a secret file: mode 0600 from its creation (never briefly readable by others, the
/// process umask can only narrow it), contents flushed to disk (`fsync`) before returning.
///
/// With [`Existing::Replace`] the bytes go to a new 0600 file beside `path`, which is then
/// renamed over it: an existing file with a wider mode (say 0644) is replaced by a 0600 one
/// (opening it with `O_CREAT` would keep its old mode), and a reader sees the old or the new
/// contents, never a mix.
pub fn write_private(path: &Path, bytes: &[u8], existing: Existing) -> std::io::Result<()> {
    match existing {
        Existing::Refuse => create_private(path, bytes),
        Existing::Replace => {
            let mut suffix = [0u8; 8];
            getrandom::fill(&mut suffix).map_err(std::io::Error::other)?;
            let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file path"))?;
            let tmp = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), hex::encode(suffix)));
            let written = create_private(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
            if written.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            written
        }
    }
}

/// Creates `path` (never an existing file) with mode 0600, writes `bytes` and syncs them.
fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Loads a PEM private key file, refusing files that group or others may access.
pub fn load_key_file(path: &Path) -> Result<SoftwareKey, KeyError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions { path: path.display().to_string(), mode });
    }
    let pem = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io_err(path))?);
    SoftwareKey::from_pem(&pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn a_new_secret_is_0600_and_an_existing_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        write_private(&path, b"one", Existing::Refuse).expect("write");
        assert_eq!(mode(&path), 0o600);
        let e = write_private(&path, b"two", Existing::Refuse).expect_err("exists");
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
    }

    #[test]
    fn replacing_a_world_readable_file_leaves_it_0600() {
        // registrar init's writer opened with create+truncate+mode(0o600): the mode only
        // applies on creation, so an existing 0644 file kept 0644 with the secret in it.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("registrar.toml");
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_private(&path, b"pin-value=1234", Existing::Replace).expect("replace");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).expect("read"), b"pin-value=1234");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
        // Replace also creates.
        let fresh = dir.path().join("fresh");
        write_private(&fresh, b"x", Existing::Replace).expect("create");
        assert_eq!(mode(&fresh), 0o600);
    }
}
