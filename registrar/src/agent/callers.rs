//! The cache of callers already identified (see [`CallerCache`]).

use super::model::Caller;

/// Callers already identified, by SHA-256 of the client certificate's DER: a proxy's chain
/// check (a signature verification) and the owner lookup run once per certificate, not once per
/// request. Entries end with the certificate's notAfter; the policy does not change while the
/// server runs. Revocation is still checked on every request.
#[derive(Debug, Default)]
pub struct CallerCache {
    map: std::sync::Mutex<std::collections::HashMap<[u8; 32], (Caller, i64)>>,
}

/// Most certificates [`CallerCache`] remembers (it starts over when full).
const CALLER_CACHE_MAX: usize = 10_000;

impl CallerCache {
    pub(super) fn get(&self, key: &[u8; 32], now: i64) -> Option<Caller> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).filter(|(_, until)| now < *until).map(|(c, _)| c.clone())
    }

    pub(super) fn put(&self, key: [u8; 32], caller: &Caller, until: i64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CALLER_CACHE_MAX {
            map.clear();
        }
        map.insert(key, (caller.clone(), until));
    }
}
