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
use corral_telemetry::{init_logging, LogGuard, Metrics};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::announce::{Announcer, Turn};
use crate::reload;
use crate::signals::{Request, Signals};
use crate::{config_watch, listeners, routing_state, services, switch, upgrade};

/// How often the drain checks whether in-flight requests are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// How often readiness, the status line and the watchdog are looked at.
const ANNOUNCE_TICK: Duration = Duration::from_millis(200);
/// How long open tunnels have to close once told to, before the workers are stopped.
const TUNNEL_CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How long a successor that will not take over has to stop before it is killed.
const ABANDON_GRACE: Duration = Duration::from_secs(10);

/// How the serving loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// A stop signal: the workers stop this way.
    Stop(StopMode),
    /// A new master serves on our sockets now: stop accepting, drain, stop our workers.
    HandedOver(u32),
    /// We are a successor whose workers cannot start: the old master goes on.
    SuccessorFailed,
}

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
    let runtime = proxy_runtime(config.server.threads).context("cannot start the proxy runtime")?;
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
    let supervisor = corral_supervisor::start(&config, restored.as_ref(), metrics.clone())?;
    tracing::info!(
        event = "started",
        version = env!("CARGO_PKG_VERSION"),
        config = %config.source.display(),
        listen = ?config.server.listen,
        admin = ?config.server.admin,
        traffic = %restored.unwrap_or_else(|| config.routing.traffic()),
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
    supervisor.stop(match ending {
        Ending::Stop(mode) => mode,
        Ending::HandedOver(_) => StopMode::Graceful,
        Ending::SuccessorFailed => StopMode::Quick,
    });
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

/// Serves until a stop signal, then drains; returns how the workers are to be stopped.
async fn serve(
    config: &Config,
    listeners::Opened { fds, certificates }: listeners::Opened,
    supervisor: &corral_supervisor::Supervisor,
    metrics: Arc<Metrics>,
    mut signals: Signals,
    mut announcer: Announcer,
    log: &LogGuard,
) -> anyhow::Result<Ending> {
    let draining = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let settings = Arc::new(ArcSwap::from_pointee(ProxySettings::new(
        config, None, &metrics,
    )));
    let tunnels = Arc::new(corral_proxy::Tunnels::default());
    let forwarder = corral_proxy::Forwarder::new(
        supervisor.routes.clone(),
        settings.clone(),
        metrics.clone(),
        supervisor.reporter(),
        tunnels.clone(),
    );
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel();
    let listening = services::Listening {
        fds: fds.clone(),
        shutdown: shutdown_rx.clone(),
        failed: failed_tx.clone(),
    };
    let mut proxy_tasks = Vec::new();
    if let (Some(tls), Some(certificates)) = (&config.server.tls, &certificates) {
        let service = corral_proxy::tls_service(tls, &forwarder, certificates.clone())
            .map_err(anyhow::Error::msg)?;
        proxy_tasks.push(listening.run("the HTTPS proxy", service));
        if let (Some(addr), Some(https)) = (tls.redirect_http, tls.listen.first()) {
            let service = corral_proxy::redirect_service(addr, https.port());
            proxy_tasks.push(listening.run("the HTTP to HTTPS redirect", service));
        }
    }
    let proxy = corral_proxy::proxy_service(&config.server.listen, forwarder);
    proxy_tasks.push(listening.run("the proxy", proxy));
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
        settings.clone(),
        draining.clone(),
    );
    let admin_tasks: Vec<_> = admin
        .into_iter()
        .map(|service| listening.run("the admin listener", service))
        .collect();

    let mut watch = if config.server.watch_config {
        match config_watch::ConfigWatch::start(&config.source) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(event = "watch_failed", config = %config.source.display(), error = %e, "cannot watch the config file; reload with SIGHUP instead");
                None
            }
        }
    } else {
        None
    };
    let mut announce_tick = tokio::time::interval(ANNOUNCE_TICK);
    announce_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut upgrading: Option<upgrade::UpgradeWait> = None;
    let mut switching: switch::Switching = None;
    let mut current = config.clone();
    // The config generation, counted here where reloads are decided (the supervisor's
    // snapshot follows it asynchronously): 1 at start, +1 per applied reload.
    let mut generation: u64 = 1;
    let mut apply = |reloaded: reload::Reloaded, current: &mut Config| {
        let new = reloaded.config;
        if let (Some(set), Some(in_use)) = (reloaded.certificates, &certificates) {
            crate::tls::announce(&set);
            in_use.store(set);
        }
        // A file whose routing changed wins over a switch made at run time, also after a
        // restart.
        if new.routing.traffic() != current.routing.traffic() {
            routing_state::forget(&new);
        }
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
    let ending = loop {
        tokio::select! {
            request = signals.next() => match request {
                Request::Stop(mode) => break Ending::Stop(mode),
                Request::Reload => {
                    announcer.reloading();
                    match reload::reload(&current, &metrics) {
                        Ok(new) => announcer.reload_applied(apply(new, &mut current)),
                        Err(_) => announcer.reload_rejected(),
                    }
                }
                Request::Scale(delta) => supervisor.scale(None, Scale::By(delta)),
                Request::ReopenLogs => {
                    log.reopen();
                    tracing::info!(event = "logs_reopened", files = log.has_files(), "SIGUSR1: log files reopened");
                }
                Request::Upgrade if upgrading.is_some() => {
                    tracing::warn!(event = "upgrade_ignored", "SIGUSR2: an upgrade is already under way");
                }
                Request::Upgrade => match upgrade::start(&fds) {
                    Ok(successor) => upgrading = Some(upgrade::UpgradeWait::new(successor, upgrade::ready_timeout(&current))),
                    Err(e) => tracing::error!(event = "upgrade_failed", error = %e, "the upgrade did not start; still serving"),
                },
            },
            () = config_watch::changed(&mut watch) => {
                tracing::info!(event = "config_changed", config = %current.source.display(), "the config file changed");
                announcer.reloading();
                match reload::reload(&current, &metrics) {
                    Ok(new) => announcer.reload_applied(apply(new, &mut current)),
                    Err(_) => announcer.reload_rejected(),
                }
            }
            Some(request) = control_rx.recv() => match request {
                ControlRequest::Reload(reply) => {
                    announcer.reloading();
                    let answer = reload::reload(&current, &metrics).map(|new| {
                        let generation = apply(new, &mut current);
                        announcer.reload_applied(generation);
                        json!({ "reloaded": true, "generation": generation })
                    });
                    if answer.is_err() {
                        announcer.reload_rejected();
                    }
                    let _ = reply.send(answer);
                }
                ControlRequest::Switch { to, reply } => {
                    switch::begin(&mut switching, &current, supervisor, &metrics, to, reply);
                }
                ControlRequest::Scale { pool, workers, reply } => {
                    let name = pool.unwrap_or_else(|| current.routing.active.clone());
                    let answer = match corral_config::unknown_pool(&name, &current.pools) {
                        None => {
                            supervisor.scale(Some(name.clone()), Scale::To(workers));
                            Ok(json!({ "pool": name, "workers": workers }))
                        }
                        Some(why) => Err(vec![why]),
                    };
                    let _ = reply.send(answer);
                }
            },
            () = switch::finished(&mut switching) => {}
            (successor, result) = upgrade::UpgradeWait::wait(&mut upgrading) => match result {
                Ok(pid) => {
                    tracing::info!(event = "upgrade_ready", new_master = pid, "the new master is ready; this one stops accepting and drains");
                    corral_systemd::Notifier::new().main_pid(pid);
                    successor.release();
                    break Ending::HandedOver(pid);
                }
                Err(e) => {
                    tracing::error!(event = "upgrade_failed", error = %e, "the new binary did not take over; still serving");
                    tokio::spawn(successor.abandon(ABANDON_GRACE));
                }
            },
            Some(reason) = failed_rx.recv() => {
                let _ = shutdown_tx.send(true);
                anyhow::bail!("{reason}; stopping");
            }
            _ = announce_tick.tick() => {
                if let Turn::SuccessorFailed(reason) = announcer.tick(&supervisor.status.load(), &supervisor.heartbeat) {
                    tracing::error!(event = "upgrade_abandoned", reason = %reason, "the active pool cannot start; leaving the previous master serving");
                    break Ending::SuccessorFailed;
                }
            }
        }
    };
    let mode = match ending {
        Ending::Stop(mode) => {
            announcer.stopping(metrics.in_flight.get());
            mode
        }
        // Our sockets stay open in the new master; there is no one to tell /readyz to.
        Ending::HandedOver(_) => StopMode::Graceful,
        Ending::SuccessorFailed => StopMode::Quick,
    };
    draining.store(true, Ordering::Release);
    tracing::info!(event = "stopping", mode = ?mode, in_flight = metrics.in_flight.get(), "stop requested; /readyz now answers 503");
    if matches!(ending, Ending::Stop(StopMode::Graceful)) && !current.server.accept_grace.is_zero()
    {
        // Load balancers probe /readyz; give them time to stop sending before we refuse.
        tokio::time::sleep(current.server.accept_grace).await;
    }
    tracing::info!(
        event = "listeners_closed",
        "no longer accepting connections"
    );
    // Listeners close and idle keep-alive connections are dropped; requests in flight go on.
    let _ = shutdown_tx.send(true);
    for task in proxy_tasks {
        let _ = task.await;
    }
    for task in admin_tasks {
        let _ = task.await;
    }
    if mode == StopMode::Graceful {
        drain(
            &metrics,
            current.server.graceful_timeout,
            &mut signals,
            &mut announcer,
        )
        .await;
    }
    // WebSockets still open close here, before their workers are told to stop.
    if tunnels.open() > 0 {
        tunnels.close_all();
        let deadline = Instant::now() + TUNNEL_CLOSE_WAIT;
        while tunnels.open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
    Ok(ending)
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

/// Waits until no request is in flight and no client connection open, `timeout` passes, or
/// the operator insists.
async fn drain(
    metrics: &Metrics,
    timeout: Duration,
    signals: &mut Signals,
    announcer: &mut Announcer,
) {
    let start = Instant::now();
    // Client connections too: an idle one is kept a moment for a last request, and an
    // upgraded one (WebSocket) runs until it ends or the timeout.
    let wait = async {
        while metrics.in_flight.get() > 0 || metrics.connections.get() > 0 {
            announcer.draining(metrics.in_flight.get());
            tokio::time::sleep(DRAIN_POLL).await;
        }
    };
    tokio::select! {
        _ = wait => tracing::info!(event = "drained", waited_ms = start.elapsed().as_millis() as u64, "all in-flight requests finished"),
        _ = tokio::time::sleep(timeout) => tracing::warn!(event = "drain_timeout", in_flight = metrics.in_flight.get(), "graceful_timeout reached; cutting remaining requests"),
        _ = signals.wait_for_hurry() => tracing::warn!(event = "drain_cut", in_flight = metrics.in_flight.get(), "second signal; cutting remaining requests"),
    }
}
