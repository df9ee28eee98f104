//! Certificates corral orders itself over ACME (RFC 8555, Let's Encrypt by default), for
//! `[server.tls.acme]`: at start a stored certificate is served at once, a missing one is
//! ordered in the background (the listeners and workers do not wait); each is renewed at
//! two thirds of its lifetime and swapped into [`corral_tls::Certificates`] for new
//! connections. A failed attempt is logged and retried with back-off; a working certificate
//! is never removed. This crate knows neither pingora nor the proxy: challenges go through
//! [`corral_tls::Challenges`], which the listeners answer from.

mod account;
mod manage;
mod order;
mod shared;
mod store;
mod validity;

use std::path::PathBuf;
use std::sync::Arc;

pub use manage::DaysLeft;

/// Starts managing every certificate of `acme` (stored under `storage`, and shared through
/// the Redis at `redis` when given), serving them through `certificates`; `days_left` is
/// told each certificate's days left whenever it changes or is looked at again.
pub fn spawn(
    acme: &corral_config::Acme,
    storage: PathBuf,
    redis: Option<String>,
    certificates: Arc<corral_tls::Certificates>,
    days_left: DaysLeft,
) -> tokio::task::JoinHandle<()> {
    // The HTTP client of instant-acme builds on rustls's process-wide provider: ring, as
    // the listeners use (an error means one is installed already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let manager = Arc::new(manage::Manager::new(
        acme.clone(),
        storage,
        redis,
        certificates,
        days_left,
    ));
    tokio::spawn(async move { manager.run().await })
}

/// Whether the host of the ACME `directory` URL accepts a TCP connection within 3 s, for
/// `corral check` (a warning only: the CA may be down now and up at start).
pub fn reachable(directory: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let rest = directory.trim_start_matches("https://");
    let authority = rest.split('/').next().unwrap_or(rest);
    let target = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:443")
    };
    let addrs = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?;
    let mut last = format!("{authority} has no address");
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}
