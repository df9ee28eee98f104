//! The edge: who the client is (trusted proxies, PROXY protocol), what a forged forwarding
//! field gets, security headers and versions, and the slowloris guard. The malformed and
//! smuggling corpus is in `smuggling.rs`.

mod support;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use support::raw::Raw;
use support::{client, free_port, get, testapp_pool, Corral};

fn headers_seen(answer: &support::raw::Response) -> serde_json::Value {
    serde_json::from_slice(&answer.body).expect("the test app's header echo")
}

fn loopback(ip: &str) -> IpAddr {
    ip.parse().expect("ip")
}

#[test]
fn forged_forwarding_fields_from_an_untrusted_peer_never_reach_the_worker() {
    let corral = Corral::start(&testapp_pool(1, ""), "", 1);
    let mut raw = Raw::connect(corral.port);
    raw.send(b"GET /headers HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Request-Id: forged\r\nX-Forwarded-Proto: https\r\nX_Forwarded_For: 6.6.6.6\r\nSCRIPT_NAME: /admin\r\n\r\n");
    let answer = raw.response(false);
    assert_eq!(answer.status, 200);
    let seen = headers_seen(&answer);
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(seen["x-real-ip"], "127.0.0.1", "{seen}");
    assert_eq!(seen["x-forwarded-proto"], "http", "{seen}");
    for gone in ["forwarded", "x_forwarded_for", "script_name"] {
        assert!(
            seen.get(gone).is_none(),
            "{gone} reached the worker: {seen}"
        );
    }
    let id = seen["x-request-id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(id.len(), 32, "{seen}");
    assert_eq!(
        answer.header("x-request-id"),
        Some(id.as_str()),
        "{}",
        answer.head
    );
    assert_eq!(
        corral.metric("corral_untrusted_forwarded_fields_total"),
        7.0,
        "{}",
        corral.metrics()
    );
    // corral's own refusals carry an id too.
    raw.send(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n");
    let refused = raw.response(false);
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("x-request-id").map(str::len), Some(32));
}

#[test]
fn forward_fields_leaves_out_what_is_not_listed_and_still_removes_the_clients_own() {
    let corral = Corral::start(
        &testapp_pool(1, ""),
        "forward_fields = [\"X-Forwarded-For\", \"x-forwarded-proto\"]",
        1,
    );
    let mut raw = Raw::connect(corral.port);
    raw.send(b"GET /headers HTTP/1.1\r\nHost: t\r\nX-Real-IP: 6.6.6.6\r\nX-Request-Id: forged\r\nX-Forwarded-Port: 1\r\n\r\n");
    let answer = raw.response(false);
    assert_eq!(answer.status, 200);
    let seen = headers_seen(&answer);
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(seen["x-forwarded-proto"], "http", "{seen}");
    for gone in [
        "x-real-ip",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-request-id",
    ] {
        assert!(
            seen.get(gone).is_none(),
            "{gone} reached the worker: {seen}"
        );
    }
    // The id is still made, logged and answered; only the worker does not get it.
    assert_eq!(answer.header("x-request-id").map(str::len), Some(32));
    assert_eq!(
        corral.metric("corral_untrusted_forwarded_fields_total"),
        3.0,
        "{}",
        corral.metrics()
    );
}

/// corral on 127.0.0.1 and ::1 with the given `[server]` extras.
fn corral_on_both_stacks(server_extra: &str) -> (Corral, u16) {
    let (port, port6, admin) = (free_port(), free_port(), free_port());
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\", \"[::1]:{port6}\"]\nadmin = \"127.0.0.1:{admin}\"\ncontrol_socket = \"{{dir}}/control.sock\"\n{server_extra}\n[log]\nformat = \"json\"\n\n{}",
        testapp_pool(1, "")
    );
    let mut corral = Corral::spawn_with(&text, port, admin, &["run"], &[]);
    corral.wait_ready(1, Duration::from_secs(20));
    (corral, port6)
}

