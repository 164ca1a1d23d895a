//! Server nonces for ACRs and evidence: 32 random bytes, valid 60 s, single use. Kept in
//! memory (a restart forgets them, which only makes outstanding requests fail closed).

use shared::agent::jwt::random;
use shared::agent::AgentError;
use std::collections::HashMap;
use std::sync::Mutex;

/// Lifetime of a nonce (seconds).
pub(crate) const NONCE_LIFETIME: i64 = 60;
/// Most nonces outstanding at once; beyond it new requests are refused until some expire.
pub(crate) const MAX_OUTSTANDING: usize = 200_000;

/// The issued, unused nonces.
#[derive(Debug, Default)]
pub struct Nonces {
    issued: Mutex<HashMap<[u8; 32], i64>>,
}

impl Nonces {
    /// Issues a nonce valid until the returned expiry.
    pub fn issue(&self, now: i64) -> Result<([u8; 32], i64), AgentError> {
        let n = random::<32>()?;
        let exp = now + NONCE_LIFETIME;
        let mut map = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_OUTSTANDING / 2 {
            map.retain(|_, e| *e >= now);
        }
        if map.len() >= MAX_OUTSTANDING {
            return Err(AgentError::Nonce("too many outstanding nonces; retry shortly".into()));
        }
        map.insert(n, exp);
        Ok((n, exp))
    }

    /// Consumes `nonce`: true only if it was issued, is unexpired and was not used before.
    pub fn consume(&self, nonce: &[u8], now: i64) -> bool {
        let Ok(key) = <[u8; 32]>::try_from(nonce) else { return false };
        let mut map = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        matches!(map.remove(&key), Some(exp) if exp >= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_single_use_and_expires() {
        let n = Nonces::default();
        let (a, _) = n.issue(100).unwrap();
        assert!(n.consume(&a, 120));
        assert!(!n.consume(&a, 121), "second use");
        let (b, exp) = n.issue(100).unwrap();
        assert!(!n.consume(&b, exp + 1), "expired");
        assert!(!n.consume(&[0u8; 32], 100), "never issued");
        assert!(!n.consume(&[0u8; 5], 100), "wrong length");
    }
}
