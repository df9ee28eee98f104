//! The thin runner: the only code that touches worker processes. It turns what happens
//! (exits, readiness, timers, the proxy's reports, operators' requests) into
//! [`Event`]s for the [`Policy`], performs the [`Action`]s it returns, and publishes the
//! routing table and status snapshot after each event.

mod apps;
mod fork;
mod health_checks;
mod launch;
mod os;
mod resolve;
mod template;

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::heartbeat::Heartbeat;
use crate::policy::{Action, Event, Exit, Policy};
use crate::sockets;
use crate::worker::{PoolId, WorkerId};
use crate::Control;
use corral_routes::status::SharedStatus;
use corral_routes::{Address, Report, SharedRoutes};

/// How long an exited worker's output pumps may take to drain before the exit is reported.
const OUTPUT_DRAIN: Duration = Duration::from_millis(300);
/// How often memory limits are checked.
const TICK: Duration = Duration::from_secs(1);
/// How often a draining worker's requests in flight are checked.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// How long a drained worker's tunnels have to close once told to, before it is stopped.
const TUNNEL_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What the runner holds for a live worker process, released when it exits.
struct WorkerIo {
    addr: Address,
    notify_path: Option<std::path::PathBuf>,
    pid: u32,
    /// Cleared when the worker exits, so its readiness probe gives up.
    alive: Arc<AtomicBool>,
}

/// What the runner's own tasks report.
enum Internal {
    /// An event for the policy as it is.
    Event(Event),
    /// A worker process ended: reap it first, then tell the policy.
    Exited {
        worker: WorkerId,
        status: std::io::Result<std::process::ExitStatus>,
        ran: Duration,
        stderr: Vec<String>,
    },
    /// Time to measure memory.
    Tick,
    /// An app pool's template process ended.
    TemplateExited {
        epoch: u64,
        status: std::io::Result<std::process::ExitStatus>,
        stderr: Vec<String>,
    },
    /// Time to look at templates still importing.
    CheckTemplates,
}

pub(crate) struct Runner {
    policy: Policy,
    routes: SharedRoutes,
    status: SharedStatus,
    heartbeat: Arc<Heartbeat>,
    workers: HashMap<WorkerId, WorkerIo>,
    /// With `bind = "fd"`: the socket of each slot's newest worker, kept for the next one
    /// after an exit; a replacement started while it runs gets its own (`launch.rs`).
    listeners: HashMap<(PoolId, u32), TcpListener>,
    /// The resolver task of each remote pool.
    resolvers: HashMap<PoolId, tokio::task::JoinHandle<()>>,
    events_tx: mpsc::UnboundedSender<Internal>,
    events_rx: mpsc::UnboundedReceiver<Internal>,
    /// Whom to tell when the stop is complete.
    stop_waiters: Vec<std::sync::mpsc::Sender<()>>,
    /// App pools' templates (`apps.rs`), oldest first.
    templates: Vec<template::Template>,
    next_epoch: u64,
    /// A reload waiting for its app pools' templates to import, and whom to tell.
    pending_reload: Option<(Box<corral_config::Config>, crate::ReloadVerdict)>,
    /// A [`Internal::CheckTemplates`] is due.
    checking: bool,
    /// Where the embedded Python package was written, once it was.
    package_dir: Option<std::path::PathBuf>,
    runtime_dir: std::path::PathBuf,
    /// Whether corral was made a child subreaper (for forked workers).
    subreaper: bool,
    orphans: crate::reaper::Orphans,
}

impl Runner {
    pub(crate) fn new(
        policy: Policy,
        routes: SharedRoutes,
        status: SharedStatus,
        heartbeat: Arc<Heartbeat>,
        runtime_dir: std::path::PathBuf,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Runner {
            policy,
            routes,
            status,
            heartbeat,
            workers: HashMap::new(),
            listeners: HashMap::new(),
            resolvers: HashMap::new(),
            events_tx,
            events_rx,
            stop_waiters: Vec::new(),
            templates: Vec::new(),
            next_epoch: 1,
            pending_reload: None,
            checking: false,
            package_dir: None,
            runtime_dir,
            subreaper: false,
            orphans: crate::reaper::Orphans::default(),
        }
    }

