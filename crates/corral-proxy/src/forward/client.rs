//! The client's side of one exchange as the request path sees it: an HTTP/1.x session or
//! one HTTP/2 stream. Every phase reads the request and writes the answer through
//! [`ClientSide`], so an HTTP/2 stream is a request like any other (the same limits,
//! identity, queueing, timeouts, retries and access line) with no second HTTP/1.1 parse;
//! the worker side stays HTTP/1.1 either way.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::Method;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_core::protocols::http::v2::server::HttpSession as H2Stream;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};

use super::linger;

/// What the request path needs of the client's side of an exchange.
pub(super) trait ClientSide: Send + Sync {
    /// Whether the worker's answer may go to the client as the worker's own bytes (the
    /// plain path of `answer`): only where the client speaks HTTP/1.x too.
    const RAW_ANSWER: bool;

    fn req_header(&self) -> &RequestHeader;

    /// The request head, for the checks that normalise it before it goes on (`admit`).
    fn req_header_mut(&mut self) -> &mut RequestHeader;

    /// The request head as the client sent it, for the checks on its exact bytes and the
    /// request-bytes fast path; `None` where there is no HTTP/1.x text (HTTP/2).
    fn raw_head(&self) -> Option<Bytes>;

    fn is_body_empty(&mut self) -> bool;

    /// Whether the request asks to switch protocols (never over HTTP/2 here).
    fn is_upgrade_req(&self) -> bool;

    /// Whether the connection may carry another request after this one.
    fn will_keepalive(&self) -> bool;

    /// The keep-alive timeout the answer offers, or `None` to close after it.
    fn set_server_keepalive(&mut self, secs: Option<u64>);

    fn response_written(&self) -> Option<&ResponseHeader>;

    fn body_bytes_sent(&self) -> usize;

    fn read_body_bytes(&mut self) -> impl Future<Output = Result<Option<Bytes>>> + Send;

    /// Answers `Expect: 100-continue`.
    fn write_continue(&mut self) -> impl Future<Output = Result<()>> + Send;

    fn write_response_header(
        &mut self,
        head: Box<ResponseHeader>,
    ) -> impl Future<Output = Result<()>> + Send;

    fn write_body(&mut self, bytes: &[u8]) -> impl Future<Output = Result<()>> + Send;

    /// Writes body bytes the caller gives up (HTTP/2 sends them without a copy).
    fn write_body_owned(&mut self, bytes: Bytes) -> impl Future<Output = Result<()>> + Send {
        async move { self.write_body(&bytes).await }
    }

    fn finish_body(&mut self) -> impl Future<Output = Result<()>> + Send;
}

impl ClientSide for DownstreamSession {
    const RAW_ANSWER: bool = true;

    fn req_header(&self) -> &RequestHeader {
        DownstreamSession::req_header(self)
    }

    fn req_header_mut(&mut self) -> &mut RequestHeader {
        DownstreamSession::req_header_mut(self)
    }

    fn raw_head(&self) -> Option<Bytes> {
        Some(self.get_headers_raw_bytes())
    }

    fn is_body_empty(&mut self) -> bool {
        DownstreamSession::is_body_empty(self)
    }

    fn is_upgrade_req(&self) -> bool {
        DownstreamSession::is_upgrade_req(self)
    }

    fn will_keepalive(&self) -> bool {
        DownstreamSession::will_keepalive(self)
    }

    fn set_server_keepalive(&mut self, secs: Option<u64>) {
        DownstreamSession::set_server_keepalive(self, secs);
    }

    fn response_written(&self) -> Option<&ResponseHeader> {
        DownstreamSession::response_written(self)
    }

    fn body_bytes_sent(&self) -> usize {
        DownstreamSession::body_bytes_sent(self)
    }

    async fn read_body_bytes(&mut self) -> Result<Option<Bytes>> {
        DownstreamSession::read_body_bytes(self).await
    }

    async fn write_continue(&mut self) -> Result<()> {
        self.write_continue_response().await
    }

    async fn write_response_header(&mut self, head: Box<ResponseHeader>) -> Result<()> {
        DownstreamSession::write_response_header(self, head).await
    }

    async fn write_body(&mut self, bytes: &[u8]) -> Result<()> {
        DownstreamSession::write_body(self, bytes).await.map(|_| ())
    }

    async fn finish_body(&mut self) -> Result<()> {
        DownstreamSession::finish_body(self).await.map(|_| ())
    }
}

