//! How workers get their sockets (`bind`) and how readiness is detected (`ready`).

mod support;

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{apps, client, get, repo_root, testapp_bin, wait_for, Corral};

fn pool(bind: &str, ready: &str, workers: u32) -> String {
    format!(
        "[pools.web]\ncommand = [{:?}]\nworkers = {workers}\nbind = {bind:?}\nready = {ready:?}\nkill_timeout = \"3s\"\n",
        testapp_bin().display().to_string()
    )
}

#[test]
fn fd_bind_hands_the_socket_over_as_fd_3_with_systemd_variables() {
    let mut corral = Corral::start(&pool("fd", "tcp", 2), "", 2);
    let pids = corral.ready_pids();
    let agent = client();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let (status, body) = get(&agent, &corral.url("/env?name=LISTEN_PID")).expect("request");
        assert_eq!(status, 200);
        seen.insert(
            body.trim()
                .parse::<u32>()
                .expect("LISTEN_PID is the worker's pid"),
        );
    }
    assert!(
        seen.iter().all(|p| pids.contains(p)),
        "LISTEN_PID {seen:?} vs workers {pids:?}"
    );
    assert_eq!(
        get(&agent, &corral.url("/env?name=LISTEN_FDS"))
            .expect("request")
            .1,
        "1"
    );
    assert_eq!(
        get(&agent, &corral.url("/env?name=PORT"))
            .expect("request")
            .1,
        "",
        "no $PORT with fd"
    );

    // The socket belongs to the slot, not the worker: a replacement listens on the same one.
    let spawned = |corral: &Corral, pid: u32| {
        corral.wait_log("a spawn event", Duration::from_secs(10), |e| {
            e["event"] == "worker_spawned" && e["pid"] == pid
        })["addr"]
            .clone()
    };
    let first = spawned(&corral, pids[0]);
    assert!(first.is_string(), "{first}");
    kill(Pid::from_raw(pids[0] as i32), Signal::SIGKILL).expect("kill");
    let replacement = wait_for("replacement", Duration::from_secs(10), || {
        let now = corral.ready_pids();
        (now.len() == 2 && !now.contains(&pids[0]))
            .then(|| now.into_iter().find(|p| !pids.contains(p)))
            .flatten()
    });
    assert_eq!(spawned(&corral, replacement), first);
}

#[test]
fn tcp_bind_passes_port_placeholder_and_env() {
    let text = format!(
        "[pools.web]\ncommand = [{:?}, \"--port\", \"{{port}}\"]\nworkers = 1\nready = \"tcp\"\nenv = {{ APP_ENV = \"test\" }}\n",
        testapp_bin().display().to_string()
    );
    let corral = Corral::start(&text, "", 1);
    let agent = client();
    let port = get(&agent, &corral.url("/env?name=PORT"))
        .expect("request")
        .1;
    assert!(port.parse::<u16>().is_ok(), "{port}");
    assert_eq!(
        get(&agent, &corral.url("/env?name=APP_ENV"))
            .expect("request")
            .1,
        "test"
    );
    assert_eq!(
        get(&agent, &corral.url("/env?name=CORRAL_POOL"))
            .expect("request")
            .1,
        "web"
    );
    assert_eq!(
        get(&agent, &corral.url("/env?name=CORRAL_WORKER"))
            .expect("request")
            .1,
        "1"
    );
}

#[test]
fn http_readiness_waits_for_the_health_path() {
    // The app listens only after 1.5 s: no traffic before, and 503 meanwhile.
    let text = format!(
        "[pools.web]\ncommand = [{:?}, \"--port\", \"{{port}}\", \"--startup-delay-ms\", \"1500\"]\nworkers = 1\n",
        testapp_bin().display().to_string()
    );
    let mut corral = Corral::start(&text, "", 0);
    let workers = corral.wait_spawned(Duration::from_secs(10));
    assert_eq!(workers[0]["state"], "starting");
    assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 503);
    corral.wait_ready(1, Duration::from_secs(10));
    assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 200);
}

#[test]
fn workers_run_as_the_configured_user_and_group() {
    if !nix::unistd::geteuid().is_root() {
        return; // Dropping privileges needs root.
    }
    let text = format!(
        "[pools.web]\ncommand = [{:?}, \"--port\", \"{{port}}\"]\nworkers = 1\nuser = \"nobody\"\ngroup = \"nogroup\"\n",
        testapp_bin().display().to_string()
    );
    let mut corral = Corral::start(&text, "", 1);
    let pid = corral.ready_pids()[0];
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let ids = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
    };
    assert_eq!(ids("Uid:"), Some(vec!["65534".to_string(); 4]), "{status}");
    assert_eq!(ids("Gid:"), Some(vec!["65534".to_string(); 4]), "{status}");
    assert_eq!(ids("Groups:"), Some(vec![]), "no supplementary groups left");
    assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 200);
}

#[test]
fn unix_bind_gives_each_worker_its_own_socket_path() {
    let text = format!(
        "[pools.web]\ncommand = [{:?}, \"--unix\", \"{{socket}}\"]\nworkers = 2\nbind = \"unix\"\n",
        testapp_bin().display().to_string()
    );
    let mut corral = Corral::start(&text, "runtime_dir = \"{dir}/run\"", 2);
    let pids = corral.ready_pids();
    for _ in 0..10 {
        assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 200);
    }
    let sockets_dir = corral.dir.path().join("run/pools/web");
    let sockets = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&sockets_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let before = sockets();
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(
        before
            .iter()
            .all(|n| n.starts_with("web.") && n.ends_with(".sock")),
        "{before:?}"
    );
    kill(Pid::from_raw(pids[0] as i32), Signal::SIGKILL).expect("kill");
    wait_for("replacement", Duration::from_secs(10), || {
        let now = corral.ready_pids();
        (now.len() == 2 && !now.contains(&pids[0])).then_some(())
    });
    let after = wait_for(
        "the dead worker's socket to be removed",
        Duration::from_secs(5),
        || {
            let s = sockets();
            (s.len() == 2).then_some(s)
        },
    );
    assert_ne!(after, before, "the replacement has a path of its own");
    assert_eq!(
        get(&client(), &corral.url("/env?name=PORT"))
            .expect("request")
            .1,
        "",
        "no $PORT with unix"
    );
}

