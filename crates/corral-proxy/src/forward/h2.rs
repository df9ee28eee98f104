//! HTTP/2 from clients (ALPN `h2` on the HTTPS listeners). Each stream becomes an HTTP/1.1
//! request on an in-memory [`pipe`](super::pipe) into the forwarder's own request path, so
//! a stream is a request like any other by construction: the same limits (431, 413),
//! identity, rate limits, queueing (503 with `Retry-After`), timeouts (504), retries,
//! compression and access line; the worker side stays HTTP/1.1. The connection offers at
//! most `max_streams` concurrent streams, closes after `keepalive_timeout` without one, and
//! on a graceful stop sends GOAWAY and serves the streams already opened to their end.
//! A connection's streams run in its own task, beside the connection that carries them.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use http::header::{HeaderValue, CONTENT_LENGTH, COOKIE, HOST, TRANSFER_ENCODING};
use pingora_core::protocols::http::v1::client::HttpSession as PipeClient;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_core::protocols::http::v2::server::{self as v2, H2Accept, HttpSession as H2Stream};
use pingora_core::protocols::{Digest, Stream};
use pingora_core::server::ShutdownWatch;
use pingora_error::ErrorType;
use pingora_http::{RequestHeader, ResponseHeader};

use super::accept::Connection;
use super::identity::ClientIdentity;
use super::{pipe, Forwarder, BODY_READ_TIMEOUT};

/// The most a request's decoded header list may take, whatever the limits allow.
const MAX_HEADER_LIST: usize = 1 << 20;

impl Forwarder {
    /// Serves an HTTP/2 connection until the client closes it, it idles past the keep-alive
    /// timeout, or corral stops (GOAWAY, then the open streams finish).
    pub(super) async fn serve_h2(
        self: &Arc<Self>,
        stream: Stream,
        connection: Connection,
        shutdown: &ShutdownWatch,
    ) {
        let settings = self.settings.load_full();
        let mut options = v2::default_h2_options();
        options.max_concurrent_streams(settings.h2_max_streams);
        // A bound on the whole decoded header list; each field and their number are
        // checked on the forwarder's path (431), as for HTTP/1.1.
        let list = settings
            .limits
            .header_size
            .saturating_mul(settings.limits.header_count)
            .min(MAX_HEADER_LIST);
        options.max_header_list_size(u32::try_from(list).unwrap_or(u32::MAX));
        let digest = Arc::new(Digest {
            ssl_digest: stream.get_ssl_digest(),
            timing_digest: stream.get_timing_digest(),
            proxy_digest: stream.get_proxy_digest(),
            socket_digest: stream.get_socket_digest(),
        });
        let handshake = v2::handshake(stream, Some(options));
        let mut conn = match tokio::time::timeout(settings.limits.header_timeout, handshake).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "HTTP/2 handshake failed");
                return;
            }
            Err(_) => return,
        };
        let identity = ClientIdentity {
            http2: true,
            ..(*connection.identity).clone()
        };
        let connection = Arc::new(Connection {
            identity: Arc::new(identity),
            slot: connection.slot,
        });
        // The streams run in this task beside the connection they depend on, not spawned:
        // one task per connection, as for HTTP/1.1.
        let mut streams = FuturesUnordered::new();
        let mut shutdown = shutdown.clone();
        let mut closing = false;
        let keepalive = settings.limits.keepalive_timeout;
        loop {
            if !closing && *shutdown.borrow() {
                conn.graceful_shutdown();
                closing = true;
            }
            let idle = streams.is_empty() && !closing;
            tokio::select! {
                biased;
                Some(()) = streams.next(), if !streams.is_empty() => {}
                _ = shutdown.changed(), if !closing => {}
                () = tokio::time::sleep(keepalive), if idle => {
                    conn.graceful_shutdown();
                    closing = true;
                }
                accepted = H2Stream::from_h2_conn(&mut conn, digest.clone()) => match accepted {
                    Ok(Some(H2Accept::Session(session))) => {
                        streams.push(self.serve_stream(session, &connection));
                    }
                    Ok(Some(H2Accept::Rejected)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "HTTP/2 connection ended");
                        break;
                    }
                },
            }
        }
    }

    /// One stream: its request through the forwarder on a pipe, the answer back.
    async fn serve_stream(self: &Arc<Self>, mut stream: H2Stream, connection: &Connection) {
        let Some(request) = as_http1(stream.req_header(), !stream.is_body_empty()) else {
            answer_directly(&mut stream, 400).await;
            return;
        };
        let (ours, theirs) = pipe::pair();
        let serve = async {
            let mut client = DownstreamSession::new(Box::new(ours));
            client.set_read_timeout(Some(self.settings.load().limits.header_timeout));
            match client.read_request().await {
                Ok(Some(_)) => {
                    client.set_read_timeout(Some(BODY_READ_TIMEOUT));
                    // As a last request on its connection: the pipe carries one exchange.
                    let _ = self.serve(client, connection, true).await;
                }
                Ok(None) => {}
                Err(e) if e.etype() == &ErrorType::InvalidHTTPHeader => {
                    self.refuse_malformed(client).await;
                }
                Err(_) => {}
            }
        };
        let relay = relay(&mut stream, PipeClient::new(Box::new(theirs)), request);
        tokio::join!(serve, relay);
    }
}

