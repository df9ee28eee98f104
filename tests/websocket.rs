//! `[websocket]` end to end with real WebSocket clients (tungstenite) and the test app's echo:
//! many sockets and every frame size, `max_connections`, `idle_timeout` past pingora's fixed
//! 60 s, `counts_against_concurrency`, the metrics, and draining across SIGHUP and SIGTERM.

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(port: u16) -> Result<Ws, String> {
    let (ws, response) =
        tungstenite::connect(format!("ws://127.0.0.1:{port}/ws")).map_err(|e| e.to_string())?;
    assert_eq!(response.status().as_u16(), 101);
    set_read_timeout(&ws, Duration::from_secs(30));
    Ok(ws)
}

fn set_read_timeout(ws: &Ws, timeout: Duration) {
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(timeout)).expect("read timeout");
    }
}

/// Sends `message` and checks the echo is the same message, byte for byte.
fn echo(ws: &mut Ws, message: Message) -> Result<(), String> {
    ws.send(message.clone()).map_err(|e| format!("send: {e}"))?;
    match ws.read() {
        Ok(m) if m == message => Ok(()),
        Ok(m) => Err(format!(
            "echo differs: {} bytes, not {}",
            m.len(),
            message.len()
        )),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// Bytes no two clients or sizes share, so a mixed-up or corrupted frame shows.
fn payload(client: usize, len: usize) -> Vec<u8> {
    let mut x = (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// How long until corral (not the client) ends the socket: any read that is not a
/// message or a read timeout.
fn time_until_closed(ws: &mut Ws, within: Duration) -> Duration {
    let start = Instant::now();
    set_read_timeout(ws, Duration::from_millis(200));
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return start.elapsed(),
        }
        assert!(start.elapsed() < within, "still open after {within:?}");
    }
}

#[test]
fn two_hundred_websockets_echo_every_frame_size_and_one_over_the_limit_gets_503() {
    const CLIENTS: usize = 200;
    let corral = Corral::start(
        &format!(
            "[websocket]\nmax_connections = {CLIENTS}\n\n{}",
            testapp_pool(2, "")
        ),
        "",
        2,
    );
    let sockets: Vec<Ws> = (0..CLIENTS)
        .map(|i| connect(corral.port).unwrap_or_else(|e| panic!("client {i}: {e}")))
        .collect();
    match tungstenite::connect(format!("ws://127.0.0.1:{}/ws", corral.port)) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 503),
        Err(e) => panic!("the client over the limit: {e}"),
        Ok(_) => panic!("a client over max_connections was upgraded"),
    }
    assert_eq!(
        corral.metric("corral_websocket_connections{pool=\"web\"}"),
        200.0
    );
    assert_eq!(corral.metric("corral_websocket_refused_total"), 1.0);
    // The sockets hold none of the workers' 2 x 8 concurrency: plain requests go on.
    let start = Instant::now();
    let (status, _) = get(&client(), &corral.url("/")).expect("plain request");
    assert_eq!(status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // Every length class of the frame header (7-bit, 16-bit, 64-bit), text and binary; a
    // tenth of the clients also send 1 MiB.
    let sizes = [1usize, 125, 126, 65_535, 65_536, 200_000];
    let threads: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            std::thread::spawn(move || -> Result<(Ws, u64), String> {
                let mut sent = 0u64;
                let big = if i % 10 == 0 {
                    &[1usize << 20][..]
                } else {
                    &[][..]
                };
                for &len in sizes.iter().chain(big) {
                    let bytes = payload(i, len);
                    let text: String = bytes.iter().map(|b| char::from(b'a' + b % 26)).collect();
                    echo(&mut ws, Message::binary(bytes))
                        .map_err(|e| format!("client {i}, {len} B binary: {e}"))?;
                    echo(&mut ws, Message::text(text))
                        .map_err(|e| format!("client {i}, {len} B text: {e}"))?;
                    sent += 2 * len as u64;
                }
                Ok((ws, sent))
            })
        })
        .collect();
    let mut sent = 0;
    let mut open = Vec::new();
    for t in threads {
        let (ws, n) = t
            .join()
            .expect("client thread")
            .unwrap_or_else(|e| panic!("{e}"));
        sent += n;
        open.push(ws);
    }
    for mut ws in open {
        ws.close(None).expect("close");
        while ws.read().is_ok() {}
    }
    wait_for("every tunnel closed", Duration::from_secs(20), || {
        (corral.metric("corral_websocket_connections{pool=\"web\"}") == 0.0).then_some(())
    });
    let metrics = corral.metrics();
    println!("{sent} payload bytes each way");
    assert_eq!(
        corral.metric("corral_websocket_connections_total{pool=\"web\"}"),
        200.0
    );
    assert_eq!(
        corral.metric("corral_websocket_connection_duration_seconds_count{pool=\"web\"}"),
        200.0,
        "{metrics}"
    );
    for direction in ["to_worker", "to_client"] {
        let bytes = corral.metric(&format!(
            "corral_websocket_bytes_total{{direction=\"{direction}\",pool=\"web\"}}"
        ));
        // Frames add a header per message (and the client's a mask).
        assert!(
            bytes as u64 >= sent,
            "{direction}: {bytes} bytes for {sent} of payload\n{metrics}"
        );
        assert!(
            (bytes as u64) < sent + sent / 10,
            "{direction}: {bytes} bytes for {sent}"
        );
    }
}

