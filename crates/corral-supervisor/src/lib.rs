//! The supervisor: starts a pool's workers, watches them, restarts them, and stops them.
//!
//! How it works as a whole: every decision is made by the `policy`, a pure state machine
//! that takes one event and the time and returns actions (spawn, signal, set a timer, watch a
//! drain, publish); it is tested without processes. [`start`] runs the `runner` on a thread
//! of its own with a single-threaded tokio runtime; the runner is the only code that touches
//! processes: it performs the actions and turns exits, readiness probes, timers, the proxy's
//! reports and operators' requests into events. The thread lives as long as the master,
//! which matters: `PR_SET_PDEATHSIG` fires when the *thread* that forked a worker ends, so
//! forking from a short-lived thread would kill workers at random. After each event the
//! runner republishes two immutable snapshots the policy builds: the
//! [`RoutingTable`] of every pool, which the proxy reads per request, and the
//! [`StatusSnapshot`] the admin API reads. Nothing here knows pingora.

pub mod backoff;
pub mod heartbeat;
mod output;
mod policy;
pub mod ready;
mod reaper;
mod runner;
mod sockets;
mod spawn;
mod worker;

use std::hash::BuildHasher;
use std::sync::Arc;
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use corral_config::Config;
use corral_telemetry::Metrics;
use tokio::sync::mpsc;

pub use corral_routes::{
    Backend, ExitReason, PoolRoute, PoolView, Reporter, RoutingTable, SharedRoutes, SharedStatus,
    StateKind, StatusSnapshot, WorkerId, WorkerView,
};

/// Why the supervisor could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config names no active pool (the config crate rules this out).
    #[error("the active pool {0:?} is not defined")]
    NoActivePool(String),
    /// The supervisor thread or its runtime could not be created.
    #[error("cannot start the supervisor thread: {0}")]
    Thread(#[from] std::io::Error),
    /// An app pool's template could not import its app (the traceback follows).
    #[error("{0}")]
    App(String),
}

/// How workers are stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGTERM, then SIGKILL after the pool's `kill_timeout`.
    Graceful,
    /// SIGINT, then SIGKILL after the pool's `kill_timeout`.
    Quick,
}

/// Requests to the running supervisor.
enum Control {
    Stop(StopMode, std::sync::mpsc::Sender<()>),
    Reload(Box<Config>, ReloadVerdict),
    Scale {
        pool: Option<String>,
        to: Scale,
    },
    StartPool(String),
    StopPool(String),
    Switch {
        route: String,
        to: corral_config::Traffic,
        why: &'static str,
    },
}

/// Where the supervisor says whether a reload went ahead: `Ok` once it is handed to the
/// workers (at once for a config without app pools), `Err` with the reason when an app pool's
/// new code did not import. The master applies the rest of the config only on `Ok`, so a
/// refused reload changes nothing and `corral reload` reports it.
pub type ReloadVerdict = tokio::sync::oneshot::Sender<Result<(), String>>;

/// How a pool's worker count changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Up or down by this many (SIGTTIN / SIGTTOU).
    By(i32),
    /// To exactly this many (`corral scale`).
    To(u32),
}

/// The master's handle on the supervisor thread.
pub struct Supervisor {
    control: mpsc::UnboundedSender<Control>,
    thread: Option<JoinHandle<()>>,
    /// Ready workers, read by the proxy.
    pub routes: SharedRoutes,
    /// Every worker's state, read by the admin API.
    pub status: SharedStatus,
    /// When the supervisor's loop last turned (every second at least), for the watchdog.
    pub heartbeat: Arc<heartbeat::Heartbeat>,
    reporter: Reporter,
}

