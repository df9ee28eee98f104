//! The master's signals. pingora never sees them: we pass it our own shutdown watch.

use corral_supervisor::StopMode;
use tokio::signal::unix::{signal, SignalKind};

/// Waits for the signal that ends the process: SIGTERM stops gracefully, SIGINT and SIGQUIT
/// quickly. Signals without a meaning yet are logged and ignored rather than left to their
/// default action (which for SIGHUP would kill the master).
pub async fn wait_for_stop() -> std::io::Result<StopMode> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(StopMode::Graceful),
            _ = int.recv() => return Ok(StopMode::Quick),
            _ = quit.recv() => return Ok(StopMode::Quick),
            _ = hup.recv() => tracing::warn!(signal = "SIGHUP", "reloading is not supported by this version; ignoring"),
        }
    }
}

/// Resolves on a second SIGTERM or a SIGINT during a graceful stop: the operator wants out now.
pub async fn wait_for_hurry() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
