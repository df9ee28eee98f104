//! What the proxy may send requests to: the ready workers of every running pool and which
//! pool takes new requests, published by the supervisor as one immutable table behind an
//! `ArcSwap` (a request reads one `load`). This table is all the proxy knows of workers.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use corral_telemetry::PoolMetrics;

use crate::backend::Backend;
use crate::queue::Queue;

/// The ready workers of one pool and how the proxy may use them.
#[derive(Clone)]
pub struct PoolRoute {
    /// The pool's name.
    pub name: Arc<str>,
    /// Ready workers, in slot order.
    pub backends: Vec<Arc<Backend>>,
    /// The pool's metric handles, resolved once.
    pub metrics: PoolMetrics,
    /// Requests one worker takes at once.
    pub concurrency: u32,
    /// Requests that may wait for a free worker.
    pub queue_size: u32,
    /// How long a request may wait.
    pub queue_timeout: Duration,
    /// How long a worker may take to answer before 504.
    pub timeout: Duration,
    /// The pool's wait queue.
    pub queue: Arc<Queue>,
    /// Its `[pools.NAME.health]`, for passive ejection.
    pub health: corral_config::Health,
    /// Whether answers are read off the worker as fast as it sends them
    /// (`response_buffering`).
    pub response_buffering: bool,
    /// Whether request bodies are read whole before a worker is chosen
    /// (`request_buffering`).
    pub request_buffering: bool,
}

/// Everything the proxy needs to route one request.
#[derive(Clone)]
pub struct RoutingTable {
    /// Every running pool, in config order: a switch or a canary needs the routes of pools
    /// that are not active yet, and draining needs those of the pool that was.
    pub pools: Vec<Arc<PoolRoute>>,
    /// The pool new requests go to; one of `pools`.
    pub active: Arc<PoolRoute>,
    /// The pool that was active before the last switch, while it still runs.
    pub previous: Option<Arc<PoolRoute>>,
    /// A canary split: each pool with the sum of the weights up to and including its own;
    /// empty when every request goes to `active`.
    pub split: Vec<(Arc<PoolRoute>, u32)>,
    /// The config generation this table belongs to.
    pub generation: u64,
    /// The name of the route `active`, `previous` and `split` serve (the one `[routing]`
    /// steers); `""` without `[[routes]]`.
    pub steered: Arc<str>,
    /// Every other pool route's own traffic, in config order; empty without
    /// `[[routes]]` or with one pool route.
    pub lanes: Vec<Lane>,
}

/// One `[[routes]]` pool route's own traffic: its active pool, the one before its last
/// switch, and its split, as [`RoutingTable`]'s fields are for the route `[routing]` steers.
#[derive(Clone)]
pub struct Lane {
    /// The route's name.
    pub route: Arc<str>,
    /// The pool its new requests go to.
    pub active: Arc<PoolRoute>,
    /// Its pool before its last switch, while it still runs.
    pub previous: Option<Arc<PoolRoute>>,
    /// Its split, as [`RoutingTable::split`]; empty when all go to `active`.
    pub split: Vec<(Arc<PoolRoute>, u32)>,
}

impl Lane {
    /// The pool a request with `ticket` goes to, as [`RoutingTable::route`].
    pub fn route(&self, ticket: u32) -> &Arc<PoolRoute> {
        by_ticket(&self.split, &self.active, ticket)
    }

    /// Where its new requests go, by pool name.
    pub fn traffic(&self) -> corral_config::Traffic {
        traffic_of(&self.active, &self.split)
    }
}

impl RoutingTable {
    /// The pool a request of the steered route with `ticket` goes to. Tickets spread
    /// evenly over `u32` (the proxy draws them from a golden-ratio sequence), so each pool
    /// of a split gets its weight's share; without a split it is `active`, whatever the
    /// ticket.
    pub fn route(&self, ticket: u32) -> &Arc<PoolRoute> {
        by_ticket(&self.split, &self.active, ticket)
    }

