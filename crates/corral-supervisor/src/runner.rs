//! The supervisor's event loop: the only code that changes worker state.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_config::{Bind, Config, Pool};
use corral_telemetry::Metrics;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::output::{pump, Stream, Tail};
use crate::ready::{probe, PROBE_INTERVAL};
use crate::routes::{Backend, PoolRoute, RoutingTable, SharedRoutes};
use crate::spawn::{spawn, SpawnSpec};
use crate::status::{PoolView, SharedStatus, StatusSnapshot, WorkerView};
use crate::{Control, StopMode};

/// How long an exited worker's output pumps may take to drain before the exit is reported.
const OUTPUT_DRAIN: Duration = Duration::from_millis(300);

/// Identifies one incarnation of one slot; events of older incarnations are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    pool: usize,
    slot: usize,
    generation: u64,
}

/// What the per-worker tasks report.
enum Event {
    Ready(Key),
    StartTimeout(Key, String),
    Exited {
        key: Key,
        status: std::io::Result<ExitStatus>,
        ran: Duration,
        stderr: Vec<String>,
    },
    RestartDue(Key),
    KillDeadline,
}

enum State {
    /// Backing off before the next start.
    Waiting {
        since: Instant,
    },
    Starting {
        since: Instant,
        pid: u32,
        alive: Arc<AtomicBool>,
    },
    Ready {
        since: Instant,
        pid: u32,
        backend: Arc<Backend>,
    },
    Stopping {
        since: Instant,
        pid: u32,
    },
    /// Stopped for good (the supervisor is stopping).
    Gone,
}

struct Slot {
    id: u32,
    generation: u64,
    state: State,
    started: Option<Instant>,
    backoff: Backoff,
    restarts: u64,
    /// Why the current process is being ended by us, if it is.
    ending: Option<&'static str>,
    /// With `bind = "fd"`: the socket that outlives each worker of the slot.
    listener: Option<TcpListener>,
    /// Where the current worker listens.
    addr: Option<SocketAddr>,
}

struct PoolState {
    config: Pool,
    name: Arc<str>,
    slots: Vec<Slot>,
}

