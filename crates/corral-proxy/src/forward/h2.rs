//! HTTP/2 from clients (ALPN `h2` on the HTTPS listeners). Each stream goes through the
//! forwarder's own request path as a [`ClientSide`](super::client::ClientSide), so a stream
//! is a request like any other by construction: the same limits (431, 413), identity, rate
//! limits, queueing (503 with `Retry-After`), timeouts (504), retries, compression and
//! access line; the worker side stays HTTP/1.1. The connection offers at most
//! `max_streams` concurrent streams, closes after `keepalive_timeout` without one, and on a
//! graceful stop sends GOAWAY and serves the streams already opened to their end.
//! A connection's streams run in its own task, beside the connection that carries them, and
//! outlive it: a stream whose client closed the connection runs to its end and is logged.

use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use pingora_core::protocols::http::v2::server::{self as v2, H2Accept, HttpSession as H2Stream};
use pingora_core::protocols::{Digest, Stream};
use pingora_core::server::ShutdownWatch;

use super::accept::Connection;
use super::client::{ClientSide, H2Client};
use super::relay::Done;
use super::Forwarder;

/// How long the streams of a connection that ended may take to finish (their requests'
/// own timeouts end them sooner).
const STREAMS_AFTER_CLOSE: std::time::Duration = std::time::Duration::from_secs(120);

/// How long a closing connection (GOAWAY sent) with no stream left waits for the client to
/// end it. h2's graceful close waits for the client's PING acknowledgement, and its writes
/// wait for a client that reads: one that does neither (a SETTINGS or PING flood whose
/// answers it never reads) would hold the connection forever.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

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
        // RFC 9113 §3.4: the preface is followed by SETTINGS; the h2 crate takes any frame.
        let stream = match tokio::time::timeout(
            settings.limits.header_timeout,
            settings_first(stream),
        )
        .await
        {
            Ok(Some(stream)) => stream,
            _ => {
                tracing::debug!("HTTP/2 connection without a preface and SETTINGS first");
                return;
            }
        };
        let handshake = v2::handshake(stream, Some(options));
        let mut conn = match tokio::time::timeout(settings.limits.header_timeout, handshake).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "HTTP/2 handshake failed");
                return;
            }
            Err(_) => return,
        };
        // The streams run in this task beside the connection they depend on, not spawned:
        // one task per connection, as for HTTP/1.1.
        let mut streams = FuturesUnordered::new();
        let mut shutdown = shutdown.clone();
        let mut closing = false;
        let mut close_by = tokio::time::Instant::now();
        let keepalive = settings.limits.keepalive_timeout;
        loop {
            if !closing && *shutdown.borrow() {
                conn.graceful_shutdown();
                closing = true;
                close_by = tokio::time::Instant::now() + CLOSE_WAIT;
            }
            let idle = streams.is_empty() && !closing;
            tokio::select! {
                biased;
                Some(()) = streams.next(), if !streams.is_empty() => {}
                _ = shutdown.changed(), if !closing => {}
                () = tokio::time::sleep(keepalive), if idle => {
                    conn.graceful_shutdown();
                    closing = true;
                    close_by = tokio::time::Instant::now() + CLOSE_WAIT;
                }
                () = tokio::time::sleep_until(close_by), if closing && streams.is_empty() => {
                    tracing::debug!("HTTP/2 client did not end a closing connection; dropped");
                    break;
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
        // The connection is over (the client closed it, or it broke), but its streams'
        // requests may be at workers: each runs to its end (an answer it can no longer
        // deliver fails at once) and gets its access line, as on HTTP/1.1.
        let finished = async { while streams.next().await.is_some() {} };
        if tokio::time::timeout(STREAMS_AFTER_CLOSE, finished)
            .await
            .is_err()
        {
            tracing::debug!("HTTP/2 streams still open long after their connection ended");
        }
    }

    /// One stream: its request through the forwarder's phases, the answer back on it.
    async fn serve_stream(self: &Arc<Self>, stream: H2Stream, connection: &Connection) {
        let body_timeout = self.settings.load().limits.body_timeout;
        let Some(mut client) = H2Client::open(stream, body_timeout) else {
            return;
        };
        // As a last request on its connection: a stream carries one exchange.
        let (exchange, result) = self.exchange(&mut client, connection, true).await;
        let complete = match result {
            Ok(Done::Answered) => {
                let status = client.response_written().map_or(0, |h| h.status.as_u16());
                self.finish(&client, &exchange, status, None);
                true
            }
            // Neither is made for a stream (no plain relay, no upgrade request); a worker
            // that switches protocols anyway cannot be carried on HTTP/2.
            Ok(Done::Plain(_) | Done::Upgraded(..) | Done::Static(_)) => {
                self.finish(&client, &exchange, 502, Some("protocol switch on HTTP/2"));
                false
            }
            // Whole when the refusal is corral's own answer; a failure after the worker's
            // answer began leaves it short.
            Err(failure) => {
                let begun = client.response_written().is_some();
                self.fail(&mut client, &exchange, failure).await;
                !begun && client.response_written().is_some()
            }
        };
        client.end(complete).await;
    }
}

/// The client's connection preface and the header of its first frame, checked to be a
/// SETTINGS frame (not an acknowledgement, on stream 0), then put back for the h2 crate.
async fn settings_first(mut stream: Stream) -> Option<Stream> {
    use tokio::io::AsyncReadExt;
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut first = bytes::BytesMut::zeroed(PREFACE.len() + 9);
    stream.read_exact(&mut first).await.ok()?;
    let frame = &first[PREFACE.len()..];
    let settings = frame[3] == 4 && frame[4] & 1 == 0 && frame[5..9] == [0, 0, 0, 0];
    (first.starts_with(PREFACE) && settings).then(|| super::replay::Replay::stream(first, stream))
}
