//! Connections to one worker: opened on demand, kept open between requests, and checked
//! before reuse, so a keep-alive request costs no connect and a connection the worker has
//! closed meanwhile is never written to.
//!
//! A worker that closes its connection after every answer (a gunicorn sync worker) gets its
//! next connection while it is still busy: a spare, opened just after a request went out,
//! waits in the worker's accept queue, so the moment the answer is in the next request is one
//! write away and the worker finds it as soon as it accepts again. Only the connection is
//! early: a request still goes only to a worker with room. The spare is opened after the
//! request's write, not before it: the worker sits idle from its answer until the next request
//! reaches it, and a connect on that path made every request wait for it. A spare is a bare
//! socket until a request takes it, and joins the event loop of the proxy thread that does:
//! registered where it was opened, its readiness went through that thread, which had to be
//! woken for it (an `eventfd` write and an `epoll_wait` more per request on two threads).
//!
//! The connections are the proxy's own, so they live in the proxy's [`ConnMap`], not on the
//! supervisor's `Backend`: a list sorted by worker id behind an `ArcSwap`, read once per
//! attempt with one lock-free `load` and a binary search (a pool has tens of workers, so
//! that beats hashing), and copied only when a worker is first used. The connection carries
//! its worker's set back, so a request pays one load and one reference count, and no global
//! lock.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use corral_routes::{Address, Backend, WorkerId};
use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};
use parking_lot::Mutex;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::{TcpStream, UnixStream};

/// How long connecting to a local worker may take before another is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections older than this are closed rather than reused.
const MAX_IDLE_AGE: Duration = Duration::from_secs(30);
/// A connection idle longer than this is checked before reuse even for a request that could
/// be replayed: app servers close idle connections after a few seconds (gunicorn's gthread
/// after 2 s, uvicorn after 5 s), while one used a moment ago is almost surely open.
const CHECK_AFTER: Duration = Duration::from_secs(1);
/// Idle connections kept per worker; more are closed when released. A worker never has
/// more connections in use than requests at once (its pool's `concurrency`), so the set
/// grows only to the busiest moment's; this bounds it for a very high `concurrency`. At 128
/// (nginx's usual `keepalive`), 256 clients in flight to one worker closed and opened
/// again one connection every ten requests (issue 36).
const MAX_IDLE: usize = 1024;
/// A spare connection unused for this long is closed: a sync worker that has accepted it
/// waits on it, and gunicorn kills a worker that waits past its `timeout` (30 s), while a
/// worker told to stop waits for it to close.
const SPARE_MAX_AGE: Duration = Duration::from_millis(500);

/// A worker's idle connections, most recently used last, and its spare. The locks are per
/// worker and are held only to push or pop, never across an `.await`.
#[derive(Default)]
pub struct WorkerConns {
    idle: Mutex<Vec<(Stream, Instant)>>,
    /// A connection opened ahead and never used, for a worker that closes after each answer;
    /// in no thread's event loop until a request takes it.
    spare: Mutex<Option<(Socket, Instant)>>,
    /// Whether the worker closed the connection of its last answer.
    closes: AtomicBool,
    /// Whether the task that closes stale spares runs.
    sweeping: AtomicBool,
}

/// A connection to a worker for one request.
pub struct Conn {
    pub stream: Stream,
    /// Whether it was open before this request.
    pub reused: bool,
    /// Its worker's set, where it goes back when its answer was read whole.
    pub home: Arc<WorkerConns>,
    /// Whether the worker closes after each answer, so that once this request is written a
    /// spare should be opened for the next ([`WorkerConns::open_spare`]).
    pub spare_next: bool,
}

/// Every worker's connections, by worker id, for the whole proxy (the HTTPS forwarder shares
/// the plain one's).
#[derive(Default)]
pub struct ConnMap {
    /// Sorted by id. A worker's entry is made on its first request; entries of workers
    /// whose `Backend` is gone (exited and out of every table) are dropped whenever an entry
    /// is made, so their connections close.
    map: ArcSwap<Vec<Entry>>,
    /// In the request phases' unit tests, workers in memory instead of sockets.
    #[cfg(test)]
    pub(super) memory: Option<MemoryDial>,
}

/// Opens a connection to an in-memory worker, for the request phases' unit tests.
#[cfg(test)]
pub(super) type MemoryDial = Arc<dyn Fn(&Address) -> io::Result<Stream> + Send + Sync>;

