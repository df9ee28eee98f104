//! Starting one worker for [`Action::Spawn`](crate::policy::Action::Spawn): its sockets, its
//! process, and the tasks that watch it (exit, output, readiness), which a worker forked
//! by an app pool's template (`fork.rs`) shares.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use corral_config::Bind;

use super::{Internal, Runner, WorkerIo, OUTPUT_DRAIN};
use crate::output::{pump, Stream, Tail};
use crate::policy::{Event, SpawnOrder};
use crate::ready::{wait_ready, Outcome};
use crate::sockets;
use crate::spawn::{spawn, SpawnSpec};

/// A worker's stdout or stderr, read by corral.
pub(super) type Output = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

/// A worker process, spawned by corral or forked by an app pool's template: what the
/// runner watches of it.
pub(super) struct Process {
    pub(super) pid: u32,
    pub(super) stdout: Option<Output>,
    pub(super) stderr: Option<Output>,
    /// Resolves when the process has exited and been reaped.
    pub(super) exit: std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<std::process::ExitStatus>> + Send>,
    >,
}

impl Runner {
    /// Starts the worker of `order`; the returned event says whether a process exists.
    pub(super) fn spawn(&mut self, order: &SpawnOrder) -> Event {
        if let Some(app) = order.config.app.clone() {
            return self.fork(order, &app);
        }
        let worker = order.worker;
        let failed = |error: std::io::Error| Event::SpawnFailed {
            worker,
            error: error.to_string(),
        };
        let pool = &order.config;
        let mut listener = self.listeners.remove(&(order.pool, order.slot));
        // `bind = "fd"`: a replacement started while the slot's worker still runs (reload,
        // recycle) gets a socket of its own. On the shared one the old process would answer
        // the new one's readiness probe and take its connections (WebSockets included). The
        // old process keeps its copy until it exits, after its drain; the master's is
        // dropped here. After a crash the slot's socket is reused, so the connections queued
        // on it while the worker restarts are served by the next one, not lost.
        if listener.as_ref().is_some_and(|l| self.in_use(l)) {
            listener = None;
        }
        let prepared = sockets::prepare(pool, worker.0, &mut listener, &order.runtime_dir);
        if let Some(l) = listener {
            self.listeners.insert((order.pool, order.slot), l);
        }
        let sockets = match prepared {
            Ok(sockets) => sockets,
            Err(e) => return failed(e),
        };
        let (addr, notify) = (sockets.addr, sockets.notify);
        let notify_path = notify.as_ref().map(|(path, _)| path.clone());
        let listen_fd = self
            .listeners
            .get(&(order.pool, order.slot))
            .filter(|_| pool.bind == Bind::Fd)
            .map(|l| l.as_raw_fd());
        let spec = SpawnSpec {
            pool,
            worker: order.slot,
            addr: &addr,
            listen_fd,
            notify_socket: notify_path.as_deref(),
        };
        let started = Instant::now();
        let mut child = match spawn(&spec) {
            Ok(child) => child,
            Err(e) => {
                sockets::cleanup(&addr, notify_path.as_deref());
                return failed(e);
            }
        };
        let process = Process {
            pid: child.id().unwrap_or(0),
            stdout: child.stdout.take().map(|o| Box::new(o) as Output),
            stderr: child.stderr.take().map(|e| Box::new(e) as Output),
            exit: Box::pin(async move { child.wait().await }),
        };
        self.watch(order, addr, notify, notify_path, started, process)
    }

    /// Watches a started worker, whichever way it was started: its exit, its output and
    /// its readiness. Returns [`Event::Spawned`].
    pub(super) fn watch(
        &mut self,
        order: &SpawnOrder,
        addr: corral_routes::Address,
        notify: Option<(std::path::PathBuf, tokio::net::UnixDatagram)>,
        notify_path: Option<std::path::PathBuf>,
        started: Instant,
        process: Process,
    ) -> Event {
        let (worker, pool) = (order.worker, &order.config);
        let pid = process.pid;
        let alive = Arc::new(AtomicBool::new(true));
        self.workers.insert(
            worker,
            WorkerIo {
                addr: addr.clone(),
                notify_path,
                pid,
                alive: alive.clone(),
            },
        );

        let name: Arc<str> = Arc::from(pool.name.as_str());
        let tail = Tail::default();
        let pumps = [
            process.stdout.map(|out| {
                tokio::spawn(pump(
                    out,
                    Stream::Stdout,
                    name.clone(),
                    order.slot,
                    pid,
                    tail.clone(),
                ))
            }),
            process.stderr.map(|err| {
                tokio::spawn(pump(
                    err,
                    Stream::Stderr,
                    name.clone(),
                    order.slot,
                    pid,
                    tail.clone(),
                ))
            }),
        ];
        let events = self.events_tx.clone();
        let running = alive.clone();
        let exit = process.exit;
        tokio::spawn(async move {
            let status = exit.await;
            // At once, not when the exit is reaped after its output: probes and health
            // checks of this worker stop now.
            running.store(false, std::sync::atomic::Ordering::Release);
            let ran = started.elapsed();
            for pump in pumps.into_iter().flatten() {
                let _ = tokio::time::timeout(OUTPUT_DRAIN, pump).await;
            }
            let _ = events.send(Internal::Exited {
                worker,
                status,
                ran,
                stderr: tail.lines(),
            });
        });

        let events = self.events_tx.clone();
        let (kind, path, deadline) = (
            pool.ready,
            pool.health_path.clone(),
            started + pool.start_timeout,
        );
        let probe_addr = addr.clone();
        tokio::spawn(async move {
            let notify = notify.map(|(_, socket)| socket);
            let event = match wait_ready(kind, &probe_addr, &path, notify, deadline, &alive).await {
                Outcome::Ready => Event::Ready(worker),
                Outcome::TimedOut(why) => Event::StartTimeout { worker, why },
                Outcome::Gone => return,
            };
            let _ = events.send(Internal::Event(event));
        });
        Event::Spawned { worker, pid, addr }
    }

    /// Whether a worker still running listens on `listener` (its address is the worker's).
    fn in_use(&self, listener: &TcpListener) -> bool {
        listener.local_addr().is_ok_and(|addr| {
            self.workers
                .values()
                .any(|w| w.addr == corral_routes::Address::Tcp(addr))
        })
    }
}
