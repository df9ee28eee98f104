//! The supervisor's event loop: the only code that changes worker state.
//!
//! Rules, in one place:
//! - Every slot `1..=desired` of a pool is *covered* by a worker that is starting, or ready
//!   and not retiring; [`Runner::ensure_slots`] spawns where one is missing.
//! - A worker to be replaced (`max_requests`, `max_memory`, `reload`) is marked retiring and
//!   keeps serving; its slot is then uncovered, so a replacement starts. When a worker of the
//!   pool's current generation turns ready, every other ready worker of its slot drains:
//!   it leaves the routing table, finishes its requests in flight (up to
//!   `graceful_timeout`), gets SIGTERM, and SIGKILL after `kill_timeout`.
//! - A crash restarts with [`Backoff`]; too many failed starts within the start limit
//!   mark the pool failed until the next reload.
//! - A hung sync worker gets SIGABRT (SIGKILL after `kill_timeout`) and a replacement at once.

mod publish;
mod start;

use std::collections::{BTreeMap, VecDeque};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_config::{Config, Pool};
use corral_telemetry::{Metrics, PoolMetrics};
use nix::sys::signal::Signal;
use tokio::sync::mpsc;

use crate::backoff::{Backoff, HEALTHY_RUN};
use crate::routes::{Backend, Queue, Report, SharedRoutes};
use crate::sockets;
use crate::status::SharedStatus;
use crate::worker::{jitter, rss_bytes, signal_group, signal_name, State, Worker};
use crate::{Control, Scale, StopMode};

/// How long an exited worker's output pumps may take to drain before the exit is reported.
const OUTPUT_DRAIN: Duration = Duration::from_millis(300);
/// How often memory limits are checked.
const TICK: Duration = Duration::from_secs(1);
/// How often a draining worker's requests in flight are checked.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Exit reasons that count as failures for backoff and the start limit.
const FAILURES: [&str; 3] = ["crash", "start_timeout", "spawn_failed"];

/// What the per-worker tasks and timers report.
enum Event {
    Ready(u64),
    StartTimeout(u64, String),
    Exited {
        id: u64,
        status: std::io::Result<ExitStatus>,
        ran: Duration,
        stderr: Vec<String>,
    },
    RestartDue {
        pool: usize,
        slot: u32,
    },
    Drained(u64),
    KillDeadline(u64),
    StopDeadline,
    Tick,
}

/// Per-slot memory that outlives each worker of the slot.
#[derive(Default)]
struct Slot {
    backoff: Backoff,
    restarts: u64,
    restart_pending: bool,
    /// With `bind = "fd"`: the socket every worker of the slot accepts on.
    listener: Option<TcpListener>,
}

struct PoolState {
    config: Pool,
    name: Arc<str>,
    generation: u64,
    desired: u32,
    workers: Vec<Worker>,
    slots: BTreeMap<u32, Slot>,
    queue: Arc<Queue>,
    metrics: PoolMetrics,
    /// Why the pool stopped restarting workers, if it did.
    failed: Option<String>,
    failures: VecDeque<Instant>,
    /// No longer in the config: its workers drain and it goes away.
    removed: bool,
}

impl PoolState {
    fn new(config: &Pool, metrics: &Metrics, generation: u64) -> Self {
        PoolState {
            name: Arc::from(config.name.as_str()),
            desired: config.workers,
            config: config.clone(),
            generation,
            workers: Vec::new(),
            slots: BTreeMap::new(),
            queue: Arc::new(Queue::default()),
            metrics: metrics.pool(&config.name),
            failed: None,
            failures: VecDeque::new(),
            removed: false,
        }
    }
}

pub(crate) struct Runner {
    pools: Vec<PoolState>,
    active: String,
    generation: u64,
    next_id: u64,
    graceful_timeout: Duration,
    runtime_dir: std::path::PathBuf,
    metrics: Arc<Metrics>,
    routes: SharedRoutes,
    status: SharedStatus,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    stopping: Option<(StopMode, std::sync::mpsc::Sender<()>)>,
}

