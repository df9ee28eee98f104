//! SIGUSR2 binary upgrades with a real app server that takes over a second to start, as
//! users' apps do: the new master takes no connection until its workers are ready, so
//! nothing is refused while they start, and keep-alive clients that reconnect often and new
//! WebSocket upgrades all succeed across several upgrades in a row.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{apps, client, corral_bin, free_port, get, repo_root, wait_for, Corral};

/// The master's pid as /status reports it, and its ready worker pids.
fn master_and_workers(corral: &Corral) -> Option<(u64, Vec<u64>)> {
    let status = corral.status()?;
    let workers = status["pools"][0]["workers"]
        .as_array()?
        .iter()
        .filter(|w| w["state"] == "ready")
        .filter_map(|w| w["pid"].as_u64())
        .collect();
    Some((status["pid"].as_u64()?, workers))
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// The pool running `tests/apps/slow_start.py` under uvicorn on tcp: ready after
/// `SLOW_START` seconds.
fn slow_uvicorn_pool(venv: &std::path::Path, workers: u32, slow: &str) -> String {
    let uvicorn = venv.join("bin").join("uvicorn");
    let apps: PathBuf = repo_root().join("tests").join("apps");
    format!(
        "[pools.web]\ncommand = [{:?}, \"--port\", \"{{port}}\", \"--no-access-log\", \"slow_start:app\"]\n\
         cwd = {:?}\nenv = {{ SLOW_START = \"{slow}\" }}\nworkers = {workers}\nconcurrency = 32\n\
         ready = \"http\"\nkill_timeout = \"3s\"\nstart_timeout = \"30s\"\n",
        uvicorn.display().to_string(),
        apps.display().to_string(),
    )
}

/// Clients that each send a few keep-alive requests on a connection, then open a new one,
/// and clients that open new WebSockets, each echoing one message; every failure kept.
struct Traffic {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    upgrades: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Traffic {
    fn start(port: u16, http_clients: usize, ws_clients: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let upgrades = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut threads = Vec::new();
        for i in 0..http_clients {
            let (stop, requests, failures) = (stop.clone(), requests.clone(), failures.clone());
            let url = format!("http://127.0.0.1:{port}/sleep?ms=2");
            threads.push(std::thread::spawn(move || {
                // A new connection every 2..=5 requests.
                let per_connection = 2 + i % 4;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let agent = client();
                    for _ in 0..per_connection {
                        match get(&agent, &url) {
                            Ok((200, _)) => {}
                            Ok((status, body)) => failures
                                .lock()
                                .expect("lock")
                                .push(format!("GET {status} {}", body.trim())),
                            Err(e) => failures.lock().expect("lock").push(format!("GET {e}")),
                        }
                        requests.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for _ in 0..ws_clients {
            let (stop, upgrades, failures) = (stop.clone(), upgrades.clone(), failures.clone());
            let url = format!("ws://127.0.0.1:{port}/ws");
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let result = tungstenite::connect(&url)
                        .map_err(|e| format!("upgrade refused: {e}"))
                        .and_then(|(mut ws, _)| {
                            ws.send(tungstenite::Message::text("ping"))
                                .map_err(|e| format!("send: {e}"))?;
                            let echo = ws.read().map_err(|e| format!("read: {e}"))?;
                            let _ = ws.close(None);
                            (echo.to_text().ok() == Some("ping"))
                                .then_some(())
                                .ok_or_else(|| format!("echo: {echo:?}"))
                        });
                    if let Err(e) = result {
                        failures.lock().expect("lock").push(format!("WS {e}"));
                    }
                    upgrades.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }));
        }
        Traffic {
            stop,
            requests,
            upgrades,
            failures,
            threads,
        }
    }

    /// Waits until `n` more requests and one more upgrade completed.
    fn wait_more(&self, n: usize, timeout: Duration) {
        let (requests, upgrades) = (
            self.requests.load(Ordering::Relaxed) + n,
            self.upgrades.load(Ordering::Relaxed) + 1,
        );
        wait_for(&format!("{n} more requests"), timeout, || {
            (self.requests.load(Ordering::Relaxed) >= requests
                && self.upgrades.load(Ordering::Relaxed) >= upgrades)
                .then_some(())
        });
    }

    /// Stops every client; (requests, upgrades, failures).
    fn stop(self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let failures = self.failures.lock().expect("lock").clone();
        (
            self.requests.load(Ordering::Relaxed),
            self.upgrades.load(Ordering::Relaxed),
            failures,
        )
    }
}

#[test]
fn sigusr2_with_an_app_slow_to_start_refuses_nothing() {
    let Some(venv) = apps::venv_with("uvicorn") else {
        return;
    };
    let bin_dir = tempfile::tempdir().expect("dir");
    let binary = bin_dir.path().join("corral");
    std::fs::copy(corral_bin(), &binary).expect("copy binary");
    let (port, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("corral.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nadmin = \"127.0.0.1:{admin}\"\n\
             control_socket = \"{}/control.sock\"\ngraceful_timeout = \"10s\"\n\n\
             [log]\nformat = \"json\"\n\n{}",
            dir.path().display(),
            slow_uvicorn_pool(&venv, 2, "1.5"),
        ),
    )
    .expect("config");
    let argv = vec!["run".to_string(), "-c".into(), config.display().to_string()];
    let mut corral = Corral::spawn_program(&binary, dir, &argv, port, admin, &[]);
    corral.wait_ready(2, Duration::from_secs(60));
    let traffic = Traffic::start(port, 16, 2);
    traffic.wait_more(200, Duration::from_secs(30));

    for round in 0..5 {
        let (old_master, old_workers) = master_and_workers(&corral).expect("status");
        let _ = kill(Pid::from_raw(old_master as i32), Signal::SIGUSR2);
        wait_for(
            &format!("round {round}: a new master serving, the old one gone"),
            Duration::from_secs(60),
            || {
                master_and_workers(&corral)
                    .filter(|(pid, workers)| *pid != old_master && workers.len() == 2)
                    .filter(|_| !alive(old_master))
            },
        );
        wait_for(
            &format!("round {round}: the old workers gone"),
            Duration::from_secs(30),
            || old_workers.iter().all(|p| !alive(*p)).then_some(()),
        );
        traffic.wait_more(200, Duration::from_secs(30));
    }

    let (master, _) = master_and_workers(&corral).expect("status");
    let (requests, upgrades, failures) = traffic.stop();
    println!(
        "{requests} requests and {upgrades} WebSocket upgrades over 5 upgrades, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(10)],
        corral.logs()
    );
    let _ = kill(Pid::from_raw(master as i32), Signal::SIGTERM);
    wait_for("the last master to exit", Duration::from_secs(30), || {
        (!alive(master)).then_some(())
    });
}
