//! Expensive checks under one bound: a password hash (argon2 allocates ~19 MiB and burns tens of
//! milliseconds per check), a signature chain, a large parse. [`WorkBound`] runs them on the
//! blocking pool, at most N at once (N sized to the machine), so a flood of requests that each
//! ask for one costs at most N checks' memory and CPU; a request that cannot get a slot within
//! the wait is refused as [`Busy`] (503 with Retry-After, RFC 9110 §15.6.4) instead of queueing
//! without end.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Default longest wait for a slot.
pub const DEFAULT_WORK_WAIT: Duration = Duration::from_secs(5);

/// No slot for an expensive check within the wait: answer 503 with this Retry-After.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server is busy with other expensive checks; retry after {retry_after} s")]
pub struct Busy {
    /// Seconds the client should wait.
    pub retry_after: u64,
}

/// At most `permits` expensive checks at once (see the module doc). Clones share the bound.
#[derive(Debug, Clone)]
pub struct WorkBound {
    permits: Arc<Semaphore>,
    size: usize,
    wait: Duration,
}

impl WorkBound {
    /// At most `permits` (at least 1) checks at once; a caller waits at most `wait` for a slot.
    pub fn new(permits: usize, wait: Duration) -> Self {
        let size = permits.max(1);
        WorkBound { permits: Arc::new(Semaphore::new(size)), size, wait }
    }

    /// One check per CPU the process may use, [`DEFAULT_WORK_WAIT`].
    pub fn for_machine() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, usize::from), DEFAULT_WORK_WAIT)
    }

    /// How many checks may run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `check` on the blocking pool once a slot is free; [`Busy`] when none is within
    /// the wait. The slot is held until `check` returns, even if the caller goes away.
    pub async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let busy = Busy { retry_after: self.wait.as_secs().max(1) };
        let permit = match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => return Err(busy),
        };
        tokio::task::spawn_blocking(move || {
            let out = check();
            drop(permit);
            out
        })
        .await
        .map_err(|_| busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn never_more_than_the_bound_run_at_once_and_a_late_one_is_busy() {
        let bound = WorkBound::new(2, Duration::from_millis(200));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (bound, running, peak) = (bound.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    bound
                        .run(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(150));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        let mut busy = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                busy += 1;
            }
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2, "at most two checks at once");
        assert!(busy >= 2, "the ones that could not get a slot within 200 ms are busy ({busy})");
    }
}
