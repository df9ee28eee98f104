//! Proof that the supervisor's loop still turns, for the systemd watchdog: the loop beats on
//! every tick and event, and the master pings `WATCHDOG=1` only while the beat is recent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The time of the supervisor loop's last turn.
#[derive(Debug)]
pub struct Heartbeat {
    start: Instant,
    last_ms: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    /// The loop turned now.
    pub fn beat(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long ago the loop last turned.
    pub fn age(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_grows_until_the_next_beat() {
        let beat = Heartbeat::default();
        std::thread::sleep(Duration::from_millis(30));
        assert!(beat.age() >= Duration::from_millis(30));
        beat.beat();
        assert!(beat.age() < Duration::from_millis(30));
    }
}
