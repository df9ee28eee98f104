//! Every command of `docs/quickstart.md` is run: its `test` blocks here, as one bash script in
//! a temp dir (with the listener and admin ports moved to free ones, and the control socket
//! in the temp dir); its `ci` block by `.ci/run`, which must hold each of those lines; its
//! `systemd` block here too, where systemd runs (skipped, and said, where it does not).

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use support::{corral_bin, free_port, repo_root};

/// The fenced `sh` blocks of the quickstart, each with the kind its marker gives.
fn blocks() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("docs/quickstart.md")).expect("read");
    let mut out = Vec::new();
    let mut lines = text.lines();
    let mut kind: Option<String> = None;
    while let Some(line) = lines.next() {
        if let Some(k) = line
            .strip_prefix("<!-- quickstart: ")
            .and_then(|r| r.strip_suffix(" -->"))
        {
            kind = Some(k.to_string());
        } else if line == "```sh" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            let kind = kind.take().unwrap_or_else(|| {
                panic!(
                    "a sh block has no <!-- quickstart: KIND --> marker:\n{}",
                    body.join("\n")
                )
            });
            out.push((kind, body.join("\n")));
        }
    }
    out
}

/// Kills the script's process group (its background corral and workers) however the test ends.
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// `PATH` with the corral under test first.
/// The PATH of the systemd part: the system's programs only, corral from the package.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn script_path() -> std::ffi::OsString {
    let mut path = vec![corral_bin().parent().expect("bin dir").to_path_buf()];
    if let Some(p) = std::env::var_os("PATH") {
        path.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(path).expect("PATH")
}

/// Runs `script` with bash in `dir`, corral on PATH; (success, output).
fn run_script(dir: &Path, script: &str, timeout: Duration) -> (bool, String) {
    let log = dir.join("script.log");
    let out = std::fs::File::create(&log).expect("log");
    let err = out.try_clone().expect("log");
    let child = Command::new("bash")
        .args(["-euo", "pipefail", "-c"])
        .arg(format!("set -x\n{script}"))
        .current_dir(dir)
        .env("PATH", script_path())
        .env("RUNTIME_DIRECTORY", dir.join("run"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .expect("bash");
    let mut group = Group(child);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = group.0.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    (status.is_some_and(|s| s.success()), output)
}

#[test]
fn every_block_has_a_kind_and_the_ci_block_is_in_ci_run() {
    let blocks = blocks();
    assert!(blocks.len() >= 5, "{blocks:?}");
    let ci = std::fs::read_to_string(repo_root().join(".ci/run")).expect(".ci/run");
    for (kind, body) in &blocks {
        match kind.as_str() {
            "test" | "systemd" => {}
            "ci" => {
                for line in body.lines().filter(|l| !l.trim().is_empty()) {
                    assert!(
                        ci.lines().any(|l| l.trim() == line.trim()),
                        ".ci/run does not run the quickstart's {line:?}"
                    );
                }
            }
            other => panic!("unknown quickstart block kind {other:?}"),
        }
    }
}

#[test]
fn the_terminal_part_runs_as_written() {
    let (port, admin) = (free_port(), free_port());
    let script: String = blocks()
        .into_iter()
        .filter(|(kind, _)| kind == "test")
        .map(|(_, body)| body + "\n")
        .collect::<String>()
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let (ok, output) = run_script(dir.path(), &script, Duration::from_secs(300));
    assert!(ok, "the quickstart failed:\n{output}");
    for seen in [
        "\"hello\":\"world\"",
        "pool web (active): ",
        "of 4 ready",
        "pool web: scaling to 6 workers",
        "ready in",
        "is valid",
    ] {
        assert!(output.contains(seen), "{seen:?} is not in:\n{output}");
    }
}

/// systemd booted as PID 1 of new PID and mount namespaces, for a machine or
/// container without systemd (CI's). It boots to `basic.target`, so no installed service
/// starts; it sees a tmpfs of its own on `/tmp` and `/var/tmp` (its tmpfiles set-up empties
/// them), is told it runs in a container, and has `systemd-sysctl` masked (kernel settings
/// are not its to change). Dropping it kills that PID 1, and with it the whole namespace.
struct Systemd {
    unshare: std::process::Child,
    pid: u32,
}

/// The namespace's PID 1 before it becomes systemd: temp dirs of its own. (The network is
/// the machine's: the quickstart installs from PyPI, and corral listens on loopback.)
const BOOT: &str = "mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /var/tmp \
    && exec /lib/systemd/systemd --system --unit=basic.target systemd.mask=systemd-sysctl.service";

impl Systemd {
    fn boot() -> Systemd {
        let unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--mount", "--mount-proc"])
            .args(["--propagation", "private", "sh", "-c", BOOT])
            .env("container", "corral-test")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare");
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let pid = support::wait_for("systemd in its namespace", Duration::from_secs(10), || {
            std::fs::read_to_string(&children)
                .ok()
                .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
        });
        let booted = Systemd { unshare, pid };
        support::wait_for("systemd to finish booting", Duration::from_secs(60), || {
            let out = booted
                .command("systemctl is-system-running")
                .output()
                .ok()?;
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            // "offline" is also what it says before its manager answers: wait for the end.
            matches!(state.as_str(), "running" | "degraded").then_some(())
        });
        booted
    }

    /// `bash -c script` inside the namespace, as its root sees it.
    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "-t",
            &self.pid.to_string(),
            "-m",
            "-p",
            "-n",
            "bash",
            "-c",
            script,
        ]);
        cmd
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        let _ = self.unshare.wait();
    }
}