#[test]
fn a_silent_websocket_is_closed_at_idle_timeout_and_a_talking_one_is_not() {
    let corral = Corral::start(
        &format!(
            "[websocket]\nidle_timeout = \"2s\"\n\n{}",
            testapp_pool(1, "")
        ),
        "",
        1,
    );
    let mut silent = connect(corral.port).expect("silent socket");
    let mut talking = connect(corral.port).expect("talking socket");
    let talker = std::thread::spawn(move || {
        for i in 0..12 {
            std::thread::sleep(Duration::from_millis(400));
            echo(&mut talking, Message::text(format!("still here {i}")))
                .unwrap_or_else(|e| panic!("the talking socket after {i} messages: {e}"));
        }
    });
    let closed = time_until_closed(&mut silent, Duration::from_secs(10));
    println!("the silent socket was closed after {closed:?}");
    assert!(closed >= Duration::from_millis(1800), "{closed:?}");
    assert!(closed < Duration::from_secs(6), "{closed:?}");
    talker
        .join()
        .expect("the talking socket stayed open for 4.8 s");
}

#[test]
fn an_idle_websocket_outlives_sixty_seconds_when_idle_timeout_allows() {
    let corral = Corral::start(
        &format!(
            "[websocket]\nidle_timeout = \"300s\"\n\n{}",
            testapp_pool(1, "")
        ),
        "",
        1,
    );
    let mut ws = connect(corral.port).expect("socket");
    echo(&mut ws, Message::text("before")).expect("first echo");
    // pingora's sessions time a read out at 60 s; the tunnel must not.
    std::thread::sleep(Duration::from_secs(65));
    echo(&mut ws, Message::text("after 65 s of silence")).expect("echo after 65 s");
}

#[test]
fn an_open_websocket_takes_no_concurrency_slot_unless_told_to() {
    let pool =
        testapp_pool(1, "").replace("concurrency = 8", "concurrency = 1\nqueue_timeout = \"1s\"");
    for (counts, plain_served) in [(false, true), (true, false)] {
        let corral = Corral::start(
            &format!("[websocket]\ncounts_against_concurrency = {counts}\n\n{pool}"),
            "",
            1,
        );
        let mut ws = connect(corral.port).expect("socket");
        echo(&mut ws, Message::text("open")).expect("echo");
        let (status, body) = get(&client(), &corral.url("/")).expect("plain request");
        assert_eq!(
            status == 200,
            plain_served,
            "counts_against_concurrency = {counts}: {status} {body}"
        );
        echo(&mut ws, Message::text("still open")).expect("echo");
    }
}

