//! What the proxy may send requests to: the ready workers of every running pool and which
//! pool takes new requests, published by the supervisor as one immutable table behind an
//! `ArcSwap` (a request reads one `load`), plus each pool's wait queue and the channel the
//! proxy reports worker trouble on. This table is all the proxy knows of workers.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use corral_telemetry::PoolMetrics;
use tokio::sync::{mpsc, Notify};

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

/// A ready worker as the proxy sees it. Shared between table generations, so its counters
/// survive every republish of the table.
#[derive(Debug)]
pub struct Backend {
    /// Unique id of this worker process within the master's life.
    pub id: WorkerId,
    /// Name of the pool the worker belongs to.
    pub pool: Arc<str>,
    /// The worker's slot number in its pool (the `{worker}` placeholder).
    pub worker: u32,
    /// The worker's process id.
    pub pid: u32,
    /// Where the worker listens.
    pub addr: Address,
    /// The proxy's own per-worker data (its prebuilt upstream peer), made once on first use
    /// so no request builds or parses an address.
    pub proxy_data: OnceLock<Box<dyn Any + Send + Sync>>,
    /// Requests the proxy has sent and not yet finished; drives least-outstanding choice.
    pub in_flight: AtomicU32,
    /// Requests finished by this worker.
    pub served: AtomicU64,
    /// Requests after which the worker retires (`max_requests` plus its jitter); 0 = never.
    pub max_requests: u64,
    /// When its replacement starts and how far past its limit it may go.
    pub recycle: Recycle,
    /// Set once the worker is to be replaced: it still serves until its replacement is
    /// ready, but only when no other worker has room, so it overshoots its limit little.
    pub retiring: AtomicBool,
    /// When the worker process started.
    pub started: Instant,
    /// Whether it may take requests: active checks and passive ejection.
    pub health: BackendHealth,
    /// Upgraded connections (WebSockets) on this worker that hold no `concurrency` slot;
    /// a draining worker waits for them as for requests.
    pub tunnels: AtomicU32,
    /// Turned true when the worker's drain deadline has passed: its tunnels close, and only
    /// then is it stopped.
    pub closing: tokio::sync::watch::Sender<bool>,
}

impl Backend {
    /// Requests in flight right now.
    pub fn load(&self) -> u32 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Requests and upgraded connections a drain waits for.
    pub fn busy(&self) -> u32 {
        self.load() + self.tunnels.load(Ordering::SeqCst)
    }

    /// Whether the worker is being replaced.
    pub fn is_retiring(&self) -> bool {
        self.retiring.load(Ordering::Relaxed)
    }

    /// Whether a retiring worker has served, or is serving, all it may (`max_requests` plus
    /// a tenth): it takes no more requests.
    pub fn is_spent(&self) -> bool {
        self.would_pass_cap(self.load() + 1)
    }

    /// Whether a retiring worker with `in_flight` requests (one just claimed among them) is
    /// past its cap. `in_flight` is read before `answered`: an answer is counted before its
    /// slot is freed, so a request finishing between the two reads is counted twice, never
    /// missed.
    pub fn would_pass_cap(&self, in_flight: u32) -> bool {
        self.is_retiring()
            && self.recycle.cap > 0
            && self.recycle.answered.load(Ordering::SeqCst) + u64::from(in_flight)
                > self.recycle.cap
    }
}

/// How a worker with `max_requests` is replaced close to its limit: its replacement starts
/// ahead, from the pool's measured start time and the worker's request rate, so it is
/// ready when the limit is reached; and past `cap` (the limit plus 10%) a retiring worker
/// takes no more requests, whether or not its replacement is ready: they wait for the other
/// workers or the replacement, as behind a gunicorn worker that restarts.
#[derive(Debug, Default)]
pub struct Recycle {
    /// The most requests it may serve: `max_requests` plus a tenth; 0 = no limit.
    pub cap: u64,
    /// How long a replacement took to become ready in this pool lately (the longest of the
    /// last few), when the worker turned ready.
    pub replacement: Duration,
    /// When the worker turned ready, to measure its request rate.
    pub ready_at: Option<Instant>,
    /// The request count at which its replacement is to start; 0 until reckoned.
    pub start_replacement_at: AtomicU64,
    /// Answers the worker has given in full, counted before its slot is freed (`served`
    /// counts a request only once its client has the answer), so a request is always in
    /// `in_flight` or here when the cap is checked.
    pub answered: AtomicU64,
}

impl Recycle {
    /// The settings for a worker ready at `ready_at` that retires after `max_requests` (0:
    /// never), in a pool whose replacements took `replacement` to start.
    pub fn new(max_requests: u64, replacement: Duration, ready_at: Instant) -> Recycle {
        Recycle {
            cap: max_requests + max_requests / 10,
            replacement,
            ready_at: Some(ready_at),
            start_replacement_at: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        }
    }

