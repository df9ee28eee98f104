//! One worker process as the policy tracks it: where it is in its life, and why it ends.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::routes::{Address, Backend};

/// Names a worker process for the life of the master; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub u64);

/// Names a pool for the life of the master, whatever reloads add or remove; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolId(pub u32);

/// Why a worker ended, or is being replaced: the `reason` of log lines and of
/// `corral_worker_restarts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitReason {
    /// It exited without being asked to.
    Crash,
    /// It was not ready within `start_timeout`.
    StartTimeout,
    /// Its process could not be started at all.
    SpawnFailed,
    /// It hung on a request past `timeout` (a sync worker).
    Timeout,
    /// It served `max_requests` (plus its jitter).
    MaxRequests,
    /// Its resident memory passed `max_memory`.
    MaxMemory,
    /// It failed `unhealthy` active health checks in a row.
    Unhealthy,
    /// A reload replaced it with a worker of the new config.
    Reload,
    /// Its slot went away (scale down, pool removed or stopped).
    Scale,
    /// The master is stopping.
    Shutdown,
}

impl ExitReason {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Crash => "crash",
            ExitReason::StartTimeout => "start_timeout",
            ExitReason::SpawnFailed => "spawn_failed",
            ExitReason::Timeout => "timeout",
            ExitReason::MaxRequests => "max_requests",
            ExitReason::MaxMemory => "max_memory",
            ExitReason::Unhealthy => "unhealthy",
            ExitReason::Reload => "reload",
            ExitReason::Scale => "scale",
            ExitReason::Shutdown => "shutdown",
        }
    }

    /// Whether the exit counts against the pool's backoff and start limit: the worker
    /// failed, rather than being ended on purpose.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            ExitReason::Crash | ExitReason::StartTimeout | ExitReason::SpawnFailed
        )
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a worker is in its life, with when it got there.
#[derive(Debug)]
pub(crate) enum State {
    /// Spawned, not yet ready.
    Starting { since: Instant },
    /// Taking traffic.
    Ready {
        since: Instant,
        backend: Arc<Backend>,
    },
    /// Out of the routing table, finishing its requests in flight.
    Draining {
        since: Instant,
        backend: Arc<Backend>,
    },
    /// Signalled to exit; waiting for it.
    Stopping { since: Instant },
}

impl State {
    /// The state's name in `/status` and the `corral_workers` gauge.
    pub(crate) fn kind(&self) -> StateKind {
        match self {
            State::Starting { .. } => StateKind::Starting,
            State::Ready { .. } => StateKind::Ready,
            State::Draining { .. } => StateKind::Draining,
            State::Stopping { .. } => StateKind::Stopping,
        }
    }
}

/// A worker state without its data, for views and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// Spawned, not ready yet.
    Starting,
    /// Taking traffic.
    Ready,
    /// Taking traffic while its replacement starts.
    Retiring,
    /// Finishing its requests in flight, out of the routing table.
    Draining,
    /// Signalled to exit.
    Stopping,
}

impl StateKind {
    /// The name `/status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Starting => "starting",
            StateKind::Ready => "ready",
            StateKind::Retiring => "retiring",
            StateKind::Draining => "draining",
            StateKind::Stopping => "stopping",
        }
    }
}

/// A worker process of a pool.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) id: WorkerId,
    /// The slot it fills (the `{worker}` number).
    pub(crate) slot: u32,
    /// The pool config generation it was started with.
    pub(crate) generation: u64,
    /// 0 until the runner reports the process started.
    pub(crate) pid: u32,
    /// Where it listens, once started.
    pub(crate) addr: Option<Address>,
    pub(crate) started: Instant,
    pub(crate) state: State,
    /// Set when the worker is to be replaced; it keeps serving until its replacement is ready.
    pub(crate) retiring: Option<ExitReason>,
    /// Why we are ending it, once we are; its exit is then no crash.
    pub(crate) ending: Option<ExitReason>,
}

impl Worker {
    /// The state as `/status` shows it (a ready worker being replaced is `retiring`).
    pub(crate) fn state_kind(&self) -> StateKind {
        match (self.state.kind(), self.retiring) {
            (StateKind::Ready, Some(_)) => StateKind::Retiring,
            (kind, _) => kind,
        }
    }

    /// When it entered its state.
    pub(crate) fn since(&self) -> Instant {
        match &self.state {
            State::Starting { since }
            | State::Ready { since, .. }
            | State::Draining { since, .. }
            | State::Stopping { since } => *since,
        }
    }

    /// The routing entry, while it has one.
    pub(crate) fn backend(&self) -> Option<&Arc<Backend>> {
        match &self.state {
            State::Ready { backend, .. } | State::Draining { backend, .. } => Some(backend),
            _ => None,
        }
    }

    /// Whether it is in the routing table.
    pub(crate) fn routable(&self) -> bool {
        matches!(self.state, State::Ready { .. })
    }

    /// Whether its replacement was started ahead of `max_requests` and it has not reached
    /// the limit yet (the proxy marks the backend retiring at the limit).
    pub(crate) fn replaced_ahead(&self) -> bool {
        self.retiring == Some(ExitReason::MaxRequests)
            && self.backend().is_some_and(|b| !b.is_retiring())
    }

    /// Whether it fills its slot for the future: starting, or ready and not being replaced.
    pub(crate) fn covers_slot(&self) -> bool {
        match self.state {
            State::Starting { .. } => self.ending.is_none(),
            State::Ready { .. } => self.retiring.is_none(),
            _ => false,
        }
    }
}
