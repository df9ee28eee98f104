//! The templates of app pools, kept by the runner: one per pool generation.
//!
//! - At start, every app pool's template is started and its import waited for before the
//!   policy hears `Start`; an import that fails fails the start (the traceback is logged).
//! - A reload with app pools starts their new templates first and hands the reload to the
//!   policy only once each has imported the (new) code; one that fails refuses the reload
//!   (its traceback logged) and the workers of before keep serving. Once handed over, the
//!   older templates end; their workers roll over as on any reload.
//! - A fork uses the newest template whose process would be the same (`same_process`);
//!   when there is none, or it failed, one is started and waited for.
//! - A template that exits on its own is logged and, if it was in use, started again; its
//!   workers keep serving (they are corral's children, not its).
//! - The template of a pool stopped after a switch ends; starting the pool again starts
//!   a new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use corral_config::{Config, Pool, PythonApp};

use super::template::{same_process, Phase, Template};
use super::{Internal, Runner, OUTPUT_DRAIN};
use crate::output::{pump, Stream, Tail};
use crate::policy::Event;

/// How often importing templates are looked at.
const CHECK_EVERY: Duration = Duration::from_millis(10);

impl Runner {
    /// Starts the template of every app pool of `config` and waits for each import:
    /// `Err` names the pool and carries the traceback.
    pub(super) fn start_apps(&mut self, config: &Config) -> Result<(), String> {
        let mut started = Vec::new();
        for pool in &config.pools {
            if let Some(app) = &pool.app {
                let pool = Arc::new(pool.clone());
                started.push(self.start_template(pool, app, &config.server.runtime_dir)?);
            }
        }
        for epoch in started {
            let Some(i) = self.template_index(epoch) else {
                continue;
            };
            let within = self.templates[i].pool.start_timeout;
            self.templates[i].wait_imported(within);
            self.log_phase(i);
            if let Phase::Failed(why) = &self.templates[i].phase {
                return Err(format!(
                    "pool {}: the app did not import:\n{why}",
                    self.templates[i].pool.name
                ));
            }
        }
        Ok(())
    }

    /// A reload: at once when it has no app pool, else once their new templates are ready.
    /// A reload still waiting for its templates is refused: the newer config replaces it.
    pub(super) fn gate_reload(
        &mut self,
        config: Box<Config>,
        verdict: crate::ReloadVerdict,
    ) -> Option<Event> {
        self.refuse_pending_reload("a newer reload replaced it before its app imported".into());
        let apps: Vec<(Arc<Pool>, PythonApp)> = config
            .pools
            .iter()
            .filter_map(|p| p.app.clone().map(|app| (Arc::new(p.clone()), app)))
            .collect();
        if apps.is_empty() {
            self.end_templates_not_in(&config);
            let _ = verdict.send(Ok(()));
            return Some(Event::Reload(config));
        }
        for (pool, app) in apps {
            match self.start_template(pool.clone(), &app, &config.server.runtime_dir) {
                Ok(epoch) => {
                    if let Some(i) = self.template_index(epoch) {
                        self.templates[i].gated = true;
                    }
                }
                Err(why) => {
                    tracing::error!(event = "reload_refused", pool = &*pool.name, error = %why, "reload refused: the app's template did not start; the running workers keep serving");
                    let _ = verdict.send(Err(format!(
                        "pool {}: the app's template did not start: {why}",
                        pool.name
                    )));
                    self.refuse_pending_reload(String::new());
                    return None;
                }
            }
        }
        self.pending_reload = Some((config, verdict));
        self.schedule_check();
        None
    }

    /// Looks at every importing template; returns the reload to hand to the policy once
    /// its templates are all ready.
    pub(super) fn check_templates(&mut self) -> Option<Event> {
        self.checking = false;
        for i in 0..self.templates.len() {
            let deadline = self.templates[i].pool.start_timeout;
            if self.templates[i].check(deadline) {
                self.log_phase(i);
            }
        }
        let mut reload = None;
        if self.pending_reload.is_some() {
            let gated = || self.templates.iter().filter(|t| t.gated);
            if let Some(t) = gated().find(|t| matches!(t.phase, Phase::Failed(_))) {
                let Phase::Failed(why) = &t.phase else {
                    return None;
                };
                let (pool, why) = (t.pool.name.clone(), why.clone());
                self.refuse_not_imported(&pool, &why);
            } else if gated().all(|t| t.phase == Phase::Ready) {
                reload = self.pending_reload.take().map(|(config, verdict)| {
                    let _ = verdict.send(Ok(()));
                    config
                });
                let fresh: Vec<(String, u64)> =
                    gated().map(|t| (t.pool.name.clone(), t.epoch)).collect();
                for t in &mut self.templates {
                    t.gated = false;
                    if fresh
                        .iter()
                        .any(|(name, epoch)| t.pool.name == *name && t.epoch < *epoch)
                    {
                        t.end();
                    }
                }
            }
        }
        if self
            .templates
            .iter()
            .any(|t| matches!(t.phase, Phase::Importing(_)))
        {
            self.schedule_check();
        }
        if let Some(config) = &reload {
            self.end_templates_not_in(config);
        }
        reload.map(Event::Reload)
    }

