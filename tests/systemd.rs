//! corral as systemd runs it, with the test playing systemd: a real datagram socket as
//! `$NOTIFY_SOCKET`, a listener passed as fd 3, SIGUSR2 binary upgrades under load, log
//! files rotated and reopened, and the config file watched.

#![allow(unsafe_code)] // one pre_exec, to place the listener at fd 3 as systemd does

mod support;

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{client, corral_bin, free_port, get, testapp_pool, wait_for, Corral, Load};

/// The messages corral sent, each with the time it arrived.
fn messages(socket: &UnixDatagram, until: Instant, into: &mut Vec<(Instant, String)>) {
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        match socket.recv(&mut buf) {
            Ok(n) => into.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            )),
            Err(_) => continue,
        }
    }
}

fn wait_message(
    socket: &UnixDatagram,
    seen: &mut Vec<(Instant, String)>,
    what: &str,
    timeout: Duration,
) -> String {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push((Instant::now(), text.clone()));
            if text.lines().any(|l| l == what) {
                return text;
            }
        }
    }
    panic!("no {what:?} within {timeout:?}; saw {seen:?}");
}

#[test]
fn sd_notify_ready_after_the_workers_status_reloading_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let (port, admin) = (free_port(), free_port());
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nadmin = \"127.0.0.1:{admin}\"\ncontrol_socket = \"{{dir}}/control.sock\"\n\n{}",
        testapp_pool(2, ", \"--startup-delay-ms\", \"700\"")
    );
    let notify = path.display().to_string();
    let mut corral = Corral::spawn_with(
        &text,
        port,
        admin,
        &["run"],
        &[
            ("NOTIFY_SOCKET", notify.as_str()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let mut seen = Vec::new();
    let ready = wait_message(&socket, &mut seen, "READY=1", Duration::from_secs(20));
    // At READY=1 both workers answer already.
    let ready_now = corral.ready_pids();
    assert_eq!(ready_now.len(), 2, "READY=1 with {ready_now:?} ready");
    assert!(
        ready.contains("STATUS=2/2 workers ready, generation 1"),
        "{ready}"
    );
    assert!(
        seen.iter().any(|(_, m)| m.starts_with("STATUS=starting")),
        "no starting status before READY: {seen:?}"
    );

    // Watchdog pings about once a second (half of WATCHDOG_USEC).
    let mut window = Vec::new();
    messages(
        &socket,
        Instant::now() + Duration::from_millis(4500),
        &mut window,
    );
    let pings: Vec<Instant> = window
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    println!("{} WATCHDOG=1 in 4.5 s", pings.len());
    assert!(
        (3..=6).contains(&pings.len()),
        "{} pings in 4.5 s: {window:?}",
        pings.len()
    );
    seen.extend(window);

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 once the new workers serve.
    corral.signal(Signal::SIGHUP);
    let reloading = wait_message(&socket, &mut seen, "RELOADING=1", Duration::from_secs(10));
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")
            && l["MONOTONIC_USEC=".len()..].parse::<u64>().is_ok()),
        "{reloading}"
    );
    let ready = wait_message(&socket, &mut seen, "READY=1", Duration::from_secs(20));
    assert!(
        ready.contains("STATUS=2/2 workers ready, generation 2"),
        "{ready}"
    );
    let status = corral.status().expect("status");
    let workers = status["pools"][0]["workers"].as_array().expect("workers");
    assert!(
        workers
            .iter()
            .filter(|w| w["state"] == "ready")
            .all(|w| w["generation"] == status["pools"][0]["generation"]),
        "READY=1 before the rollout finished: {status}"
    );

    // SIGTERM: STOPPING=1, then exit 0.
    corral.signal(Signal::SIGTERM);
    wait_message(&socket, &mut seen, "STOPPING=1", Duration::from_secs(10));
    let exit = corral.wait_exit(Duration::from_secs(20));
    assert!(exit.success(), "{exit:?}\n{}", corral.logs());
}

#[test]
fn a_listener_passed_as_fd_3_is_served_without_binding() {
    // The test holds the port, as systemd's socket unit would: corral cannot bind it again.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let admin = free_port();
    let (dir, config) = config_in_temp_dir(port, admin, "", &testapp_pool(1, ""));
    let stdout = dir.path().join("stdout.log");
    let fd = listener.as_raw_fd();
    let mut command = Command::new("/bin/sh");
    // LISTEN_PID must be corral's own pid, which sh's exec keeps.
    command
        .arg("-c")
        .arg("LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" \"$@\"")
        .arg(corral_bin())
        .args(["run", "-c"])
        .arg(&config)
        .env("LISTEN_FDS", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("stdout"))
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("stderr"))
        .process_group(0);
    // SAFETY: dup2 is async-signal-safe; it puts the test's listener at fd 3.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                // Already in place: dup2 would keep close-on-exec.
                if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().expect("start corral");
    let mut corral = Corral::adopt(child, dir, port, admin);
    corral.wait_ready(1, Duration::from_secs(20));
    let agent = client();
    let (status, _) = get(&agent, &corral.url("/")).expect("served on the inherited socket");
    assert_eq!(status, 200);
    assert!(
        corral
            .log_events()
            .iter()
            .any(|e| e["event"] == "listener_inherited"
                && e["listener"] == format!("127.0.0.1:{port}")),
        "{}",
        corral.logs()
    );
    drop(listener);
    corral.signal(Signal::SIGTERM);
    assert!(corral.wait_exit(Duration::from_secs(20)).success());
}

