//! The harness every integration test uses: the real `corral` binary, started on a generated
//! config with free ports, the real test app as its workers, a real HTTP client, bounded
//! polling instead of sleeps, and a guard that kills everything it started.
//! Over 400 lines: it is the one toolbox of every end-to-end test (process guard, config,
//! client, log and metric readers, load generator), kept in one place on purpose.

#![allow(dead_code)]

pub mod apps;
pub mod memory;
pub mod raw;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// The corral binary under test.
pub fn corral_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_corral"))
}

/// The test app, built beside corral by `cargo test --workspace`.
pub fn testapp_bin() -> PathBuf {
    let path = corral_bin().with_file_name("corral-testapp");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so the test app is built",
        path.display()
    );
    path
}

/// The repository root, where `config/` and `examples/` live.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A loopback port nobody listens on right now, taken below the kernel's ephemeral range
/// (32768-60999) so that no worker, client socket or `bind(0)` elsewhere on the machine can
/// be handed it between this call and the listener that uses it; never one this test
/// process was handed before, since two listeners of one config on one port is a config
/// error, not a test.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Each test binary starts at its own place in the range, so binaries run one after
    // another (or two checkouts tested at once) do not walk the same ports.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let start = (std::process::id().wrapping_mul(7919) ^ nanos) % COUNT;
    for step in 0..COUNT {
        let port = (FIRST + (start + step * 97) % COUNT) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT);
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP client that returns non-2xx statuses instead of errors.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// GETs `url`; returns (status, body).
pub fn get(agent: &ureq::Agent, url: &str) -> Result<(u16, String), String> {
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// GETs `url` and checks the answer is a 503 with `Retry-After: 1`, given within `within`.
pub fn expect_quick_503(url: &str, within: Duration) {
    let start = Instant::now();
    let mut response = client().get(url).call().expect("request");
    let took = start.elapsed();
    assert_eq!(response.status().as_u16(), 503);
    assert!(took < within, "503 took {took:?}");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok());
    assert_eq!(retry_after, Some("1"));
    let _ = response.body_mut().read_to_string();
}

/// A pool table running the test app (multi-threaded, so `concurrency = 8`) with `workers`
/// workers and extra args.
pub fn testapp_pool(workers: u32, extra: &str) -> String {
    format!(
        "[pools.web]\ncommand = [{:?}, \"--port\", \"{{port}}\"{extra}]\nworkers = {workers}\nconcurrency = 8\nready = \"http\"\nkill_timeout = \"3s\"\nstart_timeout = \"10s\"\n",
        testapp_bin().display().to_string()
    )
}

/// A running corral. Dropping it kills corral's process group and every worker group it
/// reported, even when the test failed.
pub struct Corral {
    pub child: Option<Child>,
    /// The generated `[server]` and `[log]` part, so a test can rewrite the body and reload.
    pub header: String,
    pub port: u16,
    pub admin: u16,
    pub dir: tempfile::TempDir,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    worker_pids: Vec<u32>,
}

