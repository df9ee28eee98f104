//! What the service manager hears: `READY=1` once the active pool is full of ready workers
//! (not merely started, which is what Gunicorn reports), `STATUS=` lines as they change,
//! `RELOADING=1` then `READY=1` around each reload, and `WATCHDOG=1` only while both of the
//! master's loops turn. After a `SIGUSR2` the new master tells the old one instead of
//! systemd that it is ready (the old one then names it `MAINPID`), and only then starts
//! accepting on the sockets it shares with the old one (`services.rs`).

use std::time::{Duration, Instant};

use corral_supervisor::heartbeat::Heartbeat;
use corral_supervisor::{PoolView, StateKind, StatusSnapshot};
use corral_systemd::{Notifier, SuccessorReport};
use tokio::sync::watch;

/// The longest `systemctl reload` waits for a rollout that does not finish (its workers
/// cannot start): READY=1 then goes out anyway, the status line saying so.
const RELOAD_READY_BOUND: Duration = Duration::from_secs(60);

/// Where startup or a reload stands, for the service manager.
enum Phase {
    /// Not yet ready since start.
    Starting,
    /// Ready; nothing pending.
    Serving,
    /// A reload to this config generation, since then.
    Reloading(u64, Instant),
}

/// What a turn of [`Announcer::tick`] found that the master must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Nothing new.
    Quiet,
    /// This process was started by an upgrade and its active pool failed: give up.
    SuccessorFailed(String),
}

/// Tracks readiness and tells the service manager (or the previous master).
pub struct Announcer {
    notifier: Notifier,
    successor: Option<SuccessorReport>,
    phase: Phase,
    last_status: String,
    watchdog: Option<(Duration, Instant)>,
    /// Opens this master's listeners: true from the start, or after a SIGUSR2 once the
    /// active pool is ready.
    accepting: watch::Sender<bool>,
}

impl Announcer {
    /// For this process: `successor` is the previous master's report socket after a
    /// SIGUSR2, `watchdog` the ping interval when systemd's watchdog is on.
    pub fn new(successor: Option<SuccessorReport>, watchdog: Option<Duration>) -> Self {
        let (accepting, _) = watch::channel(successor.is_none());
        Announcer {
            notifier: Notifier::new(),
            successor,
            phase: Phase::Starting,
            last_status: String::new(),
            watchdog: watchdog.map(|every| (every, Instant::now())),
            accepting,
        }
    }

    /// Turns true when the listeners may accept: at once for a master started on its own;
    /// for one started by a SIGUSR2, once its active pool is ready, just before it tells
    /// the old master (connections meanwhile wait in the shared sockets' queue, for the
    /// old master to take).
    pub fn accepting(&self) -> watch::Receiver<bool> {
        self.accepting.subscribe()
    }

    /// Called often (every 200 ms): readiness, status line, watchdog.
    pub fn tick(&mut self, status: &StatusSnapshot, heartbeat: &Heartbeat) -> Turn {
        // Every pool that gets new requests (one per route with `[[routes]]`) must be full.
        let (mut fresh, mut desired) = (0, 0);
        for pool in status.pools.iter().filter(|p| p.active) {
            let (f, d) = fresh_ready(pool);
            fresh += f.min(d);
            desired += d;
        }
        let failed = || {
            status
                .pools
                .iter()
                .filter(|p| p.active)
                .find_map(|p| p.failed.clone())
        };
        let line = format!(
            "{fresh}/{desired} workers ready, generation {}",
            status.generation
        );
        let mut turn = Turn::Quiet;
        match self.phase {
            Phase::Starting if desired > 0 && fresh >= desired => {
                self.phase = Phase::Serving;
                match self.successor.take() {
                    Some(report) => {
                        self.accepting.send_replace(true);
                        report.ready();
                        self.notifier.status(&line);
                    }
                    None => self.notifier.ready(&line),
                }
                self.last_status = line;
            }
            Phase::Starting => {
                if let (Some(reason), Some(_)) = (failed(), &self.successor) {
                    if let Some(report) = self.successor.take() {
                        report.failed(&reason);
                    }
                    turn = Turn::SuccessorFailed(reason);
                }
                self.status(&format!("starting: {line}"));
            }
            Phase::Reloading(generation, since) => {
                let rolled = status.generation >= generation && desired > 0 && fresh >= desired;
                let failed = failed();
                if rolled {
                    self.phase = Phase::Serving;
                    self.notifier.ready(&line);
                    self.last_status = line;
                } else if failed.is_some() || since.elapsed() > RELOAD_READY_BOUND {
                    self.phase = Phase::Serving;
                    let why = failed.unwrap_or_else(|| "new workers not ready".into());
                    let line = format!("reload incomplete ({why}): {line}");
                    self.notifier.ready(&line);
                    self.last_status = line;
                } else {
                    self.status(&format!("reloading: {line}"));
                }
            }
            Phase::Serving => self.status(&line),
        }
        self.watchdog(heartbeat);
        turn
    }

    /// SIGHUP (or a watched change) is being handled.
    pub fn reloading(&mut self) {
        self.notifier.reloading();
    }

    /// The reload was applied as config `generation`; READY=1 follows once it rolled out.
    pub fn reload_applied(&mut self, generation: u64) {
        if !matches!(self.phase, Phase::Starting) {
            self.phase = Phase::Reloading(generation, Instant::now());
        }
    }

    /// The reload was refused (`why`): nothing changes, so it is over at once.
    pub fn reload_rejected(&mut self, why: &str) {
        if !matches!(self.phase, Phase::Starting) {
            let line = format!("reload rejected ({why}); {}", self.last_status);
            self.notifier.ready(&line);
        }
    }

    /// A stop has begun.
    pub fn stopping(&mut self, in_flight: i64) {
        self.notifier
            .stopping(&format!("stopping: draining {in_flight} requests"));
    }

    /// While draining, the line says how much is left.
    pub fn draining(&mut self, in_flight: i64) {
        self.status(&format!("stopping: draining {in_flight} requests"));
    }

    fn status(&mut self, line: &str) {
        if self.last_status != line {
            self.notifier.status(line);
            self.last_status = line.to_string();
        }
    }

    /// `WATCHDOG=1` every interval, while the supervisor's loop has turned within two
    /// intervals (it turns at least every second). This runs on the proxy's runtime, so a
    /// ping also proves that one answers.
    fn watchdog(&mut self, heartbeat: &Heartbeat) {
        let Some((every, last)) = &mut self.watchdog else {
            return;
        };
        if last.elapsed() < *every {
            return;
        }
        if heartbeat.age() <= (*every * 2).max(Duration::from_secs(2)) {
            self.notifier.watchdog();
            *last = Instant::now();
        } else {
            tracing::error!(
                event = "watchdog_withheld",
                supervisor_silent_ms = heartbeat.age().as_millis() as u64,
                "the supervisor loop is not answering; not pinging the watchdog"
            );
        }
    }
}

/// Ready workers of the pool's current generation, and how many it should have.
fn fresh_ready(pool: &PoolView) -> (usize, usize) {
    let fresh = pool
        .workers
        .iter()
        .filter(|w| w.state == StateKind::Ready && w.generation == pool.generation)
        .count();
    (fresh, pool.desired as usize)
}
