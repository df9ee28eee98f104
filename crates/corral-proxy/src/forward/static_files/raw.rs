//! A static answer written as bytes on an HTTP/1.x client's own connection, taken out of
//! pingora's session as a plain worker answer is (`relay_plain`): the head, with
//! `[headers]` (or the route's) applied, `Date` and `Connection`; then the body. A file up
//! to [`INLINE`] goes in the head's write; a larger one on a plain socket goes by
//! `sendfile(2)` (zero-copy: the page cache to the socket), and whenever the socket is full
//! one piece is copied through the connection's own write, which waits for room, bounded
//! by `send_timeout`; over TLS every piece is copied.
//!
//! pingora's session has no way to hand a file to the socket: its body writes take bytes,
//! and its `Stream` keeps the socket private behind a write buffer. The socket is reached
//! here through the two concrete types under the client's `Stream` (our `Sniff` wrapper,
//! then pingora's plain `l4::stream::Stream`, the one that exposes its descriptor), after
//! the head is written and flushed; a TLS connection is another type, so it is never
//! given to `sendfile`.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::time::Duration;

use bytes::BytesMut;
use http::header::HeaderValue;
use pingora_core::protocols::http::date::get_cached_date;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_core::protocols::Stream;
use pingora_http::RequestHeader;

use super::{Body, Source, PIECE};
use crate::forward::buffer;
use crate::forward::context::{Exchange, RequestLine};
use crate::forward::fields::AnswerField;
use crate::forward::sniff::Sniff;
use crate::forward::{Forwarder, Reusable};

/// Files up to this size are read into the head's buffer and sent in one write.
const INLINE: u64 = 64 << 10;

/// A static answer decided: status, fields and the file bytes to send.
pub(in crate::forward) struct StaticAnswer {
    pub(super) status: u16,
    pub(super) fields: Vec<(&'static str, HeaderValue)>,
    pub(super) body: Option<Body>,
}

impl StaticAnswer {
    /// Adds a field when it has a value.
    pub(super) fn field(&mut self, name: &'static str, value: Option<HeaderValue>) {
        if let Some(value) = value {
            self.fields.push((name, value));
        }
    }

