//! Idle keep-alive connections parked. A plain HTTP/1.x client connection that has sent
//! nothing for [`PARK_AFTER`] leaves its task: what it needs to come back (its socket, its
//! place under `max_connections`, who its client is, when it must close) goes into its proxy
//! thread's table, some 70 bytes, and its socket into the thread's own epoll set; the tokio
//! task, pingora's stream with its registration and digest, the request-line wrapper, the
//! client identity and the timer are freed. When the client sends (or closes), the thread's
//! lot ([`run`]) gives the connection a task and a stream again (`Forwarder::resume`); the
//! keep-alive timeout is a sweep of the table every second. nginx keeps an idle connection
//! the same way: a 232-byte struct and its epoll registration.
//!
//! A busy keep-alive connection (its next request within [`PARK_AFTER`]) never parks: its
//! wait is the one timer it had, with a shorter duration. HTTPS connections are not parked:
//! their TLS state (rustls's session and buffers) would have to be kept anyway.
//!
//! The lot is per proxy thread (a thread-local table, used only by that thread's tasks and
//! never across an `.await`), so parking takes no lock. Its epoll set is one descriptor
//! awaited through tokio's reactor (`AsyncFd`), each socket in it one-shot: it is reported
//! once, then taken out. When the stop begins, every parked connection gets its task back,
//! so it ends like any idle connection does then (one more request, or a close after the
//! stop's idle grace).
#![allow(unsafe_code)] // a `dup` of the socket of a connection this task owns; the set's registration

use std::cell::RefCell;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::socket::{recv, MsgFlags};
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora_core::server::ShutdownWatch;
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::accept::ConnectionSlot;
use super::identity::Peer;
use super::Forwarder;

/// How long a kept-alive connection waits in its task before it is parked. A client that
/// sends its next request sooner (a busy connection) never pays for parking; one idle for
/// longer costs a few system calls to park and to come back.
pub(super) const PARK_AFTER: Duration = Duration::from_secs(1);

/// How often parked connections past their deadline are closed: the keep-alive timeout of a
/// parked connection is kept to within this.
const SWEEP: Duration = Duration::from_secs(1);

/// Readiness events taken from the epoll set at once.
const EVENTS: usize = 256;

/// Connections parked since the last release of freed memory after which the next sweep
/// releases it again ([`set_memory_release`]); fewer are released once parking pauses for
/// a sweep's interval.
const RELEASE_AFTER: usize = 256;

/// What gives the memory parked connections freed back to the system: the allocator's
/// collection, set by the binary that chose the allocator. mimalloc frees a page's memory
/// only when that page's segment is next touched, so a burst of connections going idle at
/// once (their tasks freed together) would otherwise stay resident until traffic returns.
static RELEASE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets how the proxy threads give freed memory back to the system, once a few hundred
/// connections have been parked (`release` runs on the thread that parked them).
pub fn set_memory_release(release: fn()) {
    let _ = RELEASE.set(release);
}

/// What a parked connection's task starts again from.
pub(super) struct Back {
    /// Its place under `max_connections`, held while parked.
    pub(super) slot: ConnectionSlot,
    /// Its peer, for the client identity made again.
    pub(super) peer: Peer,
    /// Whether the peer was a trusted proxy when the connection was admitted.
    pub(super) trusted_peer: bool,
    /// When the wait for the client ends: the keep-alive timeout, or for a connection that
    /// has not sent a whole first request yet, its `header_timeout`.
    pub(super) deadline: Instant,
    /// Whether no request has come yet (the deadline is the first head's).
    pub(super) first: bool,
}

struct Parked {
    /// A descriptor of the connection's socket, the only one while parked.
    socket: OwnedFd,
    back: Back,
}

/// One proxy thread's parked connections.
struct Lot {
    epoll: Arc<Epoll>,
    parked: Slab<Parked>,
    /// Connections parked since freed memory was last released.
    unreleased: usize,
    /// `unreleased` at the last sweep.
    unreleased_then: usize,
}

thread_local! {
    /// This thread's lot, while its plain listeners' [`run`] runs.
    static LOT: RefCell<Option<Lot>> = const { RefCell::new(None) };
}

/// Whether connections served on this thread can be parked.
pub(super) fn available() -> bool {
    LOT.with(|lot| lot.borrow().is_some())
}

/// Parks the idle client connection `stream`: its socket joins the lot and the rest of it is
/// dropped. The stream comes back, untouched, when it cannot be parked.
pub(super) fn park(stream: Stream, back: Back) -> Result<(), (Stream, Back)> {
    let parked = LOT.with(|lot| {
        let mut lot = lot.borrow_mut();
        let Some(lot) = lot.as_mut() else {
            return Err(back);
        };
        // SAFETY: `UniqueID::id` of a client stream of the public listeners is its TCP
        // socket's descriptor (pingora's l4 stream, under the `Sniff` wrapper), open while
        // `stream` lives, and `stream` is ours for this whole call: the descriptor is only
        // borrowed to `dup` it, and the copy is owned from here.
        let Ok(socket) = unsafe { BorrowedFd::borrow_raw(stream.id()) }.try_clone_to_owned() else {
            return Err(back);
        };
        let entry = lot.parked.vacant_entry();
        let watch = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLONESHOT;
        if lot
            .epoll
            .add(&socket, EpollEvent::new(watch, entry.key() as u64))
            .is_err()
        {
            return Err(back);
        }
        entry.insert(Parked { socket, back });
        lot.unreleased += 1;
        Ok(())
    });
    match parked {
        // Its registration with tokio and its own descriptor go; the socket stays open
        // through the lot's copy.
        Ok(()) => {
            drop(stream);
            Ok(())
        }
        Err(back) => Err((stream, back)),
    }
}

