//! How workers get their sockets (`bind`) and how readiness is detected (`ready`).

mod support;

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{client, get, testapp_bin, wait_for, Corral};

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
