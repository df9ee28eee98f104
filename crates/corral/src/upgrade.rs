//! SIGUSR2, the old master's side: start this binary again (its path as it was at start, so
//! a package upgrade that replaced the file runs the new one) on every listening socket,
//! wait until it says its workers are ready, and only then stop accepting. See
//! `docs/operations.md` ("Upgrading corral itself") for the whole sequence.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use corral_config::Config;
use corral_systemd::{Successor, UpgradeError};
use pingora_core::server::ListenFds;

/// This process's binary and arguments, recorded before anything could replace the file
/// (`/proc/self/exe` then reads "... (deleted)").
static COMMAND: OnceLock<(PathBuf, Vec<OsString>)> = OnceLock::new();

/// Records the command line to start again; call first thing in `main`.
pub fn remember_command() {
    let _ = COMMAND.set(command_now());
}

/// This process's binary path and arguments, as they read now.
fn command_now() -> (PathBuf, Vec<OsString>) {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    (exe, std::env::args_os().skip(1).collect())
}

/// How long the new master may take to be ready: twice the slowest pool's start timeout
/// (a restart or two), plus ten seconds for corral itself.
pub fn ready_timeout(config: &Config) -> Duration {
    let slowest = config
        .pools
        .iter()
        .map(|p| p.start_timeout)
        .max()
        .unwrap_or(Duration::from_secs(30));
    slowest * 2 + Duration::from_secs(10)
}

/// Starts the successor on every socket of `fds`.
pub fn start(fds: &ListenFds) -> Result<Successor, UpgradeError> {
    let (exe, args) = COMMAND.get_or_init(command_now);
    let (_, raw) = fds.lock().serialize();
    tracing::info!(event = "upgrade_started", binary = %exe.display(), sockets = raw.len(), "SIGUSR2: starting the binary again on our listeners");
    Successor::spawn(exe, args, &raw)
}

/// The successor with how its wait ended.
type Outcome = (Successor, Result<u32, UpgradeError>);

/// A successor being waited for, with its deadline.
pub struct UpgradeWait {
    wait: std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>>,
}

impl UpgradeWait {
    /// Waits for `successor` for at most `timeout`.
    pub fn new(mut successor: Successor, timeout: Duration) -> Self {
        UpgradeWait {
            wait: Box::pin(async move {
                let result = successor.wait_ready(timeout).await;
                (successor, result)
            }),
        }
    }

    /// The outcome of the upgrade under way; pending forever when there is none.
    /// Cancel-safe: the wait lives in `slot` until it ends.
    pub async fn wait(slot: &mut Option<UpgradeWait>) -> Outcome {
        let Some(upgrade) = slot.as_mut() else {
            return std::future::pending().await;
        };
        let outcome = upgrade.wait.as_mut().await;
        *slot = None;
        outcome
    }
}
