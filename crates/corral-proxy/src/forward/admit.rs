//! The first phase: refuse what breaks the limits or could smuggle a request, before a
//! request id is made or a worker is chosen. The rate limiter is the next check here: it
//! keys on the client identity, which is known by then.

use super::client::ClientSide;
use http::header::{CONTENT_LENGTH, UPGRADE};
use http::Method;
use pingora_http::RequestHeader;

use super::failure::Failure;
use super::headers::smuggled_length;
use crate::head_facts::HeadFacts;
use crate::settings::ProxySettings;
use crate::{framing, limits};

/// Whether the request just read may go on; the refusal to answer when not. A request that
/// may go on leaves with its head in the one form workers get (see [`normalize`]).
pub(super) fn admit<C: ClientSide>(
    client: &mut C,
    settings: &ProxySettings,
) -> Result<(), Failure> {
    let head = client.req_header();
    let facts = HeadFacts::of(head);
    // The checks of the exact bytes apply to HTTP/1.x; HTTP/2's framing is its own.
    let raw = client.raw_head();
    let refusal = limits::check(head, &facts, &settings.limits).or_else(|| match &raw {
        Some(raw) => limits::check_raw_lines(raw, &settings.limits)
            .or_else(|| smuggled_length(&facts, raw))
            .or_else(|| framing::check(raw, head, &facts)),
        None => framing::check_fields(head, &facts),
    });
    if let Some(refusal) = refusal {
        return Err(Failure::refused(refusal.status, refusal.reason));
    }
    if head.method == Method::CONNECT {
        return Err(Failure::refused(405, "CONNECT is not proxied"));
    }
    // What `normalize` changes, found before the head is borrowed to change it.
    let length = facts
        .content_length
        .map(|v| v.as_bytes())
        .filter(|digits| digits.len() > 1 && digits[0] == b'0')
        // `limits::check` let only valid lengths through.
        .and_then(limits::content_length);
    let h2c = facts.upgrade && asks_h2c(head);
    normalize(client.req_header_mut(), length, h2c).map_err(|e| Failure::worker(500, e))
}

/// Puts a head that passed the checks in the form every worker reads alike:
/// - a `Content-Length` in its shortest form (`0005` is `5`): a worker's own parser may
///   choke on thousands of leading zeros, or read them differently;
/// - no `h2c` upgrade (nor its `HTTP2-Settings`): the request goes on as HTTP/1.1, as nginx
///   serves it, so a worker never switches a connection corral believes is HTTP/1.1 to
///   HTTP/2 (the h2c smuggling pattern).
///
/// `length` is the shortest form of a `Content-Length` written with leading zeros, `h2c`
/// whether `Upgrade` asks for `h2c` (both found by the caller with the other checks).
fn normalize(
    head: &mut RequestHeader,
    length: Option<u64>,
    h2c: bool,
) -> pingora_error::Result<()> {
    if let Some(n) = length {
        head.insert_header(CONTENT_LENGTH, n.to_string())?;
    }
    if h2c {
        head.remove_header(&UPGRADE);
        head.remove_header("http2-settings");
    }
    Ok(())
}

/// Whether the request's `Upgrade` names `h2c` (HTTP/2 over cleartext, RFC 7540 §3.2,
/// withdrawn by RFC 9113).
pub(super) fn asks_h2c(head: &RequestHeader) -> bool {
    head.headers
        .get_all(UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| {
            let token = token.trim_ascii();
            let name = token.split(|&b| b == b'/').next().unwrap_or(token);
            name.eq_ignore_ascii_case(b"h2c")
        })
}
