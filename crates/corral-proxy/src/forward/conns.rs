//! Connections to one worker: opened on demand, kept open between requests, and checked
//! before reuse, so a keep-alive request costs no connect and a connection the worker has
//! closed meanwhile is never written to.

use std::io;
use std::time::{Duration, Instant};

use corral_supervisor::routes::Address;
use corral_supervisor::Backend;
use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};
use parking_lot::Mutex;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use tokio::net::{TcpStream, UnixStream};

/// How long connecting to a local worker may take before another is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections older than this are closed rather than reused.
const MAX_IDLE_AGE: Duration = Duration::from_secs(30);
/// A connection idle longer than this is checked before reuse even for a request that could
/// be replayed: app servers close idle connections after a few seconds (gunicorn's gthread
/// after 2 s, uvicorn after 5 s), while one used a moment ago is almost surely open.
const CHECK_AFTER: Duration = Duration::from_secs(1);
/// Idle connections kept per worker; more are closed when released.
const MAX_IDLE: usize = 128;

/// A worker's idle connections, most recently used last. The lock is per worker and is
/// held only to push or pop, never across an `.await`.
#[derive(Default)]
pub struct WorkerConns {
    idle: Mutex<Vec<(Stream, Instant)>>,
}

/// The connection set of `backend`, made on first use and kept on the backend.
pub fn of(backend: &Backend) -> &WorkerConns {
    let data = backend
        .proxy_data
        .get_or_init(|| Box::new(WorkerConns::default()));
    // Only this module sets `proxy_data`, so the type always matches.
    data.downcast_ref::<WorkerConns>()
        .unwrap_or_else(|| unreachable!("proxy_data holds WorkerConns"))
}

impl WorkerConns {
    /// An idle connection, or a new one to `addr`; true when it was idle. A connection idle
    /// for a while, or any when `check` is set, is first checked to be open (one
    /// non-blocking peek); skipping that on the hot path saves a system call per request,
    /// and the caller retries a replayable request that a closed connection failed.
    pub async fn get(&self, addr: &Address, check: bool) -> io::Result<(Stream, bool)> {
        while let Some((stream, since)) = self.idle.lock().pop() {
            let idle = since.elapsed();
            if idle < MAX_IDLE_AGE && (!(check || idle > CHECK_AFTER) || still_open(&stream)) {
                return Ok((stream, true));
            }
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        Ok((stream, false))
    }

    /// Keeps a connection whose last response was read in full for the next request.
    pub fn put(&self, stream: Stream) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push((stream, Instant::now()));
        }
    }
}

async fn connect(addr: &Address) -> io::Result<Stream> {
    let stream: L4Stream = match addr {
        Address::Tcp(addr) => {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            tcp.into()
        }
        Address::Unix(path) => UnixStream::connect(path).await?.into(),
    };
    Ok(Box::new(stream))
}

/// Whether an idle connection is still open and quiet: the worker has neither closed it
/// (EOF) nor sent anything unasked. One non-blocking peek, no await.
fn still_open(stream: &Stream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        recv(
            stream.id(),
            &mut byte,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Err(Errno::EAGAIN)
    )
}
