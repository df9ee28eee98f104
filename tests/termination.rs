//! How corral ends: graceful SIGTERM with requests in flight, quick SIGINT, a stubborn
//! worker, and the master killed outright. No worker may outlive corral.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{client, get, group_alive, testapp_pool, wait_for, Corral};

fn in_flight(corral: &Corral) -> u64 {
    corral
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix("corral_requests_in_flight "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_0() {
    let mut corral = Corral::start(&testapp_pool(4, ""), "graceful_timeout = \"15s\"", 4);
    let pids = corral.ready_pids();
    let url = corral.url("/sleep?ms=2000");
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || get(&client(), &url))
        })
        .collect();
    wait_for("20 requests in flight", Duration::from_secs(10), || {
        (in_flight(&corral) == 20).then_some(())
    });
    let stop_at = Instant::now();
    corral.signal(Signal::SIGTERM);
    // New connections are refused soon after the signal.
    wait_for("listener closed", Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", corral.port))
            .is_err()
            .then_some(())
    });
    let results: Vec<_> = requests
        .into_iter()
        .map(|r| r.join().expect("client"))
        .collect();
    let status = corral.wait_exit(Duration::from_secs(20));
    let took = stop_at.elapsed();
    for r in &results {
        assert!(matches!(r, Ok((200, _))), "{r:?}\n{}", corral.logs());
    }
    assert_eq!(status.code(), Some(0), "{}", corral.logs());
    assert!(
        took < Duration::from_secs(15),
        "exit took {took:?}, graceful_timeout is 15s"
    );
    for pid in pids {
        assert!(!group_alive(pid), "process group {pid} survived corral");
    }
    let events = corral.log_events();
    assert!(
        events.iter().any(|e| e["event"] == "drained"),
        "{}",
        corral.logs()
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "worker_exited" && e["reason"] == "shutdown")
            .count(),
        4
    );
}

#[test]
fn sigint_stops_quickly_and_reaps_every_worker() {
    let mut corral = Corral::start(&testapp_pool(3, ""), "", 3);
    let pids = corral.ready_pids();
    let start = Instant::now();
    corral.signal(Signal::SIGINT);
    let status = corral.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    for pid in pids {
        assert!(!group_alive(pid), "process group {pid} survived corral");
    }
}

#[test]
fn a_worker_ignoring_sigterm_is_killed_after_kill_timeout() {
    // testapp_pool sets kill_timeout = "3s".
    let mut corral = Corral::start(&testapp_pool(1, ", \"--ignore-term\""), "", 1);
    let pids = corral.ready_pids();
    let start = Instant::now();
    corral.signal(Signal::SIGTERM);
    let status = corral.wait_exit(Duration::from_secs(15));
    let took = start.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(8),
        "took {took:?}"
    );
    assert!(!group_alive(pids[0]));
    assert!(
        corral
            .log_events()
            .iter()
            .any(|e| e["event"] == "worker_kill"),
        "{}",
        corral.logs()
    );
}

#[test]
fn workers_die_with_a_master_killed_by_sigkill() {
    let mut corral = Corral::start(&testapp_pool(2, ""), "", 2);
    let pids = corral.ready_pids();
    // Only the master: its workers are in their own process groups.
    corral.signal(Signal::SIGKILL);
    corral.wait_exit(Duration::from_secs(5));
    wait_for(
        "workers to die with the master",
        Duration::from_secs(5),
        || pids.iter().all(|p| !group_alive(*p)).then_some(()),
    );
}

#[test]
fn sigterm_while_workers_start_is_handled_not_fatal() {
    // Regression: handlers were installed after the listeners came up, so an early SIGTERM
    // killed the master by default action instead of stopping it.
    let mut corral = Corral::start(
        &testapp_pool(2, ", \"--startup-delay-ms\", \"30000\""),
        "",
        0,
    );
    wait_for("admin up", Duration::from_secs(10), || {
        get(&client(), &corral.admin_url("/healthz")).ok()
    });
    corral.signal(Signal::SIGTERM);
    let status = corral.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", corral.logs());
}

