//! The byte path and the header-map path give the worker the same fields, and the rules
//! hold on both: forged forwarded fields and hop-by-hop fields never reach a worker.

use http::Version;
use pingora_http::{RequestHeader, ResponseHeader};
use proptest::prelude::*;

use super::*;
use crate::forward::identity::Peer;
use corral_config::{HeaderPreset, Headers};

const NAMES: [&str; 23] = [
    "Host",
    "Accept",
    "User-Agent",
    "Cookie",
    "X-Forwarded-For",
    "x-forwarded-proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "Forwarded",
    "X-Real-IP",
    "X-Request-Id",
    "Connection",
    "Keep-Alive",
    "TE",
    "Trailer",
    "Proxy-Connection",
    "X-Secret",
    "Expect",
    "X_Forwarded_For",
    "x-custom",
    "X_Request_Id",
    "SCRIPT_NAME",
    "x_real-ip",
];
const VALUES: [&str; 9] = [
    "a",
    "10.0.0.1",
    "close",
    "keep-alive",
    "X-Secret, close",
    "te, x-custom",
    "x, y",
    "100-continue",
    "trailers",
];

fn ctx(https: bool, request_id: &'static str) -> AnswerContext<'static> {
    AnswerContext {
        https,
        request_id,
        extra: &[],
    }
}

fn client() -> ClientIdentity {
    let peer = Peer {
        addr: Some([127, 0, 0, 9].into()),
        local_port: Some(8080),
        tls: false,
    };
    ClientIdentity::of_peer(peer, &[])
}

/// The raw head as a client would send it, and the header pingora would parse from it.
fn request(method: &str, fields: &[(usize, usize)]) -> (Vec<u8>, RequestHeader) {
    let mut raw = format!("{method} /p?q=1 HTTP/1.1\r\n");
    let mut head = RequestHeader::build(method, b"/p?q=1", None).expect("head");
    head.set_version(Version::HTTP_11);
    for &(n, v) in fields {
        raw.push_str(&format!("{}: {}\r\n", NAMES[n], VALUES[v]));
        head.append_header(NAMES[n].to_string(), VALUES[v])
            .expect("field");
    }
    raw.push_str("\r\n");
    (raw.into_bytes(), head)
}

/// Fields of a request head as (lower-case name, value), sorted.
fn fields_of_bytes(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut storage);
    assert!(parsed.parse(bytes).expect("parses").is_complete());
    let mut out: Vec<(String, Vec<u8>)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    out.sort();
    out
}

fn fields_of_head(head: &RequestHeader) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = head
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    out.sort();
    out
}

proptest! {
    #[test]
    fn both_paths_give_the_worker_the_same_fields(
        method in prop::sample::select(vec!["GET", "DELETE", "OPTIONS", "POST"]),
        fields in prop::collection::vec((0..NAMES.len(), 0..VALUES.len()), 0..14),
        mask in prop_oneof![Just(ForwardMask::ALL.0), 0u8..64],
    ) {
        let (raw, head) = request(method, &fields);
        let send = ForwardMask(mask);
        let bytes = request_bytes(&head, Some(&raw), &client(), "rid", send).expect("a plain request");
        let by_bytes = fields_of_bytes(&bytes.head);
        let map = request_head(&head, &client(), "rid", false, send).expect("head");
        let by_map = fields_of_head(&map.head);
        prop_assert_eq!(&by_bytes, &by_map);
        prop_assert_eq!(bytes.forged, map.forged);
        prop_assert_eq!(bytes.underscored, map.underscored);
        // Every forwarding field the untrusted client sent, in any spelling, is counted.
        let forging = fields.iter().filter(|(n, _)| {
            let n = NAMES[*n].to_ascii_lowercase().replace('_', "-");
            n.starts_with("x-forwarded") || ["forwarded", "x-real-ip", "x-request-id", "script-name"].contains(&n.as_str())
        }).count();
        prop_assert_eq!(bytes.forged as usize, forging);
        // Whatever the client sent, each forwarded field is corral's, once, or (left out of
        // `forward_fields`) not there at all.
        for (bit, name, value) in [
            (0, "x-forwarded-for", &b"127.0.0.9"[..]),
            (1, "x-real-ip", b"127.0.0.9"),
            (2, "x-forwarded-proto", b"http"),
            (4, "x-forwarded-port", b"8080"),
            (5, "x-request-id", b"rid"),
        ] {
            let values: Vec<&[u8]> = by_bytes.iter().filter(|f| f.0 == name).map(|f| &f.1[..]).collect();
            let expected = if send.sends(bit) { vec![value] } else { vec![] };
            prop_assert_eq!(values, expected);
        }
        if !send.sends(3) {
            prop_assert!(by_bytes.iter().all(|f| f.0 != "x-forwarded-host"));
        }
        for gone in ["forwarded", "connection", "keep-alive", "te", "trailer", "proxy-connection", "expect", "x_forwarded_for", "x_request_id", "script_name", "x_real-ip"] {
            prop_assert!(by_bytes.iter().all(|f| f.0 != gone), "{} reached the worker", gone);
        }
        // A field the client's Connection names is hop-by-hop.
        let named: Vec<String> = head.headers.get_all("connection").iter()
            .flat_map(|v| named_in(Some(v)).map(str::to_ascii_lowercase).collect::<Vec<_>>())
            .collect();
        prop_assert!(by_bytes.iter().all(|f| !named.contains(&f.0)));
    }
}

