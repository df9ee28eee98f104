//! The heads corral writes: the request as the worker gets it (forwarded fields replaced,
//! hop-by-hop fields dropped) and the answer as the client gets it, and what a head says
//! about framing and upgrades.

use bytes::BytesMut;
use http::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING, UPGRADE,
};
use http::{Method, Version};
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_http::{RequestHeader, ResponseHeader};

use super::ConnInfo;
use crate::limits;

/// Headers a client could use to forge where a request came from; always replaced.
/// Parsed names, so removing them hashes without parsing.
const FORWARDED_HEADERS: [HeaderName; 6] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-real-ip"),
];

/// The request as the worker gets it: forwarded headers replaced, a request id added, and
/// hop-by-hop fields of this connection left out (corral keeps its own connection to the
/// worker open; it answers `Expect: 100-continue` itself).
/// The request for the worker as bytes, for the common case of an HTTP/1.1 request without
/// body, upgrade or `HEAD`: the client's own header lines are copied (minus the forwarded and
/// hop-by-hop ones) and the forwarded fields appended, with no header map cloned or edited.
/// `None` when the head needs the general path.
pub(super) fn plain_request_bytes(
    client: &mut DownstreamSession,
    conn: &ConnInfo,
    request_id: &str,
) -> Option<BytesMut> {
    if !client.is_body_empty() {
        return None;
    }
    let head = client.req_header();
    if head.version != Version::HTTP_11
        || head.method == Method::HEAD
        || head.headers.contains_key(UPGRADE)
    {
        return None;
    }
    let raw = client.get_headers_raw_bytes();
    let connection = head.headers.get(CONNECTION);
    let mut out = BytesMut::with_capacity(raw.len() + 200);
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(head.raw_path());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut lines = raw.split(|&b| b == b'\n').skip(1);
    for line in &mut lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        // A line without a name (a folded continuation) takes the general path.
        let name = &line[..line.iter().position(|&b| b == b':')?];
        if !is_dropped(name, connection) {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    let mut field = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    if let Some(ip) = &conn.ip {
        field(b"X-Forwarded-For", ip.as_bytes());
        field(b"X-Real-IP", ip.as_bytes());
    }
    field(b"X-Forwarded-Proto", b"http");
    if let Some(host) = head.headers.get(HOST) {
        field(b"X-Forwarded-Host", host.as_bytes());
    }
    if let Some(port) = &conn.port {
        field(b"X-Forwarded-Port", port.as_bytes());
    }
    field(b"X-Request-Id", request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// Whether a client header line named `name` stays out of the worker's request.
fn is_dropped(name: &[u8], connection: Option<&HeaderValue>) -> bool {
    name.eq_ignore_ascii_case(b"connection")
        || FORWARDED_HEADERS
            .iter()
            .chain(HOP_BY_HOP.iter())
            .any(|h| h.as_str().as_bytes().eq_ignore_ascii_case(name))
        || named_in(connection).any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

pub(super) fn upstream_head(
    client: &DownstreamSession,
    conn: &ConnInfo,
    request_id: &str,
    upgrade: bool,
) -> pingora_error::Result<Box<RequestHeader>> {
    let mut head = Box::new(client.req_header().clone());
    for name in &FORWARDED_HEADERS {
        head.remove_header(name);
    }
    if let Some(ip) = &conn.ip {
        head.insert_header("x-forwarded-for", ip.clone())?;
        head.insert_header("x-real-ip", ip.clone())?;
    }
    head.insert_header("x-forwarded-proto", HeaderValue::from_static("http"))?;
    if let Some(host) = client.get_header(HOST).cloned() {
        head.insert_header("x-forwarded-host", host)?;
    }
    if let Some(port) = &conn.port {
        head.insert_header("x-forwarded-port", port.clone())?;
    }
    head.insert_header("x-request-id", request_id)?;
    // An HTTP/1.0 request keeps its `Connection: keep-alive`: without it the worker closes.
    if upgrade || head.version == Version::HTTP_11 {
        let connection = if upgrade {
            head.headers.get(CONNECTION).cloned()
        } else {
            head.remove_header(&CONNECTION)
        };
        for name in named_in(connection.as_ref()) {
            if !(upgrade && name.eq_ignore_ascii_case("upgrade")) {
                head.remove_header(name);
            }
        }
        for name in &HOP_BY_HOP {
            head.remove_header(name);
        }
    }
    if expects_continue(&head) {
        head.remove_header(&EXPECT);
    }
    Ok(head)
}

/// Fields that describe one connection rather than the message (RFC 9110 7.6.1).
/// `Transfer-Encoding` is one too, but pingora's sessions frame bodies by it and set it anew.
const HOP_BY_HOP: [HeaderName; 4] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("te"),
    HeaderName::from_static("trailer"),
];

/// The field names a `Connection` field lists (its other tokens, like `close`, name no field
/// that is present).
fn named_in(connection: Option<&HeaderValue>) -> impl Iterator<Item = &str> {
    connection
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

/// Takes the worker's hop-by-hop fields off its answer; pingora writes the client's
/// `Connection` field itself. A 101 keeps them: they are the handshake.
pub(super) fn strip_answer_hops(answer: &mut ResponseHeader) {
    if answer.status == 101 {
        return;
    }
    let connection = answer.remove_header(&CONNECTION);
    for name in named_in(connection.as_ref()) {
        answer.remove_header(name);
    }
    for name in &HOP_BY_HOP {
        answer.remove_header(name);
    }
}

/// Whether `answer` has a body that only the worker closing its connection ends, for a client
/// that could take it chunked instead (HTTP/1.1, not `HEAD`).
pub(super) fn ends_by_closing(answer: &ResponseHeader, request: &RequestHeader) -> bool {
    let status = answer.status.as_u16();
    request.version == Version::HTTP_11
        && request.method != Method::HEAD
        && (200..600).contains(&status)
        && !matches!(status, 204 | 304)
        && !answer.headers.contains_key(TRANSFER_ENCODING)
        && !answer.headers.contains_key(CONTENT_LENGTH)
}

pub(super) fn expects_continue(head: &RequestHeader) -> bool {
    head.headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

pub(super) fn is_upgrade(head: &RequestHeader) -> bool {
    head.headers.contains_key(http::header::UPGRADE)
}

/// A request whose raw head had both `Transfer-Encoding` and `Content-Length` (pingora
/// drops the length and lets the coding win; corral refuses such requests).
pub(super) fn smuggled_length(client: &DownstreamSession) -> Option<limits::Refusal> {
    if !client.req_header().headers.contains_key(TRANSFER_ENCODING) {
        return None;
    }
    limits::raw_has_content_length(&client.get_headers_raw_bytes()).then_some(limits::Refusal {
        status: 400,
        reason: "both Content-Length and Transfer-Encoding",
    })
}
