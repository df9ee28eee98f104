//! One ready worker as the proxy sees it, in two parts: [`BackendInfo`], what it is (fixed
//! from the moment it is routable), and [`Load`], what it is doing now (counters the proxy
//! moves per request and the supervisor reads, private behind methods that say what each
//! move means). Shared between table generations, so its counters survive every republish.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::health::BackendHealth;
use crate::worker::{ExitReason, WorkerId};

/// Where a worker listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A loopback TCP port (`bind = "tcp"` or `"fd"`).
    Tcp(SocketAddr),
    /// A Unix socket path (`bind = "unix"`).
    Unix(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A ready worker: what it is, its live load and its health.
#[derive(Debug)]
pub struct Backend {
    /// What the worker is; never changes.
    pub info: BackendInfo,
    /// What it is doing now.
    pub load: Load,
    /// Whether it may take requests: active checks and passive ejection.
    pub health: BackendHealth,
}

/// What a ready worker is, fixed while it runs.
#[derive(Debug)]
pub struct BackendInfo {
    /// Unique id of this worker process within the master's life.
    pub id: WorkerId,
    /// Name of the pool the worker belongs to.
    pub pool: Arc<str>,
    /// The worker's slot number in its pool (the `{worker}` placeholder).
    pub worker: u32,
    /// The worker's process id (0 for a remote backend).
    pub pid: u32,
    /// Where the worker listens.
    pub addr: Address,
    /// When the worker process started.
    pub started: Instant,
    /// Requests after which the worker retires (`max_requests` plus its jitter); 0 = never.
    pub max_requests: u64,
    /// When its replacement starts and how far past its limit it may go.
    pub recycle: Recycle,
}

impl Backend {
    /// A backend that has served nothing yet, healthy.
    pub fn new(info: BackendInfo) -> Backend {
        Backend {
            info,
            load: Load::default(),
            health: BackendHealth::default(),
        }
    }

    /// Whether a worker has served, or is serving, all it may (`max_requests` plus a
    /// tenth): it takes no more requests.
    pub fn is_spent(&self) -> bool {
        self.would_pass_cap(self.load.in_flight() + 1)
    }

    /// Whether a worker with `in_flight` requests (one just claimed among them) is past its
    /// cap, retiring or not: it becomes retiring only when its count reaches the limit, by
    /// which time up to `concurrency` more requests may be in flight on it. `in_flight` is
    /// read before the requests taken: one is counted there before its slot is freed, so a
    /// request finishing between the two reads is counted twice, never missed.
    pub fn would_pass_cap(&self, in_flight: u32) -> bool {
        let cap = self.info.recycle.cap;
        cap > 0 && self.load.answered.load(Ordering::SeqCst) + u64::from(in_flight) > cap
    }

    /// Counts a request the worker took, answered in full or not, before its slot is freed,
    /// for `max_requests`'s cap; a worker without the limit writes nothing, so its cache
    /// line stays quiet.
    pub fn answered(&self) {
        if self.info.max_requests > 0 {
            self.load.answered.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// How long the worker should take to reach its limit at its rate so far, twice over
    /// (from 1 s to 30 s): after that, a replaced-ahead worker hands over even short of its
    /// limit, so a surge worker does not outlive a load that stopped.
    pub fn time_to_limit(&self, now: Instant) -> Duration {
        let served = self.load.served();
        let left = self.info.max_requests.saturating_sub(served);
        let elapsed = self
            .info
            .recycle
            .ready_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let wait = if served == 0 {
            Duration::MAX
        } else {
            elapsed.mul_f64(2.0 * left as f64 / served as f64)
        };
        wait.clamp(Duration::from_secs(1), Duration::from_secs(30))
    }
}

/// How a worker with `max_requests` is replaced close to its limit: its replacement starts
/// ahead, from the pool's measured start time and the worker's request rate, so it is
/// ready when the limit is reached; and past `cap` (the limit plus 10%) a retiring worker
/// takes no more requests, whether or not its replacement is ready: they wait for the other
/// workers or the replacement, as behind a gunicorn worker that restarts.
#[derive(Debug, Default, Clone)]
pub struct Recycle {
    /// The most requests it may serve: `max_requests` plus a tenth; 0 = no limit.
    pub cap: u64,
    /// How long a replacement took to become ready in this pool lately (the longest of the
    /// last few), when the worker turned ready.
    pub replacement: Duration,
    /// When the worker turned ready, to measure its request rate.
    pub ready_at: Option<Instant>,
}

impl Recycle {
    /// The settings for a worker ready at `ready_at` that retires after `max_requests` (0:
    /// never), in a pool whose replacements took `replacement` to start.
    pub fn new(max_requests: u64, replacement: Duration, ready_at: Instant) -> Recycle {
        Recycle {
            cap: max_requests + max_requests / 10,
            replacement,
            ready_at: Some(ready_at),
        }
    }

    /// How many of `max_requests` in all, `served` of them so far, may come before a
    /// replacement must start to be ready at the limit: the requests the worker serves, at
    /// its rate so far, during one and a half replacement start times.
    pub fn reckon(&self, served: u64, max_requests: u64, now: Instant) -> u64 {
        let elapsed = self
            .ready_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if elapsed.is_zero() {
            return served;
        }
        let rate = served as f64 / elapsed.as_secs_f64();
        let during_start = (rate * self.replacement.as_secs_f64() * 1.5).ceil() as u64;
        max_requests.saturating_sub(during_start).max(served)
    }
}

/// What a backend is doing now: the proxy moves these per request, the supervisor reads
/// them to drain and recycle. Atomics only, each behind the one method that may move it.
#[derive(Debug)]
pub struct Load {
    /// Requests the proxy has sent and not yet finished; drives least-outstanding choice.
    in_flight: AtomicU32,
    /// Requests finished by this worker (its client has the answer).
    served: AtomicU64,
    /// Requests taken, answered in full or not, counted before the slot is freed (`served`
    /// counts a request only once its client has the answer), so a request is always in
    /// `in_flight` or here when the cap is checked. Counted only for a worker with
    /// `max_requests`.
    answered: AtomicU64,
    /// The request count at which its replacement is to start; 0 until reckoned, `u64::MAX`
    /// once asked for.
    start_replacement_at: AtomicU64,
    /// Set once the worker is to be replaced: it still serves until its replacement is
    /// ready, but only when no other worker has room, so it overshoots its limit little.
    retiring: AtomicBool,
    /// Upgraded connections (WebSockets) on this worker that hold no `concurrency` slot; a
    /// draining worker waits for them as for requests.
    tunnels: AtomicU32,
    /// Set, with why the worker is drained, when its drain deadline has passed: its tunnels
    /// close (a WebSocket's close code says why), and only then is it stopped.
    closing: watch::Sender<Option<ExitReason>>,
    /// Set when its drain begins (it has left the routing table): a request still holding
    /// an older table takes it no more (see [`Load::begin_drain`]).
    draining: AtomicBool,
    /// Answers this worker has given whole that corral is still writing to slow clients
    /// (buffered): the worker is free of them, `/status` shows them.
    delivering: AtomicU32,
}

impl Default for Load {
    fn default() -> Load {
        Load {
            in_flight: AtomicU32::new(0),
            served: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            start_replacement_at: AtomicU64::new(0),
            retiring: AtomicBool::new(false),
            tunnels: AtomicU32::new(0),
            closing: watch::Sender::new(None),
            draining: AtomicBool::new(false),
            delivering: AtomicU32::new(0),
        }
    }
}

impl Load {
    /// Answers of this worker being written to clients after the worker gave them whole.
    pub fn delivering(&self) -> u32 {
        self.delivering.load(Ordering::Relaxed)
    }

    /// An answer read whole off the worker goes on to a client that does not have it yet.
    pub fn delivery_began(&self) {
        self.delivering.fetch_add(1, Ordering::Relaxed);
    }

    /// That client has it, or is gone.
    pub fn delivery_ended(&self) {
        self.delivering.fetch_sub(1, Ordering::Relaxed);
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Requests and upgraded connections a drain waits for.
    pub fn busy(&self) -> u32 {
        self.in_flight() + self.tunnels.load(Ordering::SeqCst)
    }

    /// Takes one more request slot if `seen` are still in flight (nobody took or freed one
    /// since the caller looked): a compare-and-swap, so a worker never passes its
    /// `concurrency`. True when claimed.
    pub fn claim(&self, seen: u32) -> bool {
        self.in_flight
            .compare_exchange(seen, seen + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Frees a slot taken by [`Load::claim`].
    pub fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// The drain begins: from now on no request takes the worker. Called before the drain
    /// first reads [`Load::busy`]; a request reads [`Load::is_draining`] after its claim,
    /// both sequentially consistent, so either the drain sees the claim and waits for it,
    /// or the request sees the drain and gives the slot back: never a request sent to a
    /// worker the drain found idle and stopped.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the worker's drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Requests served so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Counts one more request served; returns the count with it.
    pub fn count_served(&self) -> u64 {
        self.served.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether the worker is being replaced.
    pub fn is_retiring(&self) -> bool {
        self.retiring.load(Ordering::Relaxed)
    }

    /// Marks the worker as being replaced: it serves on only when no other worker has room.
    pub fn retire(&self) {
        self.retiring.store(true, Ordering::Relaxed);
    }

    /// Records, once, the request count at which the replacement is to start.
    pub fn plan_replacement(&self, at: u64) {
        let _ =
            self.start_replacement_at
                .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Whether the request that made `served` (of `max_requests`) is the one to ask for the
    /// replacement planned by [`Load::plan_replacement`]: true for exactly one request.
    pub fn replacement_due(&self, served: u64, max_requests: u64) -> bool {
        let start_at = self.start_replacement_at.load(Ordering::Relaxed);
        start_at > 0
            && start_at < max_requests
            && served >= start_at
            && self
                .start_replacement_at
                .compare_exchange(start_at, u64::MAX, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Upgraded connections riding on the worker now.
    pub fn tunnels(&self) -> u32 {
        self.tunnels.load(Ordering::SeqCst)
    }

    /// Counts an upgraded connection that holds no `concurrency` slot.
    pub fn tunnel_opened(&self) {
        self.tunnels.fetch_add(1, Ordering::SeqCst);
    }

    /// Uncounts one counted by [`Load::tunnel_opened`].
    pub fn tunnel_closed(&self) {
        self.tunnels.fetch_sub(1, Ordering::SeqCst);
    }

    /// The drain deadline has passed: the worker's tunnels are to close, because of `why`
    /// (a reload, a recycle, a scale down...).
    pub fn close_tunnels(&self, why: ExitReason) {
        self.closing.send_replace(Some(why));
    }

    /// Whether [`Load::close_tunnels`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing.borrow().is_some()
    }

    /// Set to why when [`Load::close_tunnels`] is called, for a tunnel to wait on.
    pub fn closing(&self) -> watch::Receiver<Option<ExitReason>> {
        self.closing.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(max_requests: u64) -> Backend {
        let now = Instant::now();
        Backend::new(BackendInfo {
            id: WorkerId(1),
            pool: Arc::from("web"),
            worker: 1,
            pid: 100,
            addr: Address::Tcp(SocketAddr::from(([127, 0, 0, 1], 9000))),
            started: now,
            max_requests,
            recycle: Recycle::new(max_requests, Duration::from_secs(1), now),
        })
    }

    #[test]
    fn the_replacement_starts_one_and_a_half_start_times_of_requests_before_the_limit() {
        let ready = Instant::now();
        let recycle = Recycle::new(200, Duration::from_secs(2), ready);
        // 100 requests in 1 s: 100/s; 1.5 x 2 s of them is 300, more than is left: now.
        assert_eq!(
            recycle.reckon(100, 200, ready + Duration::from_secs(1)),
            100
        );
        // 100 requests in 20 s: 5/s; 15 requests before the limit.
        assert_eq!(
            recycle.reckon(100, 200, ready + Duration::from_secs(20)),
            185
        );
        assert_eq!(recycle.cap, 220);
        assert_eq!(Recycle::new(0, Duration::ZERO, ready).cap, 0);
    }

    #[test]
    fn a_claim_succeeds_only_on_the_count_its_caller_saw() {
        let b = backend(0);
        assert!(b.load.claim(0));
        assert!(!b.load.claim(0), "the count moved since");
        assert!(b.load.claim(1));
        assert_eq!(b.load.in_flight(), 2);
        b.load.tunnel_opened();
        assert_eq!(b.load.busy(), 3);
        b.load.release();
        b.load.tunnel_closed();
        assert_eq!(b.load.busy(), 1);
    }

    #[test]
    fn a_worker_is_spent_at_its_cap_retiring_or_not_and_answers_count_only_with_a_limit() {
        let b = backend(100);
        assert_eq!(b.info.recycle.cap, 110);
        for _ in 0..109 {
            b.answered();
        }
        assert!(!b.is_spent(), "109 answered, one more fits");
        assert!(
            b.would_pass_cap(2),
            "109 answered and two in flight pass the cap"
        );
        b.answered();
        assert!(b.is_spent());
        let unlimited = backend(0);
        unlimited.answered();
        assert_eq!(unlimited.load.answered.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_replacement_is_asked_for_once_at_its_planned_count() {
        let b = backend(100);
        assert!(!b.load.replacement_due(60, 100), "not planned yet");
        b.load.plan_replacement(70);
        b.load.plan_replacement(90);
        assert!(!b.load.replacement_due(69, 100));
        assert!(b.load.replacement_due(70, 100));
        assert!(!b.load.replacement_due(71, 100), "asked for once");
    }

    #[test]
    fn closing_reaches_the_tunnels_waiting_on_it() {
        let b = backend(0);
        let rx = b.load.closing();
        assert!(!b.load.is_closing());
        b.load.close_tunnels(ExitReason::MaxRequests);
        assert_eq!(*rx.borrow(), Some(ExitReason::MaxRequests));
        assert!(b.load.is_closing());
    }
}
