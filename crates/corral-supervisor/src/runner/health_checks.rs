//! Active health checks: one task per ready worker of a pool with `health.interval`,
//! probing its health path off the request path. A worker that fails `unhealthy` checks in a
//! row leaves the rotation at once (the proxy reads its health) and the policy hears of it to
//! replace it; `healthy` passes in a row bring it back meanwhile.

use std::sync::Weak;

use corral_config::{Health, Ready};
use corral_telemetry::health::PoolHealth;

use crate::health::Turned;
use crate::policy::Event;
use crate::ready::probe_within;
use crate::routes::Backend;
use crate::worker::WorkerId;

/// Checks `backend` until it is gone (the worker stopped) or told to close (drained);
/// `report` returns false once the supervisor is gone.
pub(super) async fn watch(
    worker: WorkerId,
    backend: Weak<Backend>,
    health: Health,
    path: String,
    counters: PoolHealth,
    report: impl Fn(Event) -> bool,
) {
    let Some(every) = health.interval else { return };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: the worker has just passed its readiness probe.
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(backend) = backend.upgrade() else {
            return;
        };
        if *backend.closing.borrow() {
            return;
        }
        let result = probe_within(Ready::Http, &backend.addr, &path, health.timeout).await;
        match &result {
            Ok(()) => counters.checks_passed.inc(),
            Err(_) => counters.checks_failed.inc(),
        }
        let turned = backend
            .health
            .record_check(result.is_ok(), health.healthy, health.unhealthy);
        match (turned, result) {
            (Turned::Unhealthy, Err(why)) => {
                tracing::warn!(
                    event = "worker_unhealthy",
                    pool = &*backend.pool,
                    worker = backend.worker,
                    pid = backend.pid,
                    checks = health.unhealthy,
                    last_check = %why,
                    "worker failed its health checks; no new requests, replacing it"
                );
                if !report(Event::Unhealthy(worker)) {
                    return;
                }
            }
            (Turned::Healthy, _) => tracing::info!(
                event = "worker_healthy",
                pool = &*backend.pool,
                worker = backend.worker,
                pid = backend.pid,
                checks = health.healthy,
                "worker passes its health checks again; back in rotation"
            ),
            _ => {}
        }
    }
}
