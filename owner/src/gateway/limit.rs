//! Back-pressure: a per-proxy token bucket (429 + Retry-After) and a bounded number of
//! requests in flight or waiting for a person (503 when full).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Buckets kept before idle (full) ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

/// Per-key token buckets: `rate` requests per second, bursts of `rate`.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter allowing `rate` requests per second per key.
    pub(crate) fn new(rate: u32) -> Self {
        RateLimiter { rate: f64::from(rate.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `key`, or returns the seconds until one is available.
    pub(crate) fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_BUCKETS {
            let rate = self.rate;
            map.retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate < rate);
        }
        let (tokens, at) = map.entry(key.to_string()).or_insert((self.rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// A bounded number of slots; a [`Slot`] gives its place back when dropped.
#[derive(Debug)]
pub(crate) struct Slots {
    max: usize,
    used: Arc<Mutex<usize>>,
}

/// One taken slot.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Mutex<usize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut u = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *u = u.saturating_sub(1);
    }
}

impl Slots {
    /// `max` slots.
    pub(crate) fn new(max: usize) -> Self {
        Slots { max: max.max(1), used: Arc::new(Mutex::new(0)) }
    }

    /// Takes a slot, or None when all are in use.
    pub(crate) fn take(&self) -> Option<Slot> {
        let mut u = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if *u >= self.max {
            return None;
        }
        *u += 1;
        Some(Slot(self.used.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_and_keys_are_separate() {
        let l = RateLimiter::new(2);
        let t = Instant::now();
        assert!(l.take("a", t).is_ok());
        assert!(l.take("a", t).is_ok());
        assert_eq!(l.take("a", t), Err(1));
        assert!(l.take("b", t).is_ok());
        assert!(l.take("a", t + Duration::from_millis(600)).is_ok());
    }

    #[test]
    fn slots_are_given_back() {
        let s = Slots::new(1);
        let a = s.take().unwrap();
        assert!(s.take().is_none());
        drop(a);
        assert!(s.take().is_some());
    }
}