    /// The head as bytes: the status line, the fields the answer rules keep, the fields
    /// they add, `Date` and `Connection`.
    fn head(&self, exchange: &Exchange, keep_alive: bool, room: usize) -> BytesMut {
        let mut out = BytesMut::with_capacity(384 + room);
        out.extend_from_slice(match self.status {
            200 => b"HTTP/1.1 200 OK\r\n".as_slice(),
            206 => b"HTTP/1.1 206 Partial Content\r\n",
            _ => b"HTTP/1.1 304 Not Modified\r\n",
        });
        let rules = exchange.answer_rules();
        for (name, value) in &self.fields {
            let framing = *name == "content-length" || *name == "content-range";
            if !framing && rules.field(name.as_bytes()) == AnswerField::Drop {
                continue;
            }
            line(&mut out, name.as_bytes(), value.as_bytes());
        }
        let ctx = exchange.answer_context();
        for (name, value) in rules.added(0, &ctx) {
            line(&mut out, name.as_bytes(), value);
        }
        line(&mut out, b"date", get_cached_date().as_bytes());
        out.extend_from_slice(if keep_alive {
            b"connection: keep-alive\r\n\r\n".as_slice()
        } else {
            b"connection: close\r\n\r\n"
        });
        out
    }
}

fn line(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

impl Forwarder {
    /// Writes a static answer on the client's connection, taken out of its session, and
    /// counts and logs the request. Returns the connection when it may carry another.
    pub(in crate::forward) async fn send_static(
        &self,
        mut client: Box<DownstreamSession>,
        exchange: &Exchange,
        answer: StaticAnswer,
    ) -> Option<Reusable> {
        let keepalive = exchange.keepalive;
        let request = std::mem::replace(
            client.req_header_mut(),
            RequestHeader::from(http::Request::new(()).into_parts().0),
        );
        let (mut stream, pipelined) = match keepalive {
            Some(_) => {
                client.set_server_keepalive(keepalive);
                match (*client).reuse().await {
                    Ok(Some(reusable)) => reusable.into_parts(),
                    _ => {
                        self.count(exchange, 0);
                        let line = RequestLine::of(&request);
                        self.log_access(line, exchange, 0, 0, Some("client error"));
                        return None;
                    }
                }
            }
            None => ((*client).into_inner(), None),
        };
        let status = answer.status;
        let send_timeout = exchange.settings.limits.send_timeout;
        let sent = write_answer(
            &mut stream,
            answer,
            exchange,
            keepalive.is_some(),
            send_timeout,
        )
        .await;
        let (bytes, complete) = match sent {
            Ok(bytes) => (bytes, true),
            Err((bytes, e)) => {
                tracing::debug!(error = %e, "client went away during a static answer");
                (bytes, false)
            }
        };
        self.count(exchange, status);
        self.log_access(RequestLine::of(&request), exchange, status, bytes, None);
        if complete && keepalive.is_some() {
            return Some((stream, pipelined));
        }
        pingora_core::protocols::Shutdown::shutdown(&mut *stream).await;
        None
    }
}

/// Writes the head and body; the body bytes sent, with the error that cut them short.
async fn write_answer(
    stream: &mut Stream,
    answer: StaticAnswer,
    exchange: &Exchange,
    keep_alive: bool,
    send_timeout: Duration,
) -> Result<usize, (usize, io::Error)> {
    let inline = answer.body.as_ref().filter(|b| b.len <= INLINE);
    let room = inline.map_or(0, |b| b.len as usize);
    let mut head = answer.head(exchange, keep_alive, room);
    let Some(body) = answer.body else {
        buffer::write_all(stream, &head, send_timeout)
            .await
            .map_err(|e| (0, e))?;
        return Ok(0);
    };
    let file = match body.source {
        Source::File(ref file) if body.len > INLINE => file,
        Source::File(ref file) => {
            let at = head.len();
            head.resize(at + body.len as usize, 0);
            file.read_exact_at(&mut head[at..], body.start)
                .map_err(|e| (0, e))?;
            return write_inline(stream, &head, body.len, send_timeout).await;
        }
        Source::Memory(ref bytes) => {
            let start = body.start as usize;
            head.extend_from_slice(&bytes[start..start + body.len as usize]);
            return write_inline(stream, &head, body.len, send_timeout).await;
        }
    };
    buffer::write_all(stream, &head, send_timeout)
        .await
        .map_err(|e| (0, e))?;
    send_body(stream, file, body.start, body.len, send_timeout).await
}

/// Writes a head with the whole body after it, `len` bytes of it the body.
async fn write_inline(
    stream: &mut Stream,
    bytes: &[u8],
    len: u64,
    send_timeout: Duration,
) -> Result<usize, (usize, io::Error)> {
    buffer::write_all(stream, bytes, send_timeout)
        .await
        .map_err(|e| (0, e))?;
    Ok(len as usize)
}

/// Sends a body too large to go with the head: by `sendfile` while the socket takes it,
/// else (or over TLS) a piece at a time through the connection's write.
async fn send_body(
    stream: &mut Stream,
    file: &File,
    start: u64,
    len: u64,
    send_timeout: Duration,
) -> Result<usize, (usize, io::Error)> {
    let mut offset = start;
    let end = start + len;
    let mut buf: Vec<u8> = Vec::new();
    // The file's last partial segment must not wait for the client's delayed ACK (Nagle):
    // nginx's `tcp_nodelay on` after `sendfile`.
    no_delay(stream);
    while offset < end {
        let left = usize::try_from(end - offset).unwrap_or(usize::MAX);
        let sent = (offset - start) as usize;
        match sendfile(stream, file, &mut offset, left) {
            Some(Ok(0)) => {
                return Err((sent, shrank()));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) if e.kind() != io::ErrorKind::WouldBlock => return Err((sent, e)),
            // Full (or not a plain socket): one piece through the write that waits.
            _ => {}
        }
        let want = PIECE.min(left);
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let n = file
            .read_at(&mut buf[..want], offset)
            .map_err(|e| (sent, e))?;
        if n == 0 {
            return Err((sent, shrank()));
        }
        buffer::write_all(stream, &buf[..n], send_timeout)
            .await
            .map_err(|e| (sent, e))?;
        offset += n as u64;
    }
    Ok(len as usize)
}

/// A file that ended before the length its head promised.
fn shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the static file shrank")
}

/// `TCP_NODELAY` on the client's socket, if it is a plain TCP one.
fn no_delay(stream: &Stream) {
    if let Some(fd) = plain_socket(stream) {
        // SAFETY: as in `sendfile`: the descriptor belongs to `stream`, borrowed for the call.
        let socket = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = socket2::SockRef::from(&socket).set_tcp_nodelay(true);
    }
}

/// The descriptor of the plain socket under the client's `Stream` (our `Sniff`, then
/// pingora's `l4::stream::Stream`), or `None` (TLS, a test's in-memory stream).
fn plain_socket(stream: &Stream) -> Option<std::os::fd::RawFd> {
    let sniff = stream.as_any().downcast_ref::<Sniff>()?;
    let plain = sniff
        .inner()
        .as_any()
        .downcast_ref::<pingora_core::protocols::l4::stream::Stream>()?;
    let fd = plain.as_raw_fd();
    (fd >= 0).then_some(fd)
}

/// One `sendfile(2)` of up to `count` bytes of `file` from `offset` (moved on) into the
/// client's socket, if the connection is a plain one (`None` otherwise: TLS, a test's
/// in-memory stream). Never waits: a full socket is `WouldBlock`.
fn sendfile(
    stream: &mut Stream,
    file: &File,
    offset: &mut u64,
    count: usize,
) -> Option<io::Result<usize>> {
    let fd = plain_socket(stream)?;
    // SAFETY: `fd` is the socket of the plain connection, which lives in `stream`, borrowed mutably
    // for this whole call, so the descriptor stays open and is not reused while borrowed;
    // the borrow ends with the call. Its write buffer was flushed by the head's write.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    Some(rustix::fs::sendfile(socket, file, Some(offset), count).map_err(io::Error::from))
}
