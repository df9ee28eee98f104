//! The pingora services corral runs: the public reverse proxy in front of the workers, and
//! the admin listener. Sockets are bound here before pingora starts, so a port in use is a
//! clean error rather than a panic inside pingora, and so listeners can later be handed over.

pub mod access_log;
pub mod admin;
pub mod control;
pub mod forward;
pub mod framing;
pub mod head_facts;
pub mod limits;
pub mod listen;
pub mod redirect;
mod request_id;
pub mod settings;
pub mod upstream;

use std::fs::Permissions;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;
use corral_routes::SharedStatus;
use corral_telemetry::Metrics;
use pingora_core::apps::http_app::HttpServer;
pub use pingora_core::server::Fds;
use pingora_core::server::ListenFds;
use pingora_core::services::listening::Service;

pub use admin::Admin;
pub use control::{ControlRequest, ControlSender};
pub use forward::park::set_memory_release;
pub use forward::{Forwarder, Tunnels};
pub use listen::ListenError;
pub use settings::ProxySettings;

/// Why a listener could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {reason}")]
pub struct BindError {
    /// The address from the config.
    pub addr: SocketAddr,
    /// What the OS said.
    pub reason: std::io::Error,
}

/// Binds every address not already in `fds` (sockets inherited by socket activation or an
/// upgrade) and returns the table pingora's listeners take their sockets from.
pub fn bind_all(addrs: &[SocketAddr], mut fds: Fds) -> Result<ListenFds, BindError> {
    for &addr in addrs {
        if fds.get(&addr.to_string()).is_some() {
            continue;
        }
        let listener = TcpListener::bind(addr).map_err(|reason| BindError { addr, reason })?;
        listener
            .set_nonblocking(true)
            .map_err(|reason| BindError { addr, reason })?;
        fds.add(addr.to_string(), listener.into_raw_fd());
    }
    Ok(Arc::new(parking_lot::Mutex::new(fds)))
}

/// The HTTPS side of the proxy: `forwarder`'s twin with each connection's TLS handshake
/// first, its certificates taken from `certificates` at every handshake. It serves
/// `tls.listen` through [`listen::serve`], as the plain one serves `server.listen`.
pub fn tls_forwarder(
    tls: &corral_config::Tls,
    forwarder: &Forwarder,
    certificates: Arc<corral_tls::Certificates>,
) -> Result<Forwarder, String> {
    let tls_alpn01 = tls
        .acme
        .as_ref()
        .is_some_and(|a| a.challenge == corral_config::AcmeChallenge::TlsAlpn01);
    let config = corral_tls::server_config(certificates, tls.http2, tls_alpn01)?;
    let acceptor = pingora_core::listeners::tls::Acceptor::from_server_config(config);
    Ok(forwarder.for_tls(acceptor))
}

/// The `redirect_http` listener: 308 to the same URL on HTTPS port `https_port`.
pub fn redirect_service(
    addr: SocketAddr,
    https_port: u16,
    challenges: Option<Arc<corral_tls::Challenges>>,
) -> Service<HttpServer<redirect::Redirect>> {
    let mut service = Service::new(
        "corral-redirect".into(),
        HttpServer::new_app(redirect::Redirect::new(https_port, challenges)),
    );
    service.add_tcp(&addr.to_string());
    service
}

/// The admin service on `addr`.
pub fn admin_service(
    addr: Option<SocketAddr>,
    control_socket: Option<(&Path, ControlSender)>,
    status: SharedStatus,
    metrics: Arc<Metrics>,
    settings: Arc<ArcSwap<ProxySettings>>,
    draining: Arc<AtomicBool>,
) -> Vec<Service<HttpServer<Admin>>> {
    let mut services = Vec::new();
    if let Some(addr) = addr {
        let app = Admin::new(
            status.clone(),
            metrics.clone(),
            settings.clone(),
            draining.clone(),
            None,
        );
        let mut service = Service::new("corral-admin".into(), HttpServer::new_app(app));
        service.add_tcp(&addr.to_string());
        services.push(service);
    }
    if let Some((path, control)) = control_socket {
        let app = Admin::new(status, metrics, settings, draining, Some(control));
        let mut service = Service::new("corral-control".into(), HttpServer::new_app(app));
        service.add_uds(
            &path.display().to_string(),
            Some(Permissions::from_mode(0o660)),
        );
        services.push(service);
    }
    services
}

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ControlSocketError {
    /// Another process answers on the socket.
    #[error("another corral is running with control socket {0}; stop it, or set server.control_socket to another path")]
    InUse(PathBuf),
    /// The directory or socket could not be created.
    #[error("cannot create control socket {path}: {reason}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What the OS said.
        reason: std::io::Error,
    },
}

/// Binds the control socket (mode 0660) into `fds` unless it was inherited, replacing a stale file left by a corral
/// that died, but never one a running corral still answers on.
pub fn bind_control_socket(path: &Path, fds: &ListenFds) -> Result<(), ControlSocketError> {
    let io = |reason| ControlSocketError::Io {
        path: path.to_path_buf(),
        reason,
    };
    if fds.lock().get(&path.display().to_string()).is_some() {
        return Ok(());
    }
    if UnixStream::connect(path).is_ok() {
        return Err(ControlSocketError::InUse(path.to_path_buf()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, Permissions::from_mode(0o660)).map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    fds.lock()
        .add(path.display().to_string(), listener.into_raw_fd());
    Ok(())
}