#[derive(Clone)]
struct Entry {
    id: WorkerId,
    backend: Weak<Backend>,
    conns: Arc<WorkerConns>,
}

/// The entry of `id` in `map`, sorted by id.
fn find(map: &[Entry], id: WorkerId) -> Option<&Arc<WorkerConns>> {
    map.binary_search_by_key(&id, |e| e.id)
        .ok()
        .map(|i| &map[i].conns)
}

impl ConnMap {
    /// A connection to `backend` for one request: an idle one, the spare, or a new one;
    /// `reused` when it was open before (the worker may have closed it just now, so a
    /// replayable request that fails on it is tried again). A connection idle for a while,
    /// or any when `check` is set, is first checked to be open (one non-blocking peek);
    /// skipping that on the hot path saves a system call per request. The connection goes
    /// back to its worker's set, which it carries, so giving it back looks nothing up.
    pub async fn get(&self, backend: &Arc<Backend>, check: bool, spares: bool) -> io::Result<Conn> {
        let home = self.entry(backend);
        if let Some((stream, reused)) = self.ready(&home, backend, check, spares) {
            let spare_next = spares && home.closes.load(Ordering::Relaxed);
            return Ok(Conn {
                stream,
                reused,
                home,
                spare_next,
            });
        }
        #[cfg(test)]
        if let Some(dial) = &self.memory {
            let stream = dial(&backend.info.addr)?;
            return Ok(Conn {
                stream,
                reused: false,
                home,
                spare_next: false,
            });
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect(&backend.info.addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        Ok(Conn {
            stream,
            reused: false,
            home,
            spare_next: false,
        })
    }

    /// `backend`'s connection set: one `ArcSwap` load and a binary search, or made on its
    /// worker's first request.
    fn entry(&self, backend: &Arc<Backend>) -> Arc<WorkerConns> {
        if let Some(conns) = find(&self.map.load(), backend.info.id) {
            return conns.clone();
        }
        self.insert(backend)
    }

    /// A connection to `backend` that needs no waiting: an idle one, or for a worker that
    /// closes after each answer the spare or one begun now. Only a worker that takes one
    /// request at a time (`spares`) gets spares: behind a socket shared by several processes
    /// (`gunicorn -w 4` as one worker) a spare is accepted by one of them, which then waits on
    /// it while requests already sent queue behind.
    ///
    /// A fresh one is begun with the spare lock held: the worker accepts connections in the
    /// order they were opened, so the connection a request uses must never queue behind a
    /// spare opened before it and not yet used.
    fn ready(
        &self,
        conns: &Arc<WorkerConns>,
        backend: &Arc<Backend>,
        check: bool,
        spares: bool,
    ) -> Option<(Stream, bool)> {
        while let Some((stream, since)) = conns.idle.lock().pop() {
            let idle = since.elapsed();
            if idle < MAX_IDLE_AGE && (!(check || idle > CHECK_AFTER) || still_open(stream.id())) {
                return Some((stream, true));
            }
        }
        if !spares || !conns.closes.load(Ordering::Relaxed) {
            return None;
        }
        #[cfg(test)]
        if self.memory.is_some() {
            return None;
        }
        let mut spare = conns.spare.lock();
        let usable = spare.take().filter(|(socket, since)| {
            since.elapsed() < SPARE_MAX_AGE && (!check || still_open(socket.as_raw_fd()))
        });
        // The spare, or else a fresh connection, in this thread's event loop.
        let addr = &backend.info.addr;
        let this = match usable {
            Some((socket, _)) => (register(socket, addr)?, true),
            None => (register(open_now(addr)?, addr)?, false),
        };
        drop(spare);
        start_sweeping(backend, conns);
        Some(this)
    }

    /// Makes `backend`'s entry (once, however many requests race to), dropping those of
    /// workers that are gone.
    fn insert(&self, backend: &Arc<Backend>) -> Arc<WorkerConns> {
        let id = backend.info.id;
        let fresh = Arc::new(WorkerConns::default());
        let mut chosen = fresh.clone();
        self.map.rcu(|old| {
            if let Some(conns) = find(old, id) {
                chosen = conns.clone();
                return Arc::clone(old);
            }
            chosen = fresh.clone();
            let mut next: Vec<Entry> = old
                .iter()
                .filter(|e| e.backend.strong_count() > 0)
                .cloned()
                .collect();
            let at = next.partition_point(|e| e.id < id);
            next.insert(
                at,
                Entry {
                    id,
                    backend: Arc::downgrade(backend),
                    conns: fresh.clone(),
                },
            );
            Arc::new(next)
        });
        chosen
    }
}

impl WorkerConns {
    /// Keeps a connection whose last response was read in full for the next request.
    pub fn put(&self, stream: Stream) {
        // Read first: a keep-alive worker's flag stays false and its cache line unwritten.
        if self.closes.load(Ordering::Relaxed) {
            self.closes.store(false, Ordering::Relaxed);
        }
        let now = Instant::now();
        let mut idle = self.idle.lock();
        // The least recently used connection is the first: past its age it would only be
        // closed when popped, and with a set grown large at a busy moment that may be
        // never, so it is closed here (one at a time, as connections come back).
        if idle
            .first()
            .is_some_and(|(_, since)| now.saturating_duration_since(*since) >= MAX_IDLE_AGE)
        {
            idle.remove(0);
        }
        if idle.len() < MAX_IDLE {
            idle.push((stream, now));
        }
    }

    /// Opens the spare for the next request to a worker that closes after each answer, once
    /// this request is written (so after every connection a request of this worker uses):
    /// one already opened meanwhile is kept, and a retiring worker gets none.
    pub fn open_spare(&self, backend: &Backend) {
        let mut spare = self.spare.lock();
        if spare.is_none() && !backend.load.is_retiring() {
            *spare = open_now(&backend.info.addr).map(|s| (s, Instant::now()));
        }
    }

    /// Notes an answer after which the worker's connection could not be kept: from now on
    /// the worker gets a spare connection ahead of each request, until one is kept again.
    pub fn not_kept(&self) {
        if !self.closes.load(Ordering::Relaxed) {
            self.closes.store(true, Ordering::Relaxed);
        }
    }
}

/// A connection to `addr` begun without waiting: the connect is under way (on loopback it
/// is done by the time the call returns) and the first write waits for it if need be.
/// `None` when it could not even begin (the caller connects the usual way, or goes without
/// a spare). Not yet in an event loop: see [`register`].
fn open_now(addr: &Address) -> Option<Socket> {
    let (domain, target) = match addr {
        Address::Tcp(addr) => (Domain::for_address(*addr), SockAddr::from(*addr)),
        Address::Unix(path) => (Domain::UNIX, SockAddr::unix(path).ok()?),
    };
    // Non-blocking from the start: two `fcntl`s a connection fewer than setting it after.
    let socket = Socket::new(domain, Type::STREAM.nonblocking(), None).ok()?;
    match socket.connect(&target) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(Errno::EINPROGRESS as i32) => {}
        // EAGAIN on a Unix socket: the worker's accept queue is full.
        Err(_) => return None,
    }
    if let Address::Tcp(_) = addr {
        socket.set_tcp_nodelay(true).ok()?;
    }
    Some(socket)
}

/// A socket from [`open_now`] as a stream in the calling thread's event loop, which is where
/// the request using it runs.
fn register(socket: Socket, addr: &Address) -> Option<Stream> {
    let stream: L4Stream = match addr {
        Address::Tcp(_) => TcpStream::from_std(socket.into()).ok()?.into(),
        Address::Unix(_) => UnixStream::from_std(socket.into()).ok()?.into(),
    };
    Some(Box::new(stream))
}

/// Starts, once per worker, the task that closes its spare when unused for
/// [`SPARE_MAX_AGE`] or when the worker retires; it ends with the worker.
fn start_sweeping(backend: &Arc<Backend>, conns: &Arc<WorkerConns>) {
    if conns.sweeping.swap(true, Ordering::AcqRel) {
        return;
    }
    let backend = Arc::downgrade(backend);
    let conns = Arc::downgrade(conns);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SPARE_MAX_AGE / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (Some(backend), Some(conns)) = (backend.upgrade(), conns.upgrade()) else {
                return;
            };
            sweep(&backend, &conns);
        }
    });
}

fn sweep(backend: &Backend, conns: &WorkerConns) {
    let mut spare = conns.spare.lock();
    let stale = spare
        .as_ref()
        .is_some_and(|(_, since)| since.elapsed() >= SPARE_MAX_AGE);
    if stale || backend.load.is_retiring() {
        spare.take();
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
fn still_open(fd: RawFd) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT),
        Err(Errno::EAGAIN)
    )
}