/// One HTTP/2 stream as the client's side of an exchange. Its head is made fit for an
/// HTTP/1.1 worker once, when the stream opens ([`H2Client::open`]).
pub(super) struct H2Client {
    stream: H2Stream,
    /// The longest wait for the next piece of the body (`body_timeout`).
    body_timeout: Duration,
}

impl H2Client {
    /// The stream with `Host` from `:authority` and its cookies in one field (RFC 9113
    /// §8.2.3); `None` (the stream answered 400) when its head cannot go to a worker.
    pub(super) fn open(mut stream: H2Stream, body_timeout: Duration) -> Option<H2Client> {
        if fit_for_http1(stream.req_header_mut()).is_none() {
            if let Ok(mut head) = ResponseHeader::build(400, Some(1)) {
                let _ = head.insert_header(CONTENT_LENGTH, "0");
                let _ = stream.write_response_header(Box::new(head), true);
            }
            return None;
        }
        Some(H2Client {
            stream,
            body_timeout,
        })
    }

    /// Ends the stream: with a reset when its answer was not written whole, so the client
    /// sees a broken answer rather than a short one; after a whole answer given before the
    /// request's body was read (a refusal), with the rest of the body read and discarded.
    pub(super) async fn end(mut self, complete: bool) {
        if !complete || self.stream.finish().is_err() {
            self.stream.shutdown();
            return;
        }
        linger::drain(&mut self.stream).await;
    }
}

/// `Host` from the URI's authority unless the client sent one, and the cookie fields
/// joined; `None` when the result is not a valid head.
fn fit_for_http1(head: &mut RequestHeader) -> Option<()> {
    use http::header::{HeaderValue, COOKIE, HOST};
    let mut cookies = head.headers.get_all(COOKIE).iter();
    if let (Some(first), Some(_)) = (cookies.next(), cookies.next()) {
        let mut joined = first.as_bytes().to_vec();
        for more in head.headers.get_all(COOKIE).iter().skip(1) {
            joined.extend_from_slice(b"; ");
            joined.extend_from_slice(more.as_bytes());
        }
        let joined = HeaderValue::from_bytes(&joined).ok()?;
        head.insert_header(COOKIE, joined).ok()?;
    }
    if !head.headers.contains_key(HOST) {
        let authority = HeaderValue::from_str(head.uri.authority()?.as_str()).ok()?;
        head.insert_header(HOST, authority).ok()?;
    }
    Some(())
}

/// Whether an answer head is the whole answer, so it goes out with END_STREAM and no
/// empty DATA frame after it.
fn head_is_whole(head: &ResponseHeader, request: &RequestHeader) -> bool {
    request.method == Method::HEAD
        || matches!(head.status.as_u16(), 204 | 304)
        || head
            .headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0")
}

impl ClientSide for H2Client {
    const RAW_ANSWER: bool = false;

    fn req_header(&self) -> &RequestHeader {
        self.stream.req_header()
    }

    fn req_header_mut(&mut self) -> &mut RequestHeader {
        self.stream.req_header_mut()
    }

    fn raw_head(&self) -> Option<Bytes> {
        None
    }

    fn is_body_empty(&mut self) -> bool {
        self.stream.is_body_empty()
    }

    fn is_upgrade_req(&self) -> bool {
        false
    }

    fn will_keepalive(&self) -> bool {
        false
    }

    fn set_server_keepalive(&mut self, _secs: Option<u64>) {}

    fn response_written(&self) -> Option<&ResponseHeader> {
        self.stream.response_written()
    }

    fn body_bytes_sent(&self) -> usize {
        self.stream.body_bytes_sent()
    }

    async fn read_body_bytes(&mut self) -> Result<Option<Bytes>> {
        match tokio::time::timeout(self.body_timeout, self.stream.read_body_bytes()).await {
            Ok(read) => read,
            Err(_) => Error::e_explain(ErrorType::ReadTimedout, "reading the request body"),
        }
    }

    /// HTTP/2 sends no informational answers here (pingora's stream drops them); a client
    /// that waits for `100 Continue` sends its body after its own wait.
    async fn write_continue(&mut self) -> Result<()> {
        Ok(())
    }

    async fn write_response_header(&mut self, head: Box<ResponseHeader>) -> Result<()> {
        let whole = head_is_whole(&head, self.stream.req_header());
        self.stream.write_response_header(head, whole)
    }

    async fn write_body(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.stream
            .write_body(Bytes::copy_from_slice(bytes), false)
            .await
    }

    async fn write_body_owned(&mut self, bytes: Bytes) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.stream.write_body(bytes, false).await
    }

    async fn finish_body(&mut self) -> Result<()> {
        self.stream.finish()
    }
}