#[test]
fn notify_readiness_waits_for_ready_1() {
    let text = format!(
        "[pools.web]\ncommand = [{:?}, \"--port\", \"{{port}}\", \"--notify-after-ms\", \"1500\"]\nworkers = 1\nready = \"notify\"\n",
        testapp_bin().display().to_string()
    );
    let mut corral = Corral::start(&text, "runtime_dir = \"{dir}/run\"", 0);
    corral.wait_spawned(Duration::from_secs(10));
    // Listening already, but not ready until it says so.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(corral.workers()[0]["state"], "starting");
    assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 503);
    corral.wait_ready(1, Duration::from_secs(10));
    assert!(get(&client(), &corral.url("/env?name=NOTIFY_SOCKET"))
        .expect("request")
        .1
        .ends_with(".sock"));
}

#[test]
fn a_worker_that_never_notifies_hits_start_timeout() {
    let text = format!(
        "[pools.web]\ncommand = [{:?}, \"--port\", \"{{port}}\"]\nworkers = 1\nready = \"notify\"\nstart_timeout = \"1s\"\n",
        testapp_bin().display().to_string()
    );
    let corral = Corral::start(&text, "runtime_dir = \"{dir}/run\"", 0);
    let timeout = corral.wait_event("worker_start_timeout", Duration::from_secs(10));
    assert_eq!(
        timeout["last_probe"], "no READY=1 on $NOTIFY_SOCKET",
        "{timeout}"
    );
}

/// A WebSocket to corral's `/ws` with a read timeout, so a dead one is noticed.
fn websocket(
    port: u16,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>> {
    let (ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/ws")).expect("upgrade");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
    }
    ws
}

#[test]
fn fd_bind_readiness_after_a_reload_is_proved_by_the_new_process_not_the_old_one() {
    // Regression: with `bind = "fd"` a replacement shared its slot's socket with the worker
    // it replaces, so the old worker answered the new one's readiness probe (ready in ms for
    // an app that takes 1.5 s), and WebSockets routed to the new worker were held by the old
    // process, cut by the app's own close when it stopped, before the drain deadline.
    let Some(venv) = apps::venv_with("uvicorn") else {
        return;
    };
    let body = format!(
        "[pools.web]\ncommand = [{:?}, \"--fd\", \"3\", \"--no-access-log\", \"slow_start:app\"]\n\
         cwd = {:?}\nenv = {{ SLOW_START = \"1.5\" }}\nworkers = 2\nconcurrency = 32\nbind = \"fd\"\n\
         ready = \"http\"\nkill_timeout = \"3s\"\nstart_timeout = \"30s\"\n",
        venv.join("bin").join("uvicorn").display().to_string(),
        repo_root().join("tests").join("apps").display().to_string(),
    );
    let mut corral = Corral::start(&body, "graceful_timeout = \"4s\"", 0);
    let old = corral.wait_ready(2, Duration::from_secs(60));
    // One WebSocket opened just before the reload, more while the replacements start.
    let mut sockets = vec![websocket(corral.port)];
    corral.signal(Signal::SIGHUP);
    let reloaded = std::time::Instant::now();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(200));
        sockets.push(websocket(corral.port));
    }
    let fresh = corral.wait_replaced(2, 2, &old, Duration::from_secs(60));
    // Each socket echoes until it is closed; when it was, counted from the reload.
    let mut lived = vec![None; sockets.len()];
    while lived.iter().any(Option::is_none) && reloaded.elapsed() < Duration::from_secs(30) {
        for (ws, lived) in sockets.iter_mut().zip(lived.iter_mut()) {
            if lived.is_some() {
                continue;
            }
            let echoed = match ws.send(tungstenite::Message::text("ping")) {
                Ok(()) => ws.read().ok(),
                Err(_) => None,
            };
            if !matches!(echoed, Some(tungstenite::Message::Text(ref t)) if t.as_str() == "ping") {
                *lived = Some(reloaded.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("sockets closed after the reload: {lived:?}");
    // The old workers drain once their replacements are ready (1.5 s at least), and their
    // WebSockets are closed by corral `graceful_timeout` (4 s) after that.
    for (i, lived) in lived.iter().enumerate() {
        let lived = lived.unwrap_or_else(|| panic!("socket {i} never closed\n{}", corral.logs()));
        assert!(
            lived >= Duration::from_secs(4),
            "socket {i} closed {lived:?} after the reload, before the drain deadline\n{}",
            corral.logs()
        );
        // Not left open either on a process corral no longer accounts it to.
        assert!(
            lived < Duration::from_secs(15),
            "socket {i} still open {lived:?} after the reload, past its worker's drain\n{}",
            corral.logs()
        );
    }
    let events = corral.log_events();
    for pid in &fresh {
        let ready = events
            .iter()
            .find(|e| e["event"] == "worker_ready" && e["pid"] == *pid)
            .unwrap_or_else(|| panic!("no worker_ready for {pid}"));
        let startup = ready["startup_ms"].as_u64().unwrap_or(0);
        assert!(
            startup >= 1500,
            "worker {pid} ready {startup} ms after its spawn; the app takes 1.5 s to start\n{}",
            corral.logs()
        );
    }
}
