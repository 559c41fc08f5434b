//! Failures of background loops, logged without flooding the log.
//!
//! Logged on every turn, a full disk would make the WAL thread write a hundred lines a second,
//! to the disk that is full. Hand-written: `tracing` has no rate limit, and this is a clock and
//! a counter.

use std::time::{Duration, Instant};

/// A step a background loop retries on every turn (the WAL thread's every 10 ms, the change
/// feed's every 200 ms): its failure is logged when it starts, then at most every
/// [`Retrying::EVERY`] with how many turns failed meanwhile, and its end once.
pub struct Retrying {
    what: &'static str,
    every: Duration,
    /// While failing: when it was last logged, and the failures since.
    failing: Option<(Instant, u64)>,
}

impl Retrying {
    const EVERY: Duration = Duration::from_secs(10);

    pub fn new(what: &'static str) -> Self {
        Retrying {
            what,
            every: Self::EVERY,
            failing: None,
        }
    }

    /// Notes a turn's outcome; returns whether it logged.
    pub fn outcome<E: std::fmt::Display>(&mut self, r: Result<(), E>) -> bool {
        let now = Instant::now();
        match (r, &mut self.failing) {
            (Ok(()), None) => false,
            (Ok(()), Some((_, failures))) => {
                tracing::warn!(failures = *failures, "{}: recovered", self.what);
                self.failing = None;
                true
            }
            (Err(e), None) => {
                tracing::error!(error = %e, "{}; retrying", self.what);
                self.failing = Some((now, 0));
                true
            }
            (Err(e), Some((logged, failures))) => {
                *failures += 1;
                if now.duration_since(*logged) < self.every {
                    return false;
                }
                tracing::error!(error = %e, failures = *failures, "{}; still retrying", self.what);
                *logged = now;
                *failures = 0;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_retried_every_turn_is_logged_when_it_starts_rarely_then_and_when_it_ends() {
        let mut r = Retrying::new("step");
        let failed: Result<(), &str> = Err("disk full");
        assert!(!r.outcome(Ok::<(), &str>(())));
        assert!(r.outcome(failed), "the first failure");
        assert!((0..100).all(|_| !r.outcome(failed)), "then quiet");
        assert_eq!(r.failing.map(|(_, n)| n), Some(100));
        r.every = Duration::ZERO;
        assert!(r.outcome(failed), "once the interval has passed");
        assert_eq!(r.failing.map(|(_, n)| n), Some(0));
        assert!(r.outcome(Ok::<(), &str>(())), "the recovery");
        assert!(!r.outcome(Ok::<(), &str>(())));
        assert!(r.failing.is_none());
    }
}
