//! The supervisor's decisions, as a pure function: [`Policy::on_event`] takes one [`Event`]
//! and the time it happened and returns the [`Action`]s to take. It touches no process, file,
//! socket or clock; the runner performs the actions and turns what happens into events.
//! It logs its decisions and updates in-memory counters, nothing else.
//!
//! Rules, in one place:
//! - Every slot `1..=desired` of a pool is *covered* by a worker that is starting, or ready
//!   and not retiring; [`Policy::ensure_slots`] spawns where one is missing.
//! - A worker to be replaced (`max_requests`, `max_memory`, `reload`) is marked retiring and
//!   keeps serving; its slot is then uncovered, so a replacement starts. When a worker of the
//!   pool's current generation turns ready, every other ready worker of its slot drains:
//!   it leaves the routing table, finishes its requests in flight (up to
//!   `graceful_timeout`), gets SIGTERM, and SIGKILL after `kill_timeout`.
//! - A crash restarts with [`Backoff`](crate::backoff::Backoff); too many failed starts
//!   within the start limit mark the pool failed until the next reload.
//! - A hung sync worker gets SIGABRT (SIGKILL after `kill_timeout`) and a replacement at once.
//! - Pools and workers are named by ids that are never reused, so an event or a timer that
//!   outlives its pool or worker finds nothing and does nothing.

mod control;
mod exit;
mod lanes;
mod lifecycle;
mod pool;
mod remote;
mod snapshot;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_config::{Config, Pool, Traffic};
use corral_telemetry::Metrics;
use nix::sys::signal::Signal;

use crate::worker::{ExitReason, PoolId, WorkerId};
use crate::{Scale, StopMode};
use corral_routes::{Address, Backend};
use pool::PoolState;

/// Something that happened, as the runner saw it.
#[derive(Debug)]
pub(crate) enum Event {
    /// The supervisor begins: start every pool.
    Start,
    /// The runner started the process of [`Action::Spawn`].
    Spawned {
        worker: WorkerId,
        pid: u32,
        addr: Address,
    },
    /// The process of [`Action::Spawn`] could not be started.
    SpawnFailed { worker: WorkerId, error: String },
    /// The worker passed its readiness check.
    Ready(WorkerId),
    /// The worker was not ready within `start_timeout`; `why` is the last probe's answer.
    StartTimeout { worker: WorkerId, why: String },
    /// The worker's process exited and was reaped.
    Exited {
        worker: WorkerId,
        exit: Exit,
        ran: Duration,
        stderr: Vec<String>,
    },
    /// A draining worker has no request in flight left, or its time is up.
    Drained(WorkerId),
    /// A timer of [`Action::After`] fired.
    Timer(Timer),
    /// Resident memory of the workers [`Policy::memory_watch`] listed, in bytes.
    Memory(Vec<(WorkerId, u64)>),
    /// The worker nears `max_requests`: start its replacement now, so it is ready in time.
    StartReplacement(WorkerId),
    /// The proxy counted the worker's last request (`max_requests`).
    Retire {
        worker: WorkerId,
        reason: ExitReason,
    },
    /// A remote pool's upstream names resolved (for its `generation`), in `upstreams` order.
    Resolved {
        pool: PoolId,
        generation: u64,
        addrs: remote::Resolution,
    },
    /// The worker failed its pool's `unhealthy` active checks in a row.
    Unhealthy(WorkerId),
    /// The proxy saw a sync worker hang on `request`.
    Hung { worker: WorkerId, request: String },
    /// A new, valid config: replace every worker, rolling.
    Reload(Box<Config>),
    /// Change a pool's worker count (the active pool's when `None`).
    Scale { pool: Option<String>, to: Scale },
    /// Start the workers of a pool that is not running.
    StartPool(String),
    /// Drain and stop every worker of a pool that is not active.
    StopPool(String),
    /// Send new requests of one route (`""`: the one `[routing]` steers) elsewhere
    /// (another pool, or a split by weight), starting the pools that get a share first if
    /// needed; `why` is `switch` or `rollback`.
    Switch {
        route: String,
        to: Traffic,
        why: &'static str,
    },
    /// Stop every worker.
    Stop(StopMode),
}

/// How a worker process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(&'static str),
    /// Waiting for it failed.
    Error(String),
}

