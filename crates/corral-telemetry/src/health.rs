//! The health metric families: active check results, passive ejections, and backends by
//! health, per pool.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The states `corral_backends` counts.
pub const HEALTH_STATES: [&str; 3] = ["healthy", "unhealthy", "ejected"];

/// The families, registered once.
pub(crate) struct HealthFamilies {
    checks: IntCounterVec,
    ejections: IntCounterVec,
    backends: IntGaugeVec,
}

/// One pool's handles, resolved once.
#[derive(Clone)]
pub struct PoolHealth {
    /// Active checks that passed.
    pub checks_passed: IntCounter,
    /// Active checks that failed.
    pub checks_failed: IntCounter,
    /// Passive ejections.
    pub ejections: IntCounter,
}

impl std::fmt::Debug for PoolHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolHealth").finish_non_exhaustive()
    }
}

impl HealthFamilies {
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let checks = IntCounterVec::new(
            Opts::new(
                "corral_health_checks_total",
                "Active health checks of ready backends, by pool and result (passed, failed)",
            ),
            &["pool", "result"],
        )?;
        let ejections = IntCounterVec::new(
            Opts::new(
                "corral_backend_ejections_total",
                "Backends ejected for failed requests in a row (passive health), by pool",
            ),
            &["pool"],
        )?;
        let backends = IntGaugeVec::new(
            Opts::new(
                "corral_backends",
                "Ready backends by pool and health (healthy, unhealthy, ejected), as of the scrape",
            ),
            &["pool", "health"],
        )?;
        registry.register(Box::new(checks.clone()))?;
        registry.register(Box::new(ejections.clone()))?;
        registry.register(Box::new(backends.clone()))?;
        Ok(HealthFamilies {
            checks,
            ejections,
            backends,
        })
    }

    pub(crate) fn pool(&self, pool: &str) -> PoolHealth {
        PoolHealth {
            checks_passed: self.checks.with_label_values(&[pool, "passed"]),
            checks_failed: self.checks.with_label_values(&[pool, "failed"]),
            ejections: self.ejections.with_label_values(&[pool]),
        }
    }

    pub(crate) fn set_backends(&self, pool: &str, counts: [i64; 3]) {
        for (state, n) in HEALTH_STATES.iter().zip(counts) {
            self.backends.with_label_values(&[pool, state]).set(n);
        }
    }
}
