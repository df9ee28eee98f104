//! The master's serving loop and its state. [`Master`] holds what changes while corral runs
//! (the config in force, its generation, a switch or upgrade under way, what systemd has
//! been told) and has one entry point per input: a signal, the config file changing, a
//! control request, the switch or the upgrade ending, the announce tick. Every reload,
//! whoever asks for it, goes through [`Master::reload`].

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use corral_config::Config;
use corral_control::{Answer, Refusal, Reply, Request};
use corral_proxy::{ControlRequest, ProxySettings};
use corral_supervisor::{Scale, Supervisor};
use corral_systemd::{Successor, UpgradeError};
use corral_telemetry::{LogGuard, Metrics};
use pingora_core::server::ListenFds;
use tokio::sync::oneshot;

use crate::announce::{Announcer, Turn};
use crate::reload::{self, Source};
use crate::reload_wait::ReloadWait;
use crate::signals::{self, Signals};
use crate::stop::Ending;
use crate::switch::Switching;
use crate::upgrade::{self, UpgradeWait};
use crate::wiring::Wired;
use crate::{config_watch, routing_state};

/// How often readiness, the status line and the watchdog are looked at.
const ANNOUNCE_TICK: Duration = Duration::from_millis(200);
/// How long a successor that will not take over has to stop before it is killed.
const ABANDON_GRACE: Duration = Duration::from_secs(10);

/// The master while it serves.
pub struct Master<'a> {
    /// The config in force: the start one, then each applied reload's.
    current: Config,
    /// The config generation, counted here where reloads are decided (the supervisor's
    /// snapshot follows it asynchronously): 1 at start, +1 per applied reload.
    generation: u64,
    supervisor: &'a Supervisor,
    metrics: Arc<Metrics>,
    settings: Arc<ArcSwap<ProxySettings>>,
    /// The HTTPS listeners' certificates, swapped on reload.
    certificates: Option<Arc<corral_tls::Certificates>>,
    /// Every listening socket, handed to a successor on SIGUSR2.
    fds: ListenFds,
    log: &'a LogGuard,
    announcer: Announcer,
    switching: Switching<'a>,
    upgrading: Option<UpgradeWait>,
    /// A reload waiting for its app pools' new code to import.
    reloading: Option<ReloadWait>,
}

/// What the master is built from: the services it runs and the handles they left.
pub struct Parts<'a> {
    /// The supervisor of the workers.
    pub supervisor: &'a Supervisor,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The proxy's settings.
    pub settings: Arc<ArcSwap<ProxySettings>>,
    /// The certificates in use.
    pub certificates: Option<Arc<corral_tls::Certificates>>,
    /// The listening sockets.
    pub fds: ListenFds,
    /// The log, reopened on SIGUSR1.
    pub log: &'a LogGuard,
    /// What systemd (or the old master) hears.
    pub announcer: Announcer,
}

impl<'a> Master<'a> {
    /// The master serving `config`.
    pub fn new(config: Config, parts: Parts<'a>) -> Self {
        Master {
            current: config,
            generation: 1,
            supervisor: parts.supervisor,
            metrics: parts.metrics.clone(),
            settings: parts.settings,
            certificates: parts.certificates,
            fds: parts.fds,
            log: parts.log,
            announcer: parts.announcer,
            switching: Switching::new(parts.supervisor, parts.metrics.clone()),
            upgrading: None,
            reloading: None,
        }
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.current
    }

    /// The announcer, for the stop sequence.
    pub fn announcer(&mut self) -> &mut Announcer {
        &mut self.announcer
    }

    /// Serves until a stop signal, a hand-over or a failed start; an error when a listener
    /// ended on its own (the listeners are then closed).
    pub async fn serve(
        &mut self,
        signals: &mut Signals,
        wired: &mut Wired,
    ) -> anyhow::Result<Ending> {
        let mut watch = config_watch::start_if_asked(&self.current);
        let mut tick = tokio::time::interval(ANNOUNCE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ending = tokio::select! {
                request = signals.next() => self.on_signal(request),
                () = config_watch::changed(&mut watch) => self.on_config_changed(),
                Some(request) = wired.control.recv() => self.on_control(request),
                () = self.switching.step() => None,
                (successor, result) = UpgradeWait::wait(&mut self.upgrading) => self.on_upgrade(successor, result),
                verdict = ReloadWait::verdict(&mut self.reloading) => self.on_reload_verdict(verdict),
                Some(reason) = wired.failed.recv() => {
                    let _ = wired.shutdown.send(true);
                    anyhow::bail!("{reason}; stopping");
                }
                _ = tick.tick() => self.on_tick(),
            };
            if let Some(ending) = ending {
                return Ok(ending);
            }
        }
    }

    /// A signal: stop, reload, scale the active pool, reopen the logs or upgrade.
    fn on_signal(&mut self, request: signals::Request) -> Option<Ending> {
        match request {
            signals::Request::Stop(mode) => {
                self.switching.stopping();
                return Some(Ending::Stop(mode));
            }
            signals::Request::Reload => self.reload(Source::Signal, None),
            signals::Request::Scale(delta) => self.supervisor.scale(None, Scale::By(delta)),
            signals::Request::ReopenLogs => {
                self.log.reopen();
                tracing::info!(
                    event = "logs_reopened",
                    files = self.log.has_files(),
                    "SIGUSR1: log files reopened"
                );
            }
            signals::Request::Upgrade if self.upgrading.is_some() => {
                tracing::warn!(
                    event = "upgrade_ignored",
                    "SIGUSR2: an upgrade is already under way"
                );
            }
            signals::Request::Upgrade => match upgrade::start(&self.fds) {
                Ok(successor) => {
                    let timeout = upgrade::ready_timeout(&self.current);
                    self.upgrading = Some(UpgradeWait::new(successor, timeout));
                }
                Err(e) => {
                    tracing::error!(event = "upgrade_failed", error = %e, "the upgrade did not start; still serving")
                }
            },
        }
        None
    }

