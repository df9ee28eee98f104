//! The generic cell rate algorithm: one number per key (the theoretical arrival time, TAT)
//! gives a steady rate with a burst. Pure; times are microseconds on any clock that only
//! moves forward. The same arithmetic runs in Redis as a script (`redis.rs`).

/// A rule's rate in GCRA terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Microseconds between two requests at the steady rate (the emission interval).
    pub interval: u64,
    /// How far ahead of now the TAT may run: `(burst - 1) * interval`, so `burst` requests
    /// pass at once.
    pub tolerance: u64,
    /// The burst, for the `RateLimit-Policy` quota.
    pub burst: u32,
}

impl Rate {
    /// `count` requests per `per`, with `burst` at once.
    pub fn new(count: u32, per: std::time::Duration, burst: u32) -> Rate {
        let interval = (per.as_micros() as u64 / u64::from(count.max(1))).max(1);
        Rate {
            interval,
            tolerance: interval * u64::from(burst.max(1) - 1),
            burst: burst.max(1),
        }
    }

    /// Seconds for a spent burst to refill: the `RateLimit-Policy` window.
    pub fn window_secs(&self) -> u64 {
        (self.interval * u64::from(self.burst))
            .div_ceil(1_000_000)
            .max(1)
    }
}

/// One decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request passes.
    pub allowed: bool,
    /// The TAT to store when allowed.
    pub tat: u64,
    /// Requests that would still pass right now.
    pub remaining: u32,
    /// Microseconds until the next request would pass (0 when one would now).
    pub retry_after: u64,
    /// Microseconds until the whole burst is available again.
    pub reset_after: u64,
}

/// Decides a request at `now` for a key whose stored TAT is `tat` (`None`: never seen).
pub fn decide(rate: Rate, tat: Option<u64>, now: u64) -> Decision {
    let tat = tat.unwrap_or(now).max(now);
    let ahead = tat - now;
    if ahead > rate.tolerance {
        return Decision {
            allowed: false,
            tat,
            remaining: 0,
            retry_after: ahead - rate.tolerance,
            reset_after: ahead,
        };
    }
    let new = tat + rate.interval;
    let ahead = new - now;
    let room = rate.tolerance + rate.interval - ahead.min(rate.tolerance + rate.interval);
    Decision {
        allowed: true,
        tat: new,
        remaining: (room / rate.interval) as u32,
        retry_after: 0,
        reset_after: ahead,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_passes_at_once_then_the_rate_holds() {
        let rate = Rate::new(10, Duration::from_secs(1), 20);
        let mut tat = None;
        let mut passed = 0;
        for _ in 0..100 {
            let d = decide(rate, tat, 1_000_000);
            if d.allowed {
                passed += 1;
                tat = Some(d.tat);
            }
        }
        assert_eq!(passed, 20);
        let denied = decide(rate, tat, 1_000_000);
        assert_eq!(denied.retry_after, 100_000, "one interval until the next");
        // A second later, ten more.
        let mut later = 0;
        for _ in 0..100 {
            let d = decide(rate, tat, 2_000_000);
            if d.allowed {
                later += 1;
                tat = Some(d.tat);
            }
        }
        assert_eq!(later, 10);
    }

    #[test]
    fn remaining_counts_down_and_a_fresh_key_has_the_whole_burst() {
        let rate = Rate::new(1, Duration::from_secs(1), 3);
        let first = decide(rate, None, 0);
        assert_eq!((first.allowed, first.remaining), (true, 2));
        let second = decide(rate, Some(first.tat), 0);
        assert_eq!(second.remaining, 1);
        let third = decide(rate, Some(second.tat), 0);
        assert_eq!(third.remaining, 0);
        assert!(!decide(rate, Some(third.tat), 0).allowed);
        // An old TAT is as good as none.
        assert_eq!(decide(rate, Some(5), 10_000_000).remaining, 2);
        assert_eq!(rate.window_secs(), 3);
    }
}
