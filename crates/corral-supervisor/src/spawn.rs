//! Starting one worker process: argv placeholders, environment, and the few async-signal-safe
//! steps between fork and exec. The only module of the crate allowed `unsafe`.
#![allow(unsafe_code)]

use std::os::fd::RawFd;
use std::path::Path;
use std::process::Stdio;

use corral_config::{Bind, Pool};
use tokio::process::{Child, Command};

use corral_routes::Address;

use corral_systemd::LISTEN_PID_SHIM;

/// Variables of corral's own service manager: they name corral's fds, socket and pid, never
/// a worker's.
const MASTER_ONLY_ENV: [&str; 5] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDNAMES",
    corral_systemd::handoff::UPGRADE_FD_ENV,
];

/// The fd number systemd socket activation hands over first (`SD_LISTEN_FDS_START`).
pub const LISTEN_FD: RawFd = 3;

/// What one worker is started with.
pub struct SpawnSpec<'a> {
    /// The pool whose command runs.
    pub pool: &'a Pool,
    /// The worker's slot number, for `{worker}`.
    pub worker: u32,
    /// Where the worker is to listen (`{port}`/`{host}`, or `{socket}`).
    pub addr: &'a Address,
    /// With `bind = "fd"`, the listening socket to hand over as fd 3.
    pub listen_fd: Option<RawFd>,
    /// With `ready = "notify"`, the datagram socket passed as `$NOTIFY_SOCKET`.
    pub notify_socket: Option<&'a Path>,
}

/// Replaces `{port}`, `{host}`, `{socket}` and `{worker}` in one argument.
pub fn substitute(arg: &str, addr: &Address, worker: u32) -> String {
    let arg = arg.replace("{worker}", &worker.to_string());
    match addr {
        Address::Tcp(a) => arg
            .replace("{port}", &a.port().to_string())
            .replace("{host}", &a.ip().to_string()),
        Address::Unix(p) => arg.replace("{socket}", &p.display().to_string()),
    }
}

/// Starts the worker: its own process group, killed if the master dies, stdout and stderr
/// piped to the master for logging.
pub fn spawn(spec: &SpawnSpec) -> std::io::Result<Child> {
    let pool = spec.pool;
    let argv: Vec<String> = pool
        .command
        .iter()
        .map(|a| substitute(a, spec.addr, spec.worker))
        .collect();
    let mut cmd = match (pool.bind, argv.split_first()) {
        (Bind::Fd, Some(_)) if pool.listen_fds_env => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(LISTEN_PID_SHIM).args(&argv);
            c.env("LISTEN_FDS", "1");
            c
        }
        (_, Some((program, args))) => {
            let mut c = Command::new(program);
            c.args(args);
            // Never the variables of a socket-activated corral: they name corral's fds.
            c.env_remove("LISTEN_FDS").env_remove("LISTEN_PID");
            // `$PORT` is where a bind = "tcp" worker listens; a bind = "fd" one has its socket.
            if let (Address::Tcp(a), Bind::Tcp) = (spec.addr, pool.bind) {
                c.env("PORT", a.port().to_string());
            }
            c
        }
        (_, None) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "empty command",
            ));
        }
    };
    for name in MASTER_ONLY_ENV {
        cmd.env_remove(name);
    }
    if matches!(pool.bind, Bind::Fd) && pool.listen_fds_env {
        cmd.env("LISTEN_FDNAMES", "corral");
    }
    if let Some(path) = spec.notify_socket {
        cmd.env("NOTIFY_SOCKET", path);
    }
    cmd.env("CORRAL_POOL", &pool.name)
        .env("CORRAL_WORKER", spec.worker.to_string())
        .envs(pool.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    if let Some(cwd) = &pool.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(run_as) = &pool.run_as {
        // std sets the group first, drops supplementary groups when we are root, then the user.
        cmd.gid(run_as.gid).uid(run_as.uid);
    }
    let master = std::process::id() as libc::pid_t;
    let listen_fd = spec.listen_fd;
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed. It calls prctl, getppid, fcntl and dup2, all
    // async-signal-safe, touches only values copied in before fork, and allocates nothing:
    // its errors are raw OS codes, which `io::Error` stores without a box.
    unsafe {
        cmd.pre_exec(move || {
            // Die with the master, whatever way it ends.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The master may have died between fork and prctl: then nobody would kill us.
            // ESRCH ("no such process": the master), as a raw code: a custom error would
            // allocate, which is not allowed here.
            if libc::getppid() != master {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            if let Some(fd) = listen_fd {
                if fd == LISTEN_FD {
                    // Already in place: only the close-on-exec flag must go.
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, LISTEN_FD) != LISTEN_FD {
                    // dup2 clears close-on-exec on the new descriptor.
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced() {
        let addr = Address::Tcp("127.0.0.1:4321".parse().expect("addr"));
        assert_eq!(substitute("--port={port}", &addr, 2), "--port=4321");
        assert_eq!(substitute("{host}:{port}", &addr, 2), "127.0.0.1:4321");
        assert_eq!(substitute("w{worker}", &addr, 7), "w7");
        assert_eq!(substitute("plain", &addr, 7), "plain");
        let unix = Address::Unix("/run/corral/web.1.sock".into());
        assert_eq!(
            substitute("unix:{socket}", &unix, 1),
            "unix:/run/corral/web.1.sock"
        );
    }
}
