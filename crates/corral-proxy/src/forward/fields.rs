//! The one place that decides which header fields are added, replaced and removed: on the
//! way in (the client's request as the worker gets it) and on the way out (the worker's
//! answer as the client gets it). Both the byte path (heads copied line by line, the common
//! case) and the header-map path (pingora's sessions, for everything else) ask these rules,
//! so the two cannot drift apart; a property test holds them to the same result.

use bytes::BytesMut;
use corral_config::{HeaderPreset, Headers};
use http::header::{HeaderName, HeaderValue, CONNECTION, HOST, UPGRADE};
use http::{Method, Version};
use pingora_http::{RequestHeader, ResponseHeader};

use super::identity::ClientIdentity;

/// Fields a client could use to forge where a request came from, and the request id corral
/// sets: always replaced by corral's own (from a trusted proxy, corral's own values are
/// worked out from them first, see `identity`).
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

/// Whether field `name` is `known`, where WSGI and CGI servers would read it as such: they
/// fold `-` and `_` into one, so `X_Forwarded_For` is `X-Forwarded-For` to them.
fn is_spelling_of(name: &[u8], known: &str) -> bool {
    name.len() == known.len()
        && name.iter().zip(known.bytes()).all(|(&a, b)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            a == b
        })
}

/// What becomes of one field of the client's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// It reaches the worker.
    Keep,
    /// It is left out (corral's own replaces it, or it is hop-by-hop).
    Drop,
    /// It is left out, and it was a forwarding field from a peer that is not trusted: a
    /// forgery or a misconfiguration, counted and logged.
    Forged,
}

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
    /// The peer is a trusted proxy: its `SCRIPT_NAME` may pass.
    trusted_peer: bool,
}

impl<'a> RequestRules<'a> {
    pub(super) fn of(head: &'a RequestHeader, upgrade: bool, trusted_peer: bool) -> Self {
        let old = matches!(head.version, Version::HTTP_10 | Version::HTTP_09);
        RequestRules {
            head,
            upgrade,
            keep_hops: !upgrade && old,
            trusted_peer,
        }
    }

    /// What becomes of the client's field `name`.
    pub(super) fn fate(&self, name: &[u8]) -> Fate {
        let forged = if self.trusted_peer {
            Fate::Drop
        } else {
            Fate::Forged
        };
        if REPLACED.iter().any(|n| is_spelling_of(name, n)) {
            // Underscore spellings are forgeries even from a trusted proxy: no proxy writes them.
            let exact = REPLACED
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
            return if exact { forged } else { Fate::Forged };
        }
        if is_spelling_of(name, "script-name") && !self.trusted_peer {
            return Fate::Forged;
        }
        let is = |n: &str| n.as_bytes().eq_ignore_ascii_case(name);
        // corral answers `Expect: 100-continue` itself.
        if is("expect") {
            return Fate::Drop;
        }
        if self.keep_hops {
            return Fate::Keep;
        }
        if is("connection") {
            return if self.upgrade { Fate::Keep } else { Fate::Drop };
        }
        if HOP_BY_HOP.iter().any(|n| is(n)) {
            return Fate::Drop;
        }
        let named = self
            .head
            .headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|value| named_in(Some(value)))
            .any(|n| is(n) && !(self.upgrade && is("upgrade")));
        if named {
            Fate::Drop
        } else {
            Fate::Keep
        }
    }
}

/// The fields corral adds to every request, in order, with their values; `None` where the
/// value is unknown (no peer address, no `Host`).
pub(super) fn forwarded<'a>(
    client: &'a ClientIdentity,
    head: &'a RequestHeader,
    request_id: &'a str,
) -> [(&'static str, Option<&'a [u8]>); 6] {
    let host = client.host.as_ref().or_else(|| head.headers.get(HOST));
    [
        (
            "X-Forwarded-For",
            client.forwarded_for.as_ref().map(HeaderValue::as_bytes),
        ),
        ("X-Real-IP", client.ip.as_ref().map(HeaderValue::as_bytes)),
        ("X-Forwarded-Proto", Some(client.proto.as_bytes())),
        ("X-Forwarded-Host", host.map(HeaderValue::as_bytes)),
        (
            "X-Forwarded-Port",
            client.port.as_ref().map(HeaderValue::as_bytes),
        ),
        ("X-Request-Id", Some(request_id.as_bytes())),
    ]
}

