//! The pingora services corral runs: the public reverse proxy in front of the workers, and
//! the admin listener. Sockets are bound here before pingora starts, so a port in use is a
//! clean error rather than a panic inside pingora, and so listeners can later be handed over.

pub mod access_log;
pub mod admin;
pub mod limits;
pub mod proxy;
mod request_id;
pub mod upstream;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;
use corral_supervisor::routes::Reporter;
use corral_supervisor::{SharedRoutes, SharedStatus};
use corral_telemetry::Metrics;
use pingora_core::apps::http_app::HttpServer;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{Fds, ListenFds};
use pingora_core::services::listening::Service;
use pingora_proxy::HttpProxy;

pub use admin::Admin;
pub use proxy::{CorralProxy, ProxySettings};

/// Why a listener could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The address from the config.
    pub addr: SocketAddr,
    /// What the OS said.
    pub source: std::io::Error,
}

/// Binds every address and returns the table pingora's listeners take their sockets from.
pub fn bind_all(addrs: &[SocketAddr]) -> Result<ListenFds, BindError> {
    let mut fds = Fds::new();
    for &addr in addrs {
        let listener = TcpListener::bind(addr).map_err(|source| BindError { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| BindError { addr, source })?;
        fds.add(addr.to_string(), listener.into_raw_fd());
    }
    Ok(Arc::new(parking_lot::Mutex::new(fds)))
}

/// The public proxy service on `listen`.
pub fn proxy_service(
    conf: &Arc<ServerConf>,
    listen: &[SocketAddr],
    routes: SharedRoutes,
    settings: Arc<ArcSwap<ProxySettings>>,
    metrics: Arc<Metrics>,
    reporter: Reporter,
) -> Service<HttpProxy<CorralProxy>> {
    let proxy = CorralProxy::new(routes, settings, metrics, reporter);
    let mut service = pingora_proxy::http_proxy_service_with_name(conf, proxy, "corral-proxy");
    for addr in listen {
        service.add_tcp(&addr.to_string());
    }
    service
}

/// The admin service on `addr`.
pub fn admin_service(
    addr: SocketAddr,
    status: SharedStatus,
    metrics: Arc<Metrics>,
    draining: Arc<AtomicBool>,
) -> Service<HttpServer<Admin>> {
    let mut service = Service::new(
        "corral-admin".into(),
        HttpServer::new_app(Admin::new(status, metrics, draining)),
    );
    service.add_tcp(&addr.to_string());
    service
}
