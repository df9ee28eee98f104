//! What a head says about framing and upgrades: the predicates the phases branch on. Which
//! fields are added, replaced or removed is decided in `fields`.

use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{Method, Version};
use pingora_http::{RequestHeader, ResponseHeader};

use crate::head_facts::HeadFacts;
use crate::limits;

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
pub(super) fn smuggled_length(facts: &HeadFacts<'_>, raw: &[u8]) -> Option<limits::Refusal> {
    if !facts.transfer_encoding {
        return None;
    }
    limits::raw_has_content_length(raw).then_some(limits::Refusal {
        status: 400,
        reason: "both Content-Length and Transfer-Encoding",
    })
}
