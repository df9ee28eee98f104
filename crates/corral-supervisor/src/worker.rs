//! One worker process as the policy tracks it: where it is in its life, and why it ends.

use std::sync::Arc;
use std::time::Instant;

use corral_routes::{Address, Backend};

pub use corral_routes::worker::{ExitReason, PoolId, StateKind, WorkerId};

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
    /// The request it hung on, when it was killed for `timeout`: its exit event names it
    /// with the stack the worker left on stderr.
    pub(crate) hung_on: Option<String>,
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
            && self.backend().is_some_and(|b| !b.load.is_retiring())
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