#[test]
fn the_systemd_part_runs_under_systemd() {
    let installed = Path::new("/usr/bin/corral").exists();
    let host_systemd = Path::new("/run/systemd/system").exists();
    // Booting systemd, installing the app in /srv and the config in /etc: only where asked
    // (`.ci/run`, after it installed the package), or on a host that runs systemd anyway.
    let namespaced = std::env::var_os("CORRAL_SYSTEMD_TESTS").is_some();
    if !installed || !(host_systemd || namespaced) {
        eprintln!(
            "skipped: needs the installed package and systemd (CORRAL_SYSTEMD_TESTS=1 boots one)"
        );
        return;
    }
    let (port, admin) = (free_port(), free_port());
    let script: String = blocks()
        .into_iter()
        .filter(|(kind, _)| kind == "test" || kind == "systemd")
        .map(|(_, body)| body + "\n")
        .collect::<String>()
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"));
    // Not under /tmp: the namespace has a /tmp of its own.
    let dir = tempfile::tempdir_in(repo_root().join("target")).expect("temp dir");
    let (ok, output) = if host_systemd {
        run_script(dir.path(), &script, Duration::from_secs(600))
    } else {
        let systemd = Systemd::boot();
        let wrapped = format!(
            "cd {:?} && {}",
            dir.path(),
            // On failure, what systemd saw: the unit's state and corral's last lines.
            "bash -euo pipefail -c \"$QUICKSTART\" || { systemctl status corral --no-pager; journalctl -u corral --no-pager -n 60 -o cat; exit 1; }"
        );
        let out = systemd
            .command(&wrapped)
            .env("QUICKSTART", format!("set -x\n{script}"))
            // A server's PATH, as an operator's root shell has it: the venv in /srv must be
            // made by the system's python3, which the service user can run (a python3 under
            // a 0700 home, like pyenv's in /root, gives the workers "Permission denied").
            .env("PATH", SYSTEM_PATH)
            .env("RUNTIME_DIRECTORY", dir.path().join("run"))
            // Temp files (ensurepip's, pip's) away from the namespace's fresh /tmp.
            .env("TMPDIR", dir.path())
            .output()
            .expect("nsenter");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    assert!(ok, "the quickstart's systemd part failed:\n{output}");
    // The JSON line itself, not the traced jq command that looks for it.
    assert!(output.contains("\"event\":\"config_reloaded\""), "{output}");
    assert!(output.contains("Active: active (running)"), "{output}");
}