/// Runs this thread's lot for `forwarder` (the plain listeners' forwarder) until `shutdown`:
/// parked connections the client wakes get a task again, those past their deadline are
/// closed; at the stop every parked connection gets its task back.
pub(crate) async fn run(forwarder: Arc<Forwarder>, mut shutdown: ShutdownWatch) {
    let epoll = match Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) {
        Ok(epoll) => Arc::new(epoll),
        Err(e) => {
            tracing::warn!(error = %e, "cannot make an epoll set; idle connections are not parked");
            return;
        }
    };
    // SAFETY: the `EpollFd` owns a reference to the set, so its descriptor stays open, and is
    // the same one, for as long as the `AsyncFd` holds it.
    let ready = match unsafe {
        AsyncFd::register_with_interest(EpollFd(epoll.clone()), Interest::READABLE)
    } {
        Ok(ready) => ready,
        Err(e) => {
            tracing::warn!(error = %e, "cannot poll an epoll set; idle connections are not parked");
            return;
        }
    };
    LOT.with(|lot| {
        *lot.borrow_mut() = Some(Lot {
            epoll: epoll.clone(),
            parked: Slab::new(),
            unreleased: 0,
            unreleased_then: 0,
        })
    });
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events = vec![EpollEvent::empty(); EVENTS];
    while !*shutdown.borrow() {
        tokio::select! {
            guard = ready.readable() => {
                let Ok(mut guard) = guard else { break };
                loop {
                    // A failed wait counts as an empty one: readiness is cleared, not spun on.
                    let n = epoll.wait(&mut events, 0u8).unwrap_or(0);
                    for event in &events[..n] {
                        forwarder.wake(event, &shutdown);
                    }
                    if n < EVENTS {
                        guard.clear_ready();
                        break;
                    }
                }
            }
            _ = sweep.tick() => forwarder.sweep(Instant::now()),
            changed = shutdown.changed() => if changed.is_err() {
                break;
            },
        }
    }
    // Stopping (or the set failed): every parked connection back in a task, and no more
    // parking on this thread.
    let lot = LOT.with(|lot| lot.borrow_mut().take());
    for (_, parked) in lot.into_iter().flat_map(|lot| lot.parked) {
        forwarder.metrics.connections_parked.dec();
        forwarder.unpark(parked, &shutdown);
    }
}

/// The epoll set as tokio's reactor polls it.
struct EpollFd(Arc<Epoll>);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0 .0.as_raw_fd()
    }
}

impl Forwarder {
    /// The parked connection of `event`: closed if the client has closed it, else given a
    /// task again.
    fn wake(self: &Arc<Self>, event: &EpollEvent, shutdown: &ShutdownWatch) {
        let parked = LOT.with(|lot| {
            let mut lot = lot.borrow_mut();
            let lot = lot.as_mut()?;
            let parked = lot.parked.try_remove(event.data() as usize)?;
            let _ = lot.epoll.delete(&parked.socket);
            Some(parked)
        });
        let Some(parked) = parked else {
            return;
        };
        self.metrics.connections_parked.dec();
        if hung_up(&parked.socket, event.events()) {
            tracing::debug!("a parked connection was closed by its client");
            return;
        }
        self.unpark(parked, shutdown);
    }

    /// Gives `parked` a stream and a task again (`Forwarder::resume`).
    fn unpark(self: &Arc<Self>, parked: Parked, shutdown: &ShutdownWatch) {
        let socket = std::net::TcpStream::from(parked.socket);
        match tokio::net::TcpStream::from_std(socket) {
            Ok(tcp) => {
                let mut stream = L4Stream::from(tcp);
                stream.set_socket_digest(SocketDigest::from_raw_fd(stream.as_raw_fd()));
                let resumed = self
                    .clone()
                    .resume(Box::new(stream), parked.back, shutdown.clone());
                tokio::spawn(resumed);
            }
            Err(e) => tracing::warn!(error = %e, "cannot poll a parked connection again; closed"),
        }
    }

    /// Closes the parked connections whose deadline is past `now`, and releases the memory
    /// of those parked since the last release when they are many.
    fn sweep(&self, now: Instant) {
        let (closed, release) = LOT.with(|lot| {
            let mut lot = lot.borrow_mut();
            let Some(lot) = lot.as_mut() else {
                return (0, false);
            };
            let before = lot.parked.len();
            // Closing the lot's descriptor, the socket's last, takes it out of the set too.
            lot.parked.retain(|_, parked| parked.back.deadline > now);
            // Many parked, or some and then a quiet second: a burst is over.
            let release = lot.unreleased >= RELEASE_AFTER
                || (lot.unreleased > 0 && lot.unreleased == lot.unreleased_then);
            if release {
                lot.unreleased = 0;
            }
            lot.unreleased_then = lot.unreleased;
            (before - lot.parked.len(), release)
        });
        if let Some(release) = RELEASE.get().filter(|_| release) {
            release();
        }
        if closed > 0 {
            self.metrics.connections_parked.sub(closed as i64);
            tracing::debug!(
                closed,
                "parked connections closed at their keep-alive timeout"
            );
        }
    }
}

/// Whether the client of a socket reported with `events` has closed it (or it failed) with
/// nothing left to read: then there is no request to serve.
fn hung_up(socket: &OwnedFd, events: EpollFlags) -> bool {
    let ended = EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
    if !events.intersects(ended) {
        return false;
    }
    let mut byte = [0u8; 1];
    let peeked = recv(
        socket.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    );
    !matches!(peeked, Ok(n) if n > 0)
}