#[test]
fn requests_that_need_the_session_take_the_header_map_path() {
    let (raw, mut head) = request("GET", &[(0, 0)]);
    head.set_version(Version::HTTP_10);
    assert!(request_bytes(&head, Some(&raw), &client(), "r", ForwardMask::ALL).is_none());
    let (raw, head) = request("HEAD", &[(0, 0)]);
    assert!(request_bytes(&head, Some(&raw), &client(), "r", ForwardMask::ALL).is_none());
    let folded = b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n";
    let (_, head) = request("GET", &[(0, 0)]);
    assert!(request_bytes(&head, Some(folded), &client(), "r", ForwardMask::ALL).is_none());
}

#[test]
fn http_1_0_keeps_its_connection_fields_and_an_upgrade_its_handshake() {
    let (_, mut head) = request("GET", &[(11, 3), (12, 0)]);
    head.set_version(Version::HTTP_10);
    let out = request_head(&head, &client(), "r", false, ForwardMask::ALL).expect("head");
    assert_eq!(
        out.head.headers.get("connection").map(|v| v.as_bytes()),
        Some(&b"keep-alive"[..])
    );
    assert!(out.head.headers.contains_key("keep-alive"));

    let mut head = RequestHeader::build("GET", b"/ws", None).expect("head");
    head.append_header("Connection", "Upgrade, X-Secret")
        .expect("field");
    head.append_header("Upgrade", "websocket").expect("field");
    head.append_header("X-Secret", "s").expect("field");
    let out = request_head(&head, &client(), "r", true, ForwardMask::ALL).expect("head");
    assert!(out.head.headers.contains_key("upgrade"));
    assert!(out.head.headers.contains_key("connection"));
    assert!(!out.head.headers.contains_key("x-secret"));
}

#[test]
fn answers_lose_connection_fields_and_versions_but_a_101_keeps_its_handshake() {
    let rules = AnswerRules::new(&Headers {
        remove: vec!["Server".into()],
        ..Headers::default()
    });
    let mut answer = ResponseHeader::build(200, None).expect("answer");
    for (n, v) in [
        ("Connection", "X-Trace, keep-alive"),
        ("X-Trace", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Date", "old"),
        ("X-App", "a"),
        ("Server", "gunicorn/23"),
        ("X-Request-Id", "echoed"),
        ("Transfer-Encoding", "chunked"),
    ] {
        answer.append_header(n.to_string(), v).expect("field");
    }
    rules.apply(&mut answer, &ctx(false, "rid")).expect("apply");
    let left: Vec<(&str, &[u8])> = answer
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    assert_eq!(
        left,
        [
            ("x-app", &b"a"[..]),
            ("transfer-encoding", b"chunked"),
            ("x-request-id", b"rid")
        ]
    );
    let mut switching = ResponseHeader::build(101, None).expect("answer");
    switching
        .append_header("Connection", "upgrade")
        .expect("field");
    switching.append_header("Server", "x/1").expect("field");
    rules
        .apply(&mut switching, &ctx(false, "rid"))
        .expect("apply");
    assert!(switching.headers.contains_key("connection"));
    assert!(!switching.headers.contains_key("server"));
    assert_eq!(rules.field(b"Transfer-Encoding"), AnswerField::Framing);
    assert_eq!(rules.field(b"DATE"), AnswerField::Drop);
    assert_eq!(rules.field(b"server"), AnswerField::Drop);
    assert_eq!(rules.field(b"content-type"), AnswerField::Keep);
}

#[test]
fn the_strict_preset_fills_in_what_the_worker_did_not_send() {
    let rules = AnswerRules::new(&Headers {
        preset: HeaderPreset::Strict,
        set: vec![(
            "Content-Security-Policy".into(),
            "default-src 'self'".into(),
        )],
        remove: Vec::new(),
    });
    let mut answer = ResponseHeader::build(200, None).expect("answer");
    answer
        .append_header("X-Frame-Options", "SAMEORIGIN")
        .expect("field");
    answer
        .append_header("Content-Security-Policy", "worker's")
        .expect("field");
    rules.apply(&mut answer, &ctx(false, "")).expect("apply");
    let get = |n: &str| {
        answer
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(
        get("x-frame-options").as_deref(),
        Some("SAMEORIGIN"),
        "the worker's own stands"
    );
    assert_eq!(
        get("content-security-policy").as_deref(),
        Some("default-src 'self'"),
        "set replaces"
    );
    assert_eq!(get("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(
        get("referrer-policy").as_deref(),
        Some("strict-origin-when-cross-origin")
    );
    assert!(
        get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
    let mut secure = ResponseHeader::build(200, None).expect("answer");
    rules.apply(&mut secure, &ctx(true, "")).expect("apply");
    assert!(secure.headers.contains_key("strict-transport-security"));
    // The byte path adds the same fields.
    let context = ctx(false, "rid");
    let added: Vec<&str> = rules.added(0b0100, &context).map(|(n, _)| n).collect();
    assert_eq!(
        added,
        [
            "Content-Security-Policy",
            "X-Content-Type-Options",
            "Referrer-Policy",
            "X-Request-Id"
        ]
    );
}