impl Corral {
    /// Starts corral on `body` (the config without `[server]`/`[log]`, which are added with
    /// free ports and JSON logs) and waits until the active pool has `ready` ready workers.
    pub fn start(body: &str, server_extra: &str, ready: usize) -> Corral {
        let port = free_port();
        let admin = free_port();
        // Each corral keeps its run-time routing in its own directory unless told otherwise.
        let state = if server_extra.contains("state_dir") {
            ""
        } else {
            "state_dir = \"{dir}/state\"\n"
        };
        let header = format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nadmin = \"127.0.0.1:{admin}\"\ncontrol_socket = \"{{dir}}/control.sock\"\n{state}{server_extra}\n[log]\nformat = \"json\"\nlevel = \"info\"\n\n"
        );
        let mut corral = Corral::spawn_with(&format!("{header}{body}"), port, admin, &["run"], &[]);
        corral.header = header.replace("{dir}", &corral.dir.path().display().to_string());
        if ready > 0 {
            corral.wait_ready(ready, Duration::from_secs(20));
        }
        corral
    }

    /// Starts `corral ARGS -c <config written from text>` with extra environment; `{dir}` in
    /// the text becomes the test's temp dir.
    pub fn spawn_with(
        text: &str,
        port: u16,
        admin: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Corral {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("corral.toml");
        let text = text.replace("{dir}", &dir.path().display().to_string());
        std::fs::File::create(&config)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("write config");
        let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        argv.extend(["-c".to_string(), config.display().to_string()]);
        Corral::spawn_args(dir, &argv, port, admin, env)
    }

    /// Starts `corral ARGV` as given, its output kept in `dir` (which the guard owns).
    pub fn spawn_args(
        dir: tempfile::TempDir,
        argv: &[String],
        port: u16,
        admin: u16,
        env: &[(&str, &str)],
    ) -> Corral {
        Corral::spawn_program(&corral_bin(), dir, argv, port, admin, env)
    }

    /// Starts `program ARGV` (a corral binary, perhaps a copy) like [`Corral::spawn_args`].
    pub fn spawn_program(
        program: &Path,
        dir: tempfile::TempDir,
        argv: &[String],
        port: u16,
        admin: u16,
        env: &[(&str, &str)],
    ) -> Corral {
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        let child = Command::new(program)
            .args(argv)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .process_group(0)
            .spawn()
            .expect("start corral");
        Corral::adopt(child, dir, port, admin)
    }

    /// Guards a corral the test started its own way, in its own process group, with its
    /// output in `dir`'s `stdout.log` and `stderr.log`.
    pub fn adopt(child: Child, dir: tempfile::TempDir, port: u16, admin: u16) -> Corral {
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        Corral {
            child: Some(child),
            header: String::new(),
            port,
            admin,
            dir,
            stdout,
            stderr,
            worker_pids: Vec::new(),
        }
    }

    /// The control socket `Corral::start` configures.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    /// Runs the CLI (`corral ARGS --socket <this corral's socket>`); (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(corral_bin())
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .output()
            .expect("run the corral CLI");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// `/status` as JSON, or `None` while the admin listener is not up.
    pub fn status(&self) -> Option<Value> {
        let (code, body) = get(&client(), &self.admin_url("/status")).ok()?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    /// The workers of the active pool from `/status`.
    pub fn workers(&self) -> Vec<Value> {
        self.status()
            .and_then(|s| {
                s["pools"]
                    .as_array()?
                    .iter()
                    .find(|p| p["active"] == true)
                    .map(|p| p["workers"].as_array().cloned().unwrap_or_default())
            })
            .unwrap_or_default()
    }

    /// The active pool's workers once at least one is spawned: the admin listener
    /// can answer before the first spawn.
    pub fn wait_spawned(&self, timeout: Duration) -> Vec<Value> {
        wait_for("a spawned worker", timeout, || {
            Some(self.workers()).filter(|w| !w.is_empty())
        })
    }

    /// Pids of ready workers.
    pub fn ready_pids(&mut self) -> Vec<u32> {
        let pids: Vec<u32> = self
            .workers()
            .iter()
            .filter(|w| w["state"] == "ready")
            .filter_map(|w| w["pid"].as_u64().map(|p| p as u32))
            .collect();
        for p in &pids {
            if !self.worker_pids.contains(p) {
                self.worker_pids.push(*p);
            }
        }
        pids
    }

    /// Waits until `n` workers are ready and remembers their pids for cleanup.
    pub fn wait_ready(&mut self, n: usize, timeout: Duration) -> Vec<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let pids = self.ready_pids();
            if pids.len() >= n {
                return pids;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {n} ready workers\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the active pool has `n` ready workers and no others, all started with
    /// config generation `generation` and none of them in `old`; returns their pids.
    pub fn wait_replaced(
        &mut self,
        n: usize,
        generation: u64,
        old: &[u32],
        timeout: Duration,
    ) -> Vec<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let workers = self.workers();
            let ready: Vec<&Value> = workers.iter().filter(|w| w["state"] == "ready").collect();
            let fresh = ready.len() == n
                && workers.len() == n
                && ready.iter().all(|w| {
                    w["generation"] == generation
                        && !old.contains(&(w["pid"].as_u64().unwrap_or(0) as u32))
                });
            if fresh {
                return self.ready_pids();
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {n} ready workers of generation {generation}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Replaces the config file with the same header and a new body (for reload tests).
    pub fn rewrite_config(&self, body: &str) {
        std::fs::write(
            self.dir.path().join("corral.toml"),
            format!("{}{body}", self.header),
        )
        .expect("rewrite config");
    }

    /// One metric's value (the first line starting with `prefix`), 0 when absent.
    pub fn metric(&self, prefix: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(prefix).map(str::trim))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// `/metrics` text.
    pub fn metrics(&self) -> String {
        get(&client(), &self.admin_url("/metrics"))
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// corral's stdout so far.
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// corral's JSON log lines so far.
    pub fn log_events(&self) -> Vec<Value> {
        self.stdout_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for the first log event whose `event` field is `name`, and returns it.
    pub fn wait_event(&self, name: &str, timeout: Duration) -> Value {
        self.wait_log(name, timeout, |e| e["event"] == name)
    }

    /// Waits for the first log line that `matches`, and returns it. Log lines reach stdout a
    /// few milliseconds after the state they describe: a test that has seen the state (a
    /// replacement ready, a load finished) still waits for the line.
    pub fn wait_log(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.log_events().into_iter().find(|e| matches(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no log line for {what} within {timeout:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything corral printed, for failure messages.
    pub fn logs(&self) -> String {
        let out = self.stdout_text();
        let tail: Vec<&str> = out.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- corral stdout (last 60 lines) ---\n{}\n--- corral stderr ---\n{}",
            tail.join("\n"),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Sends `signal` to corral.
    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.pid() as i32), signal);
    }

    /// Waits for corral to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        wait_for("corral to exit", timeout, || {
            child.try_wait().ok().flatten()
        })
    }
}

/// True while any process of the process group `pgid` exists.
pub fn group_alive(pgid: u32) -> bool {
    killpg(Pid::from_raw(pgid as i32), None).is_ok()
}

impl Drop for Corral {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            if child.try_wait().ok().flatten().is_none() {
                // Workers that are still this corral's children: pids are reused quickly
                // (pid_max may be 32768), so a remembered pid alone proves nothing.
                for pid in &self.worker_pids {
                    if parent_of(*pid) == Some(child.id()) {
                        let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGKILL);
                    }
                }
                // corral's own group; its remaining workers die with it (PR_SET_PDEATHSIG).
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// A test app the test runs itself (a remote upstream), in a process group of its own that
/// is killed when this is dropped.
pub struct App {
    child: Child,
    pub port: u16,
}

impl App {
    /// Starts the test app on `port` and waits until it accepts connections.
    pub fn start(port: u16) -> App {
        let child = Command::new(testapp_bin())
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the test app");
        let app = App { child, port };
        wait_for("the test app to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        app
    }

    /// The app's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The parent pid of `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Runs `corral check -c path`; returns (exit code, stdout, stderr).
pub fn check(path: &Path) -> (i32, String, String) {
    let out = Command::new(corral_bin())
        .arg("check")
        .arg("-c")
        .arg(path)
        .current_dir(repo_root())
        .output()
        .expect("run corral check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A bounded load: `clients` threads sending GETs to `url` until stopped or `limit` passes.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    failures: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What a load saw.
#[derive(Debug)]
pub struct LoadResult {
    /// Requests answered 200.
    pub ok: usize,
    /// Every other outcome, described.
    pub failures: Vec<String>,
}

impl LoadResult {
    /// Fails the test, showing the first failures and `context` (corral's logs), when any
    /// request failed.
    pub fn assert_no_failures(&self, context: &str) {
        assert!(
            self.failures.is_empty(),
            "{} failed of {}: {:?}\n{context}",
            self.failures.len(),
            self.ok,
            &self.failures[..self.failures.len().min(10)],
        );
    }
}

impl Load {
    /// Starts the clients.
    pub fn start(url: &str, clients: usize, limit: Duration) -> Load {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, done, failures, url) = (
                    stop.clone(),
                    done.clone(),
                    failures.clone(),
                    url.to_string(),
                );
                std::thread::spawn(move || {
                    let agent = client();
                    let deadline = Instant::now() + limit;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match get(&agent, &url) {
                            Ok((200, _)) => {}
                            Ok((status, body)) => failures
                                .lock()
                                .expect("lock")
                                .push(format!("{status} {}", body.trim())),
                            Err(e) => failures.lock().expect("lock").push(e),
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            done,
            failures,
            threads,
        }
    }

    /// Requests completed so far.
    pub fn done(&self) -> usize {
        self.done.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `n` more requests completed.
    pub fn wait_more(&self, n: usize, timeout: Duration) {
        let target = self.done() + n;
        wait_for(&format!("{n} more requests"), timeout, || {
            (self.done() >= target).then_some(())
        });
    }

    /// Stops the clients and reports.
    pub fn stop(self) -> LoadResult {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let failures = self.failures.lock().expect("lock").clone();
        LoadResult {
            ok: self.done.load(std::sync::atomic::Ordering::Relaxed) - failures.len(),
            failures,
        }
    }
}
