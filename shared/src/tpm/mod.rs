//! TPM 2.0 keys, PCRs and quotes through tss-esapi (feature `tpm`; links libtss2-esys).
//!
//! brski keeps every TPM key at a persistent handle, addressed by a `tpm:` key URI
//! ([`crate::keys::TpmUri`]), so any process finds it the same way and no key blob sits on disk.
//! A TPM without a resource manager in front (swtpm, a bare `/dev/tpm0`) serves one connection
//! at a time and has only a few slots for transient objects, so each operation here opens the
//! TCTI, does its work, flushes what it loaded and closes the connection again, serialised per
//! TCTI within the process. Handles follow the TCG "TPM 2.0 Keys for Device Identity and
//! Attestation" layout: IAK at [`IAK_HANDLE`], IDevID at [`IDEVID_HANDLE`].

mod provision;
mod quote;
mod signer;

pub use provision::{create_key, evict_key, read_key, KeyKind, TpmKeyInfo};
pub use quote::{pcr_extend, pcr_read, quote, TpmQuoteData};
pub use signer::TpmSigner;

use crate::keys::KeyError;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::Context;

/// The Initial Attestation Key (a restricted signing key that quotes), as TCG places it.
pub const IAK_HANDLE: u32 = 0x8102_0000;
/// The IDevID key, as TCG places it.
pub const IDEVID_HANDLE: u32 = 0x8102_0001;

/// Runs `f` on a fresh connection to the TPM `tcti` names, one at a time per TCTI in this
/// process. The connection (and every transient object `f` created) is closed on return.
pub(crate) fn with_tpm<T>(
    tcti: &str,
    what: &str,
    f: impl FnOnce(&mut Context) -> tss_esapi::Result<T>,
) -> Result<T, String> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let lock = {
        let mut all = LOCKS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        all.entry(tcti.to_string()).or_default().clone()
    };
    let _one_at_a_time = lock.lock().unwrap_or_else(|p| p.into_inner());
    let conf = TctiNameConf::from_str(tcti).map_err(|e| format!("TCTI '{tcti}': {e}"))?;
    let mut ctx = Context::new(conf).map_err(|e| format!("opening the TPM at '{tcti}': {e}"))?;
    f(&mut ctx).map_err(|e| format!("{what}: {e}"))
}

/// A [`KeyError::Tpm`] for the key at `handle` behind `tcti`.
pub(crate) fn key_error(handle: u32, tcti: &str, detail: impl Into<String>) -> KeyError {
    KeyError::Tpm { uri: crate::keys::TpmUri::new(handle, tcti).to_string(), detail: detail.into() }
}
