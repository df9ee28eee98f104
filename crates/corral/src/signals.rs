//! The master's signals. pingora never sees them: we pass it our own shutdown watch.

use corral_supervisor::StopMode;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The signal streams, installed before any socket is bound or worker started, so a signal
/// that arrives early is handled rather than left to its default action (which would kill
/// the master without stopping its workers gracefully).
pub struct Signals {
    term: Signal,
    int: Signal,
    quit: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers; needs a tokio runtime context.
    pub fn install() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the signal that ends the process: SIGTERM stops gracefully, SIGINT and
    /// SIGQUIT quickly. SIGHUP has no meaning yet: it is logged and ignored.
    pub async fn wait_for_stop(&mut self) -> StopMode {
        loop {
            tokio::select! {
                _ = self.term.recv() => return StopMode::Graceful,
                _ = self.int.recv() => return StopMode::Quick,
                _ = self.quit.recv() => return StopMode::Quick,
                _ = self.hup.recv() => tracing::warn!(signal = "SIGHUP", "reloading is not supported by this version; ignoring"),
            }
        }
    }

    /// Resolves on a second SIGTERM or a SIGINT during a graceful stop: the operator wants
    /// out now.
    pub async fn wait_for_hurry(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}
