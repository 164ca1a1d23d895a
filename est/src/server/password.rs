//! Password hashes for HTTP Basic users: argon2id with a random salt, stored as PHC strings
//! in [`LabelPolicy::basic_users`](crate::server::LabelPolicy::basic_users).

use super::config::ConfigError;
use crate::http::{Busy, WorkBound};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::{Arc, Mutex, PoisonError};
use subtle::ConstantTimeEq;

/// Largest argon2 memory a stored hash may ask for (m = 256 MiB; OWASP's sets use 19-46 MiB).
const MAX_BLOCKS: usize = 256 * 1024;

/// Hashes a password for [`LabelPolicy::basic_users`](crate::server::LabelPolicy::basic_users)
/// (argon2id, random salt, PHC string).
pub fn hash_password(password: &str) -> Result<String, ConfigError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ConfigError(format!("random source: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ConfigError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ConfigError(e.to_string()))
}

/// Checks `password` against a PHC hash made by [`hash_password`] (false on a malformed hash).
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// argon2 checks of HTTP Basic passwords under a [`WorkBound`], each in a memory buffer kept
/// for reuse: at most `size` checks run at once and at most `size` buffers exist, so the
/// memory password checks can take is fixed (size x m, 2 x 19 MiB on a 2-CPU machine with the
/// default parameters) however many clients try at once. (Letting argon2 allocate per check
/// left hundreds of MiB in the allocator's arenas after a flood.)
#[derive(Debug, Clone)]
pub(crate) struct PasswordChecks {
    bound: WorkBound,
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
}

impl PasswordChecks {
    /// Checks under `bound`.
    pub(crate) fn new(bound: WorkBound) -> Self {
        PasswordChecks { bound, buffers: Arc::default() }
    }

    /// Whether `password` matches `phc`, once a slot is free ([`Busy`] when none is in time).
    pub(crate) async fn verify(&self, phc: String, password: String) -> Result<bool, Busy> {
        let buffers = self.buffers.clone();
        self.bound
            .run(move || {
                let mut memory =
                    buffers.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default();
                let ok = verify_in(&phc, &password, &mut memory);
                buffers.lock().unwrap_or_else(PoisonError::into_inner).push(memory);
                ok
            })
            .await
    }
}

/// [`verify_password`] with the argon2 memory in `memory` (grown as the hash's `m` needs).
fn verify_in(phc: &str, password: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let (Some(expected), Some(salt)) = (hash.hash, hash.salt) else { return false };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else { return false };
    let Ok(version) = hash.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let Ok(params) = Params::try_from(&hash) else { return false };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks]).is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_round_trip() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "wrong"));
        assert!(!verify_password("garbage", "s3cret"));
    }

    /// The reusable-memory check agrees with argon2's own verifier, for default and other
    /// parameters, and one buffer serves hashes of different sizes.
    #[test]
    fn checks_in_reused_memory_agree_with_argon2() {
        let mut memory = Vec::new();
        let h = hash_password("s3cret").unwrap();
        assert!(verify_in(&h, "s3cret", &mut memory));
        assert!(!verify_in(&h, "wrong", &mut memory));
        let small = "$argon2id$v=19$m=4096,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$";
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        let params = Params::new(4096, 3, 1, None).unwrap();
        let other =
            Argon2::new(Algorithm::Argon2i, Version::V0x10, params).hash_password(b"pw", &salt).unwrap();
        let other = other.to_string();
        assert!(other.starts_with("$argon2i$v=16$m=4096"), "{other}");
        assert!(verify_in(&other, "pw", &mut memory));
        assert!(verify_password(&other, "pw"));
        assert!(!verify_in(&other, "pW", &mut memory));
        assert!(!verify_in(small, "pw", &mut memory), "no hash: refused");
        assert!(!verify_in(
            "$argon2id$v=19$m=2000000,t=1,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo",
            "x",
            &mut memory
        ));
    }
}
