//! The health of one backend, shared between the active checks (the supervisor's probe
//! tasks, off the request path), the proxy (which skips a backend out of rotation and counts
//! its requests' failures) and `/status`. Atomics only: the proxy reads two per candidate.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The longest passive ejection, however many came in a row.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Milliseconds since the first call, never 0 (0 stands for "never" below).
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// One backend's health state.
#[derive(Debug, Default)]
pub struct BackendHealth {
    /// Out of rotation after `unhealthy` failed checks in a row, until `healthy` passes.
    unhealthy: AtomicBool,
    /// Active checks in a row that failed, or passed (one of the two is 0).
    checks_failed: AtomicU32,
    checks_passed: AtomicU32,
    /// When the last check ended ([`now_ms`]), 0 if none has; and whether it passed.
    last_check: AtomicU64,
    last_check_ok: AtomicBool,
    /// Request failures in a row the proxy saw (connect errors, `fail_status` answers).
    fails: AtomicU32,
    /// Ejections in a row, for the back-off; reset by a request that succeeds.
    ejections: AtomicU32,
    /// Ejected until this [`now_ms`]; 0 when not ejected since its last success.
    ejected_until: AtomicU64,
}

/// What an active check changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turned {
    /// Nothing.
    Same,
    /// Out of rotation: `unhealthy` checks failed in a row.
    Unhealthy,
    /// Back: `healthy` checks passed in a row.
    Healthy,
}

/// The health of a backend as `/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthView {
    /// Whether the active checks let it take requests.
    pub healthy: bool,
    /// Milliseconds since the last active check, and whether it passed.
    pub last_check: Option<(u64, bool)>,
    /// Active checks failed in a row.
    pub checks_failed: u32,
    /// Request failures in a row.
    pub fails: u32,
    /// Milliseconds of passive ejection left.
    pub ejected_for: Option<u64>,
}

impl BackendHealth {
    /// Whether the proxy may send it requests now. `now` is read at most once per caller
    /// (and only when an ejection is set).
    pub fn in_rotation(&self, now: &mut Option<u64>) -> bool {
        if self.unhealthy.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || *now.get_or_insert_with(now_ms) >= until
    }

