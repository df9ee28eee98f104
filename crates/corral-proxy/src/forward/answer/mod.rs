//! The worker's answer read as bytes, for the common case: HTTP/1.1, a final status that has
//! a body (not 1xx, 204 or 304), sized by one `Content-Length`, no field that frames the
//! body or connection (`Transfer-Encoding`, `Upgrade`) and a `Connection` that names no field.
//! Such a *plain* answer reaches the client as the worker's own status line and the fields
//! `fields` keeps, plus corral's `Date` and `Connection`, with no
//! header map built, cloned or serialised on either side. Any other answer goes to pingora's
//! session, which reads the bytes taken so far once more (`replay`); so does an answer
//! that is to be compressed, which `relay` re-frames.

use std::mem::MaybeUninit;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use pingora_core::protocols::Stream;
use pingora_error::{Error, ErrorType, RetryType};
use tokio::io::AsyncReadExt;

use corral_compress::{AnswerFacts, Choice, Compressor};

use super::fields::{AnswerField, AnswerRules};

mod relay;

/// Room for a usual answer head and a small body in the first read.
const FIRST_READ: usize = 16 * 1024;
/// Room for each further read of a large body: a worker that writes fast gives a whole
/// socket buffer at once, so a large answer takes a few reads (and spool pieces) a
/// megabyte, not dozens.
const BODY_READ: usize = 256 * 1024;
/// A head not complete within this many bytes goes to pingora's session and its limits.
const MAX_PLAIN_HEAD: usize = 16 * 1024;
/// More fields than this and the answer goes to pingora's session.
const MAX_FIELDS: usize = 64;

/// The worker's answer head, as far as corral read it.
pub(super) enum Answer {
    Plain(PlainAnswer),
    /// Not plain: the bytes read so far, for pingora's session to read again.
    Other(BytesMut),
}

/// A plain answer, ready to relay.
pub(super) struct PlainAnswer {
    pub(super) status: u16,
    /// The status line and the worker's fields, less `Date`, `Connection` and `Keep-Alive`.
    head: BytesMut,
    /// Body bytes that came with the head.
    body: BytesMut,
    /// Body bytes still to read from the worker.
    remaining: usize,
    /// Whether the worker's connection can carry another request afterwards.
    reusable: bool,
    /// The preset fields the worker sent itself (bit i for preset field i).
    preset_sent: u32,
}

/// Reads the answer head from `worker`, each read within `timeout`. Fails only where no
/// answer came (closed, broken or silent), as pingora's session would. With `compression`
/// (the request accepts a coding), an answer the rule compresses is not plain.
pub(super) async fn read_head(
    worker: &mut Stream,
    timeout: Option<Duration>,
    rules: &AnswerRules,
    compression: Option<(&Compressor, Choice)>,
) -> Result<Answer, Box<Error>> {
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(FIRST_READ);
        }
        if read(worker, &mut buf, timeout, "while reading response headers").await? == 0 {
            if buf.is_empty() {
                // A kept-open connection the worker closed meanwhile: the caller may retry.
                let mut e = Error::explain(
                    ErrorType::ConnectionClosed,
                    "while reading response headers, bytes already read: 0",
                );
                e.retry = RetryType::ReusedOnly;
                return Err(e);
            }
            return Ok(Answer::Other(buf));
        }
        // Left uninitialised for the parser to fill: 64 empty fields written on every
        // answer cost more than parsing a short head.
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut parsed = httparse::Response::new(&mut []);
        let config = httparse::ParserConfig::default();
        match config.parse_response_with_uninit_headers(&mut parsed, &buf, &mut fields) {
            Ok(httparse::Status::Complete(head_len)) => {
                let Some(head) = plain_head(&parsed, rules, compression) else {
                    return Ok(Answer::Other(buf));
                };
                buf.advance(head_len);
                let mut body = buf;
                let reusable = head.reusable && body.len() <= head.length;
                body.truncate(head.length);
                return Ok(Answer::Plain(PlainAnswer {
                    status: head.status,
                    head: head.bytes,
                    remaining: head.length - body.len(),
                    body,
                    reusable,
                    preset_sent: head.preset_sent,
                }));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_PLAIN_HEAD => {}
            _ => return Ok(Answer::Other(buf)),
        }
    }
}

/// What a plain head says, and the bytes that go on to the client.
struct PlainHead {
    status: u16,
    bytes: BytesMut,
    length: usize,
    reusable: bool,
    preset_sent: u32,
}