    /// Runs the supervisor until it is stopped. `config` is the one it starts with: its app
    /// pools' templates are started and imported first, and `started` hears whether they
    /// did (on an error nothing else starts).
    pub(crate) async fn run(
        mut self,
        config: &corral_config::Config,
        started: std::sync::mpsc::Sender<Result<(), String>>,
        mut control: mpsc::UnboundedReceiver<Control>,
        mut reports: mpsc::UnboundedReceiver<Report>,
    ) {
        if let Err(why) = self.start_apps(config) {
            self.end_templates();
            let _ = started.send(Err(why));
            return;
        }
        let _ = started.send(Ok(()));
        let ticker = self.events_tx.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            loop {
                interval.tick().await;
                if ticker.send(Internal::Tick).is_err() {
                    return;
                }
            }
        });
        let mut done = self.handle(Event::Start);
        while !done {
            self.heartbeat.beat();
            let event = tokio::select! {
                Some(event) = self.events_rx.recv() => match event {
                    Internal::Event(event) => Some(event),
                    Internal::Exited { worker, status, ran, stderr } => {
                        self.reaped(worker);
                        Some(Event::Exited { worker, exit: exit_of(status), ran, stderr })
                    }
                    Internal::Tick => {
                        self.reap_orphans();
                        Some(Event::Memory(self.measure_memory()))
                    }
                    Internal::TemplateExited { epoch, status, stderr } => {
                        self.template_exited(epoch, status, stderr);
                        None
                    }
                    Internal::CheckTemplates => self.check_templates(),
                },
                Some(report) = reports.recv() => Some(match report {
                    Report::Retire { worker, reason } => Event::Retire { worker, reason },
                    Report::StartReplacement { worker } => Event::StartReplacement(worker),
                    Report::Hung { worker, request } => Event::Hung { worker, request },
                }),
                message = control.recv() => match message {
                    Some(Control::Stop(mode, waiter)) => {
                        self.stop_waiters.push(waiter);
                        Some(Event::Stop(mode))
                    }
                    Some(Control::Reload(config, verdict)) => self.gate_reload(config, verdict),
                    Some(Control::Scale { pool, to }) => Some(Event::Scale { pool, to }),
                    Some(Control::StartPool(pool)) => Some(Event::StartPool(pool)),
                    Some(Control::StopPool(pool)) => Some(Event::StopPool(pool)),
                    Some(Control::Switch { route, to, why }) => Some(Event::Switch { route, to, why }),
                    // The master's handle is gone: nobody will ask for a graceful stop.
                    None => Some(Event::Stop(crate::StopMode::Quick)),
                },
            };
            if let Some(event) = event {
                done = self.handle(event);
            }
        }
        self.end_templates();
        for waiter in self.stop_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }

    /// Feeds one event to the policy and performs its actions, including the events those
    /// produce at once (a spawn's outcome). Returns true once the supervisor is finished.
    fn handle(&mut self, event: Event) -> bool {
        let mut pending = VecDeque::from([event]);
        let mut publish = false;
        let mut finished = false;
        while let Some(event) = pending.pop_front() {
            for action in self.policy.on_event(event, Instant::now()) {
                match action {
                    Action::Spawn(order) => pending.push_back(self.spawn(&order)),
                    Action::Signal { pid, signal } => os::signal_group(pid, signal),
                    Action::After { delay, timer } => {
                        self.send_later(delay, Event::Timer(timer));
                    }
                    Action::WatchDrain {
                        worker,
                        backend,
                        within,
                        why,
                    } => {
                        let tx = self.events_tx.clone();
                        backend.load.begin_drain();
                        tokio::spawn(async move {
                            let deadline = tokio::time::Instant::now() + within;
                            while backend.load.busy() > 0 && tokio::time::Instant::now() < deadline
                            {
                                tokio::time::sleep(DRAIN_POLL).await;
                            }
                            // Past the deadline, the proxy closes the worker's open tunnels
                            // itself before the worker hears SIGTERM.
                            backend.load.close_tunnels(why);
                            let closed = tokio::time::Instant::now() + TUNNEL_CLOSE_WAIT;
                            while backend.load.tunnels() > 0 && tokio::time::Instant::now() < closed
                            {
                                tokio::time::sleep(DRAIN_POLL).await;
                            }
                            let _ = tx.send(Internal::Event(Event::Drained(worker)));
                        });
                    }
                    Action::WatchHealth {
                        worker,
                        backend,
                        health,
                        path,
                        counters,
                    } => {
                        let tx = self.events_tx.clone();
                        // A remote upstream has no process: its checks end with its backend.
                        let alive = self.workers.get(&worker).map(|io| io.alive.clone());
                        tokio::spawn(health_checks::watch(
                            worker,
                            Arc::downgrade(&backend),
                            alive,
                            health,
                            path,
                            counters,
                            move |event| tx.send(Internal::Event(event)).is_ok(),
                        ));
                    }
                    Action::Resolve {
                        pool,
                        generation,
                        upstreams,
                        every,
                    } => {
                        let tx = self.events_tx.clone();
                        let task = tokio::spawn(resolve::run(
                            pool,
                            generation,
                            upstreams,
                            every,
                            move |event| tx.send(Internal::Event(event)).is_ok(),
                        ));
                        if let Some(old) = self.resolvers.insert(pool, task) {
                            old.abort();
                        }
                    }
                    Action::ForgetPool(pool) => {
                        self.listeners.retain(|(p, _), _| *p != pool);
                        if let Some(resolver) = self.resolvers.remove(&pool) {
                            resolver.abort();
                        }
                    }
                    Action::Publish => publish = true,
                    Action::Finished => finished = true,
                }
            }
        }
        if publish {
            self.publish();
        }
        self.end_templates_of_stopped_pools();
        finished
    }

    /// Stores the policy's routing table and status snapshot for the proxy and admin API.
    fn publish(&self) {
        let table = Arc::new(self.policy.routing_table());
        self.routes.store(table.clone());
        // Waiters re-check against the new table (a worker may have become ready).
        for pool in &table.pools {
            pool.queue.notify.notify_waiters();
        }
        self.status.store(Arc::new(self.policy.status()));
    }

    /// Reaps zombies corral inherited as a subreaper that no one else waits for.
    fn reap_orphans(&mut self) {
        if !self.subreaper {
            return;
        }
        let (workers, templates) = (&self.workers, &self.templates);
        self.orphans.reap(|pid| {
            workers.values().any(|w| w.pid == pid) || templates.iter().any(|t| t.pid == pid)
        });
    }

    fn measure_memory(&self) -> Vec<(WorkerId, u64)> {
        self.policy
            .memory_watch()
            .into_iter()
            .filter_map(|(id, pid)| os::rss_bytes(pid).map(|rss| (id, rss)))
            .collect()
    }

    fn send_later(&self, delay: Duration, event: Event) {
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Internal::Event(event));
        });
    }

    /// A worker was reaped: release its files, kill what it left in its process group, and
    /// stop its readiness probe.
    fn reaped(&mut self, id: WorkerId) {
        if let Some(io) = self.workers.remove(&id) {
            io.alive.store(false, Ordering::Release);
            sockets::cleanup(&io.addr, io.notify_path.as_deref());
            os::signal_group(io.pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// How a process ended, as the policy records it.
fn exit_of(status: std::io::Result<std::process::ExitStatus>) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(os::signal_name(signal)),
            (None, None) => Exit::Error("no exit code or signal".into()),
        },
        Err(e) => Exit::Error(e.to_string()),
    }
}
