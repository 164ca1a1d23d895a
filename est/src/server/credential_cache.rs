//! Recently verified HTTP Basic credentials, so that argon2 (deliberately slow: tens of
//! milliseconds of CPU) runs once per client and TTL instead of on every request of a
//! keep-alive enrollment session.
//!
//! Why this is safe:
//!
//! * **No secret is stored.** An entry is SHA-256(label || 0x00 || user || 0x00 || password)
//!   and the time its argon2 check succeeded; neither the password nor its argon2 hash is kept.
//!   The framing is unambiguous: labels cannot hold control characters
//!   ([`EstServerConfig::check`](crate::server::EstServerConfig::check)) and credentials whose
//!   user name holds a NUL are never cached ([`CredentialCache::key`] refuses them), so two
//!   different (label, user, password) triples never hash the same input.
//! * **Lookups reveal nothing about the password.** A lookup finds a digest or not; learning
//!   anything from it needs a SHA-256 preimage. A hit only happens for credentials that already
//!   verified, i.e. ones the client evidently knows.
//! * **A wrong password still costs argon2.** It misses the cache (different digest), so it is
//!   checked by argon2 exactly as before, and failed checks are never inserted: guessing is as
//!   slow as without the cache, and an unauthenticated client cannot add entries.
//! * **Bounded staleness and size.** An entry counts for the TTL after its argon2 check (hits
//!   do not extend it); the cache lives in the router's state, which is built from an
//!   immutable configuration, so a changed password means a new router and an empty cache.
//!   At capacity, expired entries go first, then the oldest.
//!
//! The remaining trade-off: someone who can read the server's memory finds SHA-256 digests,
//! which are faster to brute-force than argon2 hashes; such a reader also sees the plaintext
//! passwords of the requests as they arrive.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a successful argon2 check is remembered.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
/// Most entries kept at once.
pub(crate) const DEFAULT_CAPACITY: usize = 10_000;

/// SHA-256 of the framed credentials (see the module documentation).
pub(crate) type CredentialKey = [u8; 32];

/// Credentials that passed argon2 recently, by [`CredentialKey`], with the time of the check.
pub(crate) struct CredentialCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<CredentialKey, Instant>>,
}

impl Default for CredentialCache {
    fn default() -> Self {
        CredentialCache::new(DEFAULT_TTL, DEFAULT_CAPACITY)
    }
}

impl CredentialCache {
    /// A cache whose entries count for `ttl` after insertion, holding at most `capacity`.
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        CredentialCache { ttl, capacity, entries: Mutex::new(HashMap::new()) }
    }

    /// The key of (label, user, password); `None` (never cached) when the label or the user
    /// name contains a NUL byte, which would make the framing ambiguous.
    pub(crate) fn key(label: &str, user: &str, password: &str) -> Option<CredentialKey> {
        if label.contains('\0') || user.contains('\0') {
            return None;
        }
        let mut h = Sha256::new();
        h.update(label.as_bytes());
        h.update([0u8]);
        h.update(user.as_bytes());
        h.update([0u8]);
        h.update(password.as_bytes());
        Some(h.finalize().into())
    }

    /// Whether `key` passed argon2 less than the TTL before `now` (an expired entry is dropped).
    pub(crate) fn contains(&self, key: &CredentialKey, now: Instant) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key) {
            Some(at) if self.fresh(*at, now) => true,
            Some(_) => {
                entries.remove(key);
                false
            }
            None => false,
        }
    }

    /// Remembers that `key` passed argon2 at `now`. Call only after a successful check.
    pub(crate) fn insert(&self, key: CredentialKey, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            // Inserts follow an argon2 check, so this scan (only when full) costs little.
            entries.retain(|_, at| self.fresh(*at, now));
            if entries.len() >= self.capacity {
                if let Some(oldest) = entries.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(key, now);
    }

    fn fresh(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) < self.ttl
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn key(user: &str, password: &str) -> CredentialKey {
        CredentialCache::key("", user, password).unwrap()
    }

    #[test]
    fn hit_within_the_ttl_and_expiry_after_it() {
        let cache = CredentialCache::new(5 * MIN, 10);
        let t0 = Instant::now();
        let k = key("alice", "s3cret");
        assert!(!cache.contains(&k, t0));
        cache.insert(k, t0);
        assert!(cache.contains(&k, t0));
        assert!(cache.contains(&k, t0 + 5 * MIN - Duration::from_millis(1)));
        // A hit does not extend the entry: it expires 5 minutes after the argon2 check.
        assert!(!cache.contains(&k, t0 + 5 * MIN));
        assert_eq!(cache.len(), 0, "the expired entry is dropped");
        assert!(!cache.contains(&k, t0 + MIN), "gone, even for an earlier clock");
    }

    #[test]
    fn keys_separate_label_user_and_password() {
        let k = key("alice", "s3cret");
        assert_ne!(k, key("alice", "s3cret "));
        assert_ne!(k, key("alice", "wrong"));
        assert_ne!(k, key("bob", "s3cret"));
        assert_ne!(k, CredentialCache::key("lab", "alice", "s3cret").unwrap());
        assert_ne!(key("ab", "c"), key("a", "bc"));
        assert_eq!(CredentialCache::key("", "al\0ice", "x"), None);
        assert_eq!(CredentialCache::key("a\0", "alice", "x"), None);
    }

    #[test]
    fn size_is_bounded_expired_first_then_oldest() {
        let cache = CredentialCache::new(5 * MIN, 3);
        let t0 = Instant::now();
        let (a, b, c, d, e) = (key("a", "1"), key("b", "1"), key("c", "1"), key("d", "1"), key("e", "1"));
        cache.insert(a, t0);
        cache.insert(b, t0 + MIN);
        cache.insert(c, t0 + 2 * MIN);
        cache.insert(d, t0 + 3 * MIN);
        let t = t0 + 3 * MIN;
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains(&a, t), "the oldest entry was evicted");
        assert!(cache.contains(&b, t) && cache.contains(&c, t) && cache.contains(&d, t));
        // At t0 + 6 min, b (t0 + 1 min) has expired and goes; c and d stay.
        cache.insert(e, t0 + 6 * MIN);
        let t = t0 + 6 * MIN;
        assert_eq!(cache.len(), 3);
        assert!(cache.contains(&c, t) && cache.contains(&d, t) && cache.contains(&e, t));
        assert!(!cache.contains(&b, t));
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = CredentialCache::new(5 * MIN, 0);
        let t0 = Instant::now();
        cache.insert(key("a", "1"), t0);
        assert!(!cache.contains(&key("a", "1"), t0));
    }
}