/// A temp dir holding `corral.toml`: `[server]` on `port`/`admin` with `server_extra`, the
/// control socket in the dir, then `body`.
fn config_in_temp_dir(
    port: u16,
    admin: u16,
    server_extra: &str,
    body: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("corral.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nadmin = \"127.0.0.1:{admin}\"\ncontrol_socket = \"{}/control.sock\"\n{server_extra}\n{body}",
            dir.path().display(),
        ),
    )
    .expect("config");
    (dir, config)
}

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

fn alive(pid: u64) -> bool {
    // A zombie is gone for our purposes; /proc/PID/stat's third field says so.
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

#[test]
fn sigusr2_upgrades_the_binary_under_load_and_a_broken_binary_leaves_the_old_one_serving() {
    // A copy of the binary that the test can replace, as a package upgrade would.
    let bin_dir = tempfile::tempdir().expect("dir");
    let binary = bin_dir.path().join("corral");
    std::fs::copy(corral_bin(), &binary).expect("copy binary");
    let port = free_port();
    let admin = free_port();
    let (dir, config) = config_in_temp_dir(
        port,
        admin,
        "graceful_timeout = \"10s\"\n",
        &testapp_pool(2, ""),
    );
    let argv = vec!["run".to_string(), "-c".into(), config.display().to_string()];
    let mut corral = Corral::spawn_program(&binary, dir, &argv, port, admin, &[]);
    corral.wait_ready(2, Duration::from_secs(20));
    let load = Load::start(&corral.url("/sleep?ms=2"), 16, Duration::from_secs(120));
    load.wait_more(200, Duration::from_secs(20));

    for round in 0..2 {
        let (old_master, old_workers) = master_and_workers(&corral).expect("status");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(old_master as i32),
            Signal::SIGUSR2,
        );
        let new_master = wait_for(
            &format!("round {round}: a new master serving"),
            Duration::from_secs(30),
            || {
                master_and_workers(&corral)
                    .filter(|(pid, workers)| *pid != old_master && workers.len() == 2)
                    .map(|(pid, _)| pid)
                    .filter(|_| !alive(old_master))
            },
        );
        wait_for(
            &format!("round {round}: the old workers gone"),
            Duration::from_secs(20),
            || old_workers.iter().all(|p| !alive(*p)).then_some(()),
        );
        assert!(alive(new_master));
        load.wait_more(200, Duration::from_secs(20));
    }

    // A broken binary at the same path: the old master goes on serving.
    let (master, workers) = master_and_workers(&corral).expect("status");
    let broken = bin_dir.path().join("broken");
    std::fs::write(&broken, "#!/bin/sh\necho broken binary >&2\nexit 1\n").expect("write");
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    std::fs::rename(&broken, &binary).expect("replace binary");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(master as i32), Signal::SIGUSR2);
    corral.wait_log("upgrade_failed", Duration::from_secs(20), |e| {
        e["event"] == "upgrade_failed"
    });
    load.wait_more(200, Duration::from_secs(20));
    assert_eq!(master_and_workers(&corral), Some((master, workers)));

    let result = load.stop();
    println!(
        "{} requests over 2 upgrades and a broken binary, {} failed",
        result.ok,
        result.failures.len()
    );
    result.assert_no_failures(&corral.logs());
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(master as i32), Signal::SIGTERM);
    wait_for("the last master to exit", Duration::from_secs(30), || {
        (!alive(master)).then_some(())
    });
}