    /// How long `backend` should take to reach its limit at its rate so far, twice over
    /// (from 1 s to 30 s): after that, a replaced-ahead worker hands over even short of its
    /// limit, so a surge worker does not outlive a load that stopped.
    pub fn time_to_limit(&self, backend: &Backend, now: Instant) -> Duration {
        let served = backend.served.load(Ordering::Relaxed);
        let left = backend.max_requests.saturating_sub(served);
        let elapsed = self
            .ready_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let wait = if served == 0 {
            Duration::MAX
        } else {
            elapsed.mul_f64(2.0 * left as f64 / served as f64)
        };
        wait.clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    /// How many requests of `max_requests` in all, `served` of them so far, may come before
    /// a replacement must start to be ready at the limit: the requests the worker serves,
    /// at its rate so far, during one and a half replacement start times.
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

/// Requests waiting for a free worker of one pool. Lives as long as the pool, across
/// table republishes, so waiters are never stranded on an old table.
#[derive(Debug, Default)]
pub struct Queue {
    /// Woken when a worker frees a slot (one waiter) or the table changes (all waiters).
    pub notify: Notify,
    /// Requests waiting now.
    pub waiting: AtomicU32,
    /// Slots freed while requests waited, each with a waiter woken for it that has not yet
    /// run: a request that was not woken leaves a free slot alone while any is promised, so
    /// the longest waiter gets it rather than whoever looks first.
    pub promised: AtomicU32,
}

/// The ready workers of one pool and how the proxy may use them.
#[derive(Clone)]
pub struct PoolRoute {
    /// The pool's name.
    pub name: Arc<str>,
    /// Ready workers, in slot order.
    pub backends: Vec<Arc<Backend>>,
    /// The pool's metric handles, resolved once.
    pub metrics: PoolMetrics,
    /// Requests one worker takes at once.
    pub concurrency: u32,
    /// Requests that may wait for a free worker.
    pub queue_size: u32,
    /// How long a request may wait.
    pub queue_timeout: Duration,
    /// How long a worker may take to answer before 504.
    pub timeout: Duration,
    /// The pool's wait queue.
    pub queue: Arc<Queue>,
    /// Its `[pools.NAME.health]`, for passive ejection.
    pub health: corral_config::Health,
}

/// Everything the proxy needs to route one request.
#[derive(Clone)]
pub struct RoutingTable {
    /// Every running pool, in config order: a switch or a canary needs the routes of pools
    /// that are not active yet, and draining needs those of the pool that was.
    pub pools: Vec<Arc<PoolRoute>>,
    /// The pool new requests go to; one of `pools`.
    pub active: Arc<PoolRoute>,
    /// The pool that was active before the last switch, while it still runs.
    pub previous: Option<Arc<PoolRoute>>,
    /// A canary split: each pool with the sum of the weights up to and including its own;
    /// empty when every request goes to `active`.
    pub split: Vec<(Arc<PoolRoute>, u32)>,
    /// The config generation this table belongs to.
    pub generation: u64,
}

impl RoutingTable {
    /// The pool a request with `ticket` goes to. Tickets spread evenly over `u32` (the
    /// proxy draws them from a golden-ratio sequence), so each pool of a split gets its weight's share; without a split
    /// it is `active`, whatever the ticket.
    pub fn route(&self, ticket: u32) -> &Arc<PoolRoute> {
        let Some((_, total)) = self.split.last() else {
            return &self.active;
        };
        let point = ((u64::from(ticket) * u64::from(*total)) >> 32) as u32;
        self.split
            .iter()
            .find(|(_, upto)| point < *upto)
            .map_or(&self.active, |(route, _)| route)
    }

    /// Where new requests go, by pool name (the weights read back from `split`).
    pub fn traffic(&self) -> corral_config::Traffic {
        let mut below = 0;
        corral_config::Traffic {
            active: self.active.name.to_string(),
            weights: self
                .split
                .iter()
                .map(|(route, upto)| {
                    let weight = upto - below;
                    below = *upto;
                    (route.name.to_string(), weight)
                })
                .collect(),
        }
    }

    /// The route of the pool called `name`, if it runs.
    pub fn pool(&self, name: &str) -> Option<&Arc<PoolRoute>> {
        self.pools.iter().find(|p| &*p.name == name)
    }
}

/// The table shared between the supervisor (writer) and the proxy (reader).
pub type SharedRoutes = Arc<ArcSwap<RoutingTable>>;

/// What the proxy tells the supervisor about a worker.
#[derive(Debug)]
pub enum Report {
    /// The worker reached a limit the proxy counts (`max_requests`): replace it.
    Retire {
        /// The worker's [`Backend::id`].
        worker: WorkerId,
        /// Why, for logs and metrics.
        reason: ExitReason,
    },
    /// The worker will reach `max_requests` about when a replacement started now is
    /// ready: start it, and let the worker serve on at full share until its limit.
    StartReplacement {
        /// The worker's [`Backend::id`].
        worker: WorkerId,
    },
    /// A sync worker did not answer within `timeout`: it is stuck; kill and replace it.
    Hung {
        /// The worker's [`Backend::id`].
        worker: WorkerId,
        /// The request that hung it, for the log line.
        request: String,
    },
}

/// The proxy's end of the report channel; sending never blocks the request path.
#[derive(Clone)]
pub struct Reporter(mpsc::UnboundedSender<Report>);

impl Reporter {
    /// A report channel: the proxy's end, and the supervisor's.
    pub fn channel() -> (Reporter, mpsc::UnboundedReceiver<Report>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Reporter(tx), rx)
    }

    /// Sends a report; if the supervisor is gone (shutting down) there is no one to tell.
    pub fn send(&self, report: Report) {
        let _ = self.0.send(report);
    }
}

#[cfg(test)]
mod tests {
    use super::Recycle;
    use std::time::{Duration, Instant};

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
}