pub(crate) struct Runner {
    pools: Vec<PoolState>,
    active: String,
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
        let pools = config
            .pools
            .iter()
            .map(|p| PoolState {
                config: p.clone(),
                name: Arc::from(p.name.as_str()),
                slots: (1..=p.workers)
                    .map(|id| Slot {
                        id,
                        generation: 0,
                        state: State::Waiting {
                            since: Instant::now(),
                        },
                        started: None,
                        backoff: Backoff::default(),
                        restarts: 0,
                        ending: None,
                        listener: None,
                        addr: None,
                    })
                    .collect(),
            })
            .collect();
        Runner {
            pools,
            active: config.routing.active.clone(),
            metrics,
            routes,
            status,
            events_tx,
            events_rx,
            stopping: None,
        }
    }

    pub(crate) async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) {
        for pool in 0..self.pools.len() {
            for slot in 0..self.pools[pool].slots.len() {
                self.start_worker(pool, slot);
            }
        }
        self.publish();
        loop {
            tokio::select! {
                Some(event) = self.events_rx.recv() => self.on_event(event),
                message = control.recv() => match message {
                    Some(Control::Stop(mode, done)) => self.begin_stop(mode, done),
                    None => self.begin_stop(StopMode::Quick, std::sync::mpsc::channel().0),
                },
            }
            if self.stopping.is_some() && self.all_gone() {
                if let Some((_, done)) = self.stopping.take() {
                    tracing::info!("all workers stopped");
                    let _ = done.send(());
                }
                return;
            }
        }
    }

    fn slot(&mut self, key: Key) -> Option<&mut Slot> {
        self.pools
            .get_mut(key.pool)?
            .slots
            .get_mut(key.slot)
            .filter(|s| s.generation == key.generation)
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Ready(key) => self.on_ready(key),
            Event::StartTimeout(key, why) => self.on_start_timeout(key, why),
            Event::Exited {
                key,
                status,
                ran,
                stderr,
            } => self.on_exit(key, status, ran, stderr),
            Event::RestartDue(key) => {
                if matches!(
                    self.slot(key).map(|s| &s.state),
                    Some(State::Waiting { .. })
                ) && self.stopping.is_none()
                {
                    self.start_worker(key.pool, key.slot);
                    self.publish();
                }
            }
            Event::KillDeadline => self.kill_remaining(),
        }
    }

    fn on_ready(&mut self, key: Key) {
        let pool_name = self.pools[key.pool].name.clone();
        let Some(slot) = self.slot(key) else { return };
        let State::Starting { since, pid, .. } = slot.state else {
            return;
        };
        let Some(addr) = slot.addr else { return };
        let backend = Arc::new(Backend::new(pool_name.clone(), slot.id, pid, addr, since));
        slot.state = State::Ready {
            since: Instant::now(),
            pid,
            backend,
        };
        tracing::info!(
            event = "worker_ready",
            pool = &*pool_name,
            worker = slot.id,
            pid,
            startup_ms = since.elapsed().as_millis() as u64,
            "worker ready"
        );
        self.publish();
    }

    fn on_start_timeout(&mut self, key: Key, why: String) {
        let pool = &self.pools[key.pool];
        let (name, timeout) = (pool.name.clone(), pool.config.start_timeout);
        let Some(slot) = self.slot(key) else { return };
        let State::Starting { pid, .. } = slot.state else {
            return;
        };
        tracing::warn!(
            event = "worker_start_timeout",
            pool = &*name,
            worker = slot.id,
            pid,
            last_probe = %why,
            "worker not ready within start_timeout ({timeout:?}); killing it"
        );
        slot.ending = Some("start_timeout");
        signal_group(pid, Signal::SIGKILL);
    }

    fn on_exit(
        &mut self,
        key: Key,
        status: std::io::Result<ExitStatus>,
        ran: Duration,
        stderr: Vec<String>,
    ) {
        let name = self.pools[key.pool].name.clone();
        let stopping = self.stopping.is_some();
        let Some(slot) = self.slot(key) else { return };
        let pid = match slot.state {
            State::Starting { pid, ref alive, .. } => {
                alive.store(false, Ordering::Release);
                pid
            }
            State::Ready { pid, .. } | State::Stopping { pid, .. } => pid,
            State::Waiting { .. } | State::Gone => return,
        };
        // The worker is reaped; anything it left in its process group goes too.
        signal_group(pid, Signal::SIGKILL);
        let reason = slot
            .ending
            .take()
            .unwrap_or(if stopping { "shutdown" } else { "crash" });
        let (code, signal) = match &status {
            Ok(s) => (s.code(), s.signal().map(signal_name)),
            Err(_) => (None, None),
        };
        let ran_ms = ran.as_millis() as u64;
        if reason == "crash" {
            tracing::error!(
                event = "worker_exited",
                reason,
                pool = &*name,
                worker = slot.id,
                pid,
                exit_code = code,
                signal,
                ran_ms,
                stderr_tail = ?stderr,
                "worker exited unexpectedly"
            );
        } else {
            tracing::info!(
                event = "worker_exited",
                reason,
                pool = &*name,
                worker = slot.id,
                pid,
                exit_code = code,
                signal,
                ran_ms,
                "worker exited"
            );
        }
        if stopping {
            slot.state = State::Gone;
            self.publish();
            return;
        }
        slot.restarts += 1;
        let delay = slot.backoff.on_exit(ran);
        slot.state = State::Waiting {
            since: Instant::now(),
        };
        self.metrics.restart(&name, reason);
        if delay.is_zero() {
            self.start_worker(key.pool, key.slot);
        } else {
            tracing::info!(
                event = "worker_backoff",
                pool = &*name,
                worker = key.slot + 1,
                delay_ms = delay.as_millis() as u64,
                "restarting after a delay"
            );
            let tx = self.events_tx.clone();
            let key = Key {
                generation: self.pools[key.pool].slots[key.slot].generation,
                ..key
            };
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(Event::RestartDue(key));
            });
        }
        self.publish();
    }

    /// Starts the worker of one slot and the tasks that watch it.
    fn start_worker(&mut self, pool_index: usize, slot_index: usize) {
        let events = self.events_tx.clone();
        let pool = &mut self.pools[pool_index];
        let name = pool.name.clone();
        let config = &pool.config;
        let slot = &mut pool.slots[slot_index];
        slot.generation += 1;
        let key = Key {
            pool: pool_index,
            slot: slot_index,
            generation: slot.generation,
        };
        let addr = match prepare_socket(config.bind, slot) {
            Ok(addr) => addr,
            Err(e) => {
                tracing::error!(event = "worker_spawn_failed", pool = &*name, worker = slot.id, error = %e, "cannot get a socket for the worker");
                fail_start(&events, key, slot, e);
                return;
            }
        };
        let spec = SpawnSpec {
            pool: config,
            worker: slot.id,
            addr,
            listen_fd: slot.listener.as_ref().map(|l| l.as_raw_fd()),
        };
        slot.addr = Some(addr);
        let started = Instant::now();
        let mut child = match spawn(&spec) {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(event = "worker_spawn_failed", pool = &*name, worker = slot.id, command = ?config.command, error = %e, "cannot start the worker");
                fail_start(&events, key, slot, e);
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
        tracing::info!(event = "worker_spawned", pool = &*name, worker = slot.id, pid, %addr, "worker spawned");
        let alive = Arc::new(AtomicBool::new(true));
        slot.state = State::Starting {
            since: started,
            pid,
            alive: alive.clone(),
        };
        slot.started = Some(started);

        let tail = Tail::default();
        let stdout = child.stdout.take().map(|out| {
            tokio::spawn(pump(
                out,
                Stream::Stdout,
                name.clone(),
                slot.id,
                pid,
                tail.clone(),
            ))
        });
        let stderr = child.stderr.take().map(|err| {
            tokio::spawn(pump(
                err,
                Stream::Stderr,
                name.clone(),
                slot.id,
                pid,
                tail.clone(),
            ))
        });
        let exit_events = events.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let ran = started.elapsed();
            for pump in [stdout, stderr].into_iter().flatten() {
                let _ = tokio::time::timeout(OUTPUT_DRAIN, pump).await;
            }
            let _ = exit_events.send(Event::Exited {
                key,
                status,
                ran,
                stderr: tail.lines(),
            });
        });

        let (kind, path, timeout) = (
            config.ready,
            config.health_path.clone(),
            config.start_timeout,
        );
        tokio::spawn(async move {
            let deadline = started + timeout;
            while alive.load(Ordering::Acquire) {
                let why = match probe(kind, addr, &path).await {
                    Ok(()) => {
                        let _ = events.send(Event::Ready(key));
                        return;
                    }
                    Err(why) => why,
                };
                if Instant::now() >= deadline {
                    let _ = events.send(Event::StartTimeout(key, why));
                    return;
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        });
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
            for slot in &mut pool.slots {
                match slot.state {
                    State::Starting { pid, .. } | State::Ready { pid, .. } => {
                        signal_group(pid, signal);
                        slot.state = State::Stopping {
                            since: Instant::now(),
                            pid,
                        };
                    }
                    State::Waiting { .. } => slot.state = State::Gone,
                    State::Stopping { .. } | State::Gone => {}
                }
            }
        }
        self.stopping = Some((mode, done));
        self.publish();
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(longest).await;
            let _ = tx.send(Event::KillDeadline);
        });
    }

    fn kill_remaining(&mut self) {
        for pool in &self.pools {
            for slot in &pool.slots {
                if let State::Stopping { pid, .. } = slot.state {
                    tracing::warn!(
                        event = "worker_kill",
                        pool = &*pool.name,
                        worker = slot.id,
                        pid,
                        "worker still running after kill_timeout; sending SIGKILL"
                    );
                    signal_group(pid, Signal::SIGKILL);
                }
            }
        }
    }

    fn all_gone(&self) -> bool {
        self.pools
            .iter()
            .flat_map(|p| &p.slots)
            .all(|s| matches!(s.state, State::Gone))
    }

    /// Republishes the routing table, the status snapshot and the worker gauges.
    fn publish(&self) {
        let mut views = Vec::with_capacity(self.pools.len());
        for pool in &self.pools {
            let mut counts = [0i64; 3];
            let workers: Vec<WorkerView> = pool
                .slots
                .iter()
                .map(|s| {
                    let (state, since, pid, backend) = match &s.state {
                        State::Waiting { since } => ("waiting", *since, None, None),
                        State::Starting { since, pid, .. } => {
                            ("starting", *since, Some(*pid), None)
                        }
                        State::Ready {
                            since,
                            pid,
                            backend,
                        } => ("ready", *since, Some(*pid), Some(backend.clone())),
                        State::Stopping { since, pid } => ("stopping", *since, Some(*pid), None),
                        State::Gone => ("stopped", Instant::now(), None, None),
                    };
                    match state {
                        "starting" => counts[0] += 1,
                        "ready" => counts[1] += 1,
                        "stopping" => counts[2] += 1,
                        _ => {}
                    }
                    WorkerView {
                        worker: s.id,
                        pid,
                        state,
                        since,
                        started: s.started,
                        backend,
                        restarts: s.restarts,
                    }
                })
                .collect();
            self.metrics.set_workers(&pool.name, counts);
            let active = *pool.name == *self.active;
            if active {
                let backends = workers.iter().filter_map(|w| w.backend.clone()).collect();
                let current = self.routes.load();
                self.routes.store(Arc::new(RoutingTable {
                    active: PoolRoute {
                        name: pool.name.clone(),
                        backends,
                        metrics: current.active.metrics.clone(),
                    },
                }));
            }
            views.push(PoolView {
                name: pool.name.clone(),
                active,
                workers,
            });
        }
        self.status.store(Arc::new(StatusSnapshot {
            pools: views,
            stopping: self.stopping.is_some(),
        }));
    }
}