/// What a timer brings back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// A slot's backoff is over: start its worker.
    RestartDue { pool: PoolId, slot: u32 },
    /// The worker had `kill_timeout` to exit after its signal.
    KillDeadline(WorkerId),
    /// Every worker had its `kill_timeout` to stop.
    StopDeadline,
    /// A worker replaced ahead of `max_requests` had time enough to reach its limit since
    /// its replacement turned ready (the load may have stopped): it hands over now.
    HandOver(WorkerId),
}

/// What the runner must do.
#[derive(Debug)]
pub(crate) enum Action {
    /// Start a worker process and report [`Event::Spawned`] or [`Event::SpawnFailed`] at once.
    Spawn(Box<SpawnOrder>),
    /// Send `signal` to the process group of `pid`.
    Signal { pid: u32, signal: Signal },
    /// Report [`Event::Timer`] after `delay`.
    After { delay: Duration, timer: Timer },
    /// Report [`Event::Drained`] once `backend` has nothing in flight, or after `within`;
    /// then its open tunnels are closed, saying `why`.
    WatchDrain {
        worker: WorkerId,
        backend: Arc<Backend>,
        within: Duration,
        why: ExitReason,
    },
    /// Check `backend` every `health.interval` while it is in the routing table, and
    /// report [`Event::Unhealthy`] when it turns unhealthy.
    WatchHealth {
        worker: WorkerId,
        backend: Arc<Backend>,
        health: corral_config::Health,
        path: String,
        counters: corral_telemetry::health::PoolHealth,
    },
    /// Resolve a remote pool's `upstreams` now and every `every`, reporting
    /// [`Event::Resolved`] for `generation`; replaces the pool's resolver if it has one.
    Resolve {
        pool: PoolId,
        generation: u64,
        upstreams: Vec<corral_config::Upstream>,
        every: Duration,
    },
    /// A pool is gone: release what the runner holds for it (its slots' sockets, its
    /// resolver).
    ForgetPool(PoolId),
    /// Republish the routing table and the status snapshot.
    Publish,
    /// Every worker has stopped after [`Event::Stop`]: the supervisor is done.
    Finished,
}

/// What starting one worker takes.
#[derive(Debug)]
pub(crate) struct SpawnOrder {
    pub(crate) worker: WorkerId,
    pub(crate) pool: PoolId,
    pub(crate) slot: u32,
    pub(crate) config: Arc<Pool>,
    pub(crate) runtime_dir: PathBuf,
}

/// The supervisor's whole state, changed only by [`Policy::on_event`].
pub(crate) struct Policy {
    /// In config order; found by [`PoolId`], never by position.
    pools: Vec<PoolState>,
    next_pool: u32,
    next_worker: u64,
    /// Where new requests go, route by route: the lane `[routing]` steers first.
    lanes: Vec<lanes::LaneState>,
    generation: u64,
    graceful_timeout: Duration,
    runtime_dir: PathBuf,
    metrics: Arc<Metrics>,
    stopping: Option<StopMode>,
    finished: bool,
    /// State of the jitter generator (xorshift), seeded by the runner.
    rng: u64,
    actions: Vec<Action>,
}

impl Policy {
    /// A policy for `config`; nothing runs until [`Event::Start`]. `seed` makes the
    /// `max_requests_jitter` draws (any value but 0). `restored` holds the switches made at
    /// run time before a restart, by route, which stand instead of the file's traffic.
    pub(crate) fn new(
        config: &Config,
        restored: &[(String, Traffic)],
        metrics: Arc<Metrics>,
        seed: u64,
    ) -> Policy {
        let mut policy = Policy {
            pools: Vec::new(),
            next_pool: 0,
            next_worker: 1,
            lanes: Vec::new(),
            generation: 1,
            graceful_timeout: config.server.graceful_timeout,
            runtime_dir: config.server.runtime_dir.clone(),
            metrics,
            stopping: None,
            finished: false,
            rng: seed | 1,
            actions: Vec::new(),
        };
        for pool in &config.pools {
            policy.add_pool(pool, 1);
        }
        policy.lanes = policy.lanes_of(config, restored);
        policy
    }