#[test]
fn a_websocket_open_across_a_reload_echoes_until_the_drain_deadline_then_closes() {
    let body = testapp_pool(1, "");
    let mut corral = Corral::start(&body, "graceful_timeout = \"3s\"", 1);
    let mut ws = connect(corral.port).expect("socket");
    echo(&mut ws, Message::text("before the reload")).expect("echo");
    let old = corral.ready_pids();
    // A changed command line: the worker is replaced, the old one drains.
    corral
        .rewrite_config(&body.replace("workers = 1", "workers = 1\nenv = { GENERATION = \"2\" }"));
    corral.signal(Signal::SIGHUP);
    let reloaded = Instant::now();
    corral.wait_event("config_reloaded", Duration::from_secs(10));
    // The old worker keeps the socket echoing while it drains...
    let mut echoed_until = reloaded;
    while reloaded.elapsed() < Duration::from_secs(10) {
        if echo(&mut ws, Message::text("during the drain")).is_err() {
            break;
        }
        echoed_until = Instant::now();
        std::thread::sleep(Duration::from_millis(100));
    }
    let echoed = echoed_until - reloaded;
    println!("echoed {echoed:?} after the reload");
    assert!(
        echoed >= Duration::from_millis(2500),
        "closed after {echoed:?}"
    );
    assert!(
        echoed < Duration::from_secs(6),
        "still open after {echoed:?}"
    );
    // ...and is stopped only once the socket is closed.
    let exited = corral.wait_event("worker_exited", Duration::from_secs(10));
    assert_eq!(
        exited["pid"].as_u64(),
        old.first().map(|&p| u64::from(p)),
        "{exited}"
    );
    assert_eq!(exited["reason"], "reload", "{exited}");
    // New sockets reach the new worker.
    let mut fresh = connect(corral.port).expect("a socket after the reload");
    echo(&mut fresh, Message::text("after")).expect("echo on the new worker");
}

#[test]
fn sigterm_keeps_websockets_until_graceful_timeout_then_exits() {
    let mut corral = Corral::start(&testapp_pool(1, ""), "graceful_timeout = \"2s\"", 1);
    let mut ws = connect(corral.port).expect("socket");
    echo(&mut ws, Message::text("before")).expect("echo");
    corral.signal(Signal::SIGTERM);
    let stopped = Instant::now();
    let mut echoed_until = stopped;
    while stopped.elapsed() < Duration::from_secs(10)
        && echo(&mut ws, Message::text("draining")).is_ok()
    {
        echoed_until = Instant::now();
        std::thread::sleep(Duration::from_millis(100));
    }
    let echoed = echoed_until - stopped;
    println!("echoed {echoed:?} after SIGTERM");
    assert!(
        echoed >= Duration::from_millis(1500),
        "closed after {echoed:?}"
    );
    assert!(corral.wait_exit(Duration::from_secs(15)).success());
    assert!(
        stopped.elapsed() < Duration::from_secs(8),
        "{:?}",
        stopped.elapsed()
    );
}

/// The close code corral's close frame carried, reading (and dropping) messages until it
/// comes; `None` when the connection ended without one (what a browser reports as 1006).
fn close_code(ws: &mut Ws, within: Duration) -> Option<u16> {
    let start = Instant::now();
    set_read_timeout(ws, Duration::from_millis(200));
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => return Some(frame.map_or(1005, |f| u16::from(f.code))),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                println!("ended without a close frame: {e}");
                return None;
            }
        }
        assert!(start.elapsed() < within, "still open after {within:?}");
    }
}

