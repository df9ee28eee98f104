//! The compression phase of the relay: the coding a request accepts, chosen once per
//! request, and for an answer that is compressed, its head made to say so (RFC 9110 8.4,
//! 8.8.3): `Content-Encoding` set, `Content-Length` dropped (the body goes chunked), `Vary:
//! Accept-Encoding` added and a strong `ETag` made weak, since the bytes are no longer the
//! worker's. Which answers qualify is `corral_compress`'s rule.

use corral_compress::{AnswerFacts, Choice, Compressor, Encoder};
use http::header::{
    HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, ETAG, TRANSFER_ENCODING, VARY,
};
use http::{Method, Version};
use pingora_error::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};

/// The coding for this request's answer, when compression is on and the client takes one
/// of corral's. Not for `HEAD` (no body) nor HTTP/1.0 clients (a compressed body has no
/// length to send ahead, and HTTP/1.0 has no chunks); HTTP/2 frames any body.
pub(super) fn accepted(compressor: &Compressor, request: &RequestHeader) -> Option<Choice> {
    let framed = matches!(request.version, Version::HTTP_11 | Version::HTTP_2);
    if request.method == Method::HEAD || !framed {
        return None;
    }
    let mut fields = request.headers.get_all(ACCEPT_ENCODING).iter();
    let first = fields.next()?;
    match fields.next() {
        None => compressor.negotiate(first.as_bytes()),
        Some(second) => {
            let mut joined = first.as_bytes().to_vec();
            for more in std::iter::once(second).chain(fields) {
                joined.push(b',');
                joined.extend_from_slice(more.as_bytes());
            }
            compressor.negotiate(&joined)
        }
    }
}

/// When `answer` is to be compressed for `choice`: its head rewritten and the encoder for
/// its body. `None` leaves the answer as the worker sent it.
pub(super) fn begin(
    compressor: &Compressor,
    choice: Choice,
    answer: &mut ResponseHeader,
) -> Result<Option<Encoder>, Box<Error>> {
    let mut facts = AnswerFacts::default();
    for (name, value) in &answer.headers {
        facts.observe(name.as_str().as_bytes(), value.as_bytes());
    }
    if !compressor.compresses(answer.status.as_u16(), &facts, choice) {
        return Ok(None);
    }
    let encoder = compressor
        .encoder(choice.coding)
        .map_err(|e| Error::because(ErrorType::InternalError, "starting the encoder", e))?;
    let weak_etag = answer
        .headers
        .get(ETAG)
        .filter(|tag| tag.as_bytes().starts_with(b"\""))
        .map(|tag| {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(tag.as_bytes());
            HeaderValue::from_bytes(&weak)
        })
        .transpose()
        .map_err(|e| Error::because(ErrorType::InternalError, "weakening the ETag", e))?;
    let varies = answer.headers.get_all(VARY).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|token| {
            let token = token.trim_ascii();
            token == b"*" || token.eq_ignore_ascii_case(b"accept-encoding")
        })
    });
    answer.remove_header(&CONTENT_LENGTH);
    answer.insert_header(CONTENT_ENCODING, choice.coding.token())?;
    answer.insert_header(TRANSFER_ENCODING, "chunked")?;
    if !varies {
        answer.append_header(VARY, "Accept-Encoding")?;
    }
    if let Some(weak) = weak_etag {
        answer.insert_header(ETAG, weak)?;
    }
    Ok(Some(encoder))
}
