//! The one place that decides which header fields are added, replaced and removed: on the
//! way in (the client's request as the worker gets it) and on the way out (the worker's
//! answer as the client gets it). Both the byte path (heads copied line by line, the common
//! case) and the header-map path (pingora's sessions, for everything else) ask these rules,
//! so the two cannot drift apart; a property test holds them to the same result.

use bytes::BytesMut;
use http::header::{HeaderName, HeaderValue, CONNECTION, HOST, UPGRADE};
use http::{Method, Version};
use pingora_http::{RequestHeader, ResponseHeader};

use super::identity::ClientIdentity;

/// Fields a client could use to forge where a request came from, and the request id corral
/// sets: always replaced by corral's own.
const REPLACED: [&str; 7] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "x-real-ip",
    "x-request-id",
];

/// Fields that describe one connection rather than the message (RFC 9110 7.6.1), besides
/// `Connection` itself and what it names. `Transfer-Encoding` is one too, but pingora's
/// sessions frame bodies by it and set it anew.
const HOP_BY_HOP: [&str; 4] = ["keep-alive", "proxy-connection", "te", "trailer"];

/// What the request's own head says about how its fields are treated.
#[derive(Clone, Copy)]
pub(super) struct RequestRules<'a> {
    /// The client's head: the names its `Connection` fields list are hop-by-hop.
    head: &'a RequestHeader,
    /// An upgrade keeps `Connection: upgrade` and `Upgrade`: they are the handshake.
    upgrade: bool,
    /// HTTP/1.0 keeps its connection fields: without `Connection: keep-alive` the worker
    /// would close after every request.
    keep_hops: bool,
}

impl<'a> RequestRules<'a> {
    pub(super) fn of(head: &'a RequestHeader, upgrade: bool) -> Self {
        let old = matches!(head.version, Version::HTTP_10 | Version::HTTP_09);
        RequestRules {
            head,
            upgrade,
            keep_hops: !upgrade && old,
        }
    }

    /// Whether the client's field `name` reaches the worker.
    pub(super) fn keeps(&self, name: &[u8]) -> bool {
        let is = |n: &str| n.as_bytes().eq_ignore_ascii_case(name);
        // corral answers `Expect: 100-continue` itself.
        if REPLACED.iter().any(|n| is(n)) || is("expect") {
            return false;
        }
        if self.keep_hops {
            return true;
        }
        if is("connection") {
            return self.upgrade;
        }
        if HOP_BY_HOP.iter().any(|n| is(n)) {
            return false;
        }
        !self
            .head
            .headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|value| named_in(Some(value)))
            .any(|n| is(n) && !(self.upgrade && is("upgrade")))
    }
}

/// The fields corral adds to every request, in order, with their values; `None` where the
/// value is unknown (no peer address, no `Host`).
pub(super) fn forwarded<'a>(
    client: &'a ClientIdentity,
    host: Option<&'a HeaderValue>,
    request_id: &'a str,
) -> [(&'static str, Option<&'a [u8]>); 6] {
    let ip = client.ip.as_ref().map(HeaderValue::as_bytes);
    [
        ("X-Forwarded-For", ip),
        ("X-Real-IP", ip),
        ("X-Forwarded-Proto", Some(client.proto.as_bytes())),
        ("X-Forwarded-Host", host.map(HeaderValue::as_bytes)),
        (
            "X-Forwarded-Port",
            client.port.as_ref().map(HeaderValue::as_bytes),
        ),
        ("X-Request-Id", Some(request_id.as_bytes())),
    ]
}

/// The request for the worker as bytes, for the common case of an HTTP/1.1 request without
/// upgrade or `HEAD` (the caller checks it has no body): the client's own header lines are
/// copied as the rules allow and the forwarded fields appended, with no header map cloned
/// or edited. `None` when the head needs the header-map path.
pub(super) fn request_bytes(
    head: &RequestHeader,
    raw: &[u8],
    client: &ClientIdentity,
    request_id: &str,
) -> Option<BytesMut> {
    if head.version != Version::HTTP_11
        || head.method == Method::HEAD
        || head.headers.contains_key(UPGRADE)
    {
        return None;
    }
    let rules = RequestRules::of(head, false);
    let mut out = BytesMut::with_capacity(raw.len() + 200);
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(head.raw_path());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for line in raw.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        // A line without a name (a folded continuation) takes the header-map path.
        let name = &line[..line.iter().position(|&b| b == b':')?];
        if rules.keeps(name) {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    for (name, value) in forwarded(client, head.headers.get(HOST), request_id) {
        if let Some(value) = value {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// The request for the worker as a header for pingora's session: the client's head with
/// the fields the rules drop removed and the forwarded fields added.
pub(super) fn request_head(
    head: &RequestHeader,
    client: &ClientIdentity,
    request_id: &str,
    upgrade: bool,
) -> pingora_error::Result<Box<RequestHeader>> {
    let mut out = Box::new(head.clone());
    let rules = RequestRules::of(head, upgrade);
    let dropped: Vec<HeaderName> = head
        .headers
        .keys()
        .filter(|name| !rules.keeps(name.as_str().as_bytes()))
        .cloned()
        .collect();
    for name in &dropped {
        out.remove_header(name);
    }
    for (name, value) in forwarded(client, head.headers.get(HOST), request_id) {
        if let Some(value) = value {
            out.append_header(name, value)?;
        }
    }
    Ok(out)
}

/// What becomes of one field of a worker's answer on its way to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AnswerField {
    /// Passed on as the worker wrote it.
    Keep,
    /// Left out: it describes the worker's connection, or corral writes its own
    /// (`Connection`, `Date`).
    Drop,
    /// It frames the body or the connection (`Transfer-Encoding`, `Upgrade`): pingora's
    /// session must handle the answer.
    Framing,
}

/// Fields of an answer that corral leaves out.
const ANSWER_DROPPED: [&str; 6] = [
    "connection",
    "keep-alive",
    "date",
    "te",
    "trailer",
    "proxy-connection",
];

/// The rule for the answer field `name` (the names `Connection` lists come on top).
pub(super) fn answer_field(name: &[u8]) -> AnswerField {
    let is = |n: &str| n.as_bytes().eq_ignore_ascii_case(name);
    if ANSWER_DROPPED.iter().any(|n| is(n)) {
        AnswerField::Drop
    } else if is("transfer-encoding") || is("upgrade") {
        AnswerField::Framing
    } else {
        AnswerField::Keep
    }
}

/// Applies the answer rules to a header for pingora's session (which writes its own `Date`
/// and `Connection`). A 101 keeps every field: they are the handshake.
pub(super) fn strip_answer(answer: &mut ResponseHeader) {
    if answer.status == 101 {
        return;
    }
    let connection: Vec<HeaderValue> = answer.headers.get_all(CONNECTION).iter().cloned().collect();
    for name in connection.iter().flat_map(|value| named_in(Some(value))) {
        answer.remove_header(name);
    }
    for name in ANSWER_DROPPED {
        answer.remove_header(name);
    }
}

/// The field names a `Connection` field lists (its other tokens, like `close`, name no field
/// that is present).
pub(super) fn named_in(connection: Option<&HeaderValue>) -> impl Iterator<Item = &str> {
    connection
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests;