/// A request as the worker gets it, with the number of forged fields left out.
pub(super) struct Outbound<T> {
    pub(super) head: T,
    pub(super) forged: u32,
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
) -> Option<Outbound<BytesMut>> {
    if head.version != Version::HTTP_11
        || head.method == Method::HEAD
        || head.headers.contains_key(UPGRADE)
    {
        return None;
    }
    let rules = RequestRules::of(head, false, client.trusted_peer);
    let mut forged = 0;
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
        match rules.fate(name) {
            Fate::Keep => {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
            Fate::Drop => {}
            Fate::Forged => forged += 1,
        }
    }
    for (name, value) in forwarded(client, head, request_id) {
        if let Some(value) = value {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    Some(Outbound { head: out, forged })
}

/// The request for the worker as a header for pingora's session: the client's head with
/// the fields the rules drop removed and the forwarded fields added.
pub(super) fn request_head(
    head: &RequestHeader,
    client: &ClientIdentity,
    request_id: &str,
    upgrade: bool,
) -> pingora_error::Result<Outbound<Box<RequestHeader>>> {
    let mut out = Box::new(head.clone());
    let rules = RequestRules::of(head, upgrade, client.trusted_peer);
    let mut forged = 0;
    let mut dropped: Vec<&HeaderName> = Vec::new();
    for (name, _) in head.headers.iter() {
        match rules.fate(name.as_str().as_bytes()) {
            Fate::Keep => {}
            Fate::Drop => dropped.push(name),
            Fate::Forged => {
                forged += 1;
                dropped.push(name);
            }
        }
    }
    for name in dropped {
        out.remove_header(name);
    }
    for (name, value) in forwarded(client, head, request_id) {
        if let Some(value) = value {
            out.append_header(name, value)?;
        }
    }
    Ok(Outbound { head: out, forged })
}

/// What becomes of one field of a worker's answer on its way to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AnswerField {
    /// Passed on as the worker wrote it.
    Keep,
    /// Left out: it describes the worker's connection, corral writes its own (`Connection`,
    /// `Date`, `X-Request-Id`, the `[headers] set` ones), or `[headers] remove` names it.
    Drop,
    /// It frames the body or the connection (`Transfer-Encoding`, `Upgrade`): pingora's
    /// session must handle the answer.
    Framing,
}

/// The fields of `preset = "strict"`: name, value, and whether only for https clients.
const STRICT: [(&str, &str, bool); 4] = [
    (
        "Strict-Transport-Security",
        "max-age=31536000; includeSubDomains",
        true,
    ),
    ("X-Content-Type-Options", "nosniff", false),
    ("X-Frame-Options", "DENY", false),
    ("Referrer-Policy", "strict-origin-when-cross-origin", false),
];

/// Fields of an answer that corral always leaves out.
const ANSWER_DROPPED: [&str; 7] = [
    "connection",
    "keep-alive",
    "date",
    "te",
    "trailer",
    "proxy-connection",
    "x-request-id",
];

/// A field the `[headers]` preset adds where the worker sent none.
#[derive(Debug, Clone)]
struct PresetField {
    name: HeaderName,
    /// The name as written on the wire.
    display: &'static str,
    value: HeaderValue,
    /// HSTS means nothing over plain HTTP (RFC 6797 7.2): only for https clients.
    https_only: bool,
}

/// The `[headers]` rules, made once per config: what every answer loses and gains.
#[derive(Debug, Clone, Default)]
pub(crate) struct AnswerRules {
    /// Lower-case names the answer loses: `remove`, and the `set` names (replaced).
    removed: Vec<String>,
    /// Name as the config wrote it, and value.
    set: Vec<(String, HeaderValue)>,
    preset: Vec<PresetField>,
}

impl AnswerRules {
    /// The rules of a config's `[headers]` table (validated there).
    pub(crate) fn new(headers: &Headers) -> AnswerRules {
        let set: Vec<(String, HeaderValue)> = headers
            .set
            .iter()
            .filter(|(n, _)| HeaderName::from_bytes(n.as_bytes()).is_ok())
            .filter_map(|(n, v)| Some((n.clone(), HeaderValue::from_str(v).ok()?)))
            .collect();
        let mut removed: Vec<String> = headers
            .remove
            .iter()
            .chain(set.iter().map(|(n, _)| n))
            .map(|n| n.to_ascii_lowercase())
            .collect();
        removed.sort_unstable();
        removed.dedup();
        let preset = match headers.preset {
            HeaderPreset::None => Vec::new(),
            HeaderPreset::Strict => STRICT
                .iter()
                .map(|&(display, value, https_only)| PresetField {
                    name: HeaderName::from_bytes(display.as_bytes())
                        .unwrap_or(HeaderName::from_static("x-preset")),
                    display,
                    value: HeaderValue::from_static(value),
                    https_only,
                })
                .filter(|p| !removed.iter().any(|r| r == p.name.as_str()))
                .collect(),
        };
        AnswerRules {
            removed,
            set,
            preset,
        }
    }

    /// The rule for the answer field `name` (the names `Connection` lists come on top).
    pub(super) fn field(&self, name: &[u8]) -> AnswerField {
        let is = |n: &str| n.as_bytes().eq_ignore_ascii_case(name);
        if ANSWER_DROPPED.iter().any(|n| is(n)) || self.removed.iter().any(|n| is(n)) {
            AnswerField::Drop
        } else if is("transfer-encoding") || is("upgrade") {
            AnswerField::Framing
        } else {
            AnswerField::Keep
        }
    }

    /// Which preset field `name` is, if any: the worker's own then stands.
    pub(super) fn preset_index(&self, name: &[u8]) -> Option<usize> {
        self.preset
            .iter()
            .position(|p| p.name.as_str().as_bytes().eq_ignore_ascii_case(name))
    }

    /// The fields corral adds to an answer, in order: the `set` ones, the preset ones the
    /// worker did not send (`sent` has bit i for preset field i), the request's own (the
    /// rate limit state) and the request id.
    pub(super) fn added<'a>(
        &'a self,
        sent: u32,
        ctx: &'a AnswerContext<'a>,
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        let set = self.set.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
        let https = ctx.https;
        let preset = self
            .preset
            .iter()
            .enumerate()
            .filter(move |(i, p)| sent & (1 << i) == 0 && (https || !p.https_only))
            .map(|(_, p)| (p.display, p.value.as_bytes()));
        let extra = ctx.extra.iter().map(|(n, v)| (*n, v.as_bytes()));
        let id =
            (!ctx.request_id.is_empty()).then_some(("X-Request-Id", ctx.request_id.as_bytes()));
        set.chain(preset).chain(extra).chain(id)
    }

    /// Applies the rules to a header for pingora's session (which writes its own `Date`
    /// and `Connection`). A 101 keeps its handshake fields; it still loses what `remove`
    /// names and gets the request id.
    pub(super) fn apply(
        &self,
        answer: &mut ResponseHeader,
        ctx: &AnswerContext,
    ) -> pingora_error::Result<()> {
        if answer.status != 101 {
            let connection: Vec<HeaderValue> =
                answer.headers.get_all(CONNECTION).iter().cloned().collect();
            for name in connection.iter().flat_map(|value| named_in(Some(value))) {
                answer.remove_header(name);
            }
            for name in ANSWER_DROPPED {
                answer.remove_header(name);
            }
        }
        for name in &self.removed {
            answer.remove_header(name.as_str());
        }
        let mut sent = 0;
        for (i, p) in self.preset.iter().enumerate() {
            if answer.headers.contains_key(&p.name) {
                sent |= 1 << i;
            }
        }
        for (name, value) in self.added(sent, ctx) {
            answer.insert_header(name.to_string(), value)?;
        }
        Ok(())
    }
}

/// What one request adds to its answer besides the config's fields.
pub(super) struct AnswerContext<'a> {
    /// The client's scheme is https (HSTS applies).
    pub(super) https: bool,
    pub(super) request_id: &'a str,
    /// Fields of this request (the rate limit state).
    pub(super) extra: &'a [(&'static str, String)],
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
