//! Passive health: each request's outcome on its backend, counted so a backend that keeps
//! failing (refused connections, answers in `fail_status`, timeouts) leaves the rotation for
//! a while, as nginx's `max_fails`/`fail_timeout` do; never the last one of its pool.

use std::sync::Arc;

use corral_routes::{Backend, PoolRoute};

use super::context::Exchange;
use super::Forwarder;

impl Forwarder {
    /// Counts a finished request's outcome for its backend: a worker's answer in
    /// `fail_status` or corral's 504 (the worker said nothing in time) is a failure, any
    /// other answer of the worker a success.
    pub(super) fn record_outcome(&self, exchange: &Exchange, status: u16) {
        let Some(backend) = &exchange.backend else {
            return;
        };
        let route = exchange.route();
        let answered = exchange.upstream_ms.is_some();
        let failed = if answered {
            route.health.fail_status.contains(&status)
        } else {
            status == 504
        };
        if failed {
            record_failure(route, backend, "answer");
        } else if answered {
            backend.health.record_success();
        }
    }

    /// A connection to `backend` could not be made.
    pub(super) fn record_connect_failure(&self, route: &PoolRoute, backend: &Arc<Backend>) {
        record_failure(route, backend, "connect");
    }
}

fn record_failure(route: &PoolRoute, backend: &Arc<Backend>, what: &'static str) {
    let health = &route.health;
    if health.max_fails == 0 {
        return;
    }
    let mut now = None;
    let others = route
        .backends
        .iter()
        .any(|b| !Arc::ptr_eq(b, backend) && b.health.in_rotation(&mut now));
    if let Some(length) = backend
        .health
        .record_failure(health.max_fails, health.eject_for, others)
    {
        route.metrics.health.ejections.inc();
        tracing::warn!(
            event = "backend_ejected",
            pool = &*route.name,
            worker = backend.info.worker,
            pid = backend.info.pid,
            addr = %backend.info.addr,
            failures = health.max_fails,
            last_failure = what,
            seconds = length.as_secs_f64(),
            "backend failed requests in a row; no new requests for a while"
        );
    }
}
