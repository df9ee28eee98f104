//! The stop sequence, once the serving loop has ended: `/readyz` 503, `accept_grace`, stop
//! accepting, drain in-flight requests and connections up to `graceful_timeout` (cut short
//! by a second signal), close the tunnels still open. The workers are stopped after this,
//! by `run.rs`, in the mode [`Ending::stop_mode`] says.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use corral_config::Config;
use corral_supervisor::StopMode;
use corral_telemetry::Metrics;

use crate::announce::Announcer;
use crate::signals::Signals;
use crate::wiring::Wired;

/// How often the drain checks whether in-flight requests are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// How long open tunnels have to close once told to, before the workers are stopped.
const TUNNEL_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How the serving loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A stop signal: the workers stop this way.
    Stop(StopMode),
    /// A new master serves on our sockets now: stop accepting, drain, stop our workers.
    HandedOver(u32),
    /// We are a successor whose workers cannot start: the old master goes on.
    SuccessorFailed,
}

impl Ending {
    /// How the workers and the drain go: a hand-over drains (our sockets stay open in the
    /// new master), a failed successor leaves at once.
    pub fn stop_mode(self) -> StopMode {
        match self {
            Ending::Stop(mode) => mode,
            Ending::HandedOver(_) => StopMode::Graceful,
            Ending::SuccessorFailed => StopMode::Quick,
        }
    }
}

/// Runs the stop sequence for `ending` under `config` (the one in force at the end).
pub async fn stop(
    ending: Ending,
    config: &Config,
    wired: Wired,
    metrics: &Metrics,
    signals: &mut Signals,
    announcer: &mut Announcer,
) {
    let mode = ending.stop_mode();
    // After a hand-over there is no one to tell /readyz to.
    if let Ending::Stop(_) = ending {
        announcer.stopping(metrics.in_flight.get());
    }
    wired.draining.store(true, Ordering::Release);
    tracing::info!(event = "stopping", mode = ?mode, in_flight = metrics.in_flight.get(), "stop requested; /readyz now answers 503");
    if ending == Ending::Stop(StopMode::Graceful) && !config.server.accept_grace.is_zero() {
        // Load balancers probe /readyz; give them time to stop sending before we refuse.
        tokio::time::sleep(config.server.accept_grace).await;
    }
    tracing::info!(
        event = "listeners_closed",
        "no longer accepting connections"
    );
    // Listeners close and idle keep-alive connections are dropped; requests in flight go on.
    let _ = wired.shutdown.send(true);
    for task in wired.proxy_tasks.into_iter().chain(wired.admin_tasks) {
        let _ = task.await;
    }
    if mode == StopMode::Graceful {
        drain(metrics, config.server.graceful_timeout, signals, announcer).await;
    }
    // WebSockets still open close here, before their workers are told to stop.
    let tunnels = &wired.tunnels;
    if tunnels.open() > 0 {
        tunnels.close_all();
        let deadline = Instant::now() + TUNNEL_CLOSE_WAIT;
        while tunnels.open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
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
