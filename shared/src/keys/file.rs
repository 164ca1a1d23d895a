//! Private keys in files: written PKCS#8 PEM with mode 0600, and never loaded when other
//! users could read them.

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
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(
        |e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.display().to_string()),
            _ => KeyError::Io { path: path.display().to_string(), source: e },
        },
    )?;
    f.write_all(pem.as_bytes()).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
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