/// The head for the client when the answer is plain; `None` otherwise.
fn plain_head(
    parsed: &httparse::Response<'_, '_>,
    rules: &AnswerRules,
    compression: Option<(&Compressor, Choice)>,
) -> Option<PlainHead> {
    let status = parsed.code?;
    if parsed.version != Some(1) || !(200..600).contains(&status) || matches!(status, 204 | 304) {
        return None;
    }
    // Only when the request accepts a coding: what the compression rule reads.
    let mut facts = compression.map(|_| AnswerFacts::default());
    let mut bytes = BytesMut::with_capacity(512);
    bytes.extend_from_slice(b"HTTP/1.1 ");
    bytes.extend_from_slice(&three_digits(status));
    bytes.extend_from_slice(b" ");
    bytes.extend_from_slice(parsed.reason.unwrap_or("").as_bytes());
    bytes.extend_from_slice(b"\r\n");
    let mut length = None;
    let mut reusable = true;
    let mut preset_sent = 0;
    for field in parsed.headers.iter() {
        let name = field.name.as_bytes();
        if let Some(facts) = &mut facts {
            facts.observe(name, field.value);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if length.is_some() {
                return None;
            }
            length = Some(content_length(field.value)?);
        } else if name.eq_ignore_ascii_case(b"connection") {
            // Only `close` and `keep-alive`; a field named here is hop-by-hop too, which
            // the header-map path removes.
            for token in field.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    reusable = false;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
                    return None;
                }
            }
            continue;
        }
        match rules.field(name) {
            AnswerField::Keep => {}
            AnswerField::Drop => continue,
            AnswerField::Framing => return None,
        }
        if let Some(i) = rules.preset_index(name) {
            preset_sent |= 1 << i;
        }
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(field.value);
        bytes.extend_from_slice(b"\r\n");
    }
    if let (Some((compressor, choice)), Some(facts)) = (compression, &facts) {
        if compressor.compresses(status, facts, choice) {
            return None;
        }
    }
    Some(PlainHead {
        status,
        bytes,
        length: length?,
        reusable,
        preset_sent,
    })
}

/// A `Content-Length` value: digits only, as RFC 9112 requires of a single value.
fn content_length(value: &[u8]) -> Option<usize> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')),
    )
}

fn three_digits(status: u16) -> [u8; 3] {
    // `status` is within 200..600 here.
    [
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}

/// One read from the worker into `buf`, within `timeout` when there is one.
pub(super) async fn read(
    worker: &mut Stream,
    buf: &mut BytesMut,
    timeout: Option<Duration>,
    context: &'static str,
) -> Result<usize, Box<Error>> {
    let result = match timeout {
        // tokio's timer (this thread's wheel) costs about half of pingora's shared one here,
        // where one is set for every request whose answer is not in yet.
        Some(limit) => match tokio::time::timeout(limit, worker.read_buf(buf)).await {
            Ok(result) => result,
            Err(_) => return Err(Error::explain(ErrorType::ReadTimedout, context)),
        },
        None => worker.read_buf(buf).await,
    };
    result.map_err(|e| {
        let mut e = Error::because(ErrorType::ReadError, context, e);
        e.retry = RetryType::ReusedOnly;
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Option<PlainHead> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut parsed = httparse::Response::new(&mut fields);
        assert!(parsed.parse(text.as_bytes()).expect("parses").is_complete());
        plain_head(
            &parsed,
            &AnswerRules::new(&corral_config::Headers::default()),
            None,
        )
    }

    #[test]
    fn only_sized_http_1_1_answers_without_hop_fields_are_plain() {
        let plain = head("HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\nX-A: b\r\nDate: x\r\nKeep-Alive: timeout=5\r\n\r\n")
            .expect("plain");
        assert_eq!(
            (plain.status, plain.length, plain.reusable),
            (404, 12, true)
        );
        assert_eq!(
            &plain.bytes[..],
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\nX-A: b\r\n"
        );
        let closing = head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        assert!(!closing.expect("plain").reusable);
        for other in [
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            "HTTP/1.1 204 No Content\r\nContent-Length: 1\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 1\r\n\r\n",
            "HTTP/1.1 103 Early Hints\r\nContent-Length: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: X-Secret\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nUpgrade: h2c\r\n\r\n",
        ] {
            assert!(head(other).is_none(), "{other:?} is not plain");
        }
    }
}