    /// A request it served went well.
    pub fn record_success(&self) {
        // Loads first: the common case writes nothing, so no cache line bounces.
        if self.fails.load(Ordering::Relaxed) != 0 {
            self.fails.store(0, Ordering::Relaxed);
        }
        // Served again after an ejection: the back-off starts over.
        if self.ejected_until.load(Ordering::Relaxed) != 0 {
            self.ejected_until.store(0, Ordering::Relaxed);
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A request it served failed. At `max_fails` in a row (0: never) it is ejected, unless
    /// `others_in_rotation` is false: the last backend of a pool is never ejected. Returns the
    /// ejection's length when this failure ejected it.
    pub fn record_failure(
        &self,
        max_fails: u32,
        eject_for: Duration,
        others_in_rotation: bool,
    ) -> Option<Duration> {
        let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if max_fails == 0 || fails < max_fails || !others_in_rotation {
            return None;
        }
        let mut now = None;
        if !self.in_rotation(&mut now) {
            return None;
        }
        let ejections = self.ejections.fetch_add(1, Ordering::Relaxed);
        let length = eject_for
            .saturating_mul(1 << ejections.min(16))
            .min(MAX_EJECTION);
        let now = now.unwrap_or_else(now_ms);
        self.ejected_until
            .store(now + length.as_millis() as u64, Ordering::Relaxed);
        self.fails.store(0, Ordering::Relaxed);
        Some(length)
    }

    /// An active check ended; `healthy` and `unhealthy` are the pool's thresholds.
    pub fn record_check(&self, passed: bool, healthy: u32, unhealthy: u32) -> Turned {
        self.last_check.store(now_ms(), Ordering::Relaxed);
        self.last_check_ok.store(passed, Ordering::Relaxed);
        let out = self.unhealthy.load(Ordering::Relaxed);
        if passed {
            self.checks_failed.store(0, Ordering::Relaxed);
            let passes = self.checks_passed.fetch_add(1, Ordering::Relaxed) + 1;
            // Checks that pass `healthy` times in a row end a passive ejection too (as
            // Envoy's active checks uneject a host): the backend has shown it is back.
            if passes >= healthy && self.ejected_until.load(Ordering::Relaxed) != 0 {
                self.ejected_until.store(1, Ordering::Relaxed);
                self.fails.store(0, Ordering::Relaxed);
            }
            if out && passes >= healthy {
                self.unhealthy.store(false, Ordering::Relaxed);
                return Turned::Healthy;
            }
        } else {
            self.checks_passed.store(0, Ordering::Relaxed);
            let failed = self.checks_failed.fetch_add(1, Ordering::Relaxed) + 1;
            if !out && failed >= unhealthy {
                self.unhealthy.store(true, Ordering::Relaxed);
                return Turned::Unhealthy;
            }
        }
        Turned::Same
    }

    /// The state for `/status`.
    pub fn view(&self) -> HealthView {
        let now = now_ms();
        let last = self.last_check.load(Ordering::Relaxed);
        let until = self.ejected_until.load(Ordering::Relaxed);
        HealthView {
            healthy: !self.unhealthy.load(Ordering::Relaxed),
            last_check: (last != 0).then(|| {
                (
                    now.saturating_sub(last),
                    self.last_check_ok.load(Ordering::Relaxed),
                )
            }),
            checks_failed: self.checks_failed.load(Ordering::Relaxed),
            fails: self.fails.load(Ordering::Relaxed),
            ejected_for: (until > now).then(|| until - now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_take_a_backend_out_and_bring_it_back_at_the_thresholds() {
        let h = BackendHealth::default();
        let mut now = None;
        assert_eq!(h.record_check(false, 2, 3), Turned::Same);
        assert_eq!(h.record_check(false, 2, 3), Turned::Same);
        assert!(h.in_rotation(&mut now));
        assert_eq!(h.record_check(false, 2, 3), Turned::Unhealthy);
        assert!(!h.in_rotation(&mut now));
        assert_eq!(h.record_check(false, 2, 3), Turned::Same);
        assert_eq!(h.record_check(true, 2, 3), Turned::Same);
        assert!(!h.in_rotation(&mut now));
        assert_eq!(h.record_check(true, 2, 3), Turned::Healthy);
        assert!(h.in_rotation(&mut now));
        let view = h.view();
        assert!(view.healthy);
        assert_eq!(view.last_check.map(|(_, ok)| ok), Some(true));
    }

    #[test]
    fn failures_in_a_row_eject_with_a_doubling_back_off_but_never_the_last_backend() {
        let h = BackendHealth::default();
        let base = Duration::from_secs(10);
        assert_eq!(h.record_failure(3, base, true), None);
        h.record_success();
        assert_eq!(h.record_failure(3, base, true), None);
        assert_eq!(h.record_failure(3, base, true), None);
        assert_eq!(h.record_failure(3, base, true), Some(base));
        assert!(!h.in_rotation(&mut None));
        assert!(h.view().ejected_for.is_some_and(|ms| ms > 9_000));
        // Ejected again in a row (its time is up, and it fails again before serving one
        // request well): twice as long.
        h.ejected_until.store(1, Ordering::Relaxed);
        for _ in 0..2 {
            assert_eq!(h.record_failure(3, base, true), None);
        }
        assert_eq!(h.record_failure(3, base, true), Some(base * 2));
        // Active checks passing `healthy` times in a row end the ejection.
        assert!(!h.in_rotation(&mut None));
        h.record_check(true, 2, 3);
        assert!(!h.in_rotation(&mut None));
        h.record_check(true, 2, 3);
        assert!(h.in_rotation(&mut None));
        // The last backend of its pool stays in, however often it fails.
        let last = BackendHealth::default();
        for _ in 0..10 {
            assert_eq!(last.record_failure(3, base, false), None);
        }
        assert!(last.in_rotation(&mut None));
        // max_fails = 0: no passive ejection at all.
        let off = BackendHealth::default();
        for _ in 0..10 {
            assert_eq!(off.record_failure(0, base, true), None);
        }
    }
}
