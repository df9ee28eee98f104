//! Listeners passed in by socket activation (`LISTEN_FDS`, `LISTEN_PID`, from fd 3), by
//! systemd or by the corral binary this one replaces. Each is named by the address it is
//! bound to, the same string the listener table of `corral-proxy` is keyed by, so a
//! `server.listen` entry finds its socket whatever order the fds came in.
#![allow(unsafe_code)]

use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};

/// Script that sets `LISTEN_PID` to the started program's own pid before exec (its value is
/// only known after fork, and setting it from `pre_exec` would allocate): `sh` execs in
/// place, so `$$` is the program's pid. The program's argv follows as `$0 "$@"`.
pub const LISTEN_PID_SHIM: &str = "LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" \"$@\"";

/// Set once the inherited fds are taken, so no second owner can be made of them.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// One inherited listening socket.
#[derive(Debug)]
pub struct Inherited {
    /// `ip:port` for TCP, the path for a Unix socket; `None` when it is neither (kept so
    /// the caller can say what it closes).
    pub name: Option<String>,
    /// The socket, close-on-exec, so workers never inherit it.
    pub fd: OwnedFd,
}

/// The sockets passed to this process, once: later calls return none. Empty when
/// `LISTEN_PID` names another process (the variables were meant for a parent).
pub fn inherited_listeners() -> std::io::Result<Vec<Inherited>> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    // Checks LISTEN_PID, sets close-on-exec; leaves the environment alone (other threads
    // may read it), and our workers never get these variables.
    let fds = sd_notify::listen_fds_with_names(false)?;
    Ok(fds
        .map(|(raw, _name)| {
            // SAFETY: `raw` was handed to this process by LISTEN_FDS/LISTEN_PID, which name
            // this pid; nothing else in the process refers to it, and TAKEN makes this the
            // only place that ever takes ownership of it.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let name = local_name(fd);
            match name {
                Ok((name, fd)) => Inherited { name, fd },
                Err(fd) => Inherited { name: None, fd },
            }
        })
        .collect())
}

/// The address a socket is bound to, as the listener table names it. The socket is made
/// non-blocking, as the async runtime needs (systemd passes blocking ones by default).
fn local_name(fd: OwnedFd) -> Result<(Option<String>, OwnedFd), OwnedFd> {
    let tcp = TcpListener::from(fd);
    if let Ok(addr) = tcp.local_addr() {
        return match tcp.set_nonblocking(true) {
            Ok(()) => Ok((Some(addr.to_string()), tcp.into())),
            Err(_) => Err(tcp.into()),
        };
    }
    let unix = UnixListener::from(OwnedFd::from(tcp));
    let name = unix
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.display().to_string()));
    match unix.set_nonblocking(true) {
        Ok(()) => Ok((name, unix.into())),
        Err(_) => Err(unix.into()),
    }
}
