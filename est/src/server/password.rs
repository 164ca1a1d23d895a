//! Password hashes for HTTP Basic users: argon2id with a random salt, stored as PHC strings
//! in [`LabelPolicy::basic_users`](crate::server::LabelPolicy::basic_users).

use super::config::ConfigError;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

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
}
