//! When to restart a worker that exited: at once after a long healthy run, exponentially
//! later after each quick failure, so a crashing app cannot burn the CPU.

use std::time::Duration;

/// A worker that ran at least this long before exiting counts as healthy: its next start is
/// immediate and the failure streak resets.
pub const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// First delay after a quick failure.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// The restart policy of one worker slot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Records an exit after `ran` and returns how long to wait before the next start.
    pub fn on_exit(&mut self, ran: Duration) -> Duration {
        if ran >= HEALTHY_RUN {
            self.failures = 0;
        }
        let delay = match self.failures {
            0 => Duration::ZERO,
            n => FIRST_DELAY
                .saturating_mul(1 << (n - 1).min(16))
                .min(MAX_DELAY),
        };
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Quick failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_crash_restarts_at_once_then_doubles() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(50);
        assert_eq!(b.on_exit(quick), Duration::ZERO);
        assert_eq!(b.on_exit(quick), Duration::from_millis(100));
        assert_eq!(b.on_exit(quick), Duration::from_millis(200));
        assert_eq!(b.on_exit(quick), Duration::from_millis(400));
        for _ in 0..20 {
            b.on_exit(quick);
        }
        assert_eq!(b.on_exit(quick), MAX_DELAY);
    }

    #[test]
    fn a_healthy_run_resets_the_streak() {
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.on_exit(Duration::ZERO);
        }
        assert_eq!(b.on_exit(Duration::from_secs(60)), Duration::ZERO);
        assert_eq!(b.failures(), 1);
    }
}
