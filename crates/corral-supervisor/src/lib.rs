//! The supervisor: starts a pool's workers, watches them, restarts them, and stops them.
//!
//! How it works as a whole: [`start`] runs a [`runner`] on a thread of its own with a
//! single-threaded tokio runtime. The thread lives as long as the master, which matters:
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked a worker ends, so forking from a
//! short-lived thread would kill workers at random. Each worker has a task that waits for its
//! exit and pumps its stdout/stderr into log events, and, while it starts, a task that probes
//! readiness. Those tasks report to the runner as events; the runner alone changes state,
//! decides restarts (with [`backoff`]), and republishes two immutable snapshots: the
//! [`routes::RoutingTable`] the proxy reads per request, and the [`status::StatusSnapshot`]
//! the admin API reads. Nothing here knows pingora.

pub mod backoff;
mod output;
pub mod ready;
pub mod routes;
mod runner;
mod sockets;
mod spawn;
pub mod status;
mod worker;

use std::sync::Arc;
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use corral_config::Config;
use corral_telemetry::Metrics;
use tokio::sync::mpsc;

pub use routes::{Backend, PoolRoute, RoutingTable, SharedRoutes};
pub use status::{PoolView, SharedStatus, StatusSnapshot, WorkerView};

/// Why the supervisor could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config names no active pool (the config crate rules this out).
    #[error("the active pool {0:?} is not defined")]
    NoActivePool(String),
    /// The supervisor thread or its runtime could not be created.
    #[error("cannot start the supervisor thread: {0}")]
    Thread(#[from] std::io::Error),
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
    Reload(Box<Config>),
    Scale { pool: Option<String>, to: Scale },
}

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
    reporter: routes::Reporter,
}

/// Starts every pool's workers on the supervisor thread and returns at once; workers become
/// routable as they turn ready.
pub fn start(config: &Config, metrics: Arc<Metrics>) -> Result<Supervisor, StartError> {
    let active = config
        .active_pool()
        .ok_or_else(|| StartError::NoActivePool(config.routing.active.clone()))?;
    let name: Arc<str> = Arc::from(active.name.as_str());
    let routes: SharedRoutes = Arc::new(ArcSwap::from_pointee(RoutingTable {
        active: PoolRoute {
            metrics: metrics.pool(&name),
            name,
            backends: Vec::new(),
            concurrency: active.concurrency,
            queue_size: active.queue_size,
            queue_timeout: active.queue_timeout,
            timeout: active.timeout,
            queue: Arc::default(),
        },
        generation: 1,
    }));
    let status: SharedStatus = Arc::new(ArcSwap::from_pointee(StatusSnapshot::default()));
    let (control, control_rx) = mpsc::unbounded_channel();
    let (reports, reports_rx) = mpsc::unbounded_channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runner = runner::Runner::new(config, metrics, routes.clone(), status.clone());
    let thread = std::thread::Builder::new()
        .name("corral-supervisor".into())
        .spawn(move || runtime.block_on(runner.run(control_rx, reports_rx)))?;
    Ok(Supervisor {
        control,
        thread: Some(thread),
        routes,
        status,
        reporter: routes::Reporter(reports),
    })
}

impl Supervisor {
    /// The channel the proxy reports workers to retire or kill on.
    pub fn reporter(&self) -> routes::Reporter {
        self.reporter.clone()
    }

    /// Applies a new, already validated config: every worker is replaced, rolling.
    pub fn reload(&self, config: Config) {
        let _ = self.control.send(Control::Reload(Box::new(config)));
    }

    /// Changes the worker count of `pool` (the active pool when `None`); the result stays
    /// within 1..=1024.
    pub fn scale(&self, pool: Option<String>, to: Scale) {
        let _ = self.control.send(Control::Scale { pool, to });
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
