//! What the policy shows the rest of corral: the routing table the proxy reads per request,
//! the status snapshot the admin API reads, and the worker gauges. Built fresh from the
//! state; the runner stores them.

use std::sync::Arc;

use super::Policy;
use crate::worker::StateKind;
use corral_routes::status::{PoolView, StatusSnapshot, WorkerView};
use corral_routes::{PoolRoute, RoutingTable};

impl Policy {
    /// The routing table of every pool that is not being removed.
    pub(crate) fn routing_table(&self) -> RoutingTable {
        let mut pools = Vec::with_capacity(self.pools.len());
        let (mut active, mut previous) = (None, None);
        for pool in self.pools.iter().filter(|p| !p.removed) {
            let route = Arc::new(PoolRoute {
                name: pool.name.clone(),
                backends: if pool.is_remote() {
                    // A stopped remote pool (desired 0) takes no requests.
                    let serving = pool.desired > 0 && !pool.removed;
                    pool.remote
                        .iter()
                        .filter(|_| serving)
                        .map(|r| r.backend.clone())
                        .collect()
                } else {
                    pool.workers
                        .iter()
                        .filter(|w| w.routable())
                        .filter_map(|w| w.backend().cloned())
                        .collect()
                },
                metrics: pool.metrics.clone(),
                concurrency: pool.config.concurrency,
                queue_size: pool.config.queue_size,
                queue_timeout: pool.config.queue_timeout,
                timeout: pool.config.timeout,
                queue: pool.queue.clone(),
                health: pool.config.health.clone(),
                response_buffering: pool.config.response_buffering,
                request_buffering: pool.config.request_buffering,
            });
            if pool.id == self.active {
                active = Some(route.clone());
            }
            if Some(pool.id) == self.previous {
                previous = Some(route.clone());
            }
            pools.push(route);
        }
        // The config always names an active pool; an empty route (503 at once) stands in
        // should that ever not hold.
        let active = active.unwrap_or_else(|| {
            Arc::new(PoolRoute {
                name: Arc::from(""),
                backends: Vec::new(),
                metrics: self.metrics.pool(""),
                concurrency: 1,
                queue_size: 0,
                queue_timeout: Default::default(),
                timeout: Default::default(),
                queue: Arc::default(),
                health: corral_config::Health {
                    interval: None,
                    timeout: Default::default(),
                    healthy: 1,
                    unhealthy: 1,
                    max_fails: 0,
                    fail_status: Vec::new(),
                    eject_for: Default::default(),
                },
                response_buffering: true,
                request_buffering: true,
            })
        });
        let mut upto = 0;
        let split = self
            .canary
            .iter()
            .filter_map(|(id, weight)| {
                let name = self.pools.iter().find(|p| p.id == *id)?.name.clone();
                let route = pools.iter().find(|r| r.name == name)?.clone();
                upto += weight;
                Some((route, upto))
            })
            .collect();
        RoutingTable {
            pools,
            active,
            previous,
            split,
            generation: self.generation,
        }
    }

    /// The status snapshot, and the `corral_workers` gauges set to match it.
    pub(crate) fn status(&self) -> StatusSnapshot {
        let mut views = Vec::with_capacity(self.pools.len());
        for pool in &self.pools {
            let mut counts = [0i64; 3];
            for w in &pool.workers {
                match w.state_kind() {
                    StateKind::Starting => counts[0] += 1,
                    StateKind::Ready | StateKind::Retiring => counts[1] += 1,
                    StateKind::Draining | StateKind::Stopping => counts[2] += 1,
                }
            }
            self.metrics.set_workers(&pool.name, counts);
            let mut workers: Vec<WorkerView> = pool
                .workers
                .iter()
                .map(|w| WorkerView {
                    worker: w.slot,
                    pid: Some(w.pid).filter(|pid| *pid > 0),
                    state: w.state_kind(),
                    since: w.since(),
                    started: Some(w.started),
                    backend: w.backend().cloned(),
                    restarts: pool.slots.get(&w.slot).map_or(0, |s| s.restarts),
                    generation: w.generation,
                })
                .collect();
            workers.extend(pool.remote.iter().map(|r| WorkerView {
                worker: r.backend.info.worker,
                pid: None,
                state: StateKind::Ready,
                since: r.backend.info.started,
                started: None,
                backend: Some(r.backend.clone()),
                restarts: 0,
                generation: pool.generation,
            }));
            workers.sort_by_key(|w| w.worker);
            views.push(PoolView {
                name: pool.name.clone(),
                active: pool.id == self.active,
                weight: if self.canary.is_empty() {
                    None
                } else {
                    Some(
                        self.canary
                            .iter()
                            .filter(|(id, _)| *id == pool.id)
                            .map(|(_, w)| w)
                            .sum(),
                    )
                },
                desired: pool.desired,
                generation: pool.generation,
                failed: pool.failed.clone(),
                workers,
            });
        }
        StatusSnapshot {
            pools: views,
            stopping: self.stopping.is_some(),
            generation: self.generation,
            active_since: self.active_since,
        }
    }
}