#[test]
fn sigterm_turns_readyz_503_at_once_and_accepts_during_accept_grace() {
    let mut corral = Corral::start(&testapp_pool(1, ""), "accept_grace = \"2s\"", 1);
    assert_eq!(
        get(&client(), &corral.admin_url("/readyz"))
            .expect("readyz")
            .0,
        200
    );
    let signalled = Instant::now();
    corral.signal(Signal::SIGTERM);
    wait_for("readyz 503", Duration::from_secs(1), || {
        get(&client(), &corral.admin_url("/readyz"))
            .ok()
            .filter(|(s, _)| *s == 503)
    });
    assert!(
        signalled.elapsed() < Duration::from_millis(900),
        "readyz turned after {:?}",
        signalled.elapsed()
    );
    // Still serving new connections while the load balancer notices.
    assert_eq!(
        get(&client(), &corral.url("/"))
            .expect("request during accept_grace")
            .0,
        200
    );
    let status = corral.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "exited after {:?}, before accept_grace",
        signalled.elapsed()
    );
}

#[test]
fn sigttin_and_sigttou_add_and_remove_a_worker() {
    let mut corral = Corral::start(&testapp_pool(2, ""), "", 2);
    corral.signal(Signal::SIGTTIN);
    corral.wait_ready(3, Duration::from_secs(10));
    // Signals of one kind sent together arrive as one (POSIX does not queue them), so one
    // at a time, each after the previous took effect.
    for left in [2, 1] {
        corral.signal(Signal::SIGTTOU);
        wait_for(
            &format!("{left} workers left"),
            Duration::from_secs(15),
            || (corral.workers().len() == left).then_some(()),
        );
    }
    assert_eq!(corral.status().expect("status")["pools"][0]["desired"], 1);
    // Never below one.
    corral.signal(Signal::SIGTTOU);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(corral.workers().len(), 1);
    assert_eq!(get(&client(), &corral.url("/")).expect("request").0, 200);
}

/// Reads one HTTP/1.1 answer with a `Content-Length` from `stream`; (head, body length).
fn read_answer(stream: &mut std::net::TcpStream) -> std::io::Result<(String, usize)> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((head, length))
}

#[test]
fn a_kept_alive_client_still_reading_its_answer_at_stop_may_send_one_more_request() {
    // Regression: at a stop (or a SIGUSR2 hand-over) an idle kept-alive connection was
    // closed 1 s after the stop, counted from when corral had written the answer, not from
    // when the client had it: a client still reading found the connection closed.
    use std::io::Write;
    let mut corral = Corral::start(&testapp_pool(1, ""), "graceful_timeout = \"15s\"", 1);
    const SIZE: usize = 512 * 1024;
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    // A small window, so most of the answer waits in corral's socket for the client.
    socket.set_recv_buffer_size(8 * 1024).expect("rcvbuf");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], corral.port).into();
    socket.connect(&addr.into()).expect("connect");
    let mut stream: std::net::TcpStream = socket.into();
    let request = format!("GET /bytes?n={SIZE} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    // corral has written the whole answer (its access line) while the client reads nothing.
    corral.wait_log("the big answer written", Duration::from_secs(10), |e| {
        e["message"] == "access" && e["path"] == format!("/bytes?n={SIZE}")
    });
    corral.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_secs(3));
    let (head, length) = read_answer(&mut stream).expect("the first answer");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(length, SIZE);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("send the next request");
    let next = read_answer(&mut stream);
    assert!(
        matches!(&next, Ok((head, _)) if head.starts_with("http/1.1 200") && head.contains("connection: close")),
        "the next request on the connection: {next:?}\n{}",
        corral.logs()
    );
    assert_eq!(corral.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
