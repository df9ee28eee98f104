//! The proxy and admin listeners each run in a task of their own (the public ones on corral's
//! own accept loop, the redirect and admin ones as pingora services), watched so that one
//! ending before the stop sequence asks it to stops corral.
//!
//! A master started by a SIGUSR2 upgrade shares its listening sockets with the old one, and
//! a connection goes to whichever calls `accept` first. So its services start accepting only
//! once `accepting` turns true (its active pool is ready, see `announce.rs`): until then every
//! connection waits in the sockets' shared queue for the old master, which serves as before,
//! and a successor that never gets ready never takes one.

use pingora_core::apps::ServerApp;
use pingora_core::server::ListenFds;
use pingora_core::services::listening::Service;
use pingora_core::services::Service as _;
use tokio::sync::{mpsc, watch};

/// What every listening service is started with.
pub struct Listening {
    /// The sockets, bound (or inherited) before anything started.
    pub fds: ListenFds,
    /// Turns true when the stop sequence closes the listeners.
    pub shutdown: watch::Receiver<bool>,
    /// Where a service that ends on its own says why.
    pub failed: mpsc::UnboundedSender<String>,
    /// Turns true when this master may take connections: at once, or after a SIGUSR2 once
    /// its active pool is ready.
    pub accepting: watch::Receiver<bool>,
    /// Proxy threads (`server.threads`): the public listeners' connections are spread over
    /// this many event loops, the calling runtime's included.
    pub threads: usize,
}

impl Listening {
    /// Runs `service` on its sockets in a watched task (see [`spawn`]).
    pub fn run<A: ServerApp + Send + Sync + 'static>(
        &self,
        name: &'static str,
        mut service: Service<A>,
    ) -> tokio::task::JoinHandle<()> {
        let (fds, shutdown) = (self.fds.clone(), self.shutdown.clone());
        let accepting = self.accepting.clone();
        spawn(
            name,
            async move {
                if until_accepting(accepting, shutdown.clone()).await {
                    service.start_service(Some(fds), shutdown, 1).await
                }
                Ok(())
            },
            self.shutdown.clone(),
            self.failed.clone(),
        )
    }

    /// Serves the public listeners `listen` with corral's own accept loop
    /// (`corral_proxy::listen`), watched like a pingora service.
    pub fn run_forwarder(
        &self,
        name: &'static str,
        forwarder: corral_proxy::Forwarder,
        listen: Vec<std::net::SocketAddr>,
    ) -> tokio::task::JoinHandle<()> {
        let (fds, shutdown) = (self.fds.clone(), self.shutdown.clone());
        let accepting = self.accepting.clone();
        let threads = self.threads;
        spawn(
            name,
            async move {
                if until_accepting(accepting, shutdown.clone()).await {
                    corral_proxy::listen::serve(forwarder, &listen, fds, shutdown, threads)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            },
            self.shutdown.clone(),
            self.failed.clone(),
        )
    }
}

/// Waits until this master may accept (true) or stops before it may (false).
async fn until_accepting(
    mut accepting: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        open = accepting.wait_for(|open| *open) => open.is_ok(),
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}

/// Runs a listening service in its own task. One that ends before the stop sequence asks it
/// to (pingora panics in the task when it cannot build a listener; corral's own accept loop
/// returns why) reports why on `failed`, so corral stops with an error instead of running on
/// without a listener.
pub fn spawn(
    name: &'static str,
    service: impl std::future::Future<Output = Result<(), String>> + Send + 'static,
    stopping: watch::Receiver<bool>,
    failed: mpsc::UnboundedSender<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let ended = tokio::spawn(service).await;
        if *stopping.borrow() {
            return;
        }
        let reason = match ended {
            Ok(Ok(())) => format!("{name} stopped on its own"),
            Ok(Err(e)) => format!("{name} failed: {e}"),
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
