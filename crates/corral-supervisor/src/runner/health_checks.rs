//! Active health checks: one task per ready backend of a pool with `health.interval`,
//! probing its health path off the request path. A backend that fails `unhealthy` checks in a
//! row leaves the rotation at once (the proxy reads its health); a worker that stays
//! unhealthy for as many checks again is reported to the policy, which replaces it. `healthy`
//! passes in a row bring it back before that. A remote upstream only leaves and rejoins.
//! The checks of a worker end with its process: a backend may outlive its worker for a while
//! (a request or a queued table still holds it), and a check of an exited worker would only
//! log health events about a process that is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use corral_config::{Health, Ready};
use corral_telemetry::health::PoolHealth;

use crate::policy::Event;
use crate::ready::probe_within;
use crate::worker::WorkerId;
use corral_routes::health::Turned;
use corral_routes::Backend;

/// How long a failed check waits for a dying worker's exit to be seen before it counts.
const EXIT_SEEN: std::time::Duration = std::time::Duration::from_millis(50);

/// Checks `backend` until it is gone, told to close (drained) or its process has exited
/// (`alive`, cleared when it exits; `None` for a remote upstream); `report` returns false
/// once the supervisor is gone.
pub(super) async fn watch(
    worker: WorkerId,
    backend: Weak<Backend>,
    alive: Option<Arc<AtomicBool>>,
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
        let exited = || alive.as_ref().is_some_and(|a| !a.load(Ordering::Acquire));
        if backend.load.is_closing() || exited() {
            return;
        }
        let result = probe_within(Ready::Http, &backend.info.addr, &path, health.timeout).await;
        // A check that failed because the worker died meanwhile says nothing of its health.
        // Its sockets close before its exit is seen: give the exit a moment to be seen.
        if result.is_err() && alive.is_some() {
            tokio::time::sleep(EXIT_SEEN).await;
        }
        if exited() {
            return;
        }
        match &result {
            Ok(()) => counters.checks_passed.inc(),
            Err(_) => counters.checks_failed.inc(),
        }
        let turned = backend
            .health
            .record_check(result.is_ok(), health.healthy, health.unhealthy);
        let failed_in_a_row = backend.health.view().checks_failed;
        match (turned, result) {
            (Turned::Unhealthy, Err(why)) => tracing::warn!(
                event = "worker_unhealthy",
                pool = &*backend.info.pool,
                worker = backend.info.worker,
                pid = backend.info.pid,
                addr = %backend.info.addr,
                checks = health.unhealthy,
                last_check = %why,
                "failed its health checks; no new requests"
            ),
            // Still unhealthy as many checks later: a worker corral runs is replaced.
            (_, Err(why)) if backend.info.pid != 0 && failed_in_a_row == 2 * health.unhealthy => {
                tracing::warn!(
                    event = "worker_still_unhealthy",
                    pool = &*backend.info.pool,
                    worker = backend.info.worker,
                    pid = backend.info.pid,
                    checks = failed_in_a_row,
                    last_check = %why,
                    "still failing its health checks; replacing the worker"
                );
                if !report(Event::Unhealthy(worker)) {
                    return;
                }
            }
            (Turned::Healthy, _) => tracing::info!(
                event = "worker_healthy",
                pool = &*backend.info.pool,
                worker = backend.info.worker,
                pid = backend.info.pid,
                addr = %backend.info.addr,
                checks = health.healthy,
                "passes its health checks again; back in rotation"
            ),
            _ => {}
        }
    }
}
