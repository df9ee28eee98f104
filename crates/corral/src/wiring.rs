//! The master's services, wired once at start: the reloadable proxy settings, the forwarder
//! with its listeners (plain, HTTPS, the HTTP to HTTPS redirect), the admin listener and the
//! control socket, each in a watched task (`services.rs`). What the serving loop and the stop
//! sequence need from them comes back in [`Wired`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;
use corral_config::Config;
use corral_proxy::{ControlRequest, ProxySettings, Tunnels};
use corral_supervisor::Supervisor;
use corral_telemetry::Metrics;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::{listeners, services};

/// The running services and the handles the master keeps on them.
pub struct Wired {
    /// The proxy's settings, swapped whole on reload.
    pub settings: Arc<ArcSwap<ProxySettings>>,
    /// Open upgraded connections (WebSockets), closed at the end of the stop sequence.
    pub tunnels: Arc<Tunnels>,
    /// Turns `/readyz` to 503 when the stop begins.
    pub draining: Arc<AtomicBool>,
    /// Closes every listener.
    pub shutdown: watch::Sender<bool>,
    /// The public listeners' tasks.
    pub proxy_tasks: Vec<JoinHandle<()>>,
    /// The admin listener's and control socket's tasks.
    pub admin_tasks: Vec<JoinHandle<()>>,
    /// Why a service ended on its own.
    pub failed: mpsc::UnboundedReceiver<String>,
    /// Requests from the control socket.
    pub control: mpsc::UnboundedReceiver<ControlRequest>,
}

/// Starts every listening service of `config` on the sockets `opened`; they accept once
/// `accepting` turns true (at once, or after a SIGUSR2 once the active pool is ready).
pub fn start(
    config: &Config,
    opened: &listeners::Opened,
    supervisor: &Supervisor,
    metrics: &Arc<Metrics>,
    accepting: watch::Receiver<bool>,
) -> anyhow::Result<Wired> {
    let draining = Arc::new(AtomicBool::new(false));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let settings = Arc::new(ArcSwap::from_pointee(ProxySettings::new(
        config, None, metrics,
    )));
    let tunnels = Arc::new(Tunnels::default());
    let forwarder = corral_proxy::Forwarder::new(
        supervisor.routes.clone(),
        settings.clone(),
        metrics.clone(),
        supervisor.reporter(),
        tunnels.clone(),
    );
    let (failed_tx, failed) = mpsc::unbounded_channel();
    let listening = services::Listening {
        fds: opened.fds.clone(),
        shutdown: shutdown_rx,
        failed: failed_tx,
        accepting,
        threads: config.server.threads,
    };
    let mut proxy_tasks = Vec::new();
    if let (Some(tls), Some(certificates)) = (&config.server.tls, &opened.certificates) {
        let https = corral_proxy::tls_forwarder(tls, &forwarder, certificates.clone())
            .map_err(anyhow::Error::msg)?;
        proxy_tasks.push(listening.run_forwarder("the HTTPS proxy", https, tls.listen.clone()));
        if let (Some(addr), Some(https)) = (tls.redirect_http, tls.listen.first()) {
            let challenges = tls
                .acme
                .is_some()
                .then(|| certificates.challenges().clone());
            let service = corral_proxy::redirect_service(addr, https.port(), challenges);
            proxy_tasks.push(listening.run("the HTTP to HTTPS redirect", service));
        }
    }
    let forwarder = match (&opened.certificates, config.server.tls.as_ref()) {
        (Some(c), Some(tls)) if tls.acme.is_some() => forwarder.answering(c.challenges().clone()),
        _ => forwarder,
    };
    if let (Some(acme), Some(certificates)) = (
        config.server.tls.as_ref().and_then(|t| t.acme.as_ref()),
        &opened.certificates,
    ) {
        let storage = acme
            .storage
            .clone()
            .unwrap_or_else(|| config.server.state_dir.join("acme"));
        let m = metrics.clone();
        let days_left: corral_acme::DaysLeft =
            Arc::new(move |name, days| m.tls.days_left(name, days));
        let redis = match &config.rate_limit_store.kind {
            corral_config::StoreKind::Redis { url, .. } => Some(url.clone()),
            corral_config::StoreKind::Memory => None,
        };
        corral_acme::spawn(acme, storage, redis, certificates.clone(), days_left);
    }
    proxy_tasks.push(listening.run_forwarder("the proxy", forwarder, config.server.listen.clone()));
    let (control_tx, control) = mpsc::unbounded_channel();
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
    let admin_tasks = admin
        .into_iter()
        .map(|service| listening.run("the admin listener", service))
        .collect();
    Ok(Wired {
        settings,
        tunnels,
        draining,
        shutdown,
        proxy_tasks,
        admin_tasks,
        failed,
        control,
    })
}
