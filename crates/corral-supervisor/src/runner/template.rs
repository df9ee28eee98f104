//! An app pool's template process: started with the pool's user, group, environment and
//! directory, it imports the app once and forks workers on request (the Python side is
//! `corral_worker/template.py` in `corral-python`, whose module doc has the protocol).
//!
//! The control channel is a `SOCK_SEQPACKET` socket pair (one message a datagram, fds
//! passed with SCM_RIGHTS). The runner is its only reader and reads it from its own thread
//! only: a non-blocking look while the template imports ([`Template::check`], polled), and
//! a bounded wait for the answer to a fork, which takes milliseconds.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_config::{Pool, PythonApp};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recv, sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};

use crate::spawn::spawn_template;

/// Longest message the template sends (its import traceback, cut to fit).
const MAX_MESSAGE: usize = 64 * 1024;
/// How long the template may take to answer a fork request.
pub(super) const FORK_ANSWER: Duration = Duration::from_secs(5);

/// Where a template is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    /// Importing the app, since then.
    Importing(Instant),
    /// Forking workers on request.
    Ready,
    /// The import failed (the traceback), or it ended: no more forks.
    Failed(String),
}

/// One template process.
pub(super) struct Template {
    /// The pool config it was started for.
    pub(super) pool: Arc<Pool>,
    /// Starts are numbered, newest highest: a reload's template wins over the one before.
    pub(super) epoch: u64,
    pub(super) pid: u32,
    pub(super) phase: Phase,
    /// A reload started it and is waiting for it (it is not used for forks until then).
    pub(super) gated: bool,
    /// Ended by corral (a newer one took over, or corral stops): its exit is expected.
    retired: bool,
    control: OwnedFd,
}

/// Whether a template started for `a` can fork the workers of `b`: the same pool, app,
/// interpreter, environment, directory and user (the rest of a pool's keys are corral's).
pub(super) fn same_process(a: &Pool, b: &Pool) -> bool {
    a.name == b.name && a.app == b.app && a.env == b.env && a.cwd == b.cwd && a.run_as == b.run_as
}

impl Template {
    /// Starts the template of `pool` (which has an `app`); the child and its output are the
    /// caller's to watch.
    pub(super) fn start(
        pool: Arc<Pool>,
        app: &PythonApp,
        package_dir: &std::path::Path,
        epoch: u64,
    ) -> std::io::Result<(Template, tokio::process::Child)> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )
        .map_err(std::io::Error::from)?;
        // The template's end blocks: it only ever waits for the next request.
        nix::fcntl::fcntl(
            theirs.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )
        .map_err(std::io::Error::from)?;
        let child = spawn_template(&pool, app, package_dir, theirs.as_raw_fd())?;
        drop(theirs);
        let template = Template {
            pool,
            epoch,
            pid: child.id().unwrap_or(0),
            phase: Phase::Importing(Instant::now()),
            gated: false,
            retired: false,
            control: ours,
        };
        Ok((template, child))
    }

    /// Reads the import's outcome if it has come (without waiting), and past `deadline`
    /// gives up on it. Returns true when the phase changed.
    pub(super) fn check(&mut self, deadline: Duration) -> bool {
        let Phase::Importing(since) = self.phase else {
            return false;
        };
        match self.receive(Duration::ZERO) {
            Some(Ok(text)) => {
                self.phase = import_outcome(&text);
                true
            }
            Some(Err(why)) => {
                self.phase = Phase::Failed(why);
                true
            }
            None if since.elapsed() > deadline => {
                self.phase = Phase::Failed(format!(
                    "the app did not finish importing within {deadline:?}"
                ));
                true
            }
            None => false,
        }
    }

    /// The traceback a template that exited while importing sent just before it ended, when
    /// its channel still holds it (the exit and the message race to the runner).
    pub(super) fn traceback_left(&mut self) -> Option<String> {
        if !matches!(self.phase, Phase::Importing(_)) {
            return None;
        }
        match self.receive(Duration::ZERO) {
            Some(Ok(text)) => match import_outcome(&text) {
                Phase::Failed(why) => Some(why),
                _ => None,
            },
            _ => None,
        }
    }

    /// Waits up to `within` for the import's outcome.
    pub(super) fn wait_imported(&mut self, within: Duration) {
        let Phase::Importing(since) = self.phase else {
            return;
        };
        let left = within.saturating_sub(since.elapsed());
        self.phase = match self.receive(left) {
            Some(Ok(text)) => import_outcome(&text),
            Some(Err(why)) => Phase::Failed(why),
            None => Phase::Failed(format!(
                "the app did not finish importing within {within:?}"
            )),
        };
    }

    /// Asks the template to fork the worker of `slot`, which gets `listener` and the write
    /// ends of its output pipes; returns the worker's pid.
    pub(super) fn fork(
        &mut self,
        slot: u32,
        server: (&str, &str),
        fds: [RawFd; 3],
    ) -> Result<u32, String> {
        if self.phase != Phase::Ready {
            return Err("the app's template is not ready".into());
        }
        let request = format!("spawn {slot} {} {}", server.0, server.1);
        let rights = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(
            self.control.as_raw_fd(),
            &[IoSlice::new(request.as_bytes())],
            &rights,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| format!("cannot ask the template to fork: {e}"))?;
        let answer = match self.receive(FORK_ANSWER) {
            Some(Ok(text)) => text,
            Some(Err(why)) => {
                self.phase = Phase::Failed(why.clone());
                return Err(why);
            }
            None => return Err(format!("the template did not fork within {FORK_ANSWER:?}")),
        };
        match answer.split_once(' ') {
            Some(("spawned", pid)) => pid
                .trim()
                .parse()
                .map_err(|_| format!("the template answered {answer:?}")),
            Some(("failed", why)) => Err(format!("the template could not fork: {why}")),
            _ => Err(format!("the template answered {answer:?}")),
        }
    }

    /// Whether corral ended it.
    pub(super) fn retired(&self) -> bool {
        self.retired
    }

    /// Ends the template: its workers go on serving.
    pub(super) fn end(&mut self) {
        if self.retired {
            return;
        }
        self.retired = true;
        if self.pid > 1 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// One message, waiting up to `within`; `None` when none came, `Err` when the template
    /// closed its end (it exited).
    fn receive(&mut self, within: Duration) -> Option<Result<String, String>> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            match recv(self.control.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return Some(Err("the template exited".into())),
                Ok(n) => return Some(Ok(String::from_utf8_lossy(&buf[..n]).into_owned())),
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Some(Err(format!("the template's channel failed: {e}"))),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.control.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
    }
}

/// `ready PID`, or `error` and the traceback.
fn import_outcome(text: &str) -> Phase {
    if text.starts_with("ready") {
        Phase::Ready
    } else {
        let traceback = text.strip_prefix("error\n").unwrap_or(text);
        Phase::Failed(traceback.trim_end().to_string())
    }
}