    /// `server.watch_config`: the file changed and settled.
    fn on_config_changed(&mut self) -> Option<Ending> {
        tracing::info!(event = "config_changed", config = %self.current.source.display(), "the config file changed");
        self.reload(Source::FileWatch, None);
        None
    }

    /// A control verb from the control socket; each answers on its own channel.
    fn on_control(&mut self, ControlRequest { request, reply }: ControlRequest) -> Option<Ending> {
        let answer = match request {
            // The reload answers once it is applied or refused.
            Request::Reload => {
                self.reload(Source::Control, Some(reply));
                return None;
            }
            // The switch answers itself once it has flipped or been refused.
            Request::Switch { to, route } => {
                self.switching.request(&self.current, route, to, reply);
                return None;
            }
            Request::Scale { pool, workers } => self.scale(pool, workers),
        };
        let _ = reply.send(answer);
        None
    }

    /// `corral scale`: a pool's worker count (the active pool's when none is named).
    fn scale(&mut self, pool: Option<String>, workers: u32) -> Reply {
        let pool = pool.unwrap_or_else(|| self.current.routing.active.clone());
        if let Some(why) = corral_config::unknown_pool(&pool, &self.current.pools) {
            return Err(Refusal::Refused(vec![why]));
        }
        self.supervisor
            .scale(Some(pool.clone()), Scale::To(workers));
        Ok(Answer::Scaled { pool, workers })
    }

    /// The successor started by SIGUSR2 is ready (hand over) or will not be (go on).
    fn on_upgrade(
        &mut self,
        successor: Successor,
        result: Result<u32, UpgradeError>,
    ) -> Option<Ending> {
        match result {
            Ok(pid) => {
                tracing::info!(
                    event = "upgrade_ready",
                    new_master = pid,
                    "the new master is ready; this one stops accepting and drains"
                );
                corral_systemd::Notifier::new().main_pid(pid);
                successor.release();
                Some(Ending::HandedOver(pid))
            }
            Err(e) => {
                tracing::error!(event = "upgrade_failed", error = %e, "the new binary did not take over; still serving");
                tokio::spawn(successor.abandon(ABANDON_GRACE));
                None
            }
        }
    }

    /// Readiness, the status line and the watchdog; a successor whose pool cannot start
    /// gives up.
    fn on_tick(&mut self) -> Option<Ending> {
        let status = self.supervisor.status.load();
        match self.announcer.tick(&status, &self.supervisor.heartbeat) {
            Turn::SuccessorFailed(reason) => {
                tracing::error!(event = "upgrade_abandoned", reason = %reason, "the active pool cannot start; leaving the previous master serving");
                Some(Ending::SuccessorFailed)
            }
            Turn::Quiet => None,
        }
    }

    /// The one reload path: reads and validates the file again and, if it is valid, hands
    /// it to the supervisor, then applies the rest (certificates, proxy settings) once the
    /// supervisor went ahead: at once without app pools, after their new code imported with
    /// them. `caller` (`corral reload`) hears the new generation or every error.
    pub fn reload(&mut self, source: Source, caller: Option<oneshot::Sender<Reply>>) {
        self.announcer.reloading();
        match reload::reload(&self.current, &self.metrics, source) {
            Ok(new) => {
                let verdict = self.supervisor.reload(new.config.clone());
                let mut wait = ReloadWait::new(new, verdict, self.reloading.take());
                wait.callers.extend(caller);
                if wait.reloaded.config.pools.iter().any(|p| p.app.is_some()) {
                    self.reloading = Some(wait);
                } else {
                    self.finish_reload(wait, Ok(()));
                }
            }
            Err(errors) => {
                self.announcer.reload_rejected("config invalid");
                if let Some(caller) = caller {
                    let _ = caller.send(Err(Refusal::Refused(errors)));
                }
            }
        }
    }

    /// The supervisor's verdict on the reload that waited for its app pools.
    fn on_reload_verdict(&mut self, verdict: Result<(), String>) -> Option<Ending> {
        if let Some(wait) = self.reloading.take() {
            self.finish_reload(wait, verdict);
        }
        None
    }

    /// Applies a reload the supervisor went ahead with, or keeps the config in force; tells
    /// its callers either way.
    fn finish_reload(&mut self, wait: ReloadWait, verdict: Result<(), String>) {
        let answer = match verdict {
            Ok(()) => {
                self.metrics.reload("ok");
                let generation = self.apply(wait.reloaded);
                self.announcer.reload_applied(generation);
                Ok(Answer::Reloaded {
                    reloaded: true,
                    generation,
                })
            }
            Err(why) => {
                self.metrics.reload("refused");
                self.announcer.reload_rejected("the new app did not import");
                Err(Refusal::Refused(vec![why]))
            }
        };
        for caller in wait.callers {
            let _ = caller.send(answer.clone());
        }
    }

    /// Puts a valid config, already handed to the supervisor, in force.
    fn apply(&mut self, reloaded: reload::Reloaded) -> u64 {
        let new = reloaded.config;
        if let (Some(set), Some(in_use)) = (reloaded.certificates, &self.certificates) {
            crate::tls::announce(&set);
            in_use.store(set);
        }
        // A file that changed a route's traffic wins over a switch of that route made at
        // run time, also after a restart.
        routing_state::forget_changed(&self.current, &new);
        self.settings.store(Arc::new(ProxySettings::new(
            &new,
            Some(&self.settings.load()),
            &self.metrics,
        )));
        self.current = new;
        self.generation += 1;
        self.generation
    }
}
