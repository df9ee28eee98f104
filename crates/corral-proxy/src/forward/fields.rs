//! The one place that decides which header fields are added, replaced and removed: on the
//! way in (the client's request as the worker gets it, here) and on the way out (the
//! worker's answer as the client gets it, in the `answer_fields` submodule). Both the byte
//! path (heads copied line by line, the common case) and the header-map path (pingora's
//! sessions, for everything else) ask these rules, so the two cannot drift apart; a
//! property test holds them to the same result.

use bytes::BytesMut;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH};
use http::{Method, Version};
use pingora_http::RequestHeader;

use super::identity::ClientIdentity;
use crate::head_facts::HeadFacts;
use corral_config::ForwardedField;

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
    /// It is left out for the `_` in its name (`server.underscores_in_headers` off): a WSGI
    /// or CGI environ reads `Transfer_Encoding` as `Transfer-Encoding`. Counted.
    Underscore,
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
    /// `server.underscores_in_headers`: names with `_` pass.
    keep_underscores: bool,
    /// The request's `Connection` fields, looked up once for all of its fields.
    connection: Listed<'a>,
}

/// A request's `Connection` fields: the names they list are hop-by-hop.
#[derive(Clone, Copy)]
enum Listed<'a> {
    None,
    /// One field (the usual case), kept at hand.
    One(&'a HeaderValue),
    /// Several: looked up again when needed.
    Many,
}

