//! Failed authentications counted per client address and per user name, so that guessing
//! passwords is slow and cheap to refuse: past the limit within the window, a request is
//! answered 429 with Retry-After (RFC 6585 §4) before any password hash runs. Only failures
//! count; a client whose credentials were verified recently is not refused (the credential
//! cache answers it first). Memory is bounded: at most [`MAX_TRACKED`] keys, expired windows
//! dropped first.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most keys (addresses and user names) tracked at once.
pub(crate) const MAX_TRACKED: usize = 100_000;

/// How many failures are allowed per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimits {
    /// Failed authentications per client address and window (0: no limit).
    pub per_address: u32,
    /// Failed authentications per user name and window (0: no limit).
    pub per_user: u32,
    /// The window.
    pub window: Duration,
}

impl Default for FailureLimits {
    /// 20 per address and 50 per user name a minute: far above a person mistyping, far below
    /// what guessing needs.
    fn default() -> Self {
        FailureLimits { per_address: 20, per_user: 50, window: Duration::from_secs(60) }
    }
}

/// Too many failures: refuse for this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed authentications; retry after {retry_after} s")]
pub struct TooManyFailures {
    /// Seconds until the window ends.
    pub retry_after: u64,
}

/// The failure counters (see the module doc).
#[derive(Debug)]
pub struct FailureLimiter {
    limits: FailureLimits,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl FailureLimiter {
    /// Counters under `limits`.
    pub fn new(limits: FailureLimits) -> Self {
        FailureLimiter { limits, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts an attempt of `address` and `user` at `now` as a failure in advance, or refuses
    /// it when either is past its limit. Counting before the check (not after it) makes the
    /// limit hold for concurrent attempts too: at most `limit` checks per window run for one
    /// address, however many arrive at once. A success takes its count back ([`Self::succeeded`]).
    pub fn attempt(&self, address: &str, user: &str, now: Instant) -> Result<(), TooManyFailures> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let keys = self.keys(address, user);
        for (key, limit) in &keys {
            let Some(&(start, count)) = windows.get(key) else { continue };
            let left = (start + self.limits.window).saturating_duration_since(now);
            if *limit > 0 && count >= *limit && !left.is_zero() {
                return Err(TooManyFailures { retry_after: left.as_secs().max(1) });
            }
        }
        if windows.len() + 2 > MAX_TRACKED {
            evict(&mut windows, now, self.limits.window);
        }
        for (key, _) in keys {
            let entry = windows.entry(key).or_insert((now, 0));
            if now.saturating_duration_since(entry.0) >= self.limits.window {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
        }
        Ok(())
    }

    /// Takes back the count of an attempt that succeeded.
    pub fn succeeded(&self, address: &str, user: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, _) in self.keys(address, user) {
            if let Some(entry) = windows.get_mut(&key) {
                entry.1 = entry.1.saturating_sub(1);
            }
        }
    }

    fn keys(&self, address: &str, user: &str) -> [(String, u32); 2] {
        [
            (format!("address\u{0}{address}"), self.limits.per_address),
            (format!("user\u{0}{user}"), self.limits.per_user),
        ]
    }
}

/// Makes room: expired windows go first; if that is not enough, the oldest tenth (one sort,
/// so a full table costs O(log n) per failure, amortised).
fn evict(windows: &mut HashMap<String, (Instant, u32)>, now: Instant, window: Duration) {
    windows.retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
    if windows.len() + 2 > MAX_TRACKED {
        let mut starts: Vec<Instant> = windows.values().map(|(s, _)| *s).collect();
        starts.sort_unstable();
        let cut = starts[(starts.len() / 10).max(2).min(starts.len() - 1)];
        windows.retain(|_, (start, _)| *start > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_limit_an_address_waits_for_the_window_to_end() {
        let limits = FailureLimits { per_address: 3, per_user: 100, window: Duration::from_secs(60) };
        let l = FailureLimiter::new(limits);
        let t = Instant::now();
        for i in 0..3 {
            assert!(l.attempt("10.0.0.1", &format!("u{i}"), t).is_ok());
        }
        let refused = l.attempt("10.0.0.1", "anyone", t + Duration::from_secs(10)).unwrap_err();
        assert_eq!(refused.retry_after, 50);
        assert!(l.attempt("10.0.0.2", "anyone", t).is_ok(), "another address is not refused");
        assert!(l.attempt("10.0.0.1", "anyone", t + Duration::from_secs(60)).is_ok(), "a new window");
    }

    #[test]
    fn past_the_limit_a_user_name_is_refused_from_every_address() {
        let limits = FailureLimits { per_address: 0, per_user: 2, window: Duration::from_secs(60) };
        let l = FailureLimiter::new(limits);
        let t = Instant::now();
        l.attempt("a", "alice", t).unwrap();
        l.attempt("b", "alice", t).unwrap();
        assert!(l.attempt("c", "alice", t).is_err());
        assert!(l.attempt("c", "bob", t).is_ok());
    }

    #[test]
    fn a_success_takes_its_count_back() {
        let limits = FailureLimits { per_address: 2, per_user: 0, window: Duration::from_secs(60) };
        let l = FailureLimiter::new(limits);
        let t = Instant::now();
        for _ in 0..10 {
            l.attempt("a", "alice", t).unwrap();
            l.succeeded("a", "alice");
        }
        l.attempt("a", "mallory", t).unwrap();
        l.attempt("a", "mallory", t).unwrap();
        assert!(l.attempt("a", "alice", t).is_err(), "two failures in flight or done fill the limit");
    }

    #[test]
    fn memory_stays_bounded() {
        let l = FailureLimiter::new(FailureLimits::default());
        let t = Instant::now();
        for i in 0..(MAX_TRACKED / 2 + 1000) {
            let _ = l.attempt(&format!("addr{i}"), &format!("user{i}"), t);
        }
        assert!(l.windows.lock().unwrap().len() <= MAX_TRACKED);
    }
}