#[test]
fn a_websocket_open_across_a_reload_gets_close_code_1012_at_the_drain_deadline() {
    let body = testapp_pool(1, "");
    let corral = Corral::start(&body, "graceful_timeout = \"2s\"", 1);
    let mut idle = connect(corral.port).expect("socket");
    echo(&mut idle, Message::text("before the reload")).expect("echo");
    // The worker is in the middle of one endless message, sent in fragments and half
    // frames: the close frame must come between two frames, never inside one.
    let mut busy = connect(corral.port).expect("socket");
    busy.send(Message::text("fragments")).expect("send");
    std::thread::sleep(Duration::from_millis(300));
    corral
        .rewrite_config(&body.replace("workers = 1", "workers = 1\nenv = { GENERATION = \"2\" }"));
    corral.signal(Signal::SIGHUP);
    let reloaded = Instant::now();
    assert_eq!(
        close_code(&mut busy, Duration::from_secs(15)),
        Some(1012),
        "{}",
        corral.logs()
    );
    assert_eq!(close_code(&mut idle, Duration::from_secs(15)), Some(1012));
    let took = reloaded.elapsed();
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
}

#[test]
fn a_websocket_open_at_sigterm_gets_close_code_1001_at_the_drain_deadline() {
    let mut corral = Corral::start(&testapp_pool(1, ""), "graceful_timeout = \"1s\"", 1);
    let mut ws = connect(corral.port).expect("socket");
    echo(&mut ws, Message::text("before")).expect("echo");
    corral.signal(Signal::SIGTERM);
    assert_eq!(close_code(&mut ws, Duration::from_secs(15)), Some(1001));
    assert!(corral.wait_exit(Duration::from_secs(15)).success());
}

#[test]
fn a_websocket_on_a_recycled_worker_gets_close_code_1001_at_the_drain_deadline() {
    // The worker is replaced after 6 requests (`max_requests`): a recycle, not a reload.
    let pool = testapp_pool(1, "").replace("workers = 1", "workers = 1\nmax_requests = 6");
    let corral = Corral::start(&pool, "graceful_timeout = \"2s\"", 1);
    let mut idle = connect(corral.port).expect("socket");
    echo(&mut idle, Message::text("before the recycle")).expect("echo");
    // Also in the middle of a long fragmented message.
    let mut busy = connect(corral.port).expect("socket");
    busy.send(Message::text("fragments")).expect("send");
    for _ in 0..8 {
        let (status, _) = get(&client(), &corral.url("/")).expect("request");
        assert_eq!(status, 200);
    }
    let retiring = corral.wait_event("worker_retiring", Duration::from_secs(10));
    assert_eq!(retiring["reason"], "max_requests", "{retiring}");
    assert_eq!(
        close_code(&mut busy, Duration::from_secs(20)),
        Some(1001),
        "{}",
        corral.logs()
    );
    assert_eq!(close_code(&mut idle, Duration::from_secs(15)), Some(1001));
    let exited = corral.wait_event("worker_exited", Duration::from_secs(10));
    assert_eq!(exited["reason"], "max_requests", "{exited}");
}

#[test]
fn a_websocket_on_the_pool_a_switch_stops_gets_close_code_1001_at_the_drain_deadline() {
    let pool = |name: &str| testapp_pool(1, "").replace("[pools.web]", &format!("[pools.{name}]"));
    let body = format!(
        "[routing]\nactive = \"blue\"\n\n{}\n{}",
        pool("blue"),
        pool("green")
    );
    let corral = Corral::start(&body, "graceful_timeout = \"2s\"", 1);
    let mut ws = connect(corral.port).expect("socket");
    echo(&mut ws, Message::text("on blue")).expect("echo");
    let (code, out, err) = corral.cli(&["switch", "green"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        close_code(&mut ws, Duration::from_secs(20)),
        Some(1001),
        "{}",
        corral.logs()
    );
    // New sockets reach green.
    let mut fresh = connect(corral.port).expect("a socket after the switch");
    echo(&mut fresh, Message::text("on green")).expect("echo");
}
