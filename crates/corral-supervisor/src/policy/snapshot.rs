//! What the policy shows the rest of corral: the routing table the proxy reads per request,
//! the status snapshot the admin API reads, and the worker gauges. Built fresh from the
//! state; the runner stores them.

use std::sync::Arc;

use super::lanes::LaneState;
use super::Policy;
use crate::worker::{PoolId, StateKind};
use corral_routes::status::{PoolView, RouteView, StatusSnapshot, WorkerView};
use corral_routes::{Lane, PoolRoute, RoutingTable};

impl Policy {
    /// The routing table of every pool that is not being removed.
    pub(crate) fn routing_table(&self) -> RoutingTable {
        let mut pools = Vec::with_capacity(self.pools.len());
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
            pools.push(route);
        }
        let mut lanes: Vec<Lane> = self
            .lanes
            .iter()
            .map(|lane| self.lane_table(lane, &pools))
            .collect();
        let first = if lanes.is_empty() {
            Lane {
                route: Arc::from(""),
                active: self.empty_route(),
                previous: None,
                split: Vec::new(),
            }
        } else {
            lanes.remove(0)
        };
        RoutingTable {
            pools,
            active: first.active,
            previous: first.previous,
            split: first.split,
            generation: self.generation,
            steered: first.route,
            lanes,
        }
    }

    /// One lane's part of the routing table, from the routes of the running pools.
    fn lane_table(&self, lane: &LaneState, pools: &[Arc<PoolRoute>]) -> Lane {
        let route_of = |id: PoolId| {
            let name = &self.pools.iter().find(|p| p.id == id)?.name;
            pools.iter().find(|r| r.name == *name).cloned()
        };
        let mut upto = 0;
        let split = lane
            .canary
            .iter()
            .filter_map(|(id, weight)| {
                let route = route_of(*id)?;
                upto += weight;
                Some((route, upto))
            })
            .collect();
        Lane {
            route: lane.route.clone(),
            // The config always names an active pool; an empty route (503 at once) stands
            // in should that ever not hold.
            active: route_of(lane.active).unwrap_or_else(|| self.empty_route()),
            previous: lane.previous.and_then(route_of),
            split,
        }
    }

    /// A route with no worker: every request to it is answered 503 at once.
    fn empty_route(&self) -> Arc<PoolRoute> {
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
                active: self.lanes.iter().any(|l| l.active == pool.id),
                weight: self
                    .lanes
                    .iter()
                    .find(|l| {
                        // Without `[[routes]]` the one lane holds every pool.
                        !l.canary.is_empty() && (l.route.is_empty() || self.in_lane(l, pool.id))
                    })
                    .map(|l| {
                        l.canary
                            .iter()
                            .filter(|(id, _)| *id == pool.id)
                            .map(|(_, w)| w)
                            .sum()
                    }),
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
            active_since: self.lanes.first().and_then(|l| l.since),
            routes: self.lanes.iter().map(|l| self.route_view(l)).collect(),
        }
    }

    /// Whether pool `id` gets requests of `lane`, or is its previous pool.
    fn in_lane(&self, lane: &LaneState, id: PoolId) -> bool {
        lane.active == id || lane.previous == Some(id) || lane.canary.iter().any(|(c, _)| *c == id)
    }

    /// One lane as `/status` shows it.
    fn route_view(&self, lane: &LaneState) -> RouteView {
        let name = |id: PoolId| -> Arc<str> {
            self.pools
                .iter()
                .find(|p| p.id == id)
                .map_or_else(|| Arc::from(""), |p| p.name.clone())
        };
        RouteView {
            route: lane.route.clone(),
            active: name(lane.active),
            weights: lane.canary.iter().map(|(id, w)| (name(*id), *w)).collect(),
            previous: lane.previous.map(name),
            since: lane.since,
        }
    }
}
