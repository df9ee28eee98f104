//! Starting workers: filling every slot the pool lacks, and the tasks that watch a new
//! worker (exit, output, readiness).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_config::Bind;
use nix::sys::signal::Signal;

use super::{Event, Runner, OUTPUT_DRAIN};
use crate::output::{pump, Stream, Tail};
use crate::ready::{wait_ready, Outcome};
use crate::routes::Address;
use crate::sockets;
use crate::spawn::{spawn, SpawnSpec};
use crate::worker::{signal_group, State, Worker};

impl Runner {
    /// Spawns a worker for every slot that lacks one, and retires workers beyond `desired`.
    pub(super) fn ensure_slots(&mut self, p: usize) {
        if self.stopping.is_some() {
            return;
        }
        let pool = &mut self.pools[p];
        // Beyond the desired count (scale down, a pool removed by reload): drain away.
        let extra: Vec<(u64, bool)> = pool
            .workers
            .iter()
            .filter(|w| w.slot > pool.desired && w.ending.is_none())
            .map(|w| (w.id, matches!(w.state, State::Starting { .. })))
            .collect();
        for (id, starting) in extra {
            if starting {
                if let Some(w) = self.pools[p].workers.iter_mut().find(|w| w.id == id) {
                    w.ending = Some("scale");
                    signal_group(w.pid, Signal::SIGTERM);
                }
            } else {
                self.begin_drain(p, id, Some("scale"));
            }
        }
        let pool = &self.pools[p];
        if pool.failed.is_some() {
            return;
        }
        let missing: Vec<u32> = (1..=pool.desired)
            .filter(|slot| {
                !pool
                    .workers
                    .iter()
                    .any(|w| w.slot == *slot && w.covers_slot())
            })
            .filter(|slot| !pool.slots.get(slot).is_some_and(|s| s.restart_pending))
            .collect();
        for slot in missing {
            self.spawn_worker(p, slot);
        }
    }

    /// Starts one worker in `slot` and the tasks that watch it.
    fn spawn_worker(&mut self, p: usize, slot_id: u32) {
        let id = self.next_id;
        self.next_id += 1;
        let events = self.events_tx.clone();
        let pool = &mut self.pools[p];
        let name = pool.name.clone();
        let slot = pool.slots.entry(slot_id).or_default();
        let sockets = match sockets::prepare(
            &pool.config,
            id,
            &mut slot.listener,
            &self.runtime_dir,
        ) {
            Ok(sockets) => sockets,
            Err(e) => {
                tracing::error!(event = "worker_spawn_failed", pool = &*name, worker = slot_id, error = %e, "cannot get a socket for the worker");
                self.spawn_failed(p, id, slot_id, e);
                return;
            }
        };
        let (addr, notify) = (sockets.addr, sockets.notify);
        let notify_path = notify.as_ref().map(|(path, _)| path.clone());
        let spec = SpawnSpec {
            pool: &pool.config,
            worker: slot_id,
            addr: &addr,
            listen_fd: slot
                .listener
                .as_ref()
                .filter(|_| pool.config.bind == Bind::Fd)
                .map(|l| l.as_raw_fd()),
            notify_socket: notify_path.as_deref(),
        };
        let started = Instant::now();
        let mut child = match spawn(&spec) {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(event = "worker_spawn_failed", pool = &*name, worker = slot_id, command = ?pool.config.command, error = %e, "cannot start the worker");
                sockets::cleanup(&addr, notify_path.as_deref());
                self.spawn_failed(p, id, slot_id, e);
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
        tracing::info!(event = "worker_spawned", pool = &*name, worker = slot_id, pid, %addr, generation = pool.generation, "worker spawned");
        let alive = Arc::new(AtomicBool::new(true));
        pool.workers.push(Worker {
            id,
            slot: slot_id,
            generation: pool.generation,
            pid,
            addr: addr.clone(),
            notify_path,
            started,
            state: State::Starting {
                since: started,
                alive: alive.clone(),
            },
            retiring: None,
            ending: None,
        });

        let tail = Tail::default();
        let stdout = child.stdout.take().map(|out| {
            tokio::spawn(pump(
                out,
                Stream::Stdout,
                name.clone(),
                slot_id,
                pid,
                tail.clone(),
            ))
        });
        let stderr = child.stderr.take().map(|err| {
            tokio::spawn(pump(
                err,
                Stream::Stderr,
                name.clone(),
                slot_id,
                pid,
                tail.clone(),
            ))
        });
        let exit_events = events.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let ran = started.elapsed();
            for pump in [stdout, stderr].into_iter().flatten() {
                let _ = tokio::time::timeout(OUTPUT_DRAIN, pump).await;
            }
            let _ = exit_events.send(Event::Exited {
                id,
                status,
                ran,
                stderr: tail.lines(),
            });
        });

        let (kind, path, timeout) = (
            pool.config.ready,
            pool.config.health_path.clone(),
            pool.config.start_timeout,
        );
        tokio::spawn(async move {
            let notify = notify.map(|(_, socket)| socket);
            match wait_ready(kind, &addr, &path, notify, started + timeout, &alive).await {
                Outcome::Ready => {
                    let _ = events.send(Event::Ready(id));
                }
                Outcome::TimedOut(why) => {
                    let _ = events.send(Event::StartTimeout(id, why));
                }
                Outcome::Gone => {}
            }
        });
    }

    /// A start that failed before a process existed takes the same path as a crash.
    fn spawn_failed(&mut self, p: usize, id: u64, slot: u32, error: std::io::Error) {
        let pool = &mut self.pools[p];
        pool.workers.push(Worker {
            id,
            slot,
            generation: pool.generation,
            pid: 0,
            addr: Address::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
            notify_path: None,
            started: Instant::now(),
            state: State::Starting {
                since: Instant::now(),
                alive: Arc::new(AtomicBool::new(false)),
            },
            retiring: None,
            ending: Some("spawn_failed"),
        });
        let _ = self.events_tx.send(Event::Exited {
            id,
            status: Err(error),
            ran: Duration::ZERO,
            stderr: Vec::new(),
        });
    }
}