/// Picks the worker's address: a fresh free loopback port for `tcp`, or the slot's own
/// listening socket (bound once, kept across restarts) for `fd`.
fn prepare_socket(bind: Bind, slot: &mut Slot) -> std::io::Result<SocketAddr> {
    match bind {
        Bind::Tcp => {
            let probe = TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()
        }
        Bind::Fd => {
            if slot.listener.is_none() {
                slot.listener = Some(TcpListener::bind("127.0.0.1:0")?);
            }
            match &slot.listener {
                Some(l) => l.local_addr(),
                None => Err(std::io::Error::other("no listener")),
            }
        }
    }
}

/// Reports a failed start as an exit, so it takes the same backoff path as a crash.
fn fail_start(
    events: &mpsc::UnboundedSender<Event>,
    key: Key,
    slot: &mut Slot,
    error: std::io::Error,
) {
    slot.ending = Some("spawn_failed");
    slot.state = State::Starting {
        since: Instant::now(),
        pid: 0,
        alive: Arc::new(AtomicBool::new(false)),
    };
    let _ = events.send(Event::Exited {
        key,
        status: Err(error),
        ran: Duration::ZERO,
        stderr: Vec::new(),
    });
}

/// Signals a worker's whole process group; a group that is already gone is not an error.
fn signal_group(pid: u32, signal: Signal) {
    if pid == 0 {
        return;
    }
    let _ = killpg(Pid::from_raw(pid as i32), signal);
}

fn signal_name(signal: i32) -> &'static str {
    Signal::try_from(signal)
        .map(|s| s.as_str())
        .unwrap_or("unknown")
}
