//! A snapshot of every pool and worker, republished on each change, for `/status` and
//! `/readyz` to read without asking the supervisor thread.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::backend::Backend;
use crate::worker::StateKind;

/// A worker as `/status` shows it.
#[derive(Clone)]
pub struct WorkerView {
    /// Slot number in the pool.
    pub worker: u32,
    /// Process id; `None` while waiting to restart.
    pub pid: Option<u32>,
    /// Where it is in its life.
    pub state: StateKind,
    /// When the worker entered this state.
    pub since: Instant,
    /// When the process started, for its age.
    pub started: Option<Instant>,
    /// The routing entry of a ready worker, whose counters give requests served.
    pub backend: Option<Arc<Backend>>,
    /// Times this slot's worker has been replaced.
    pub restarts: u64,
    /// The pool config generation the worker was started with.
    pub generation: u64,
}

/// A pool as `/status` shows it.
#[derive(Clone)]
pub struct PoolView {
    /// The pool's name.
    pub name: Arc<str>,
    /// Whether it receives traffic.
    pub active: bool,
    /// Its weight while traffic is split (a canary), `None` when it is not.
    pub weight: Option<u32>,
    /// Workers it should have.
    pub desired: u32,
    /// Its config generation (bumped by each reload).
    pub generation: u64,
    /// Why it stopped restarting workers, when it did.
    pub failed: Option<String>,
    /// Its workers in slot order.
    pub workers: Vec<WorkerView>,
}

impl PoolView {
    /// Workers that can take traffic now.
    pub fn ready(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| matches!(w.state, StateKind::Ready | StateKind::Retiring))
            .count()
    }
}

/// All pools.
#[derive(Clone, Default)]
pub struct StatusSnapshot {
    /// Pools in config order.
    pub pools: Vec<PoolView>,
    /// True once a stop has begun.
    pub stopping: bool,
    /// The config generation: 1 at start, +1 per applied reload.
    pub generation: u64,
    /// Since when traffic has gone where it goes, and why (`config`, `switch`, `rollback`,
    /// `restored`).
    pub active_since: Option<(Instant, &'static str)>,
    /// Each route's traffic, the one `[routing]` steers first; one entry named `""`
    /// without `[[routes]]`.
    pub routes: Vec<RouteView>,
}

/// A pool route's traffic as `/status` shows it.
#[derive(Clone)]
pub struct RouteView {
    /// The route's name; `""` without `[[routes]]`.
    pub route: Arc<str>,
    /// The pool its new requests go to (with weights, the heaviest).
    pub active: Arc<str>,
    /// Each pool's weight while its traffic is split; empty when it is not.
    pub weights: Vec<(Arc<str>, u32)>,
    /// Its active pool before its last switch, while that pool runs.
    pub previous: Option<Arc<str>>,
    /// Since when its traffic has gone where it goes, and why (`config`, `switch`,
    /// `rollback`, `restored`).
    pub since: Option<(Instant, &'static str)>,
}

/// The snapshot shared with the admin listener.
pub type SharedStatus = Arc<ArcSwap<StatusSnapshot>>;