impl Runner {
    pub(crate) fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        routes: SharedRoutes,
        status: SharedStatus,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Runner {
            pools: config
                .pools
                .iter()
                .map(|p| PoolState::new(p, &metrics, 1))
                .collect(),
            active: config.routing.active.clone(),
            generation: 1,
            next_id: 1,
            graceful_timeout: config.server.graceful_timeout,
            runtime_dir: config.server.runtime_dir.clone(),
            metrics,
            routes,
            status,
            events_tx,
            events_rx,
            stopping: None,
        }
    }

    pub(crate) async fn run(
        mut self,
        mut control: mpsc::UnboundedReceiver<Control>,
        mut reports: mpsc::UnboundedReceiver<Report>,
    ) {
        for pool in 0..self.pools.len() {
            self.ensure_slots(pool);
        }
        self.publish();
        let ticker = self.events_tx.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            loop {
                interval.tick().await;
                if ticker.send(Event::Tick).is_err() {
                    return;
                }
            }
        });
        loop {
            tokio::select! {
                Some(event) = self.events_rx.recv() => self.on_event(event),
                Some(report) = reports.recv() => self.on_report(report),
                message = control.recv() => match message {
                    Some(Control::Stop(mode, done)) => self.begin_stop(mode, done),
                    Some(Control::Reload(config)) => self.reload(&config),
                    Some(Control::Scale { pool, to }) => self.scale(pool.as_deref(), to),
                    None => self.begin_stop(StopMode::Quick, std::sync::mpsc::channel().0),
                },
            }
            if self.stopping.is_some() && self.pools.iter().all(|p| p.workers.is_empty()) {
                if let Some((_, done)) = self.stopping.take() {
                    tracing::info!("all workers stopped");
                    let _ = done.send(());
                }
                return;
            }
        }
    }

    fn find(&mut self, id: u64) -> Option<(usize, usize)> {
        self.pools
            .iter()
            .enumerate()
            .find_map(|(p, pool)| pool.workers.iter().position(|w| w.id == id).map(|i| (p, i)))
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Ready(id) => self.on_ready(id),
            Event::StartTimeout(id, why) => self.on_start_timeout(id, why),
            Event::Exited {
                id,
                status,
                ran,
                stderr,
            } => self.on_exit(id, status, ran, stderr),
            Event::RestartDue { pool, slot } => {
                if let Some(s) = self
                    .pools
                    .get_mut(pool)
                    .and_then(|p| p.slots.get_mut(&slot))
                {
                    s.restart_pending = false;
                }
                self.ensure_slots(pool);
                self.publish();
            }
            Event::Drained(id) => self.on_drained(id),
            Event::KillDeadline(id) => {
                if let Some((p, i)) = self.find(id) {
                    let w = &self.pools[p].workers[i];
                    tracing::warn!(
                        event = "worker_kill",
                        pool = &*self.pools[p].name,
                        worker = w.slot,
                        pid = w.pid,
                        "worker still running after kill_timeout; sending SIGKILL"
                    );
                    signal_group(w.pid, Signal::SIGKILL);
                }
            }
            Event::StopDeadline => {
                let ids: Vec<u64> = self
                    .pools
                    .iter()
                    .flat_map(|p| p.workers.iter().map(|w| w.id))
                    .collect();
                for id in ids {
                    self.on_event(Event::KillDeadline(id));
                }
            }
            Event::Tick => self.check_memory(),
        }
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::Retire { worker, reason } => self.retire(worker, reason),
            Report::Hung { worker, request } => self.on_hung(worker, &request),
        }
    }

    fn on_ready(&mut self, id: u64) {
        let Some((p, i)) = self.find(id) else { return };
        let pool = &mut self.pools[p];
        let w = &mut pool.workers[i];
        let State::Starting { since, .. } = w.state else {
            return;
        };
        let max_requests = match pool.config.max_requests {
            0 => 0,
            n => n + jitter(pool.config.max_requests_jitter),
        };
        let backend = Arc::new(Backend {
            id,
            pool: pool.name.clone(),
            worker: w.slot,
            pid: w.pid,
            addr: w.addr.clone(),
            proxy_data: Default::default(),
            in_flight: Default::default(),
            served: Default::default(),
            max_requests,
            retiring: Default::default(),
            started: since,
        });
        w.state = State::Ready {
            since: Instant::now(),
            backend,
        };
        let (slot, generation) = (w.slot, w.generation);
        tracing::info!(
            event = "worker_ready",
            pool = &*pool.name,
            worker = slot,
            pid = w.pid,
            startup_ms = since.elapsed().as_millis() as u64,
            "worker ready"
        );
        if let Some(s) = pool.slots.get_mut(&slot) {
            s.backoff = Backoff::default();
        }
        // A current worker is ready: whatever else serves this slot hands over to it.
        if generation == pool.generation {
            let others: Vec<u64> = pool
                .workers
                .iter()
                .filter(|o| o.slot == slot && o.id != id && o.routable())
                .map(|o| o.id)
                .collect();
            for other in others {
                self.begin_drain(p, other, None);
            }
        }
        self.publish();
    }

    fn on_start_timeout(&mut self, id: u64, why: String) {
        let Some((p, i)) = self.find(id) else { return };
        let pool = &mut self.pools[p];
        let w = &mut pool.workers[i];
        if !matches!(w.state, State::Starting { .. }) {
            return;
        }
        tracing::warn!(event = "worker_start_timeout", pool = &*pool.name, worker = w.slot, pid = w.pid, last_probe = %why, "worker not ready within start_timeout ({:?}); killing it", pool.config.start_timeout);
        w.ending = Some("start_timeout");
        signal_group(w.pid, Signal::SIGKILL);
    }

    fn on_hung(&mut self, id: u64, request: &str) {
        let Some((p, i)) = self.find(id) else { return };
        let pool = &mut self.pools[p];
        let kill_timeout = pool.config.kill_timeout;
        let w = &mut pool.workers[i];
        if !w.routable() || w.ending.is_some() {
            return;
        }
        tracing::error!(
            event = "worker_timeout",
            pool = &*pool.name,
            worker = w.slot,
            pid = w.pid,
            request,
            timeout_ms = pool.config.timeout.as_millis() as u64,
            "worker hung on a request; sending SIGABRT"
        );
        w.ending = Some("timeout");
        w.state = State::Stopping {
            since: Instant::now(),
        };
        signal_group(w.pid, Signal::SIGABRT);
        self.after(kill_timeout, Event::KillDeadline(id));
        self.ensure_slots(p);
        self.publish();
    }

    fn retire(&mut self, id: u64, reason: &'static str) {
        let Some((p, i)) = self.find(id) else { return };
        let pool = &mut self.pools[p];
        let w = &mut pool.workers[i];
        if !w.routable() || w.retiring.is_some() {
            return;
        }
        let served = w.backend().map_or(0, |b| b.served.load(Ordering::Relaxed));
        tracing::info!(
            event = "worker_retiring",
            reason,
            pool = &*pool.name,
            worker = w.slot,
            pid = w.pid,
            served,
            "replacing worker"
        );
        w.retiring = Some(reason);
        if let Some(b) = w.backend() {
            b.retiring.store(true, Ordering::Relaxed);
        }
        self.ensure_slots(p);
        self.publish();
    }

    fn check_memory(&mut self) {
        let mut over = Vec::new();
        for pool in &self.pools {
            let Some(limit) = pool.config.max_memory else {
                continue;
            };
            for w in pool
                .workers
                .iter()
                .filter(|w| w.routable() && w.retiring.is_none())
            {
                if let Some(rss) = rss_bytes(w.pid).filter(|rss| *rss > limit) {
                    tracing::warn!(
                        event = "worker_over_memory",
                        pool = &*pool.name,
                        worker = w.slot,
                        pid = w.pid,
                        rss,
                        limit,
                        "worker over max_memory"
                    );
                    over.push(w.id);
                }
            }
        }
        for id in over {
            self.retire(id, "max_memory");
        }
    }

    /// Takes a ready worker out of the routing table and stops it once its requests finish.
    fn begin_drain(&mut self, p: usize, id: u64, reason: Option<&'static str>) {
        let graceful = self.graceful_timeout;
        let Some(i) = self.pools[p].workers.iter().position(|w| w.id == id) else {
            return;
        };
        let w = &mut self.pools[p].workers[i];
        let State::Ready { backend, .. } = &w.state else {
            return;
        };
        let backend = backend.clone();
        w.ending = reason.or(w.retiring).or(Some("reload"));
        w.state = State::Draining {
            since: Instant::now(),
            backend: backend.clone(),
        };
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + graceful;
            while backend.load() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(DRAIN_POLL).await;
            }
            let _ = tx.send(Event::Drained(id));
        });
    }

    fn on_drained(&mut self, id: u64) {
        let Some((p, i)) = self.find(id) else { return };
        let kill_timeout = self.pools[p].config.kill_timeout;
        let w = &mut self.pools[p].workers[i];
        if !matches!(w.state, State::Draining { .. }) {
            return;
        }
        signal_group(w.pid, Signal::SIGTERM);
        w.state = State::Stopping {
            since: Instant::now(),
        };
        self.after(kill_timeout, Event::KillDeadline(id));
        self.publish();
    }

    fn on_exit(
        &mut self,
        id: u64,
        status: std::io::Result<ExitStatus>,
        ran: Duration,
        stderr: Vec<String>,
    ) {
        let stopping = self.stopping.is_some();
        let Some((p, i)) = self.find(id) else { return };
        let pool = &mut self.pools[p];
        let w = pool.workers.remove(i);
        w.stop_probe();
        sockets::cleanup(&w.addr, w.notify_path.as_deref());
        // The worker is reaped; anything it left in its process group goes too.
        signal_group(w.pid, Signal::SIGKILL);
        let reason = w
            .ending
            .unwrap_or(if stopping { "shutdown" } else { "crash" });
        let (code, signal) = match &status {
            Ok(s) => (s.code(), s.signal().map(signal_name)),
            Err(_) => (None, None),
        };
        let ran_ms = ran.as_millis() as u64;
        let failure = FAILURES.contains(&reason);
        if failure {
            let error = status.as_ref().err().map(|e| e.to_string());
            tracing::error!(event = "worker_exited", reason, pool = &*pool.name, worker = w.slot, pid = w.pid, exit_code = code, signal, ran_ms, error, stderr_tail = %stderr.join("\n"), "worker exited unexpectedly");
        } else {
            tracing::info!(
                event = "worker_exited",
                reason,
                pool = &*pool.name,
                worker = w.slot,
                pid = w.pid,
                exit_code = code,
                signal,
                ran_ms,
                "worker exited"
            );
        }
        if stopping {
            self.publish();
            return;
        }
        self.metrics.restart(&pool.name, reason);
        let slot = pool.slots.entry(w.slot).or_default();
        slot.restarts += 1;
        if failure {
            let delay = slot.backoff.on_exit(ran);
            if ran < HEALTHY_RUN && count_failure(pool) {
                self.publish();
                return;
            }
            if !delay.is_zero() {
                let slot_id = w.slot;
                if let Some(s) = self.pools[p].slots.get_mut(&slot_id) {
                    s.restart_pending = true;
                }
                tracing::info!(
                    event = "worker_backoff",
                    pool = &*self.pools[p].name,
                    worker = slot_id,
                    delay_ms = delay.as_millis() as u64,
                    "restarting after a delay"
                );
                self.after(
                    delay,
                    Event::RestartDue {
                        pool: p,
                        slot: slot_id,
                    },
                );
            }
        }
        self.ensure_slots(p);
        self.publish();
    }

    /// Applies a new, valid config: new settings for each pool and a rolling replacement of
    /// every worker, which keeps serving until its replacement is ready.
    fn reload(&mut self, config: &Config) {
        self.generation += 1;
        self.graceful_timeout = config.server.graceful_timeout;
        self.runtime_dir = config.server.runtime_dir.clone();
        self.active = config.routing.active.clone();
        for new in &config.pools {
            match self.pools.iter().position(|p| p.config.name == new.name) {
                Some(p) => {
                    let pool = &mut self.pools[p];
                    pool.config = new.clone();
                    pool.desired = new.workers;
                    pool.removed = false;
                }
                None => self.pools.push(PoolState::new(new, &self.metrics, 0)),
            }
        }
        for p in 0..self.pools.len() {
            let pool = &mut self.pools[p];
            if !config.pools.iter().any(|c| c.name == pool.config.name) {
                pool.removed = true;
                pool.desired = 0;
            }
            pool.generation += 1;
            if let Some(why) = pool.failed.take() {
                tracing::info!(event = "pool_recovering", pool = &*pool.name, previous = %why, "reload clears the failed state; starting workers again");
            }
            pool.failures.clear();
            for slot in pool.slots.values_mut() {
                slot.backoff = Backoff::default();
                slot.restart_pending = false;
            }
            for w in &mut pool.workers {
                match w.state {
                    // Started with the old config: start over with the new one.
                    State::Starting { .. } if w.ending.is_none() => {
                        w.ending = Some("reload");
                        signal_group(w.pid, Signal::SIGTERM);
                    }
                    State::Ready { ref backend, .. } => {
                        backend.retiring.store(true, Ordering::Relaxed);
                        w.retiring = Some("reload");
                    }
                    _ => {}
                }
            }
            self.ensure_slots(p);
        }
        tracing::info!(
            event = "config_applied",
            generation = self.generation,
            "replacing every worker"
        );
        self.publish();
    }

    fn scale(&mut self, pool: Option<&str>, to: Scale) {
        let index = match pool {
            Some(name) => self.pools.iter().position(|p| &*p.name == name),
            None => self.pools.iter().position(|p| *p.name == *self.active),
        };
        let Some(p) = index else {
            tracing::warn!(pool, "scale: no such pool");
            return;
        };
        let pool = &mut self.pools[p];
        let desired = match to {
            Scale::By(delta) => i64::from(pool.desired) + i64::from(delta),
            Scale::To(n) => i64::from(n),
        }
        .clamp(1, 1024) as u32;
        tracing::info!(
            event = "pool_scaled",
            pool = &*pool.name,
            from = pool.desired,
            to = desired,
            "scaling"
        );
        pool.desired = desired;
        self.ensure_slots(p);
        self.publish();
    }

    fn begin_stop(&mut self, mode: StopMode, done: std::sync::mpsc::Sender<()>) {
        if self.stopping.is_some() {
            return;
        }
        tracing::info!(event = "workers_stopping", mode = ?mode, "stopping all workers");
        let signal = match mode {
            StopMode::Graceful => Signal::SIGTERM,
            StopMode::Quick => Signal::SIGINT,
        };
        let mut longest = Duration::ZERO;
        for pool in &mut self.pools {
            longest = longest.max(pool.config.kill_timeout);
            for w in &mut pool.workers {
                w.stop_probe();
                if !matches!(w.state, State::Stopping { .. }) {
                    signal_group(w.pid, signal);
                    w.state = State::Stopping {
                        since: Instant::now(),
                    };
                }
            }
        }
        self.stopping = Some((mode, done));
        self.publish();
        self.after(longest, Event::StopDeadline);
    }

    fn after(&self, delay: Duration, event: Event) {
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(event);
        });
    }
}

/// Records a failed start; returns true if the pool just hit its start limit and is now
/// failed (systemd's StartLimitBurst within StartLimitIntervalSec).
fn count_failure(pool: &mut PoolState) -> bool {
    let now = Instant::now();
    let window = pool.config.start_limit_interval;
    pool.failures.push_back(now);
    while pool
        .failures
        .front()
        .is_some_and(|t| now.duration_since(*t) > window)
    {
        pool.failures.pop_front();
    }
    if pool.failures.len() < pool.config.start_limit_burst as usize {
        return false;
    }
    let why = format!("{} failed starts within {:?}", pool.failures.len(), window);
    tracing::error!(event = "pool_failed", pool = &*pool.name, reason = %why, "pool stopped restarting workers; fix the app and reload (SIGHUP)");
    pool.failed = Some(why);
    true
}
