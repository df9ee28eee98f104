//! Names of workers and pools, their states as views show them, and why a worker ends:
//! the vocabulary the supervisor and the proxy share.

use std::fmt;

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
