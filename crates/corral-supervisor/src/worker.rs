//! One worker process as the runner tracks it, and the small OS helpers it needs.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::routes::{Address, Backend};

/// Where a worker is in its life.
pub(crate) enum State {
    /// Spawned, not yet ready; `alive` tells the readiness probe to give up when it exits.
    Starting {
        since: Instant,
        alive: Arc<AtomicBool>,
    },
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

/// A worker process of a pool.
pub(crate) struct Worker {
    /// Unique for the life of the master; events name workers by it.
    pub(crate) id: u64,
    /// The slot it fills (the `{worker}` number).
    pub(crate) slot: u32,
    /// The pool config generation it was started with.
    pub(crate) generation: u64,
    pub(crate) pid: u32,
    pub(crate) addr: Address,
    /// `$NOTIFY_SOCKET` of a `ready = "notify"` worker, removed when it exits.
    pub(crate) notify_path: Option<std::path::PathBuf>,
    pub(crate) started: Instant,
    pub(crate) state: State,
    /// Set when the worker is to be replaced (`max_requests`, `max_memory`, `reload`); it keeps
    /// serving until its replacement is ready.
    pub(crate) retiring: Option<&'static str>,
    /// Why we are ending it, once we are; its exit is then no crash.
    pub(crate) ending: Option<&'static str>,
}

impl Worker {
    /// Name of the state for `/status` and metrics.
    pub(crate) fn state_name(&self) -> &'static str {
        match (&self.state, self.retiring) {
            (State::Starting { .. }, _) => "starting",
            (State::Ready { .. }, None) => "ready",
            (State::Ready { .. }, Some(_)) => "retiring",
            (State::Draining { .. }, _) => "draining",
            (State::Stopping { .. }, _) => "stopping",
        }
    }

    /// When it entered its state.
    pub(crate) fn since(&self) -> Instant {
        match &self.state {
            State::Starting { since, .. }
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

    /// Whether it fills its slot for the future: starting, or ready and not being replaced.
    pub(crate) fn covers_slot(&self) -> bool {
        match self.state {
            State::Starting { .. } => self.ending.is_none(),
            State::Ready { .. } => self.retiring.is_none(),
            _ => false,
        }
    }

    /// Stops the readiness probe of a starting worker.
    pub(crate) fn stop_probe(&self) {
        if let State::Starting { alive, .. } = &self.state {
            alive.store(false, Ordering::Release);
        }
    }
}

/// Signals a worker's whole process group; a group that is already gone is not an error.
pub(crate) fn signal_group(pid: u32, signal: Signal) {
    if pid > 1 {
        let _ = killpg(Pid::from_raw(pid as i32), signal);
    }
}

/// Name of a signal number, for logs.
pub(crate) fn signal_name(signal: i32) -> &'static str {
    Signal::try_from(signal)
        .map(|s| s.as_str())
        .unwrap_or("unknown")
}

/// Resident set size of a process in bytes, from /proc; `None` if it is gone.
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A random number in `0..=max`, for `max_requests_jitter`.
pub(crate) fn jitter(max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    let mut h = RandomState::new().build_hasher();
    h.write_u64(max);
    h.finish() % (max + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range() {
        assert_eq!(jitter(0), 0);
        assert!((0..100).map(|_| jitter(10)).all(|j| j <= 10));
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(rss_bytes(std::process::id()).is_some_and(|b| b > 0));
    }
}