#[test]
fn log_files_rotate_by_size_without_losing_a_line_and_sigusr1_reopens() {
    let dir = tempfile::tempdir().expect("dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir");
    let (port, admin) = (free_port(), free_port());
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nadmin = \"127.0.0.1:{admin}\"\ncontrol_socket = \"{{dir}}/control.sock\"\n\n[log]\nformat = \"json\"\nfile = \"{0}/corral.log\"\naccess_file = \"{0}/access.log\"\nmax_size = \"16KiB\"\nkeep = 1000\n\n{1}",
        logs.display(),
        testapp_pool(2, "")
    );
    let mut corral = Corral::spawn_with(&text, port, admin, &["run"], &[]);
    let agent = client();
    wait_for("ready", Duration::from_secs(20), || {
        get(&agent, &corral.url("/"))
            .ok()
            .filter(|(s, _)| *s == 200)
    });
    let load = Load::start(&corral.url("/"), 8, Duration::from_secs(60));
    load.wait_more(2000, Duration::from_secs(30));
    let result = load.stop();
    assert!(result.failures.is_empty(), "{:?}", result.failures);
    let sent = result.ok;

    // logrotate's way: move the file, then SIGUSR1.
    let access = logs.join("access.log");
    std::fs::rename(&access, logs.join("moved.log")).expect("mv");
    corral.signal(Signal::SIGUSR1);
    // The signal is handled by the master's loop, not at once: a request answered before it
    // is logged to the moved file. (This test failed now and then on a loaded machine.)
    wait_for("the reopen handled", Duration::from_secs(10), || {
        std::fs::read_to_string(logs.join("corral.log"))
            .ok()
            .filter(|t| t.contains("logs_reopened"))
    });
    let marker = wait_for(
        "a request after the reopen",
        Duration::from_secs(10),
        || get(&agent, &corral.url("/?after-reopen")).ok(),
    );
    assert_eq!(marker.0, 200);
    wait_for("the reopened access.log", Duration::from_secs(10), || {
        std::fs::read_to_string(&access)
            .ok()
            .filter(|t| t.contains("after-reopen"))
    });
    corral.signal(Signal::SIGTERM);
    assert!(corral.wait_exit(Duration::from_secs(20)).success());

    let mut access_lines = 0;
    let mut rotated = 0;
    let mut main_lines = Vec::new();
    for entry in std::fs::read_dir(&logs).expect("dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).expect("read");
        for line in text.lines() {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
            if name.starts_with("access") || name == "moved.log" {
                assert_eq!(value["target"], "corral::access", "{name}: {line}");
                access_lines += 1;
            } else {
                main_lines.push(value);
            }
        }
        if name.starts_with("access.log.") {
            rotated += 1;
            assert!(text.len() <= 16 * 1024, "{name} holds {} bytes", text.len());
        }
    }
    println!("{sent} requests sent; {access_lines} access lines in {rotated} rotated files, the current one and the moved one");
    assert!(rotated >= 2, "only {rotated} rotated access files");
    // The readiness probes are not proxied requests; every load request and the marker are.
    assert!(
        access_lines > sent,
        "{access_lines} access lines for {sent} requests + 1"
    );
    assert!(
        main_lines.iter().any(|e| e["event"] == "logs_reopened"),
        "no logs_reopened event in corral.log"
    );
    assert!(
        main_lines.iter().all(|e| e["target"] != "corral::access"),
        "access lines in the main file"
    );
    assert!(
        corral.stdout_text().trim().is_empty(),
        "stdout: {}",
        corral.stdout_text()
    );
}

#[test]
fn watch_config_reloads_on_an_edit_and_keeps_the_old_config_on_a_broken_one() {
    let mut corral = Corral::start(&testapp_pool(1, ""), "watch_config = true\n", 1);
    let body = testapp_pool(1, "");
    corral.rewrite_config(&body.replace("workers = 1", "workers = 2"));
    // Within 2 s of the edit: the debounce is 300 ms.
    corral.wait_log("the reload after the edit", Duration::from_secs(2), |e| {
        e["event"] == "config_reloaded"
    });
    corral.wait_ready(2, Duration::from_secs(20));

    corral.rewrite_config(&body.replace("workers = 1", "workers = \"many\"\nbogus_key = 1"));
    corral.wait_log("the broken edit refused", Duration::from_secs(5), |e| {
        e["event"] == "config_rejected"
    });
    let errors: Vec<_> = corral
        .log_events()
        .into_iter()
        .filter(|e| e["event"] == "config_error")
        .collect();
    assert!(errors.len() >= 2, "every error logged: {errors:?}");
    assert_eq!(corral.status().expect("status")["generation"], 2);
    let agent = client();
    assert_eq!(get(&agent, &corral.url("/")).expect("get").0, 200);
}

#[test]
fn systemd_analyze_verify_passes_on_the_unit_files() {
    if !support::apps::on_path("systemd-analyze") {
        assert!(
            std::env::var_os("CORRAL_REQUIRE_APPS").is_none(),
            "systemd-analyze is required (cargo xtask setup test installs it)"
        );
        eprintln!("skipped: no systemd-analyze");
        return;
    }
    // The units name /usr/bin/corral, which the .deb installs; verify checks that the
    // program exists, so the copies name the binary under test instead.
    let dir = tempfile::tempdir().expect("dir");
    let root = support::repo_root();
    let mut units = Vec::new();
    for name in ["corral.service", "corral.socket"] {
        let text = std::fs::read_to_string(root.join("systemd").join(name)).expect("unit");
        let text = text.replace("/usr/bin/corral", &corral_bin().display().to_string());
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write unit");
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // Warnings are printed but do not fail verify; our units have none.
    assert!(
        !stderr.contains("corral."),
        "systemd-analyze verify complained: {stderr}"
    );
}
