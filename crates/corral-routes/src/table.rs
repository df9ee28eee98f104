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
}

impl RoutingTable {
    /// The pool a request with `ticket` goes to. Tickets spread evenly over `u32` (the
    /// proxy draws them from a golden-ratio sequence), so each pool of a split gets its weight's share; without a split
    /// it is `active`, whatever the ticket.
    pub fn route(&self, ticket: u32) -> &Arc<PoolRoute> {
        let Some((_, total)) = self.split.last() else {
            return &self.active;
        };
        let point = ((u64::from(ticket) * u64::from(*total)) >> 32) as u32;
        self.split
            .iter()
            .find(|(_, upto)| point < *upto)
            .map_or(&self.active, |(route, _)| route)
    }

    /// Where new requests go, by pool name (the weights read back from `split`).
    pub fn traffic(&self) -> corral_config::Traffic {
        let mut below = 0;
        corral_config::Traffic {
            active: self.active.name.to_string(),
            weights: self
                .split
                .iter()
                .map(|(route, upto)| {
                    let weight = upto - below;
                    below = *upto;
                    (route.name.to_string(), weight)
                })
                .collect(),
        }
    }

    /// The pool a request goes to: `pinned` (a `[[routes]]` route's own pool) when given,
    /// else by `ticket` as in [`RoutingTable::route`]; `None` when the pinned pool does
    /// not run.
    pub fn pick(&self, ticket: u32, pinned: Option<&str>) -> Option<&Arc<PoolRoute>> {
        match pinned {
            None => Some(self.route(ticket)),
            Some(name) => self.pool(name),
        }
    }

    /// The route of the pool called `name`, if it runs.
    pub fn pool(&self, name: &str) -> Option<&Arc<PoolRoute>> {
        self.pools.iter().find(|p| &*p.name == name)
    }
}

/// The table shared between the supervisor (writer) and the proxy (reader).
pub type SharedRoutes = Arc<ArcSwap<RoutingTable>>;