    /// Ends the templates of pools stopped after a switch: nothing forks from them until the
    /// pool starts again, which starts a new template. Those of a reload that waits for its
    /// import are kept.
    pub(super) fn end_templates_of_stopped_pools(&mut self) {
        for t in &mut self.templates {
            if !t.gated && !t.retired() && !self.policy.runs_workers(&t.pool.name) {
                tracing::info!(
                    event = "template_ending",
                    pool = &*t.pool.name,
                    pid = t.pid,
                    "the pool stopped: its app's template ends"
                );
                t.end();
            }
        }
    }

    /// Ends the templates of pools that `config` no longer has as app pools.
    fn end_templates_not_in(&mut self, config: &Config) {
        for t in &mut self.templates {
            let kept = config
                .pools
                .iter()
                .any(|p| p.name == t.pool.name && p.app.is_some());
            if !kept {
                t.end();
            }
        }
    }

    /// The template that forks the workers of `pool`, ready: the newest that fits, or a new
    /// one waited for.
    pub(super) fn template_for(
        &mut self,
        pool: &Arc<Pool>,
        app: &PythonApp,
        runtime_dir: &Path,
    ) -> Result<usize, String> {
        let newest = self
            .templates
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.gated && !t.retired() && same_process(&t.pool, pool))
            .max_by_key(|(_, t)| t.epoch)
            .map(|(i, _)| i);
        let i = match newest {
            Some(i) if !matches!(self.templates[i].phase, Phase::Failed(_)) => i,
            _ => {
                let epoch = self.start_template(pool.clone(), app, runtime_dir)?;
                self.template_index(epoch)
                    .ok_or_else(|| "the app's template exited at once".to_string())?
            }
        };
        if matches!(self.templates[i].phase, Phase::Importing(_)) {
            self.templates[i].wait_imported(pool.start_timeout);
            self.log_phase(i);
        }
        match &self.templates[i].phase {
            Phase::Ready => Ok(i),
            Phase::Failed(why) => Err(format!("the app did not import:\n{why}")),
            Phase::Importing(_) => Err("the app is still importing".into()),
        }
    }

    /// A template process ended.
    pub(super) fn template_exited(
        &mut self,
        epoch: u64,
        status: std::io::Result<std::process::ExitStatus>,
        stderr: Vec<String>,
    ) {
        let Some(i) = self.template_index(epoch) else {
            return;
        };
        let t = self.templates.remove(i);
        let exit = super::exit_of(status);
        if t.retired() {
            tracing::info!(event = "template_exited", pool = &*t.pool.name, pid = t.pid, exit = ?exit, "the app's template of before ended");
            return;
        }
        tracing::error!(event = "template_exited", pool = &*t.pool.name, pid = t.pid, exit = ?exit, stderr_tail = %stderr.join("\n"), "the app's template exited; its workers keep serving");
        if t.gated {
            // Its traceback may still wait on the channel (it is sent just before the
            // template exits): then the refusal is the one `check_templates` gives.
            let mut t = t;
            if let Some(why) = t.traceback_left() {
                self.refuse_not_imported(&t.pool.name, &why);
                return;
            }
            tracing::error!(event = "reload_refused", pool = &*t.pool.name, traceback = %stderr.join("\n"), "reload refused: the new template exited while importing; the running workers keep serving");
            let why = format!(
                "pool {}: the new template exited while importing:\n{}",
                t.pool.name,
                stderr.join("\n")
            );
            self.refuse_pending_reload(why);
            return;
        }
        let in_use = t.phase == Phase::Ready
            && !self
                .templates
                .iter()
                .any(|o| same_process(&o.pool, &t.pool) && o.epoch > t.epoch);
        if let (true, Some(app)) = (in_use, t.pool.app.clone()) {
            let runtime_dir = self.runtime_dir.clone();
            match self.start_template(t.pool.clone(), &app, &runtime_dir) {
                Ok(_) => self.schedule_check(),
                Err(why) => {
                    tracing::error!(event = "template_failed", pool = &*t.pool.name, error = %why, "cannot start the app's template again")
                }
            }
        }
    }

    /// Ends every template (the supervisor is done).
    pub(super) fn end_templates(&mut self) {
        for t in &mut self.templates {
            t.end();
        }
    }

    /// Starts a template for `pool` and watches it; returns its epoch.
    fn start_template(
        &mut self,
        pool: Arc<Pool>,
        app: &PythonApp,
        runtime_dir: &Path,
    ) -> Result<u64, String> {
        let package = self.package_dir(runtime_dir)?;
        if !self.subreaper {
            crate::reaper::become_subreaper()
                .map_err(|e| format!("cannot become a child subreaper: {e}"))?;
            self.subreaper = true;
        }
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let (template, mut child) = Template::start(pool.clone(), app, &package, epoch)
            .map_err(|e| format!("cannot start {}: {e}", app.python.display()))?;
        let pid = template.pid;
        tracing::info!(
            event = "template_started",
            pool = &*pool.name,
            pid,
            app = &*app.target,
            interface = app.interface.as_str(),
            "importing the app in its template"
        );
        let name: Arc<str> = Arc::from(pool.name.as_str());
        let tail = Tail::default();
        let pumps = [
            child.stdout.take().map(|out| {
                tokio::spawn(pump(
                    out,
                    Stream::Stdout,
                    name.clone(),
                    0,
                    pid,
                    tail.clone(),
                ))
            }),
            child.stderr.take().map(|err| {
                tokio::spawn(pump(
                    err,
                    Stream::Stderr,
                    name.clone(),
                    0,
                    pid,
                    tail.clone(),
                ))
            }),
        ];
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            for pump in pumps.into_iter().flatten() {
                let _ = tokio::time::timeout(OUTPUT_DRAIN, pump).await;
            }
            let _ = events.send(Internal::TemplateExited {
                epoch,
                status,
                stderr: tail.lines(),
            });
        });
        self.templates.push(template);
        Ok(epoch)
    }

    /// The embedded package, written under the runtime dir once.
    fn package_dir(&mut self, runtime_dir: &Path) -> Result<PathBuf, String> {
        if let Some(dir) = &self.package_dir {
            return Ok(dir.clone());
        }
        let dir = corral_python::install(runtime_dir).map_err(|e| {
            format!(
                "cannot write the Python package under {}: {e}",
                runtime_dir.display()
            )
        })?;
        self.package_dir = Some(dir.clone());
        Ok(dir)
    }

    fn template_index(&self, epoch: u64) -> Option<usize> {
        self.templates.iter().position(|t| t.epoch == epoch)
    }

    /// Drops the reload waiting for its templates, telling its sender `why`, and ends them.
    /// Refuses the pending reload because `pool`'s new code raised `why` on import.
    fn refuse_not_imported(&mut self, pool: &str, why: &str) {
        tracing::error!(event = "reload_refused", pool, traceback = %why, "reload refused: the new code did not import; the running workers keep serving the code of before");
        self.refuse_pending_reload(format!("pool {pool}: the new code did not import:\n{why}"));
    }

    fn refuse_pending_reload(&mut self, why: String) {
        if let Some((_, verdict)) = self.pending_reload.take() {
            let _ = verdict.send(Err(why));
        }
        for t in self.templates.iter_mut().filter(|t| t.gated) {
            t.end();
        }
    }

    fn schedule_check(&mut self) {
        if !self.checking {
            self.checking = true;
            let tx = self.events_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CHECK_EVERY).await;
                let _ = tx.send(Internal::CheckTemplates);
            });
        }
    }

    /// Logs a template's new phase.
    fn log_phase(&self, i: usize) {
        let t = &self.templates[i];
        match &t.phase {
            Phase::Ready => {
                tracing::info!(
                    event = "template_ready",
                    pool = &*t.pool.name,
                    pid = t.pid,
                    "the app is imported; forking workers from it"
                )
            }
            Phase::Failed(why) if !t.retired() => {
                tracing::error!(event = "template_failed", pool = &*t.pool.name, pid = t.pid, traceback = %why, "the app's template failed")
            }
            _ => {}
        }
    }
}
