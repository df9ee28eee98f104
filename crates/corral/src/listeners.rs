//! Every listening socket of the master, opened before any worker starts: the ones passed in
//! (systemd socket activation, or the corral this one replaces on SIGUSR2) are taken as they
//! are, the rest bound here. A port in use ends the run cleanly, with nothing to undo.

use std::os::fd::IntoRawFd;
use std::sync::Arc;

use corral_config::Config;
use corral_proxy::Fds;
use pingora_core::server::ListenFds;

/// What the listeners serve on: their sockets, and the certificates of the HTTPS ones.
pub struct Opened {
    /// Public listeners (plain and HTTPS), the redirect, admin and control socket.
    pub fds: ListenFds,
    /// The certificates of `[server.tls]`, swapped on reload.
    pub certificates: Option<Arc<corral_tls::Certificates>>,
}

/// The listener table of `config`: public listeners, admin and control socket, and the
/// certificates, checked before anything starts (a broken one is a config error).
pub fn open(config: &Config) -> anyhow::Result<Opened> {
    let certificates = match corral_tls::load(config) {
        Ok(set) => set.map(|set| {
            crate::tls::announce(&set);
            corral_tls::Certificates::new(set)
        }),
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            anyhow::bail!("{}", list.join("\n"));
        }
    };
    let mut addresses = config.server.listen.clone();
    addresses.extend(config.server.admin);
    if let Some(tls) = &config.server.tls {
        addresses.extend(&tls.listen);
        addresses.extend(tls.redirect_http);
    }
    let mut wanted: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    wanted.extend(
        config
            .server
            .control_socket
            .iter()
            .map(|p| p.display().to_string()),
    );
    let mut fds = Fds::new();
    for socket in corral_systemd::inherited_listeners()? {
        match socket.name {
            Some(name) if wanted.contains(&name) => {
                tracing::info!(event = "listener_inherited", listener = %name, "serving on an inherited socket");
                fds.add(name, socket.fd.into_raw_fd());
            }
            // Dropping it closes it: nothing in the config listens there.
            name => tracing::warn!(
                event = "listener_unused",
                listener = name.as_deref().unwrap_or("(not a TCP or Unix socket)"),
                "an inherited socket matches no server.listen, server.admin or control_socket; closing it"
            ),
        }
    }
    let fds = corral_proxy::bind_all(&addresses, fds)?;
    if let Some(path) = &config.server.control_socket {
        corral_proxy::bind_control_socket(path, &fds)?;
    }
    Ok(Opened { fds, certificates })
}