    /// Where new requests of the steered route go, by pool name (the weights read back
    /// from `split`).
    pub fn traffic(&self) -> corral_config::Traffic {
        traffic_of(&self.active, &self.split)
    }

    /// Where new requests of the route named `route` go (`""`: the steered route's);
    /// `None` when no lane has that name.
    pub fn traffic_of(&self, route: &str) -> Option<corral_config::Traffic> {
        if route.is_empty() || route == &*self.steered {
            return Some(self.traffic());
        }
        self.lane(route).map(Lane::traffic)
    }

    /// The lane of the route named `route`, if it is not the steered one.
    pub fn lane(&self, route: &str) -> Option<&Lane> {
        self.lanes.iter().find(|l| &*l.route == route)
    }

    /// Whether any route splits its traffic, so a request must draw a ticket.
    pub fn splits(&self) -> bool {
        !self.split.is_empty() || self.lanes.iter().any(|l| !l.split.is_empty())
    }

    /// The pool a request goes to: by `ticket` in the lane of its `[[routes]]` route
    /// (`lane`: the route's name, and the pool to take should this table not know the
    /// route yet, during a reload), else by `ticket` as in [`RoutingTable::route`]; `None`
    /// when that pool does not run.
    pub fn pick(&self, ticket: u32, lane: Option<&LaneKey>) -> Option<&Arc<PoolRoute>> {
        let Some(key) = lane else {
            return Some(self.route(ticket));
        };
        // Where the config put the route (one name compared), else by name: a table of
        // another generation, during a reload.
        let placed = match key.index.checked_sub(1) {
            None => (*key.route == *self.steered).then(|| self.route(ticket)),
            Some(i) => self
                .lanes
                .get(i)
                .filter(|l| l.route == key.route)
                .map(|l| l.route(ticket)),
        };
        if placed.is_some() {
            return placed;
        }
        if *key.route == *self.steered {
            return Some(self.route(ticket));
        }
        match self.lane(&key.route) {
            Some(lane) => Some(lane.route(ticket)),
            None => self.pool(&key.fallback),
        }
    }

    /// The route of the pool called `name`, if it runs.
    pub fn pool(&self, name: &str) -> Option<&Arc<PoolRoute>> {
        self.pools.iter().find(|p| &*p.name == name)
    }
}

/// The pool of a split that `ticket` falls to; `active` without a split.
fn by_ticket<'a>(
    split: &'a [(Arc<PoolRoute>, u32)],
    active: &'a Arc<PoolRoute>,
    ticket: u32,
) -> &'a Arc<PoolRoute> {
    let Some((_, total)) = split.last() else {
        return active;
    };
    let point = ((u64::from(ticket) * u64::from(*total)) >> 32) as u32;
    split
        .iter()
        .find(|(_, upto)| point < *upto)
        .map_or(active, |(route, _)| route)
}

/// `active` and `split` by pool name (the weights read back from the cumulative sums).
fn traffic_of(active: &PoolRoute, split: &[(Arc<PoolRoute>, u32)]) -> corral_config::Traffic {
    let mut below = 0;
    corral_config::Traffic {
        active: active.name.to_string(),
        weights: split
            .iter()
            .map(|(route, upto)| {
                let weight = upto - below;
                below = *upto;
                (route.name.to_string(), weight)
            })
            .collect(),
    }
}

/// How a request of a `[[routes]]` pool route finds its lane: made once per config.
#[derive(Debug, Clone)]
pub struct LaneKey {
    /// The route's name.
    pub route: Arc<str>,
    /// Its pool in the file, for a table published before the route existed.
    pub fallback: Arc<str>,
    /// Its place among the config's lanes (`Config::lanes`: 0 the steered route, `i` the
    /// table's `lanes[i - 1]`), so a request finds its lane without a search.
    pub index: usize,
}

/// The table shared between the supervisor (writer) and the proxy (reader).
pub type SharedRoutes = Arc<ArcSwap<RoutingTable>>;