#[test]
fn a_trusted_proxy_names_the_client_and_an_untrusted_peer_cannot() {
    let (corral, port6) = corral_on_both_stacks("trusted_proxies = [\"127.0.0.2\", \"::1\"]");
    let to = SocketAddr::from(([127, 0, 0, 1], corral.port));
    let request = b"GET /headers HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.9, 127.0.0.2\r\nX-Forwarded-Proto: https\r\nX-Request-Id: lb-42\r\nUser-Agent: via-lb\r\n\r\n";

    let mut trusted = Raw::connect_from(loopback("127.0.0.2"), to);
    trusted.send(request);
    let answer = trusted.response(false);
    let seen = headers_seen(&answer);
    assert_eq!(seen["x-real-ip"], "203.0.113.9", "{seen}");
    assert_eq!(
        seen["x-forwarded-for"], "203.0.113.9, 127.0.0.2, 127.0.0.2",
        "{seen}"
    );
    assert_eq!(seen["x-forwarded-proto"], "https", "{seen}");
    assert_eq!(seen["x-request-id"], "lb-42", "{seen}");
    assert_eq!(answer.header("x-request-id"), Some("lb-42"));
    corral.wait_log(
        "the access line of the trusted request",
        Duration::from_secs(5),
        |e| {
            e["target"] == "corral::access"
                && e["user_agent"] == "via-lb"
                && e["client_ip"] == "203.0.113.9"
        },
    );

    let mut untrusted = Raw::connect_from(loopback("127.0.0.1"), to);
    untrusted.send(request);
    let seen = headers_seen(&untrusted.response(false));
    assert_eq!(seen["x-real-ip"], "127.0.0.1", "{seen}");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(seen["x-forwarded-proto"], "http", "{seen}");
    assert_ne!(seen["x-request-id"], "lb-42", "{seen}");

    let to6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port6));
    let mut six = Raw::connect_from(loopback("::1"), to6);
    six.send(b"GET /headers HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 2001:db8::9\r\n\r\n");
    let seen = headers_seen(&six.response(false));
    assert_eq!(seen["x-real-ip"], "2001:db8::9", "{seen}");
    assert_eq!(seen["x-forwarded-for"], "2001:db8::9, ::1", "{seen}");

    // `/status` resolves its own caller the same way, and says what it removed.
    let admin = SocketAddr::from(([127, 0, 0, 1], corral.admin));
    let status_as = |from: &str| {
        let mut raw = Raw::connect_from(loopback(from), admin);
        raw.send(b"GET /status HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\r\n");
        let answer = raw.response(false);
        let status: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
        status["edge"].clone()
    };
    let edge = status_as("127.0.0.2");
    assert_eq!(
        edge["trusted_proxies"],
        serde_json::json!(["127.0.0.2/32", "::1/128"])
    );
    assert_eq!(edge["you"]["peer"], "127.0.0.2", "{edge}");
    assert_eq!(edge["you"]["trusted_peer"], true, "{edge}");
    assert_eq!(edge["you"]["client_ip"], "203.0.113.9", "{edge}");
    assert_eq!(edge["you"]["scheme"], "https", "{edge}");
    assert!(
        edge["untrusted_forwarded_fields_removed"].as_u64() >= Some(3),
        "{edge}"
    );
    let edge = status_as("127.0.0.1");
    assert_eq!(edge["you"]["trusted_peer"], false, "{edge}");
    assert_eq!(edge["you"]["client_ip"], "127.0.0.1", "{edge}");
    assert_eq!(edge["you"]["scheme"], "http", "{edge}");
}

#[test]
fn the_strict_preset_and_set_fields_reach_the_client_and_versions_do_not() {
    let body = format!(
        "{}\n[headers]\npreset = \"strict\"\nset = {{ \"Content-Security-Policy\" = \"default-src 'self'\" }}\n",
        testapp_pool(1, "")
    );
    let corral = Corral::start(&body, "", 1);
    for path in ["/", "/chunked", "/status/404"] {
        let mut raw = Raw::connect(corral.port);
        raw.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let answer = raw.response(false);
        for (name, value) in [
            ("content-security-policy", "default-src 'self'"),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "strict-origin-when-cross-origin"),
        ] {
            assert_eq!(answer.header(name), Some(value), "{path}: {}", answer.head);
        }
        assert!(
            answer.header("strict-transport-security").is_none(),
            "no HSTS over http"
        );
        assert!(answer.header("server").is_none(), "{path}: {}", answer.head);
        assert!(
            answer.header("x-powered-by").is_none(),
            "{path}: {}",
            answer.head
        );
    }
    // corral's own answers show no version either.
    let (status, _) = get(&client(), &corral.url("/")).expect("request");
    assert_eq!(status, 200);
}

