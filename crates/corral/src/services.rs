//! The proxy and admin listeners each run as a pingora service in a task of their own,
//! watched so that one ending before the stop sequence asks it to stops corral.

use tokio::sync::{mpsc, watch};

/// Runs a listening service in its own task. One that ends before the stop sequence asks it
/// to (pingora panics in the task when it cannot build a listener) reports why on `failed`,
/// so corral stops with an error instead of running on without a listener.
pub fn spawn(
    name: &'static str,
    service: impl std::future::Future<Output = ()> + Send + 'static,
    stopping: watch::Receiver<bool>,
    failed: mpsc::UnboundedSender<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let ended = tokio::spawn(service).await;
        if *stopping.borrow() {
            return;
        }
        let reason = match ended {
            Ok(()) => format!("{name} stopped on its own"),
            Err(e) if e.is_panic() => {
                let panic = e.into_panic();
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                format!("{name} failed: {message}")
            }
            Err(e) => format!("{name} failed: {e}"),
        };
        let _ = failed.send(reason);
    })
}