/// The HTTP/1.1 head of an HTTP/2 request: the path as the target, `:authority` as `Host`,
/// cookies joined into one field (RFC 9113 §8.2.3), and chunked framing for a body of no
/// stated length. `None` when it cannot be written as HTTP/1.1.
fn as_http1(h2: &RequestHeader, has_body: bool) -> Option<RequestHeader> {
    let target = h2.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = RequestHeader::build(
        h2.method.clone(),
        target.as_bytes(),
        Some(h2.headers.len() + 2),
    )
    .ok()?;
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &h2.headers {
        if name == COOKIE {
            cookies.push(value.as_bytes());
        } else {
            head.append_header(name.clone(), value.clone()).ok()?;
        }
    }
    if !cookies.is_empty() {
        let joined = HeaderValue::from_bytes(&cookies.join(&b"; "[..])).ok()?;
        head.insert_header(COOKIE, joined).ok()?;
    }
    if !head.headers.contains_key(HOST) {
        let authority = h2.uri.authority()?;
        head.insert_header(HOST, authority.as_str()).ok()?;
    }
    if has_body && !head.headers.contains_key(CONTENT_LENGTH) {
        head.insert_header(TRANSFER_ENCODING, "chunked").ok()?;
    }
    Some(head)
}

/// Writes the request into the pipe, its body as the client sends it, then relays the
/// forwarder's answer to the stream.
async fn relay(stream: &mut H2Stream, mut pipe: PipeClient, request: RequestHeader) {
    if pipe.write_request_header(Box::new(request)).await.is_err() {
        stream.shutdown();
        return;
    }
    if !stream.is_body_empty() {
        loop {
            match stream.read_body_bytes().await {
                // A refused body (413) or a request answered early: the answer follows.
                Ok(Some(chunk)) => {
                    if pipe.write_body(&chunk).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {
                    let _ = pipe.finish_body().await;
                    break;
                }
                Err(_) => {
                    stream.shutdown();
                    return;
                }
            }
        }
    }
    loop {
        if pipe.read_response().await.is_err() {
            stream.shutdown();
            return;
        }
        let status = pipe.resp_header().map_or(0, |h| h.status.as_u16());
        if !(100..200).contains(&status) {
            break;
        }
    }
    let Some(answer) = pipe.resp_header().cloned() else {
        stream.shutdown();
        return;
    };
    if stream
        .write_response_header(Box::new(answer), false)
        .is_err()
    {
        return;
    }
    loop {
        match pipe.read_body_ref().await {
            Ok(Some([])) => {}
            Ok(Some(chunk)) => {
                let chunk = Bytes::copy_from_slice(chunk);
                if stream.write_body(chunk, false).await.is_err() {
                    return;
                }
            }
            Ok(None) => break,
            Err(_) => {
                stream.shutdown();
                return;
            }
        }
    }
    let _ = stream.finish();
}

/// An answer corral gives a stream it cannot forward at all.
async fn answer_directly(stream: &mut H2Stream, status: u16) {
    if let Ok(mut head) = ResponseHeader::build(status, Some(1)) {
        let _ = head.insert_header(CONTENT_LENGTH, "0");
        let _ = stream.write_response_header(Box::new(head), true);
        let _ = stream.finish();
    }
}