impl<'a> RequestRules<'a> {
    /// `facts` are `head`'s.
    pub(super) fn of(
        head: &'a RequestHeader,
        facts: &HeadFacts<'a>,
        upgrade: bool,
        trusted_peer: bool,
        keep_underscores: bool,
    ) -> Self {
        let old = matches!(head.version, Version::HTTP_10 | Version::HTTP_09);
        let connection = match (facts.connections, facts.connection) {
            (2.., _) => Listed::Many,
            (_, Some(one)) => Listed::One(one),
            (_, None) => Listed::None,
        };
        RequestRules {
            head,
            upgrade,
            keep_hops: !upgrade && old,
            trusted_peer,
            keep_underscores,
            connection,
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
        if is_spelling_of(name, "script-name") {
            if !self.trusted_peer {
                return Fate::Forged;
            }
        } else if !self.keep_underscores && name.contains(&b'_') {
            return Fate::Underscore;
        }
        let is = |n: &str| n.as_bytes().eq_ignore_ascii_case(name);
        // corral answers `Expect: 100-continue` itself.
        if is("expect") {
            return Fate::Drop;
        }
        // `Upgrade` is the handshake of an upgrade and nothing else: never passed on
        // otherwise (an `h2c` one was taken out by `admit`), nor `h2c`'s `HTTP2-Settings`.
        if is("http2-settings") || (is("upgrade") && !self.upgrade) {
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
        let lists_it = |value: &HeaderValue| {
            named_in(Some(value)).any(|n| is(n) && !(self.upgrade && is("upgrade")))
        };
        let named = match self.connection {
            Listed::None => false,
            Listed::One(value) => lists_it(value),
            Listed::Many => self.head.headers.get_all(CONNECTION).iter().any(lists_it),
        };
        if named {
            Fate::Drop
        } else {
            Fate::Keep
        }
    }
}

/// Which of the forwarded fields go to the worker (`server.forward_fields`): bit i for
/// `ForwardedField::ALL[i]`, the order [`forwarded`] writes them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForwardMask(u8);

impl ForwardMask {
    /// All six, the default.
    #[cfg(test)]
    pub(crate) const ALL: ForwardMask = ForwardMask(0b11_1111);
    /// Not a forwarded field: `server.underscores_in_headers`, the one other per-config
    /// rule of the request's fields, carried in the same byte.
    const UNDERSCORES: u8 = 1 << 7;

    /// The mask, also saying whether fields with `_` in their name pass.
    pub(crate) fn keeping_underscores(self, keep: bool) -> ForwardMask {
        if keep {
            ForwardMask(self.0 | Self::UNDERSCORES)
        } else {
            ForwardMask(self.0 & !Self::UNDERSCORES)
        }
    }

    fn keeps_underscores(self) -> bool {
        self.0 & Self::UNDERSCORES != 0
    }

    /// The mask of the fields listed.
    pub(crate) fn of(fields: &[ForwardedField]) -> ForwardMask {
        let bit = |f: &ForwardedField| ForwardedField::ALL.iter().position(|a| a == f);
        ForwardMask(fields.iter().filter_map(bit).fold(0, |m, i| m | 1 << i))
    }

    fn sends(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }
}

/// The fields corral adds to the request, in order, with their values; `None` where the
/// value is unknown (no peer address, no `Host`) or `send` leaves the field out. A field
/// left out is still removed from what the client sent (`REPLACED`): the worker must not
/// take the client's word for it.
pub(super) fn forwarded<'a>(
    client: &'a ClientIdentity,
    facts: &HeadFacts<'a>,
    request_id: &'a str,
    send: ForwardMask,
) -> [(&'static str, Option<&'a [u8]>); 6] {
    let host = client.host.as_ref().or(facts.host);
    let values = [
        client.forwarded_for.as_ref().map(HeaderValue::as_bytes),
        client.ip.as_ref().map(HeaderValue::as_bytes),
        Some(client.proto.as_bytes()),
        host.map(HeaderValue::as_bytes),
        client.port.as_ref().map(HeaderValue::as_bytes),
        Some(request_id.as_bytes()),
    ];
    let mut i = 0;
    values.map(|value| {
        let field = (
            ForwardedField::ALL[i].name(),
            value.filter(|_| send.sends(i)),
        );
        i += 1;
        field
    })
}

/// A request as the worker gets it, with the number of forged fields left out.
pub(super) struct Outbound<T> {
    pub(super) head: T,
    pub(super) forged: u32,
    /// Fields left out for the `_` in their name.
    pub(super) underscored: u32,
}

/// The request for the worker as bytes, for the common case of a request without body,
/// upgrade or `HEAD` (the caller checks the body): the client's own header lines (`raw`,
/// from HTTP/1.1) or fields (from HTTP/2, which has no text) are copied as the rules allow
/// and the forwarded fields appended, with no header map cloned or edited. `None` when the
/// head needs the header-map path.
pub(super) fn request_bytes(
    head: &RequestHeader,
    raw: Option<&[u8]>,
    client: &ClientIdentity,
    request_id: &str,
    send: ForwardMask,
) -> Option<Outbound<BytesMut>> {
    let version_ok = match raw {
        Some(_) => head.version == Version::HTTP_11,
        None => head.version == Version::HTTP_2,
    };
    // One walk over the fields for what this asks of them (the head as `admit` left it).
    let facts = HeadFacts::of(head);
    if !version_ok || head.method == Method::HEAD || facts.upgrade {
        return None;
    }
    let rules = RequestRules::of(
        head,
        &facts,
        false,
        client.trusted_peer,
        send.keeps_underscores(),
    );
    let mut forged = 0;
    let mut underscored = 0;
    let mut out = BytesMut::with_capacity(raw.map_or(512, <[u8]>::len) + 200);
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(head.raw_path());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut copy = |name: &[u8], line: &[&[u8]]| match rules.fate(name) {
        Fate::Keep => {
            for part in line {
                out.extend_from_slice(part);
            }
            out.extend_from_slice(b"\r\n");
        }
        Fate::Drop => {}
        Fate::Forged => forged += 1,
        Fate::Underscore => underscored += 1,
    };
    match raw {
        Some(raw) => {
            let raw = crate::framing::skip_empty_lines(raw);
            for line in crate::framing::lines(raw).skip(1) {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.is_empty() {
                    break;
                }
                // A line without a name (a folded continuation) takes the header-map path.
                let name = &line[..memchr::memchr(b':', line)?];
                // The length as `admit` normalised it, not as written (the name is compared
                // first: a lookup per line would cost more than the copy).
                let length = name
                    .eq_ignore_ascii_case(b"content-length")
                    .then(|| head.headers.get(CONTENT_LENGTH))
                    .flatten();
                match length {
                    Some(length) => copy(name, &[name, b": ", length.as_bytes()]),
                    None => copy(name, &[line]),
                }
            }
        }
        None => {
            for (name, value) in &head.headers {
                let name = name.as_str().as_bytes();
                copy(name, &[name, b": ", value.as_bytes()]);
            }
        }
    }
    for (name, value) in forwarded(client, &facts, request_id, send) {
        if let Some(value) = value {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    Some(Outbound {
        head: out,
        forged,
        underscored,
    })
}

/// The request for the worker as a header for pingora's session: the client's head with
/// the fields the rules drop removed and the forwarded fields added.
pub(super) fn request_head(
    head: &RequestHeader,
    client: &ClientIdentity,
    request_id: &str,
    upgrade: bool,
    send: ForwardMask,
) -> pingora_error::Result<Outbound<Box<RequestHeader>>> {
    let mut out = Box::new(head.clone());
    let facts = HeadFacts::of(head);
    let rules = RequestRules::of(
        head,
        &facts,
        upgrade,
        client.trusted_peer,
        send.keeps_underscores(),
    );
    let mut forged = 0;
    let mut underscored = 0;
    let mut dropped: Vec<&HeaderName> = Vec::new();
    for (name, _) in head.headers.iter() {
        match rules.fate(name.as_str().as_bytes()) {
            Fate::Keep => {}
            Fate::Drop => dropped.push(name),
            Fate::Forged => {
                forged += 1;
                dropped.push(name);
            }
            Fate::Underscore => {
                underscored += 1;
                dropped.push(name);
            }
        }
    }
    for name in dropped {
        out.remove_header(name);
    }
    for (name, value) in forwarded(client, &facts, request_id, send) {
        if let Some(value) = value {
            out.append_header(name, value)?;
        }
    }
    Ok(Outbound {
        head: out,
        forged,
        underscored,
    })
}

/// The field names a `Connection` field lists (its other tokens, like `close`, name no field
/// that is present).
pub(in crate::forward) fn named_in(connection: Option<&HeaderValue>) -> impl Iterator<Item = &str> {
    connection
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

mod answer_fields;

pub(crate) use answer_fields::AnswerRules;
pub(super) use answer_fields::{AnswerContext, AnswerField};

#[cfg(test)]
mod tests;
