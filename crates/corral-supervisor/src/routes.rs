//! What the proxy may send requests to: the ready workers of each pool, published by the
//! supervisor as one immutable table behind an `ArcSwap` (a request reads one `load`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use corral_telemetry::PoolMetrics;

/// A ready worker as the proxy sees it. Shared between table generations, so its counters
/// survive every republish of the table.
#[derive(Debug)]
pub struct Backend {
    /// Name of the pool the worker belongs to.
    pub pool: Arc<str>,
    /// The worker's slot number in its pool (the `{worker}` placeholder).
    pub worker: u32,
    /// The worker's process id.
    pub pid: u32,
    /// Where the worker listens.
    pub addr: SocketAddr,
    /// Requests the proxy has sent and not yet finished; drives least-outstanding choice.
    pub in_flight: AtomicU32,
    /// Requests finished by this worker.
    pub served: AtomicU64,
    /// When the worker process started.
    pub started: Instant,
}

impl Backend {
    /// A fresh backend with zero counters.
    pub fn new(pool: Arc<str>, worker: u32, pid: u32, addr: SocketAddr, started: Instant) -> Self {
        Backend {
            pool,
            worker,
            pid,
            addr,
            in_flight: AtomicU32::new(0),
            served: AtomicU64::new(0),
            started,
        }
    }

    /// Requests in flight right now.
    pub fn load(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// The ready workers of one pool.
#[derive(Clone)]
pub struct PoolRoute {
    /// The pool's name.
    pub name: Arc<str>,
    /// Ready workers, in slot order.
    pub backends: Vec<Arc<Backend>>,
    /// The pool's metric handles, resolved once.
    pub metrics: PoolMetrics,
}

/// Everything the proxy needs to route one request.
#[derive(Clone)]
pub struct RoutingTable {
    /// The pool that receives traffic.
    pub active: PoolRoute,
}

/// The table shared between the supervisor (writer) and the proxy (reader).
pub type SharedRoutes = Arc<ArcSwap<RoutingTable>>;
