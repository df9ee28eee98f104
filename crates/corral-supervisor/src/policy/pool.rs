//! One pool as the policy tracks it: its config, its workers, the memory of each slot, and
//! the start limit that stops a crash loop.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_config::Pool;
use corral_telemetry::{Metrics, PoolMetrics};

use crate::backoff::Backoff;
use crate::worker::{PoolId, Worker};
use corral_routes::Queue;

/// Per-slot memory that outlives each worker of the slot.
#[derive(Debug, Default)]
pub(super) struct Slot {
    pub(super) backoff: Backoff,
    pub(super) restarts: u64,
    /// A restart timer is set; the slot is not filled before it fires.
    pub(super) restart_pending: bool,
}

pub(super) struct PoolState {
    pub(super) id: PoolId,
    pub(super) config: Arc<Pool>,
    pub(super) name: Arc<str>,
    pub(super) generation: u64,
    /// Workers it should have; 0 while stopped.
    pub(super) desired: u32,
    pub(super) workers: Vec<Worker>,
    pub(super) slots: BTreeMap<u32, Slot>,
    pub(super) queue: Arc<Queue>,
    pub(super) metrics: PoolMetrics,
    /// Why the pool stopped restarting workers, if it did.
    pub(super) failed: Option<String>,
    failures: VecDeque<Instant>,
    /// How long its last few workers took from start to ready, newest last.
    startups: VecDeque<Duration>,
    /// No longer in the config: its workers drain and it goes away.
    pub(super) removed: bool,
    /// A remote pool's backends, as last resolved.
    pub(super) remote: Vec<super::remote::RemoteBackend>,
    /// The generation whose resolver the runner was asked to run.
    pub(super) resolving: Option<u64>,
}

impl PoolState {
    pub(super) fn new(id: PoolId, config: &Pool, metrics: &Metrics, generation: u64) -> Self {
        PoolState {
            id,
            name: Arc::from(config.name.as_str()),
            desired: config.workers,
            config: Arc::new(config.clone()),
            generation,
            workers: Vec::new(),
            slots: BTreeMap::new(),
            queue: Arc::new(Queue::default()),
            metrics: metrics.pool(&config.name),
            failed: None,
            failures: VecDeque::new(),
            startups: VecDeque::new(),
            removed: false,
            remote: Vec::new(),
            resolving: None,
        }
    }

    /// Records that a worker took `startup` to become ready; returns how long a replacement
    /// is to be expected to take: the longest of the last few, since starts under load
    /// take longer than the first ones on an idle machine.
    pub(super) fn started_in(&mut self, startup: Duration) -> Duration {
        const REMEMBERED: usize = 4;
        if self.startups.len() == REMEMBERED {
            self.startups.pop_front();
        }
        self.startups.push_back(startup);
        self.startups.iter().copied().max().unwrap_or(startup)
    }

    /// Whether its backends are servers named by `upstreams`, not workers corral starts.
    pub(super) fn is_remote(&self) -> bool {
        !self.config.upstreams.is_empty()
    }

    /// Whether no worker of the pool is left.
    pub(super) fn idle(&self) -> bool {
        self.workers.is_empty()
    }

    /// Records a failed start at `now`; returns true if the pool just hit its start limit and
    /// is now failed (systemd's StartLimitBurst within StartLimitIntervalSec).
    pub(super) fn count_failure(&mut self, now: Instant) -> bool {
        let window = self.config.start_limit_interval;
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            self.failures.pop_front();
        }
        if self.failures.len() < self.config.start_limit_burst as usize {
            return false;
        }
        let why = format!("{} failed starts within {:?}", self.failures.len(), window);
        tracing::error!(event = "pool_failed", pool = &*self.name, reason = %why, "pool stopped restarting workers; fix the app and reload (SIGHUP)");
        self.failed = Some(why);
        true
    }

    /// Forgets failures and backoff: a reload or a fresh start gives the pool a clean slate.
    pub(super) fn clear_failures(&mut self) {
        if let Some(why) = self.failed.take() {
            tracing::info!(event = "pool_recovering", pool = &*self.name, previous = %why, "starting workers again");
        }
        self.failures.clear();
        for slot in self.slots.values_mut() {
            slot.backoff = Backoff::default();
            slot.restart_pending = false;
        }
    }
}
