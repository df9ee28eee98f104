//! A snapshot of every pool and worker, republished on each change, for `/status` and
//! `/readyz` to read without asking the supervisor thread.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::routes::Backend;

/// A worker as `/status` shows it.
#[derive(Clone)]
pub struct WorkerView {
    /// Slot number in the pool.
    pub worker: u32,
    /// Process id; `None` while waiting to restart.
    pub pid: Option<u32>,
    /// `starting`, `ready`, `stopping` or `waiting` (backing off before a restart).
    pub state: &'static str,
    /// When the worker entered this state.
    pub since: Instant,
    /// When the process started, for its age.
    pub started: Option<Instant>,
    /// The routing entry of a ready worker, whose counters give requests served.
    pub backend: Option<Arc<Backend>>,
    /// Times this slot's worker has been replaced.
    pub restarts: u64,
}

/// A pool as `/status` shows it.
#[derive(Clone)]
pub struct PoolView {
    /// The pool's name.
    pub name: Arc<str>,
    /// Whether it receives traffic.
    pub active: bool,
    /// Its workers in slot order.
    pub workers: Vec<WorkerView>,
}

impl PoolView {
    /// Workers that can take traffic now.
    pub fn ready(&self) -> usize {
        self.workers.iter().filter(|w| w.state == "ready").count()
    }
}

/// All pools.
#[derive(Clone, Default)]
pub struct StatusSnapshot {
    /// Pools in config order.
    pub pools: Vec<PoolView>,
    /// True once a stop has begun.
    pub stopping: bool,
}

/// The snapshot shared with the admin listener.
pub type SharedStatus = Arc<ArcSwap<StatusSnapshot>>;
