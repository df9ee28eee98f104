//! `corral run`: starts the pieces in order (log, runtime and signals, sockets, supervisor,
//! services), serves through the [`Master`], then stops: the stop sequence (`stop.rs`),
//! then the workers, then the runtime.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use corral_config::Config;
use corral_supervisor::{StopMode, Supervisor};
use corral_telemetry::{init_logging, LogGuard, Metrics};

use crate::announce::Announcer;
use crate::master::{Master, Parts};
use crate::signals::Signals;
use crate::stop::Ending;
use crate::{listeners, routing_state, stop, wiring};

/// Runs until a stop signal; returns once every worker is gone.
pub fn run(config: Config) -> anyhow::Result<()> {
    let log = init_logging(&config.log).context("cannot open the log")?;
    let result = run_logged(config, &log);
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "corral failed");
    }
    result
}

fn run_logged(config: Config, log: &LogGuard) -> anyhow::Result<()> {
    let runtime = proxy_runtime().context("cannot start the proxy runtime")?;
    let signals = {
        let _context = runtime.enter();
        Signals::install().context("cannot install signal handlers")?
    };
    let metrics = Arc::new(Metrics::new().context("cannot set up metrics")?);
    // The previous master's report socket, when SIGUSR2 started us; taken before workers
    // are spawned so they never see it.
    let successor = corral_systemd::SuccessorReport::from_env();
    let opened = {
        let _context = runtime.enter();
        listeners::open(&config)?
    };
    let restored = routing_state::restore(&config);
    let supervisor = corral_supervisor::start(&config, &restored, metrics.clone())?;
    let steered = config.lanes().into_iter().next().map(|l| l.route);
    let traffic = restored
        .iter()
        .find(|(route, _)| Some(route) == steered.as_ref())
        .map_or_else(|| config.routing.traffic(), |(_, t)| t.clone());
    tracing::info!(
        event = "started",
        version = env!("CARGO_PKG_VERSION"),
        config = %config.source.display(),
        listen = ?config.server.listen,
        admin = ?config.server.admin,
        traffic = %traffic,
        "corral started"
    );
    let announcer = Announcer::new(successor, corral_systemd::watchdog_interval());
    let served = runtime.block_on(serve(
        &config,
        opened,
        &supervisor,
        metrics,
        signals,
        announcer,
        log,
    ));
    finish(&config, served, supervisor, runtime)
}

/// Stops the workers and the runtime once serving is over, and says how it ended.
fn finish(
    config: &Config,
    served: anyhow::Result<Ending>,
    supervisor: Supervisor,
    runtime: tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let ending = served
        .as_ref()
        .copied()
        .unwrap_or(Ending::Stop(StopMode::Quick));
    // The control socket's file now belongs to the master we handed over to.
    if !matches!(ending, Ending::HandedOver(_)) {
        if let Some(path) = &config.server.control_socket {
            let _ = std::fs::remove_file(path);
        }
    }
    supervisor.stop(ending.stop_mode());
    runtime.shutdown_timeout(Duration::from_secs(1));
    served?;
    match ending {
        Ending::HandedOver(pid) => {
            tracing::info!(
                event = "upgraded",
                new_master = pid,
                "handed over to the new master; old master stopped"
            )
        }
        Ending::SuccessorFailed => {
            anyhow::bail!("the upgrade is abandoned: the active pool cannot start; the previous master goes on serving")
        }
        Ending::Stop(_) => tracing::info!(event = "stopped", "corral stopped"),
    }
    Ok(())
}

/// Starts the services, serves until the loop ends, then runs the stop sequence; returns
/// how the workers are to be stopped.
async fn serve(
    config: &Config,
    opened: listeners::Opened,
    supervisor: &Supervisor,
    metrics: Arc<Metrics>,
    mut signals: Signals,
    announcer: Announcer,
    log: &LogGuard,
) -> anyhow::Result<Ending> {
    let mut wired = wiring::start(config, &opened, supervisor, &metrics, announcer.accepting())?;
    let parts = Parts {
        supervisor,
        metrics: metrics.clone(),
        settings: wired.settings.clone(),
        certificates: opened.certificates,
        fds: opened.fds,
        log,
        announcer,
    };
    let mut master = Master::new(config.clone(), parts);
    let ending = master.serve(&mut signals, &mut wired).await?;
    let current = master.config().clone();
    stop::stop(
        ending,
        &current,
        wired,
        &metrics,
        &mut signals,
        master.announcer(),
    )
    .await;
    Ok(ending)
}

/// The master's runtime, on the calling thread: the master's loop, the admin and redirect
/// listeners, and the first proxy thread's connections; `server.threads` more than one starts
/// the others beside it, each an event loop of its own (`corral_proxy::listen`), rather than
/// one work-stealing pool whose tasks crossed threads on every wake-up.
fn proxy_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .thread_name("corral-proxy")
        .enable_all()
        .build()
}
