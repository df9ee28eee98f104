//! Publishing what changed: the routing table the proxy reads, the status snapshot the
//! admin API reads, and the worker gauges.

use std::sync::Arc;

use super::Runner;
use crate::routes::{PoolRoute, RoutingTable};
use crate::status::{PoolView, StatusSnapshot, WorkerView};
use crate::worker::State;

impl Runner {
    /// Republishes the routing table, the status snapshot and the worker gauges.
    pub(super) fn publish(&mut self) {
        self.pools.retain(|p| !(p.removed && p.workers.is_empty()));
        let mut views = Vec::with_capacity(self.pools.len());
        for pool in &self.pools {
            let mut counts = [0i64; 3];
            for w in &pool.workers {
                match w.state {
                    State::Starting { .. } => counts[0] += 1,
                    State::Ready { .. } => counts[1] += 1,
                    State::Draining { .. } | State::Stopping { .. } => counts[2] += 1,
                }
            }
            self.metrics.set_workers(&pool.name, counts);
            let mut workers: Vec<WorkerView> = pool
                .workers
                .iter()
                .map(|w| WorkerView {
                    worker: w.slot,
                    pid: Some(w.pid),
                    state: w.state_name(),
                    since: w.since(),
                    started: Some(w.started),
                    backend: w.backend().cloned(),
                    restarts: pool.slots.get(&w.slot).map_or(0, |s| s.restarts),
                    generation: w.generation,
                })
                .collect();
            workers.sort_by_key(|w| w.worker);
            let active = *pool.name == *self.active;
            if active {
                let backends = pool
                    .workers
                    .iter()
                    .filter(|w| w.routable())
                    .filter_map(|w| w.backend().cloned())
                    .collect();
                self.routes.store(Arc::new(RoutingTable {
                    active: PoolRoute {
                        name: pool.name.clone(),
                        backends,
                        metrics: pool.metrics.clone(),
                        concurrency: pool.config.concurrency,
                        queue_size: pool.config.queue_size,
                        queue_timeout: pool.config.queue_timeout,
                        timeout: pool.config.timeout,
                        queue: pool.queue.clone(),
                    },
                    generation: self.generation,
                }));
                // Waiters re-check against the new table (a worker may have become ready).
                pool.queue.notify.notify_waiters();
            }
            views.push(PoolView {
                name: pool.name.clone(),
                active,
                desired: pool.desired,
                generation: pool.generation,
                failed: pool.failed.clone(),
                workers,
            });
        }
        self.status.store(Arc::new(StatusSnapshot {
            pools: views,
            stopping: self.stopping.is_some(),
            generation: self.generation,
        }));
    }
}
