//! Starting one worker process: argv placeholders, environment, and the few async-signal-safe
//! steps between fork and exec; and an app pool's template's command line. One of the two
//! modules of the crate allowed `unsafe` (with `reaper.rs`).
#![allow(unsafe_code)]

use std::os::fd::RawFd;
use std::path::Path;
use std::process::Stdio;

use corral_config::{Bind, Pool, PythonApp};
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
    remove_master_env(&mut cmd);
    if matches!(pool.bind, Bind::Fd) && pool.listen_fds_env {
        cmd.env("LISTEN_FDNAMES", "corral");
    }
    if let Some(path) = spec.notify_socket {
        cmd.env("NOTIFY_SOCKET", path);
    }
    cmd.env("CORRAL_WORKER", spec.worker.to_string());
    finish(cmd, pool, spec.listen_fd, &[])
}

/// Starts the template of an app pool: `python -m corral_worker.template` with the pool's
/// user, group, environment and working directory, its end of the control channel as fd 3,
/// and the embedded package (`package_dir`) first on `PYTHONPATH`.
pub fn spawn_template(
    pool: &Pool,
    app: &PythonApp,
    package_dir: &Path,
    control_fd: RawFd,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(&app.python);
    cmd.arg("-m")
        .arg(corral_python::TEMPLATE_MODULE)
        .arg("--app")
        .arg(&app.target)
        .arg("--interface")
        .arg(app.interface.as_str())
        .arg("--control-fd")
        .arg(LISTEN_FD.to_string())
        .arg("--master-pid")
        .arg(std::process::id().to_string());
    cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_PID");
    remove_master_env(&mut cmd);
    // A worker's print() reaches the log at once, as a developer expects.
    if !user_sets(pool, "PYTHONUNBUFFERED") {
        cmd.env("PYTHONUNBUFFERED", "1");
    }
    // The package first, then whatever PYTHONPATH the pool (or corral) has; set after the
    // pool's env by `finish`, so the pool's own value is kept behind ours.
    let mut path = package_dir.as_os_str().to_os_string();
    let inherited = pool
        .env
        .iter()
        .find(|(k, _)| k == "PYTHONPATH")
        .map(|(_, v)| std::ffi::OsString::from(v))
        .or_else(|| std::env::var_os("PYTHONPATH"));
    if let Some(rest) = inherited.filter(|p| !p.is_empty()) {
        path.push(":");
        path.push(rest);
    }
    finish(cmd, pool, Some(control_fd), &[("PYTHONPATH", path)])
}

/// Never the variables of corral's own service manager: they name corral's fds, socket
/// and pid.
fn remove_master_env(cmd: &mut Command) {
    for name in MASTER_ONLY_ENV {
        cmd.env_remove(name);
    }
}

/// Whether the pool's `env` or corral's own environment sets `name`.
fn user_sets(pool: &Pool, name: &str) -> bool {
    pool.env.iter().any(|(k, _)| k == name) || std::env::var_os(name).is_some()
}

/// What every process corral starts gets: the pool's name and environment, piped output, its own process group, the pool's user
/// and directory, death with the master, and `fd` (if any) as fd 3.
fn finish(
    mut cmd: Command,
    pool: &Pool,
    fd: Option<RawFd>,
    last: &[(&str, std::ffi::OsString)],
) -> std::io::Result<Child> {
    // A Python worker killed as hung (SIGABRT) leaves its stack on stderr; harmless to
    // other programs. Not when the user chose.
    if !user_sets(pool, "PYTHONFAULTHANDLER") {
        cmd.env("PYTHONFAULTHANDLER", "1");
    }
    cmd.env("CORRAL_POOL", &pool.name)
        .envs(pool.env.iter().map(|(k, v)| (k, v)))
        .envs(last.iter().map(|(k, v)| (k, v)))
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
    let listen_fd = fd;
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
