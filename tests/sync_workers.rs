//! gunicorn sync workers behind corral: a worker that closes its connection after every
//! answer gets its next connection while still busy (a spare in its accept queue). The
//! spare must never hold up a request, keep an idle worker blocked long enough for
//! gunicorn's own `--timeout` to kill it, or delay a worker told to stop.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{apps, client, get, repo_root, Corral, Load};

/// Two single-process gunicorn sync workers with gunicorn's worker timeout at 2 s: a worker
/// left waiting on an unused connection for longer is killed by its own arbiter.
fn sync_pool(venv: &std::path::Path) -> String {
    format!(
        "[pools.web]\ncommand = [{:?}, \"--bind\", \"127.0.0.1:{{port}}\", \"--workers\", \"1\", \"--timeout\", \"2\", \"app:app\"]\ncwd = {:?}\nworkers = 2\nconcurrency = 1\nready = \"http\"\nstart_timeout = \"30s\"\nkill_timeout = \"5s\"\n",
        venv.join("bin").join("gunicorn").display().to_string(),
        repo_root().join("examples").join("flask").display().to_string(),
    )
}

#[test]
fn spare_connections_to_sync_workers_never_stall_a_request_nor_outlive_their_use() {
    let Some(venv) = apps::venv_with("gunicorn") else {
        return;
    };
    let mut corral = Corral::start(&sync_pool(&venv), "", 2);
    let pids = corral.wait_ready(2, Duration::from_secs(30));

    // 4 clients on 2 one-at-a-time workers, each request timed. A request queued in the
    // worker's accept queue behind a spare nobody uses waits until the spare is closed
    // (half a second): those would show as slow requests.
    let url = corral.url("/");
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = client();
                let mut took = Vec::new();
                let mut failed = Vec::new();
                for _ in 0..250 {
                    let start = Instant::now();
                    match get(&agent, &url) {
                        Ok((200, _)) => took.push(start.elapsed()),
                        other => failed.push(format!("{other:?}")),
                    }
                }
                (took, failed)
            })
        })
        .collect();
    let mut took = Vec::new();
    let mut failed = Vec::new();
    for c in clients {
        let (t, f) = c.join().expect("client");
        took.extend(t);
        failed.extend(f);
    }
    assert!(failed.is_empty(), "{failed:?}\n{}", corral.logs());
    took.sort();
    let slow = took
        .iter()
        .filter(|t| **t >= Duration::from_millis(400))
        .count();
    println!(
        "{} requests: median {:?}, p99 {:?}, max {:?}, {slow} over 400 ms",
        took.len(),
        took[took.len() / 2],
        took[took.len() * 99 / 100],
        took[took.len() - 1]
    );
    assert!(
        slow * 100 <= took.len(),
        "{slow} of {} requests took 400 ms or more",
        took.len()
    );

    // Idle for longer than gunicorn's --timeout: no worker was left waiting on a spare.
    std::thread::sleep(Duration::from_secs(4));
    let (status, _) = get(&client(), &url).expect("a request after the pause");
    assert_eq!(status, 200);
    assert_eq!(corral.ready_pids(), pids, "{}", corral.logs());
    assert!(
        !corral.stdout_text().contains("WORKER TIMEOUT"),
        "gunicorn killed a worker waiting on a connection\n{}",
        corral.logs()
    );
    assert_eq!(
        corral.metric("corral_worker_restarts_total{pool=\"web\",reason=\"crash\"}"),
        0.0
    );

    // A reload under load replaces both workers with no failed request, and promptly: an
    // old worker is never kept waiting on a spare it was handed.
    let load = Load::start(&url, 4, Duration::from_secs(60));
    load.wait_more(100, Duration::from_secs(20));
    let reloaded = Instant::now();
    corral.signal(Signal::SIGHUP);
    let fresh = corral.wait_replaced(2, 2, &pids, Duration::from_secs(30));
    let replaced_in = reloaded.elapsed();
    load.wait_more(100, Duration::from_secs(20));
    load.stop().assert_no_failures(&corral.logs());
    for pid in &pids {
        support::wait_for(
            &format!("old worker {pid} to exit"),
            Duration::from_secs(10),
            || (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(()),
        );
    }
    println!("reload replaced {pids:?} by {fresh:?} in {replaced_in:?}");

    let stopping = Instant::now();
    corral.signal(Signal::SIGTERM);
    let status = corral.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{}", corral.logs());
    println!("stopped in {:?}", stopping.elapsed());
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "{}",
        corral.logs()
    );
}

#[test]
fn a_worker_that_closes_after_each_answer_and_takes_several_requests_at_once_gets_no_spare_connections(
) {
    // A worker taking more than one request at once that closes after each answer is an app
    // server forking its own sync processes behind one socket (`gunicorn -w 4` as one corral
    // worker). A spare opened by one proxy thread was accepted by a process, which waited on
    // it, while a request another thread sent on a fresh connection queued behind it until
    // the spare was closed unused (half a second). Here one process and two proxy threads:
    // new client connections fall on either thread, so a request on the other thread than
    // the one before it would wait.
    let Some(venv) = apps::venv_with("gunicorn") else {
        return;
    };
    let pool = sync_pool(&venv).replace(
        "workers = 2\nconcurrency = 1",
        "workers = 1\nconcurrency = 2",
    );
    let mut corral = Corral::start(&pool, "threads = 2\n", 1);
    corral.wait_ready(1, Duration::from_secs(30));
    let url = corral.url("/");
    let mut took = Vec::new();
    for _ in 0..16 {
        // A new agent is a new connection, accepted by whichever thread comes first.
        let start = Instant::now();
        let answer = get(&client(), &url);
        took.push(start.elapsed());
        assert!(
            matches!(answer, Ok((200, _))),
            "{answer:?}\n{}",
            corral.logs()
        );
    }
    println!("16 requests on new connections took {took:?}");
    let slow: Vec<_> = took
        .iter()
        .filter(|t| **t >= Duration::from_millis(400))
        .collect();
    assert!(slow.is_empty(), "requests held up: {slow:?} of {took:?}");
}
