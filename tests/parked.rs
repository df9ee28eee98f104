//! Idle keep-alive connections parked (issue 36, target 3): a plain connection quiet for a
//! second leaves its task for its proxy thread's table (`forward/park.rs`). Each test parks a
//! real client connection (seen in `corral_connections_parked`) and checks what happens
//! next: the client sends, stays quiet past the keep-alive timeout, closes, or corral stops.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{testapp_pool, wait_for, Corral};

const REQUEST: &[u8] = b"GET /bytes?n=5 HTTP/1.1\r\nHost: t\r\n\r\n";

/// corral with one test-app worker and `limits` in `[server.limits]`.
fn start(limits: &str) -> Corral {
    Corral::start(
        &testapp_pool(1, ""),
        &format!("graceful_timeout = \"30s\"\n[server.limits]\n{limits}\n"),
        1,
    )
}

/// Reads one answer (its head and `Content-Length` body); its status and head.
fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read the answer head");
        assert_eq!(
            n,
            1,
            "closed within the head: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().expect("length"))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("read the body");
    let status = head[9..12].parse().expect("status");
    (status, head)
}

/// Waits until `corral_connections_parked` is `n`.
fn wait_parked(corral: &Corral, n: f64) {
    wait_for(
        &format!("{n} parked connections"),
        Duration::from_secs(15),
        || (corral.metric("corral_connections_parked ") == n).then_some(()),
    );
}

/// Whether the server closed `stream` within `limit` (a read returns 0 or a reset).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let start = Instant::now();
    let mut buf = [0u8; 64];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => {}
        }
    }
    false
}

#[test]
fn a_parked_connection_that_sends_later_gets_its_answer_each_time() {
    let corral = start("keepalive_timeout = \"60s\"");
    let mut client = TcpStream::connect(("127.0.0.1", corral.port)).expect("connect");
    for round in 0..3 {
        client.write_all(REQUEST).expect("send");
        let (status, head) = read_answer(&mut client);
        assert_eq!(status, 200, "round {round}: {head}\n{}", corral.logs());
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        wait_parked(&corral, 1.0);
        assert_eq!(corral.metric("corral_connections "), 1.0);
    }
    // Pipelined requests sent at once to a parked connection: both answered, in order.
    client
        .write_all(&[REQUEST, REQUEST].concat())
        .expect("send");
    assert_eq!(read_answer(&mut client).0, 200);
    assert_eq!(read_answer(&mut client).0, 200);
}

#[test]
fn a_connection_that_sent_nothing_is_parked_and_served_when_it_sends() {
    let corral = start("header_timeout = \"20s\"");
    let mut client = TcpStream::connect(("127.0.0.1", corral.port)).expect("connect");
    wait_parked(&corral, 1.0);
    client.write_all(REQUEST).expect("send");
    assert_eq!(read_answer(&mut client).0, 200, "{}", corral.logs());
}

#[test]
fn a_parked_connection_quiet_past_the_keepalive_timeout_is_closed() {
    let corral = start("keepalive_timeout = \"3s\"");
    let mut client = TcpStream::connect(("127.0.0.1", corral.port)).expect("connect");
    client.write_all(REQUEST).expect("send");
    assert_eq!(read_answer(&mut client).0, 200);
    let answered = Instant::now();
    wait_parked(&corral, 1.0);
    assert!(
        closed_within(&mut client, Duration::from_secs(15)),
        "still open 15 s after the 3 s keep-alive timeout"
    );
    let after = answered.elapsed();
    assert!(
        after >= Duration::from_millis(2900),
        "closed after {after:?}, before its keep-alive timeout"
    );
    wait_parked(&corral, 0.0);
    wait_for("no connections", Duration::from_secs(10), || {
        (corral.metric("corral_connections ") == 0.0).then_some(())
    });
}

#[test]
fn a_parked_connection_that_never_sent_a_request_is_closed_at_header_timeout() {
    let corral = start("header_timeout = \"3s\"");
    let mut client = TcpStream::connect(("127.0.0.1", corral.port)).expect("connect");
    let connected = Instant::now();
    wait_parked(&corral, 1.0);
    assert!(closed_within(&mut client, Duration::from_secs(15)));
    assert!(connected.elapsed() >= Duration::from_millis(2900));
    wait_parked(&corral, 0.0);
}

#[test]
fn a_parked_connection_closed_by_its_client_is_cleaned() {
    let corral = start("keepalive_timeout = \"60s\"");
    let mut client = TcpStream::connect(("127.0.0.1", corral.port)).expect("connect");
    client.write_all(REQUEST).expect("send");
    assert_eq!(read_answer(&mut client).0, 200);
    wait_parked(&corral, 1.0);
    drop(client);
    wait_parked(&corral, 0.0);
    wait_for("no connections", Duration::from_secs(10), || {
        (corral.metric("corral_connections ") == 0.0).then_some(())
    });
}

#[test]
fn the_stop_closes_parked_connections_within_its_idle_grace() {
    let mut corral = start("keepalive_timeout = \"60s\"");
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = TcpStream::connect(("127.0.0.1", corral.port)).expect("connect");
        client.write_all(REQUEST).expect("send");
        assert_eq!(read_answer(&mut client).0, 200);
        clients.push(client);
    }
    wait_parked(&corral, 3.0);
    let stopped = Instant::now();
    corral.signal(Signal::SIGTERM);
    for client in &mut clients {
        assert!(
            closed_within(client, Duration::from_secs(15)),
            "a parked connection outlived the stop's idle grace\n{}",
            corral.logs()
        );
    }
    let status = corral.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{}", corral.logs());
    // The drain waited for the connections, not for graceful_timeout (30 s).
    assert!(
        stopped.elapsed() < Duration::from_secs(15),
        "stopped after {:?}",
        stopped.elapsed()
    );
}
