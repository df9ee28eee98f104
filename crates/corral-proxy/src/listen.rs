//! corral's own accept loop for the public listeners (plain and HTTPS: the forwarder makes
//! the TLS handshake itself). pingora's listening service spawns every connection as a task
//! whose future has room for a TLS handshake (some 8.6 KiB, held for the connection's life,
//! idle or not) and gives it a write buffer for good; here a connection's task is the
//! forwarder's connection loop alone, and writes are joined only while there is something
//! to send (`forward/coalesce.rs`). The sockets come from the same table pingora's listeners
//! took them from (`bind_all`, inherited ones included), so socket activation and the
//! SIGUSR2 hand-over see no difference; the stop closes them as pingora did, when the shutdown
//! signal turns true, while the connections go on under the same signal. With more than one
//! proxy thread, each thread accepts on every socket and serves what it accepted (see
//! [`serve`]).
#![allow(unsafe_code)] // one descriptor taken over from the listener table

use std::net::SocketAddr;
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::Duration;

use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest};
use pingora_core::server::{ListenFds, ShutdownWatch};
use tokio::net::TcpListener;

use crate::forward::Forwarder;

/// The accept queue asked of the kernel, as pingora's listeners ask (capped by
/// `net.core.somaxconn`).
const BACKLOG: u32 = 65535;

/// Why a listener could not serve.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {reason}")]
pub struct ListenError {
    /// The listener's address.
    pub addr: SocketAddr,
    /// What went wrong.
    pub reason: String,
}

/// Serves `forwarder` on every address of `listen`, each socket taken from `fds`, on
/// `threads` proxy threads, until `shutdown` turns true; then the listeners close
/// (connections go on under `shutdown`, and end with the process).
///
/// Each proxy thread runs an event loop of its own (a current-thread runtime: this one, and
/// `threads - 1` started here) with its own accept loop on every listener, as nginx's worker
/// processes each accept on the shared sockets: a connection is accepted, read, forwarded and
/// answered by one thread, and no task moves between threads (the connections kept open to
/// workers are shared, see `Forwarder::for_thread`). One multi-thread runtime
/// (work stealing) scaled worse: tasks woken by one thread's poll of the sockets ran on the
/// other, and every request crossed threads.
pub async fn serve(
    forwarder: Forwarder,
    listen: &[SocketAddr],
    fds: ListenFds,
    shutdown: ShutdownWatch,
    threads: usize,
) -> Result<(), ListenError> {
    let mut sockets = Vec::new();
    for &addr in listen {
        sockets.push((addr, take(&fds, addr)?));
    }
    let mut ended = Vec::new();
    for _ in 1..threads {
        let mut copies = Vec::new();
        for (addr, socket) in &sockets {
            let copy = socket.try_clone().map_err(|e| ListenError {
                addr: *addr,
                reason: e.to_string(),
            })?;
            copies.push((*addr, copy));
        }
        ended.push(proxy_thread(
            forwarder.for_thread(),
            copies,
            shutdown.clone(),
        )?);
    }
    serve_here(Arc::new(forwarder), sockets, shutdown).await;
    for thread in ended {
        let _ = thread.await;
    }
    Ok(())
}

/// Runs the accept loops of `sockets` on the calling runtime until `shutdown`.
async fn serve_here(
    forwarder: Arc<Forwarder>,
    sockets: Vec<(SocketAddr, std::net::TcpListener)>,
    shutdown: ShutdownWatch,
) {
    let mut loops = Vec::new();
    for (addr, socket) in sockets {
        match TcpListener::from_std(socket) {
            Ok(listener) => loops.push(accept_loop(
                forwarder.clone(),
                listener,
                addr,
                shutdown.clone(),
            )),
            Err(e) => tracing::error!(listener = %addr, error = %e, "cannot poll a listener"),
        }
    }
    // The thread's lot of parked idle connections (plain listeners only), beside the
    // accept loops and ending with them at the stop.
    let lot = async {
        if forwarder.parks() {
            crate::forward::park::run(forwarder.clone(), shutdown).await;
        }
    };
    futures::future::join(futures::future::join_all(loops), lot).await;
}

/// Starts one more proxy thread serving `sockets`; the receiver hears when its accept loops
/// have ended (after `shutdown`). The thread runs on, serving the connections it has, until
/// the process ends after the stop sequence's drain.
fn proxy_thread(
    forwarder: Forwarder,
    sockets: Vec<(SocketAddr, std::net::TcpListener)>,
    shutdown: ShutdownWatch,
) -> Result<tokio::sync::oneshot::Receiver<()>, ListenError> {
    let (ended, heard) = tokio::sync::oneshot::channel();
    let addr = sockets.first().map(|(a, _)| *a);
    let error = |e: std::io::Error| ListenError {
        addr: addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        reason: format!("cannot start a proxy thread: {e}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(error)?;
    std::thread::Builder::new()
        .name("corral-proxy".into())
        .spawn(move || {
            runtime.block_on(async move {
                serve_here(Arc::new(forwarder), sockets, shutdown).await;
                let _ = ended.send(());
                std::future::pending::<()>().await
            })
        })
        .map_err(error)?;
    Ok(heard)
}

/// The listening socket of `addr` from the table, listening with pingora's backlog.
fn take(fds: &ListenFds, addr: SocketAddr) -> Result<std::net::TcpListener, ListenError> {
    let error = |reason: String| ListenError { addr, reason };
    let fd = fds
        .lock()
        .get(&addr.to_string())
        .copied()
        .ok_or_else(|| error("not in the listener table".into()))?;
    // SAFETY: `fd` is a listening TCP socket that `bind_all` (or socket activation, or the
    // master we took over from) put in the table for this address, and this is its only
    // listener: it owns the descriptor from here, as pingora's listener would have (by the
    // same `from_raw_fd`), and closes it when the accept loops end. The table keeps the
    // number only, for a SIGUSR2 successor to inherit while the socket is open.
    let socket = unsafe { socket2::Socket::from_raw_fd(fd) };
    socket
        .set_nonblocking(true)
        .map_err(|e| error(e.to_string()))?;
    // listen() again on a listening socket sets its backlog (Linux), as pingora does.
    socket
        .listen(BACKLOG as i32)
        .map_err(|e| error(e.to_string()))?;
    Ok(socket.into())
}

/// Accepts connections on `listener` until `shutdown` turns true, each served in a task of
/// its own by the forwarder's connection loop.
async fn accept_loop(
    forwarder: Arc<Forwarder>,
    listener: TcpListener,
    addr: SocketAddr,
    mut shutdown: ShutdownWatch,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = shutdown.changed() => match changed {
                Ok(()) if !*shutdown.borrow() => continue,
                _ => break,
            },
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let mut stream = L4Stream::from(tcp);
                let digest = SocketDigest::from_raw_fd(std::os::fd::AsRawFd::as_raw_fd(&stream));
                let _ = digest.peer_addr.set(Some(peer.into()));
                stream.set_socket_digest(digest);
                let connection = forwarder
                    .clone()
                    .connection(Box::new(stream), shutdown.clone());
                tokio::spawn(connection);
            }
            Err(e) => {
                tracing::error!(listener = %addr, error = %e, "accept failed");
                // Out of descriptors: accept would fail again at once; let some close.
                if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE)
                {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    tracing::debug!(listener = %addr, "listener closed");
}
