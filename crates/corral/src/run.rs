//! `corral run`: wires config, telemetry, supervisor and proxy together, handles reloads,
//! and owns the stop sequence: `/readyz` 503, `accept_grace`, stop accepting, drain
//! in-flight requests up to `graceful_timeout`, stop the workers, exit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use corral_config::Config;
use corral_proxy::ControlRequest;
use corral_proxy::ProxySettings;
use corral_supervisor::{Scale, StopMode};
use corral_telemetry::{init_logging, Metrics};
use pingora_core::services::Service as _;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::reload;
use crate::signals::{Request, Signals};

/// How often the drain checks whether in-flight requests are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Runs until a stop signal; returns once every worker is gone.
pub fn run(config: Config) -> anyhow::Result<()> {
    let _log = init_logging(&config.log);
    let result = run_logged(config);
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "corral failed");
    }
    result
}

fn run_logged(config: Config) -> anyhow::Result<()> {
    let runtime = proxy_runtime(config.server.threads).context("cannot start the proxy runtime")?;
    let signals = {
        let _context = runtime.enter();
        Signals::install().context("cannot install signal handlers")?
    };
    let metrics = Arc::new(Metrics::new().context("cannot set up metrics")?);
    let mut addresses = config.server.listen.clone();
    addresses.extend(config.server.admin);
    // Bind before any worker starts: a port in use ends the run cleanly, with nothing to undo.
    let fds = corral_proxy::bind_all(&addresses)?;
    if let Some(path) = &config.server.control_socket {
        corral_proxy::bind_control_socket(path, &fds)?;
    }
    let supervisor = corral_supervisor::start(&config, metrics.clone())?;
    tracing::info!(
        event = "started",
        version = env!("CARGO_PKG_VERSION"),
        config = %config.source.display(),
        listen = ?config.server.listen,
        admin = ?config.server.admin,
        pool = %config.routing.active,
        "corral started"
    );
    let served = runtime.block_on(serve(&config, fds, &supervisor, metrics, signals));
    let mode = served.as_ref().copied().unwrap_or(StopMode::Quick);
    if let Some(path) = &config.server.control_socket {
        let _ = std::fs::remove_file(path);
    }
    supervisor.stop(mode);
    runtime.shutdown_timeout(Duration::from_secs(1));
    served?;
    tracing::info!(event = "stopped", "corral stopped");
    Ok(())
}

/// Serves until a stop signal, then drains; returns how the workers are to be stopped.
async fn serve(
    config: &Config,
    fds: pingora_core::server::ListenFds,
    supervisor: &corral_supervisor::Supervisor,
    metrics: Arc<Metrics>,
    mut signals: Signals,
) -> anyhow::Result<StopMode> {
    let draining = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let settings = Arc::new(ArcSwap::from_pointee(ProxySettings::new(
        config, None, &metrics,
    )));
    let mut proxy = corral_proxy::proxy_service(
        &config.server.listen,
        supervisor.routes.clone(),
        settings.clone(),
        metrics.clone(),
        supervisor.reporter(),
    );
    let proxy_fds = fds.clone();
    let proxy_shutdown = shutdown_rx.clone();
    let proxy_task = tokio::spawn(async move {
        proxy
            .start_service(Some(proxy_fds), proxy_shutdown, 1)
            .await
    });
    let (control_tx, mut control_rx) = mpsc::unbounded_channel();
    let admin = corral_proxy::admin_service(
        config.server.admin,
        config
            .server
            .control_socket
            .as_deref()
            .map(|p| (p, control_tx)),
        supervisor.status.clone(),
        metrics.clone(),
        draining.clone(),
    );
    let admin_tasks: Vec<_> = admin
        .into_iter()
        .map(|mut service| {
            let (fds, shutdown) = (fds.clone(), shutdown_rx.clone());
            tokio::spawn(async move { service.start_service(Some(fds), shutdown, 1).await })
        })
        .collect();

    let mut current = config.clone();
    // The config generation, counted here where reloads are decided (the supervisor's
    // snapshot follows it asynchronously): 1 at start, +1 per applied reload.
    let mut generation: u64 = 1;
    let mut apply = |new: Config, current: &mut Config| {
        settings.store(Arc::new(ProxySettings::new(
            &new,
            Some(&settings.load()),
            &metrics,
        )));
        supervisor.reload(new.clone());
        *current = new;
        generation += 1;
        generation
    };
    let mode = loop {
        tokio::select! {
            request = signals.next() => match request {
                Request::Stop(mode) => break mode,
                Request::Reload => {
                    if let Ok(new) = reload::reload(&current, &metrics) {
                        apply(new, &mut current);
                    }
                }
                Request::Scale(delta) => supervisor.scale(None, Scale::By(delta)),
            },
            Some(request) = control_rx.recv() => match request {
                ControlRequest::Reload(reply) => {
                    let answer = reload::reload(&current, &metrics).map(|new| {
                        let generation = apply(new, &mut current);
                        json!({ "reloaded": true, "generation": generation })
                    });
                    let _ = reply.send(answer);
                }
                ControlRequest::Scale { pool, workers, reply } => {
                    let name = pool.unwrap_or_else(|| current.routing.active.clone());
                    let answer = if current.pools.iter().any(|p| p.name == name) {
                        supervisor.scale(Some(name.clone()), Scale::To(workers));
                        Ok(json!({ "pool": name, "workers": workers }))
                    } else {
                        Err(vec![format!("no pool is named {name:?}")])
                    };
                    let _ = reply.send(answer);
                }
            },
        }
    };
    draining.store(true, Ordering::Release);
    tracing::info!(event = "stopping", mode = ?mode, in_flight = metrics.in_flight.get(), "stop requested; /readyz now answers 503");
    if mode == StopMode::Graceful && !current.server.accept_grace.is_zero() {
        // Load balancers probe /readyz; give them time to stop sending before we refuse.
        tokio::time::sleep(current.server.accept_grace).await;
    }
    tracing::info!(
        event = "listeners_closed",
        "no longer accepting connections"
    );
    // Listeners close and idle keep-alive connections are dropped; requests in flight go on.
    let _ = shutdown_tx.send(true);
    let _ = proxy_task.await;
    for task in admin_tasks {
        let _ = task.await;
    }
    if mode == StopMode::Graceful {
        drain(&metrics, current.server.graceful_timeout, &mut signals).await;
    }
    Ok(mode)
}

/// The proxy's runtime. One thread runs everything on the calling thread, without the
/// multi-thread scheduler's cross-thread wake-ups; more threads share one work-stealing pool.
fn proxy_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder.thread_name("corral-proxy").enable_all().build()
}

/// Waits until no request is in flight, `timeout` passes, or the operator insists.
async fn drain(metrics: &Metrics, timeout: Duration, signals: &mut Signals) {
    let start = Instant::now();
    let wait = async {
        while metrics.in_flight.get() > 0 {
            tokio::time::sleep(DRAIN_POLL).await;
        }
    };
    tokio::select! {
        _ = wait => tracing::info!(event = "drained", waited_ms = start.elapsed().as_millis() as u64, "all in-flight requests finished"),
        _ = tokio::time::sleep(timeout) => tracing::warn!(event = "drain_timeout", in_flight = metrics.in_flight.get(), "graceful_timeout reached; cutting remaining requests"),
        _ = signals.wait_for_hurry() => tracing::warn!(event = "drain_cut", in_flight = metrics.in_flight.get(), "second signal; cutting remaining requests"),
    }
}
