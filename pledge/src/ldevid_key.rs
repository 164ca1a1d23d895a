//! Where the pledge's LDevID key lives: a PKCS#8 file `ldevid.key` (0600), or, when the IDevID
//! key is in a TPM, a new key in the same TPM named by `ldevid.key-uri` (a `tpm:` URI). A TPM
//! LDevID alternates between two persistent handles ([`shared::keys::TpmUri`],
//! `LDEVID_HANDLES`): the renewal's new key is made at the other one (replacing the key from
//! two renewals ago) while the current key still authenticates the renewal. The replaced key is
//! left in place until then, so requests in flight while the proxy switches keys still sign.

use shared::keys::{load_key_file, load_signer, write_key_file, Algorithm, KeyUri, Signer, SoftwareKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The LDevID key file (software keys).
pub const LDEVID_KEY: &str = "ldevid.key";
/// The LDevID key reference (keys that live in a TPM): one line, the key URI.
pub const LDEVID_KEY_URI: &str = "ldevid.key-uri";
/// The persistent handles TPM LDevID keys alternate between (TCG owner range).
#[cfg(feature = "tpm")]
pub(crate) const LDEVID_HANDLES: [u32; 2] = [0x8100_0002, 0x8100_0003];

/// How new LDevID keys are made for a state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdevidKeys {
    state: PathBuf,
    tpm_tcti: Option<String>,
}

/// A freshly made LDevID key, not yet committed to the state directory.
#[derive(Clone)]
pub struct NewKey {
    /// The key, for the CSR and, once enrolled, TLS.
    pub signer: Arc<dyn Signer>,
    stored: Stored,
}

#[derive(Clone)]
enum Stored {
    File(Arc<SoftwareKey>),
    #[cfg_attr(not(feature = "tpm"), allow(dead_code))]
    Uri(String),
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.stored {
            Stored::File(_) => f.write_str("NewKey(file)"),
            Stored::Uri(u) => write!(f, "NewKey({u})"),
        }
    }
}

impl LdevidKeys {
    /// For `state`: in the TPM when the current LDevID is there or `idevid_key` is a `tpm:` URI
    /// (the same TPM), else software keys.
    pub fn for_state(state: &Path, idevid_key: Option<&str>) -> Self {
        let tcti_of = |uri: &str| match uri.parse::<KeyUri>() {
            Ok(KeyUri::Tpm(t)) => Some(t.tcti()),
            _ => None,
        };
        let current = current_uri(state).and_then(|u| tcti_of(&u));
        LdevidKeys { state: state.to_path_buf(), tpm_tcti: current.or_else(|| idevid_key.and_then(tcti_of)) }
    }

    /// Whether new keys are made in a TPM.
    pub fn in_tpm(&self) -> bool {
        self.tpm_tcti.is_some()
    }

    /// Makes a new P-256 key (in the TPM: at the LDevID handle not in use).
    pub fn generate(&self) -> Result<NewKey, String> {
        match &self.tpm_tcti {
            None => {
                let key = Arc::new(SoftwareKey::generate(Algorithm::Es256).map_err(|e| e.to_string())?);
                Ok(NewKey { signer: key.clone(), stored: Stored::File(key) })
            }
            Some(tcti) => self.generate_in_tpm(tcti),
        }
    }

    #[cfg(feature = "tpm")]
    fn generate_in_tpm(&self, tcti: &str) -> Result<NewKey, String> {
        let in_use = current_handle(&self.state);
        let handle = if in_use == Some(LDEVID_HANDLES[0]) { LDEVID_HANDLES[1] } else { LDEVID_HANDLES[0] };
        shared::tpm::create_key(tcti, handle, shared::tpm::KeyKind::Signing, true)
            .map_err(|e| e.to_string())?;
        let uri = shared::keys::TpmUri::new(handle, tcti).to_string();
        let signer: Arc<dyn Signer> = Arc::from(load_signer(&uri).map_err(|e| e.to_string())?);
        Ok(NewKey { signer, stored: Stored::Uri(uri) })
    }

    #[cfg(not(feature = "tpm"))]
    fn generate_in_tpm(&self, _tcti: &str) -> Result<NewKey, String> {
        Err("the IDevID is in a TPM but this build has no TPM support (build with the 'tpm' feature)".into())
    }
}

impl NewKey {
    /// Makes this the state directory's LDevID key (atomically replacing the previous one) and
    /// removes the other form's file.
    pub fn commit(&self, state: &Path) -> std::io::Result<PathBuf> {
        let (name, other) = match &self.stored {
            Stored::File(_) => (LDEVID_KEY, LDEVID_KEY_URI),
            Stored::Uri(_) => (LDEVID_KEY_URI, LDEVID_KEY),
        };
        let path = state.join(name);
        let tmp = state.join(format!("{name}.new"));
        let _ = std::fs::remove_file(&tmp);
        match &self.stored {
            Stored::File(key) => {
                write_key_file(&tmp, key.as_ref()).map_err(|e| std::io::Error::other(e.to_string()))?
            }
            Stored::Uri(uri) => std::fs::write(&tmp, format!("{uri}\n"))?,
        }
        std::fs::rename(&tmp, &path)?;
        let _ = std::fs::remove_file(state.join(other));
        Ok(path)
    }
}

/// Loads the state directory's LDevID key: `ldevid.key-uri` when present, else `ldevid.key`
/// (which must be 0600).
pub(crate) fn load(state: &Path) -> Result<Arc<dyn Signer>, String> {
    match current_uri(state) {
        Some(uri) => load_signer(&uri).map(Arc::from).map_err(|e| e.to_string()),
        None => load_key_file(&state.join(LDEVID_KEY))
            .map(|k| Arc::new(k) as Arc<dyn Signer>)
            .map_err(|e| e.to_string()),
    }
}

/// The key URI in `ldevid.key-uri`, if that file exists.
pub(crate) fn current_uri(state: &Path) -> Option<String> {
    read_key_uri(&state.join(LDEVID_KEY_URI))
}

/// The first line of a key reference file (`*.key-uri`), if it exists and is not empty.
pub(crate) fn read_key_uri(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().next().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string)
}

#[cfg(feature = "tpm")]
fn current_handle(state: &Path) -> Option<u32> {
    match current_uri(state)?.parse::<KeyUri>() {
        Ok(KeyUri::Tpm(t)) => Some(t.handle),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_keys_are_committed_as_0600_files_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let keys = LdevidKeys::for_state(dir.path(), Some("file:/x/idevid.key"));
        assert!(!keys.in_tpm());
        let k = keys.generate().unwrap();
        let path = k.commit(dir.path()).unwrap();
        assert_eq!(path, dir.path().join(LDEVID_KEY));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load(dir.path()).unwrap().public_key_der(), k.signer.public_key_der());
    }

    #[test]
    fn a_tpm_idevid_means_tpm_ldevids() {
        let dir = tempfile::tempdir().unwrap();
        let keys = LdevidKeys::for_state(dir.path(), Some("tpm:handle=0x81020001?tcti=swtpm:port=1"));
        assert!(keys.in_tpm());
        std::fs::write(dir.path().join(LDEVID_KEY_URI), "tpm:handle=0x81000002?tcti=swtpm:port=2\n").unwrap();
        assert_eq!(current_uri(dir.path()).as_deref(), Some("tpm:handle=0x81000002?tcti=swtpm:port=2"));
        assert!(LdevidKeys::for_state(dir.path(), None).in_tpm(), "the current LDevID decides");
    }
}
