//! HTTP/1.1 through the proxy as clients really speak it: request bodies (sized and chunked),
//! HEAD, `Expect: 100-continue`, keep-alive and pipelined reuse of one connection, HTTP/1.0,
//! large responses, malformed heads, and WebSocket upgrades.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::raw::Raw;
use support::{client, testapp_pool, Corral};

#[test]
fn request_bodies_sized_and_chunked_reach_the_worker_whole() {
    let corral = Corral::start(&testapp_pool(2, ""), "", 2);
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();

    let mut raw = Raw::connect(corral.port);
    raw.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    raw.send(&body);
    let answer = raw.response(false);
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert!(answer.body == body, "sized body echoed whole");

    // Chunked, on the same connection: the worker gets the same bytes.
    raw.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for piece in body.chunks(70_000) {
        raw.send(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.send(piece);
        raw.send(b"\r\n");
    }
    raw.send(b"0\r\n\r\n");
    let answer = raw.response(false);
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert!(answer.body == body, "chunked body echoed whole");

    // A client that waits for 100 Continue before sending its body gets one.
    raw.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = raw.response(false);
    assert_eq!(interim.status, 100, "{}", interim.head);
    raw.send(b"hello");
    let answer = raw.response(false);
    assert_eq!(
        (answer.status, answer.body.as_slice()),
        (200, &b"hello"[..])
    );
}

#[test]
fn keep_alive_pipelining_head_and_http_1_0_behave() {
    let corral = Corral::start(&testapp_pool(1, ""), "", 1);

    let mut raw = Raw::connect(corral.port);
    for _ in 0..3 {
        raw.send(b"GET /bytes?n=10 HTTP/1.1\r\nHost: t\r\n\r\n");
        let answer = raw.response(false);
        assert_eq!((answer.status, answer.body.len()), (200, 10));
        assert_ne!(answer.header("connection"), Some("close"));
    }
    // HEAD: the worker's headers, no body, and the connection still usable.
    raw.send(b"HEAD /bytes?n=1000 HTTP/1.1\r\nHost: t\r\n\r\n");
    let answer = raw.response(true);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-length"), Some("1000"));
    raw.send(b"GET /bytes?n=3 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(raw.response(false).body, b"xxx");

    // Two requests in one write: both answered, in order.
    raw.send(
        b"GET /bytes?n=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /bytes?n=2 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(raw.response(false).body.len(), 1);
    assert_eq!(raw.response(false).body.len(), 2);

    // Connection: close is honoured after the answer.
    let mut raw = Raw::connect(corral.port);
    raw.send(b"GET /bytes?n=4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let answer = raw.response(false);
    assert_eq!(
        (answer.status, answer.header("connection")),
        (200, Some("close"))
    );
    assert!(raw.closed(), "connection closed after Connection: close");

    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut raw = Raw::connect(corral.port);
    raw.send(b"GET /bytes?n=5 HTTP/1.0\r\n\r\n");
    let answer = raw.response(false);
    assert_eq!((answer.status, answer.body.len()), (200, 5));
    assert!(raw.closed(), "HTTP/1.0 connection closed");

    // A large body arrives whole.
    let mut raw = Raw::connect(corral.port);
    raw.send(b"GET /bytes?n=3000000 HTTP/1.1\r\nHost: t\r\n\r\n");
    let answer = raw.response(false);
    assert_eq!((answer.status, answer.body.len()), (200, 3_000_000));

    // Garbage is a 400 and a closed connection, not a hang.
    let mut raw = Raw::connect(corral.port);
    raw.send(b"NOT HTTP AT ALL\r\n\r\n");
    let answer = raw.response(false);
    assert_eq!(answer.status, 400, "{}", answer.head);
    assert!(raw.closed());

    // Status codes and bodies from the worker pass through untouched.
    let mut response = client()
        .get(&corral.url("/status/404"))
        .call()
        .expect("request");
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(
        response.body_mut().read_to_string().expect("body"),
        "status 404\n"
    );
}

#[test]
fn websockets_are_passed_through_both_ways() {
    let corral = Corral::start(&testapp_pool(1, ""), "", 1);
    let url = format!("ws://127.0.0.1:{}/ws", corral.port);
    let (mut socket, response) = tungstenite::connect(&url).expect("WebSocket handshake");
    assert_eq!(response.status().as_u16(), 101);
    for i in 0..50 {
        let text = format!("message {i}");
        socket
            .send(tungstenite::Message::text(text.clone()))
            .expect("send");
        let echoed = socket.read().expect("echo");
        assert_eq!(echoed.into_text().expect("text").as_str(), text);
    }
    let big = vec![7u8; 200_000];
    socket
        .send(tungstenite::Message::binary(big.clone()))
        .expect("send binary");
    let echoed = socket.read().expect("binary echo");
    assert!(echoed.into_data() == big, "binary frame echoed whole");
    socket.close(None).expect("close");
    // The close handshake completes through the proxy.
    loop {
        match socket.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("close ended with {e}"),
        }
    }

    // A plain request to a WebSocket path that the worker refuses is an ordinary answer.
    let mut raw = Raw::connect(corral.port);
    raw.send(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    let answer = raw.response(false);
    assert_eq!(answer.status, 400, "{}", answer.head);
}

#[test]
fn hop_by_hop_fields_stop_at_corral() {
    let corral = Corral::start(&testapp_pool(1, ""), "", 1);
    let mut raw = Raw::connect(corral.port);
    raw.send(b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\nx-FORWARDED-for: 6.6.6.6\r\nX-Real-Ip: 6.6.6.6\r\nFORWARDED: for=6.6.6.6\r\nX-Request-Id: forged\r\n\r\n");
    let answer = raw.response(false);
    assert_eq!(answer.status, 200);
    let seen: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "proxy-connection",
    ] {
        assert!(
            seen.get(gone).is_none(),
            "{gone} reached the worker: {seen}"
        );
    }
    assert_eq!(seen["x-kept"], "yes");
    assert_eq!(seen["host"], "t");
    // Forged forwarding fields, in any letter case, are replaced, not added to.
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(seen["x-real-ip"], "127.0.0.1", "{seen}");
    assert!(seen.get("forwarded").is_none(), "{seen}");
    assert_eq!(seen["x-forwarded-host"], "t");
    assert_eq!(seen["x-forwarded-proto"], "http");
    // Regression: the client's X-Request-Id reached the worker beside corral's own.
    let generated = |seen: &serde_json::Value| {
        seen["x-request-id"]
            .as_str()
            .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    assert!(generated(&seen), "{seen}");

    // The same through the general path (a request with a body).
    raw.send(b"POST /headers HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: X-Secret\r\nX-Secret: 1\r\nx-FORWARDED-for: 6.6.6.6\r\nX-Request-Id: forged\r\n\r\nhi");
    let answer = raw.response(false);
    let seen: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert!(generated(&seen), "{seen}");
    assert!(seen.get("x-secret").is_none(), "{seen}");
    assert!(seen.get("connection").is_none(), "{seen}");
}

#[test]
fn a_slow_request_head_is_cut_at_header_timeout() {
    let corral = Corral::start(
        &testapp_pool(1, ""),
        "[server.limits]\nheader_timeout = \"1s\"",
        1,
    );
    let start = std::time::Instant::now();
    let mut raw = Raw::connect(corral.port);
    raw.send(b"GET / HTTP/1.1\r\n");
    // A byte now and then (slowloris): each read is quick, the head never completes.
    let mut cut = false;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(200));
        if raw.stream.write_all(b"X").is_err() {
            cut = true;
            break;
        }
        raw.stream.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        let eof = matches!(raw.stream.read(&mut byte), Ok(0));
        raw.stream.set_nonblocking(false).expect("blocking");
        if eof {
            cut = true;
            break;
        }
    }
    let took = start.elapsed();
    assert!(cut, "connection still open after {took:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "cut after {took:?}, header_timeout 1s"
    );
    // A normal request on a new connection is served.
    let mut raw = Raw::connect(corral.port);
    raw.send(b"GET /bytes?n=2 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(raw.response(false).status, 200);
}

/// The keep-alive wait runs on one timer per connection, set for the first wait and moved
/// on lazily (`forward/deadline.rs`): each wait must still end at its own deadline, counted
/// from its own request, not at the first one's.
#[test]
fn an_idle_keep_alive_connection_closes_at_keepalive_timeout_after_its_last_request() {
    let corral = Corral::start(
        &testapp_pool(1, ""),
        "[server.limits]\nkeepalive_timeout = \"2s\"",
        1,
    );
    let mut raw = Raw::connect(corral.port);
    // Requests 1.2 s apart, past the first wait's deadline in all: each is within the
    // keep-alive timeout of the one before, so the connection serves them all.
    for _ in 0..3 {
        raw.send(b"GET /bytes?n=2 HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(raw.response(false).status, 200);
        std::thread::sleep(Duration::from_millis(1200));
    }
    raw.send(b"GET /bytes?n=2 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(raw.response(false).status, 200);
    let last = std::time::Instant::now();
    assert!(raw.closed(), "closed once idle");
    let idle = last.elapsed();
    assert!(
        idle >= Duration::from_millis(1800) && idle < Duration::from_secs(10),
        "closed after {idle:?} idle, keepalive_timeout 2s"
    );
}

#[test]
fn connections_a_worker_closed_while_idle_are_not_failures() {
    // The worker drops keep-alive connections idle for 200 ms (as gunicorn's gthread and
    // uvicorn do after a few seconds); corral's kept-open connection goes stale meanwhile.
    let corral = Corral::start(&testapp_pool(1, ", \"--idle-close-ms\", \"200\""), "", 1);
    let mut raw = Raw::connect(corral.port);
    for round in 0..4 {
        raw.send(b"GET /bytes?n=7 HTTP/1.1\r\nHost: t\r\n\r\n");
        let answer = raw.response(false);
        assert_eq!((round, answer.status, answer.body.len()), (round, 200, 7));
        std::thread::sleep(Duration::from_millis(400));
        // A POST cannot be replayed: its connection is checked before use.
        raw.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
        let answer = raw.response(false);
        assert_eq!(
            (round, answer.status, answer.body.as_slice()),
            (round, 200, &b"abc"[..])
        );
        std::thread::sleep(Duration::from_millis(400));
    }
    let failed: Vec<_> = corral
        .log_events()
        .into_iter()
        .filter(|e| e["target"] == "corral::access" && e["status"] != 200)
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn a_body_over_body_size_is_refused_sized_or_streamed() {
    let corral = Corral::start(
        &testapp_pool(1, ""),
        "[server.limits]\nbody_size = \"1KiB\"",
        1,
    );
    // Announced by Content-Length: refused before anything reaches the worker.
    let mut raw = Raw::connect(corral.port);
    raw.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n");
    let answer = raw.response(false);
    assert_eq!(answer.status, 413, "{}", answer.head);
    assert!(raw.closed(), "connection closed after 413");

    // Chunked: counted while streaming, refused when it passes the limit.
    let mut raw = Raw::connect(corral.port);
    raw.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..4 {
        raw.send(b"400\r\n");
        raw.send(&[b'z'; 0x400]);
        raw.send(b"\r\n");
    }
    raw.send(b"0\r\n\r\n");
    let answer = raw.response(false);
    assert_eq!(answer.status, 413, "{}", answer.head);
    assert!(raw.closed(), "connection closed after 413");

    // Within the limit, both ways work.
    let mut raw = Raw::connect(corral.port);
    raw.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n");
    raw.send(&[b'y'; 0x200]);
    raw.send(b"\r\n0\r\n\r\n");
    let answer = raw.response(false);
    assert_eq!((answer.status, answer.body.len()), (200, 0x200));
}

#[test]
fn a_client_still_uploading_past_body_size_reads_its_413_not_a_reset() {
    let corral = Corral::start(
        &testapp_pool(1, ""),
        "[server.limits]\nbody_size = \"1KiB\"",
        1,
    );
    // A client that sends its whole 4 MiB upload before it reads, as curl and browsers do.
    // corral refuses at the head; closing with the body unread would send a RST that
    // destroys the 413 before the client reads it.
    for _ in 0..5 {
        let mut raw = Raw::connect(corral.port);
        raw.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4194304\r\n\r\n");
        let chunk = vec![b'u'; 64 * 1024];
        for _ in 0..64 {
            raw.send(&chunk);
        }
        let answer = raw.response(false);
        assert_eq!(answer.status, 413, "{}", answer.head);
    }
}

#[test]
fn a_quieter_log_level_keeps_the_access_log() {
    let (port, admin) = (support::free_port(), support::free_port());
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nadmin = \"127.0.0.1:{admin}\"\ncontrol_socket = \"{{dir}}/control.sock\"\nstate_dir = \"{{dir}}/state\"\n\n[log]\nformat = \"json\"\nlevel = \"warn\"\n\n{}",
        testapp_pool(1, "")
    );
    let mut corral = Corral::spawn_with(&text, port, admin, &["run"], &[]);
    corral.wait_ready(1, Duration::from_secs(20));
    let (status, body) = support::get(&client(), &corral.url("/quiet")).expect("request");
    assert_eq!(status, 200, "{body}");
    corral.wait_log("the access line", Duration::from_secs(5), |e| {
        e["target"] == "corral::access" && e["path"] == "/quiet"
    });
    // The level still holds for everything else: corral's own info lines stay out.
    let chatty: Vec<_> = corral
        .log_events()
        .into_iter()
        .filter(|e| e["level"] == "INFO" && e["target"] != "corral::access")
        .collect();
    assert!(chatty.is_empty(), "{chatty:#?}");
}