#[test]
fn proxy_protocol_names_the_client_and_a_connection_without_it_is_closed() {
    let corral = Corral::start(&testapp_pool(1, ""), "proxy_protocol = true", 1);
    let mut v1 = Raw::connect(corral.port);
    v1.send(b"PROXY TCP4 198.51.100.4 127.0.0.1 40000 80\r\nGET /headers HTTP/1.1\r\nHost: t\r\nUser-Agent: v1\r\n\r\n");
    let seen = headers_seen(&v1.response(false));
    assert_eq!(seen["x-real-ip"], "198.51.100.4", "{seen}");

    let mut v2 = Raw::connect(corral.port);
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend_from_slice(&[203, 0, 113, 77, 127, 0, 0, 1]);
    header.extend_from_slice(&40001u16.to_be_bytes());
    header.extend_from_slice(&80u16.to_be_bytes());
    header.extend_from_slice(b"GET /headers HTTP/1.1\r\nHost: t\r\nUser-Agent: v2\r\n\r\n");
    v2.send(&header);
    let seen = headers_seen(&v2.response(false));
    assert_eq!(seen["x-real-ip"], "203.0.113.77", "{seen}");
    corral.wait_log(
        "the access line of the v2 request",
        Duration::from_secs(5),
        |e| {
            e["target"] == "corral::access"
                && e["user_agent"] == "v2"
                && e["client_ip"] == "203.0.113.77"
        },
    );

    let mut bare = Raw::connect(corral.port);
    bare.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(
        bare.closed(),
        "a connection without a PROXY header is closed: {:?}",
        String::from_utf8_lossy(&bare.buf)
    );
}

#[test]
fn slowloris_clients_are_closed_at_header_timeout_while_others_are_served() {
    let corral = Corral::start(
        &testapp_pool(2, ""),
        "[server.limits]\nheader_timeout = \"3s\"",
        2,
    );
    let port = corral.port;
    let slow: Vec<_> = (0..5)
        .map(|_| {
            std::thread::spawn(move || {
                let mut raw = Raw::connect(port);
                let start = Instant::now();
                for byte in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: 1234567890\r\n".iter() {
                    if raw.stream.write_all(&[*byte]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    if start.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                }
                let _ = raw.stream.set_read_timeout(Some(Duration::from_secs(1)));
                let closed = raw.closed();
                (closed, start.elapsed())
            })
        })
        .collect();
    let url = corral.url("/");
    let fast: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = client();
                (0..25)
                    .filter(|_| matches!(get(&agent, &url), Ok((200, _))))
                    .count()
            })
        })
        .collect();
    let served: usize = fast.into_iter().map(|t| t.join().expect("client")).sum();
    assert_eq!(served, 100);
    for t in slow {
        let (closed, after) = t.join().expect("slow client");
        assert!(closed, "a slowloris connection stayed open");
        assert!(
            after >= Duration::from_secs(3) && after < Duration::from_secs(8),
            "closed after {after:?}"
        );
    }
}

#[test]
fn a_connection_over_max_connections_gets_503_and_is_closed() {
    let corral = Corral::start(&testapp_pool(1, ""), "max_connections = 2", 1);
    let mut open: Vec<Raw> = (0..2).map(|_| Raw::connect(corral.port)).collect();
    for raw in &mut open {
        raw.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(raw.response(false).status, 200);
    }
    let mut third = Raw::connect(corral.port);
    let refused = third.response(false);
    assert_eq!(refused.status, 503, "{}", refused.head);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(third.closed());
    assert_eq!(corral.metric("corral_connections_refused_total"), 1.0);
    // A freed place is taken again.
    drop(open.pop());
    support::wait_for("a freed connection slot", Duration::from_secs(5), || {
        let mut next = Raw::connect(corral.port);
        next.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        (next.response(false).status == 200).then_some(())
    });
}
