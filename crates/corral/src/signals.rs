//! The master's signals. pingora never sees them: we pass it our own shutdown watch.

use corral_supervisor::StopMode;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// What a signal asks the master to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM (graceful) or SIGINT/SIGQUIT (quick).
    Stop(StopMode),
    /// SIGHUP: re-read the config and replace the workers.
    Reload,
    /// SIGTTIN (+1) / SIGTTOU (-1): one worker more or less in the active pool.
    Scale(i32),
    /// SIGUSR1: reopen the log files (after logrotate moved them).
    ReopenLogs,
    /// SIGUSR2: start the corral binary again on our listeners and hand over to it.
    Upgrade,
}

/// The signal streams, installed before any socket is bound or worker started, so a signal
/// that arrives early is handled rather than left to its default action (which would kill
/// the master without stopping its workers gracefully).
pub struct Signals {
    term: Signal,
    int: Signal,
    quit: Signal,
    hup: Signal,
    ttin: Signal,
    ttou: Signal,
    usr1: Signal,
    usr2: Signal,
}

impl Signals {
    /// Installs the handlers; needs a tokio runtime context.
    pub fn install() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
            ttin: signal(SignalKind::from_raw(libc::SIGTTIN))?,
            ttou: signal(SignalKind::from_raw(libc::SIGTTOU))?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Waits for the next signal. Several of one kind that arrive together count once
    /// (reloads coalesce).
    pub async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.term.recv() => Request::Stop(StopMode::Graceful),
            _ = self.int.recv() => Request::Stop(StopMode::Quick),
            _ = self.quit.recv() => Request::Stop(StopMode::Quick),
            _ = self.hup.recv() => Request::Reload,
            _ = self.ttin.recv() => Request::Scale(1),
            _ = self.ttou.recv() => Request::Scale(-1),
            _ = self.usr1.recv() => Request::ReopenLogs,
            _ = self.usr2.recv() => Request::Upgrade,
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