/// Starts every pool's workers on the supervisor thread and returns at once; workers become
/// routable as they turn ready.
///
/// `restored` holds the switches made at run time before corral restarted, by route (`""`:
/// the one `[routing]` steers), which stand instead of the file's traffic; one naming a pool
/// the config lacks is ignored.
pub fn start(
    config: &Config,
    restored: &[(String, corral_config::Traffic)],
    metrics: Arc<Metrics>,
) -> Result<Supervisor, StartError> {
    if config.active_pool().is_none() {
        return Err(StartError::NoActivePool(config.routing.active.clone()));
    }
    let seed = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    let policy = policy::Policy::new(config, restored, metrics, seed);
    let routes: SharedRoutes = Arc::new(ArcSwap::from_pointee(policy.routing_table()));
    let status: SharedStatus = Arc::new(ArcSwap::from_pointee(policy.status()));
    let (control, control_rx) = mpsc::unbounded_channel();
    let (reporter, reports_rx) = Reporter::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let heartbeat = Arc::new(heartbeat::Heartbeat::default());
    let runner = runner::Runner::new(
        policy,
        routes.clone(),
        status.clone(),
        heartbeat.clone(),
        config.server.runtime_dir.clone(),
    );
    let (started_tx, started) = std::sync::mpsc::channel();
    let config = config.clone();
    let thread = std::thread::Builder::new()
        .name("corral-supervisor".into())
        .spawn(move || runtime.block_on(runner.run(&config, started_tx, control_rx, reports_rx)))?;
    // App pools import their app before anything starts; an import error fails the start.
    match started.recv() {
        Ok(Ok(())) => {}
        Ok(Err(why)) => {
            let _ = thread.join();
            return Err(StartError::App(why));
        }
        Err(_) => {
            let _ = thread.join();
            return Err(StartError::App(
                "the supervisor thread ended while starting".into(),
            ));
        }
    }
    Ok(Supervisor {
        control,
        thread: Some(thread),
        routes,
        status,
        heartbeat,
        reporter,
    })
}

impl Supervisor {
    /// The channel the proxy reports workers to retire or kill on.
    pub fn reporter(&self) -> Reporter {
        self.reporter.clone()
    }

    /// Applies a new, already validated config: every worker is replaced, rolling. The
    /// answer comes once the reload went ahead or was refused (see [`ReloadVerdict`]); it is
    /// dropped unanswered when the supervisor has stopped.
    pub fn reload(&self, config: Config) -> tokio::sync::oneshot::Receiver<Result<(), String>> {
        let (verdict, answer) = tokio::sync::oneshot::channel();
        let _ = self
            .control
            .send(Control::Reload(Box::new(config), verdict));
        answer
    }

    /// Changes the worker count of `pool` (the active pool when `None`); the result stays
    /// within `1..=corral_config::MAX_WORKERS`.
    pub fn scale(&self, pool: Option<String>, to: Scale) {
        let _ = self.control.send(Control::Scale { pool, to });
    }

    /// Starts the workers of a stopped pool, leaving every other pool as it is.
    pub fn start_pool(&self, pool: String) {
        let _ = self.control.send(Control::StartPool(pool));
    }

    /// Drains and stops the workers of a pool that is not active.
    pub fn stop_pool(&self, pool: String) {
        let _ = self.control.send(Control::StopPool(pool));
    }

    /// Sends new requests of `route` (`""`: the route `[routing]` steers) where `to` says
    /// (its pools started first if stopped) with one store of the routing table; the pool
    /// that was active keeps running as `previous` until stopped; other routes are left as
    /// they are. `why` (`switch`, `rollback`) is what `/status` shows.
    pub fn switch(&self, route: &str, to: corral_config::Traffic, why: &'static str) {
        let _ = self.control.send(Control::Switch {
            route: route.to_string(),
            to,
            why,
        });
    }

    /// Stops every worker and waits until each has exited and been reaped.
    pub fn stop(mut self, mode: StopMode) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.control.send(Control::Stop(mode, done)).is_ok() {
            // An error here means the runner is gone, so there is nothing left to wait for.
            let _ = wait.recv();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
