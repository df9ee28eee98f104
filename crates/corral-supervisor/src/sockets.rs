//! The sockets a worker is started with: where it listens (`bind`) and, for
//! `ready = "notify"`, the datagram socket it reports readiness on. Files live under
//! `server.runtime_dir`, in directories the pool's user may write.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use corral_config::{Bind, Pool, Ready};
use tokio::net::UnixDatagram;

use corral_routes::Address;

/// What one worker gets.
pub(crate) struct WorkerSockets {
    /// Where it listens.
    pub(crate) addr: Address,
    /// `$NOTIFY_SOCKET` and the master's end of it.
    pub(crate) notify: Option<(PathBuf, UnixDatagram)>,
}

/// Prepares the sockets of worker `id` of `pool`. `listener` is the slot's own socket for
/// `bind = "fd"`, kept across the slot's workers after an exit (`None` binds a new one).
pub(crate) fn prepare(
    pool: &Pool,
    id: u64,
    listener: &mut Option<TcpListener>,
    runtime_dir: &Path,
) -> std::io::Result<WorkerSockets> {
    let addr = match pool.bind {
        // A free loopback port; the worker binds it right after (the usual race is accepted).
        Bind::Tcp => Address::Tcp(TcpListener::bind("127.0.0.1:0")?.local_addr()?),
        Bind::Fd => {
            let bound = match listener.take() {
                Some(l) => l,
                None => TcpListener::bind("127.0.0.1:0")?,
            };
            let addr = bound.local_addr()?;
            *listener = Some(bound);
            Address::Tcp(addr)
        }
        // One path per worker process: during a replacement two workers of a slot coexist.
        Bind::Unix => {
            let dir = pool_dir(runtime_dir, "pools", pool)?;
            let path = dir.join(file_name(pool, id));
            remove(&path);
            Address::Unix(path)
        }
    };
    let notify = match pool.ready {
        Ready::Notify => {
            let dir = pool_dir(runtime_dir, "notify", pool)?;
            let path = dir.join(file_name(pool, id));
            remove(&path);
            let socket = UnixDatagram::bind(&path)?;
            if let Some(run_as) = &pool.run_as {
                nix::unistd::chown(&path, Some(run_as.uid.into()), Some(run_as.gid.into()))
                    .map_err(std::io::Error::from)?;
            }
            Some((path, socket))
        }
        _ => None,
    };
    Ok(WorkerSockets { addr, notify })
}

/// `runtime_dir/KIND/POOL`, created and handed to the pool's user so its workers can bind.
fn pool_dir(runtime_dir: &Path, kind: &str, pool: &Pool) -> std::io::Result<PathBuf> {
    let dir = runtime_dir.join(kind).join(&pool.name);
    std::fs::create_dir_all(&dir)?;
    if let Some(run_as) = &pool.run_as {
        nix::unistd::chown(&dir, Some(run_as.uid.into()), Some(run_as.gid.into()))
            .map_err(std::io::Error::from)?;
    }
    Ok(dir)
}

/// A worker's socket file name. It carries the master's pid: during a binary upgrade two
/// masters' workers, numbered alike, share the runtime dir.
fn file_name(pool: &Pool, id: u64) -> String {
    format!("{}.{}-{id}.sock", pool.name, std::process::id())
}

/// Removes a worker's socket files once it has exited.
pub(crate) fn cleanup(addr: &Address, notify: Option<&Path>) {
    if let Address::Unix(path) = addr {
        remove(path);
    }
    if let Some(path) = notify {
        remove(path);
    }
}

fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}
