//! Starting one worker of an app pool: corral binds its listening socket and makes its
//! output pipes, the pool's template forks it with those (`template.rs`), and from then on
//! it is watched like a worker corral spawned (`launch.rs`): its exit through a pidfd
//! (`reaper.rs`; corral is its parent), its output by the same pumps, its readiness by the
//! same probe. Signals, `max_memory`, hangs and stops go to its process group as to any
//! worker's.

use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::Instant;

use corral_config::{Bind, PythonApp};
use corral_routes::Address;
use nix::fcntl::OFlag;
use tokio::net::unix::pipe;

use super::launch::{Output, Process};
use super::Runner;
use crate::policy::{Event, SpawnOrder};
use crate::{reaper, sockets};

impl Runner {
    /// Forks the worker of `order` from its pool's template (started first if needed).
    pub(super) fn fork(&mut self, order: &SpawnOrder, app: &PythonApp) -> Event {
        let worker = order.worker;
        let failed = |error: String| Event::SpawnFailed { worker, error };
        let pool = &order.config;
        let index = match self.template_for(pool, app, &order.runtime_dir) {
            Ok(index) => index,
            Err(why) => return failed(why),
        };
        let started = Instant::now();
        let (addr, listener) = match bind(order) {
            Ok(bound) => bound,
            Err(e) => return failed(format!("cannot bind the worker's socket: {e}")),
        };
        let cleanup = |addr: &Address| sockets::cleanup(addr, None);
        let pipes = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .and_then(|out| nix::unistd::pipe2(OFlag::O_CLOEXEC).map(|err| (out, err)));
        let ((out_r, out_w), (err_r, err_w)) = match pipes {
            Ok(pipes) => pipes,
            Err(e) => {
                cleanup(&addr);
                return failed(format!("cannot make the worker's output pipes: {e}"));
            }
        };
        let server = match &addr {
            Address::Tcp(a) => (a.ip().to_string(), a.port().to_string()),
            Address::Unix(_) => ("localhost".to_string(), "80".to_string()),
        };
        let fds = [listener.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        let forked = self.templates[index].fork(order.slot, (&server.0, &server.1), fds);
        // The worker has its own copies now.
        drop((listener, out_w, err_w));
        let pid = match forked {
            Ok(pid) => pid,
            Err(why) => {
                cleanup(&addr);
                return failed(why);
            }
        };
        let watched = reaper::pidfd_open(pid).and_then(|pidfd| {
            let stdout = pipe::Receiver::from_owned_fd(out_r)?;
            let stderr = pipe::Receiver::from_owned_fd(err_r)?;
            Ok((pidfd, stdout, stderr))
        });
        let (pidfd, stdout, stderr) = match watched {
            Ok(watched) => watched,
            Err(e) => {
                // Not watchable, so not ours to keep: the orphan reaper collects it.
                super::os::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                cleanup(&addr);
                return failed(format!("cannot watch the forked worker: {e}"));
            }
        };
        let process = Process {
            pid,
            stdout: Some(Box::new(stdout) as Output),
            stderr: Some(Box::new(stderr) as Output),
            exit: Box::pin(reaper::wait(pidfd)),
        };
        self.watch(order, addr, None, None, started, process)
    }
}

/// The worker's listening socket, bound by corral: a Unix socket under the runtime dir
/// (`bind = "unix"`, the default of app pools) or a free loopback port.
fn bind(order: &SpawnOrder) -> std::io::Result<(Address, OwnedFd)> {
    let pool = &order.config;
    match pool.bind {
        Bind::Unix => {
            let mut none = None;
            let prepared = sockets::prepare(pool, order.worker.0, &mut none, &order.runtime_dir)?;
            let Address::Unix(path) = &prepared.addr else {
                return Err(std::io::Error::other("expected a Unix socket path"));
            };
            let listener = UnixListener::bind(path)?;
            Ok((prepared.addr, OwnedFd::from(listener)))
        }
        Bind::Tcp | Bind::Fd => {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            Ok((
                Address::Tcp(listener.local_addr()?),
                OwnedFd::from(listener),
            ))
        }
    }
}
