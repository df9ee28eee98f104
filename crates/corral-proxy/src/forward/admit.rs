//! The first phase: refuse what breaks the limits or could smuggle a request, before a
//! request id is made or a worker is chosen. The rate limiter is the next check here: it
//! keys on the client identity, which is known by then.

use super::client::ClientSide;
use http::Method;

use super::headers::smuggled_length;
use super::outcome::Failure;
use crate::settings::ProxySettings;
use crate::{framing, limits};

/// Whether the request just read may go on; the refusal to answer when not.
pub(super) fn admit<C: ClientSide>(client: &C, settings: &ProxySettings) -> Result<(), Failure> {
    let head = client.req_header();
    // The checks of the exact bytes apply to HTTP/1.x; HTTP/2's framing is its own.
    let raw = client.raw_head();
    let refusal = limits::check(head, &settings.limits).or_else(|| match &raw {
        Some(raw) => smuggled_length(head, raw).or_else(|| framing::check(raw, head)),
        None => framing::check_fields(head),
    });
    if let Some(refusal) = refusal {
        return Err(Failure::refused(refusal.status, refusal.reason));
    }
    if client.req_header().method == Method::CONNECT {
        return Err(Failure::refused(405, "CONNECT is not proxied"));
    }
    Ok(())
}