    /// Applies one event and returns what to do about it, in order.
    pub(crate) fn on_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::Start => {
                for lane in &mut self.lanes {
                    lane.since = Some((now, if lane.restored { "restored" } else { "config" }));
                }
                for id in self.pool_ids() {
                    self.ensure_slots(id, now);
                }
            }
            Event::Spawned { worker, pid, addr } => self.on_spawned(worker, pid, addr),
            Event::SpawnFailed { worker, error } => self.on_spawn_failed(worker, error, now),
            Event::Ready(worker) => self.on_ready(worker, now),
            Event::StartTimeout { worker, why } => self.on_start_timeout(worker, &why),
            Event::Exited {
                worker,
                exit,
                ran,
                stderr,
            } => self.on_exit(worker, &exit, ran, &stderr, now),
            Event::Drained(worker) => self.on_drained(worker, now),
            Event::Timer(timer) => self.on_timer(timer, now),
            Event::Memory(samples) => self.on_memory(&samples, now),
            Event::Retire { worker, reason } => self.retire(worker, reason, now),
            Event::StartReplacement(worker) => self.replace_ahead(worker, now),
            Event::Resolved {
                pool,
                generation,
                addrs,
            } => self.on_resolved(pool, generation, addrs, now),
            Event::Unhealthy(worker) => self.retire(worker, ExitReason::Unhealthy, now),
            Event::Hung { worker, request } => self.on_hung(worker, &request, now),
            Event::Reload(config) => self.reload(&config, now),
            Event::Scale { pool, to } => self.scale(pool.as_deref(), to, now),
            Event::StartPool(name) => self.start_pool(&name, now),
            Event::StopPool(name) => self.stop_pool(&name, now),
            Event::Switch { route, to, why } => match self.lane_index(&route) {
                Some(index) => self.switch_lane(index, &to, why, now),
                None => tracing::warn!(route, "switch: no such route"),
            },
            Event::Stop(mode) => self.begin_stop(mode, now),
        }
        self.forget_removed_pools();
        if self.stopping.is_some() && !self.finished && self.pools.iter().all(|p| p.idle()) {
            self.finished = true;
            tracing::info!("all workers stopped");
            self.actions.push(Action::Finished);
        }
        self.actions.push(Action::Publish);
        std::mem::take(&mut self.actions)
    }

    /// The ready workers whose memory is limited, with their pids, for the runner to measure.
    pub(crate) fn memory_watch(&self) -> Vec<(WorkerId, u32)> {
        self.pools
            .iter()
            .filter(|p| p.config.max_memory.is_some())
            .flat_map(|p| p.workers.iter())
            .filter(|w| w.routable() && w.retiring.is_none() && w.pid > 0)
            .map(|w| (w.id, w.pid))
            .collect()
    }

    /// Whether pool `name` runs workers (a stopped blue/green pool does not): its app
    /// template is kept only while it does.
    pub(crate) fn runs_workers(&self, name: &str) -> bool {
        self.pool_named(name)
            .and_then(|id| self.pools.iter().find(|p| p.id == id))
            .is_some_and(|p| p.desired > 0)
    }

    fn pool_ids(&self) -> Vec<PoolId> {
        self.pools.iter().map(|p| p.id).collect()
    }

    fn pool_named(&self, name: &str) -> Option<PoolId> {
        self.pools
            .iter()
            .find(|p| p.config.name == name && !p.removed)
            .map(|p| p.id)
    }

    fn pool_mut(&mut self, id: PoolId) -> Option<&mut PoolState> {
        self.pools.iter_mut().find(|p| p.id == id)
    }

    fn add_pool(&mut self, config: &Pool, generation: u64) -> PoolId {
        let id = PoolId(self.next_pool);
        self.next_pool += 1;
        self.pools
            .push(PoolState::new(id, config, &self.metrics, generation));
        id
    }

    /// The pool and the index of worker `id` in it.
    fn find(&self, id: WorkerId) -> Option<(usize, usize)> {
        self.pools
            .iter()
            .enumerate()
            .find_map(|(p, pool)| pool.workers.iter().position(|w| w.id == id).map(|i| (p, i)))
    }

    fn signal(&mut self, pid: u32, signal: Signal) {
        if pid > 0 {
            self.actions.push(Action::Signal { pid, signal });
        }
    }

    fn after(&mut self, delay: Duration, timer: Timer) {
        self.actions.push(Action::After { delay, timer });
    }

    /// A number in `0..=max` for `max_requests_jitter` (xorshift64; spread, not secrecy).
    fn jitter(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % (max + 1)
    }

    /// Removed pools whose last worker is gone leave for good.
    fn forget_removed_pools(&mut self) {
        let gone: Vec<PoolId> = self
            .pools
            .iter()
            .filter(|p| p.removed && p.workers.is_empty())
            .map(|p| p.id)
            .collect();
        for id in gone {
            self.pools.retain(|p| p.id != id);
            for lane in &mut self.lanes {
                if lane.previous == Some(id) {
                    lane.previous = None;
                }
            }
            self.actions.push(Action::ForgetPool(id));
        }
    }
}
