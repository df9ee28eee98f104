//! The first phase: refuse what breaks the limits or could smuggle a request, before a
//! request id is made or a worker is chosen. The rate limiter is the next check here: it
//! keys on the client identity, which is known by then.

use http::Method;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;

use super::headers::smuggled_length;
use super::outcome::Failure;
use crate::settings::ProxySettings;
use crate::{framing, limits};

/// Whether the request just read may go on; the refusal to answer when not.
pub(super) fn admit(client: &DownstreamSession, settings: &ProxySettings) -> Result<(), Failure> {
    let head = client.req_header();
    let refusal = limits::check(head, &settings.limits)
        .or_else(|| smuggled_length(client))
        .or_else(|| framing::check(&client.get_headers_raw_bytes(), head));
    if let Some(refusal) = refusal {
        return Err(Failure::refused(refusal.status, refusal.reason));
    }
    if client.req_header().method == Method::CONNECT {
        return Err(Failure::refused(405, "CONNECT is not proxied"));
    }
    Ok(())
}
