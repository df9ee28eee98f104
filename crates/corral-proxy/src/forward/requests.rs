//! A client connection's HTTP/1.x requests, one after another: the wait for the next one
//! (no buffer while idle, `idle.rs`; parked after a quiet second, `park.rs`), its head, then
//! the request's phases. A new connection comes here once admitted (and its TLS handshake
//! made); a parked one comes back here when its client sends ([`Forwarder::resume`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_error::ErrorType;

use super::accept::Connection;
use super::identity::ClientIdentity;
use super::park::{self, Back, PARK_AFTER};
use super::{deadline, delivered, idle, sniff, Forwarder, STOP_IDLE_GRACE};

/// How an idle wait ended.
enum Idle {
    /// The client sent the first bytes of its next request.
    Bytes(BytesMut),
    /// Nothing for [`PARK_AFTER`]: time to park.
    Quiet,
}

impl Forwarder {
    /// Serves a parked connection again (`park.rs`): its client sent something, or the stop
    /// began. The client identity is made again from the peer (as trusted as at admission).
    pub(super) async fn resume(
        self: Arc<Self>,
        stream: Stream,
        back: Back,
        shutdown: ShutdownWatch,
    ) {
        let mut identity = ClientIdentity::of_peer(back.peer, &[]);
        identity.trusted_peer = back.trusted_peer;
        let connection = Connection {
            identity: Arc::new(identity),
            slot: Arc::new(back.slot),
            peer: back.peer,
        };
        let (first, idle_left) = match back.first {
            true => (Some(back.deadline), None),
            false => (
                None,
                Some(back.deadline.saturating_duration_since(Instant::now())),
            ),
        };
        let _ = self
            .requests(stream, connection, None, first, idle_left, &shutdown)
            .await;
    }

    /// Serves the requests of an admitted connection to its end. `first`: the first head's
    /// deadline (`header_timeout` from admission), while no request has come; `idle_left`:
    /// what is left of the keep-alive wait (a connection back from the lot).
    pub(super) async fn requests(
        self: &Arc<Self>,
        stream: Stream,
        mut connection: Connection,
        mut pipelined: Option<BytesMut>,
        mut first: Option<Instant>,
        mut idle_left: Option<Duration>,
        shutdown: &ShutdownWatch,
    ) -> Option<()> {
        // One wait for the stop signal for the connection's life, not one per request: a
        // new wait registers with the signal and leaves it again, on every request.
        let mut watch = shutdown.clone();
        let stop_signal = async move {
            if !*watch.borrow_and_update() {
                let _ = watch.changed().await;
            }
        };
        tokio::pin!(stop_signal);
        let mut stop_seen = false;
        // Each request line as sent, before pingora's parser rewrites a bad target.
        let (mut stream, line) = sniff::Sniff::wrap(stream);
        let mut idle_deadline = deadline::LazyDeadline::default();
        // Whether a quiet wait may end in the lot: a plain connection on a thread that has one.
        let mut parks = self.tls.is_none() && park::available();
        loop {
            let socket = pingora_core::protocols::UniqueID::id(&*stream);
            let stop_grace = async {
                if !stop_seen {
                    (&mut stop_signal).await;
                    stop_seen = true;
                }
                // Boxed: its timers are needed only once stopping, not in every connection.
                Box::pin(async {
                    delivered::until_delivered(socket).await;
                    tokio::time::sleep(STOP_IDLE_GRACE).await;
                })
                .await;
            };
            tokio::pin!(stop_grace);
            // A new connection has `header_timeout` for its whole first head; between
            // requests the wait is the keep-alive timeout per read, then a quiet close.
            let header_timeout = first.map(|_| self.settings.load().limits.header_timeout);
            let head_deadline = sleep_until_or_never(first);
            tokio::pin!(head_deadline);
            let keepalive = first
                .is_none()
                .then(|| self.settings.load().keepalive_secs());
            // The wait for the next request: the keep-alive timeout, or what is left of it.
            let wait_limit = keepalive.map(|secs| {
                idle_left
                    .take()
                    .unwrap_or_else(|| Duration::from_secs(secs))
            });
            if pipelined.is_none() {
                // Parked after a quiet second, unless the wait ends sooner anyway.
                let park_after = parks.then_some(PARK_AFTER).filter(|after| match first {
                    Some(deadline) => deadline > Instant::now() + *after,
                    None => wait_limit.is_some_and(|limit| limit > *after),
                });
                // Idle: no session and no buffer until the client sends (`idle.rs`); past the
                // keep-alive timeout (one timer for the connection, `deadline.rs`) a quiet close.
                let limit = park_after.or(wait_limit);
                let wait = async {
                    let bytes = idle::first_bytes(&mut stream);
                    match limit {
                        Some(limit) => match idle_deadline.within(limit, bytes).await {
                            Some(bytes) => bytes.map(Idle::Bytes),
                            None => park_after.map(|_| Idle::Quiet),
                        },
                        None => bytes.await.map(Idle::Bytes),
                    }
                };
                let idle = tokio::select! {
                    biased;
                    idle = wait => idle,
                    // Stopping: an idle connection closes after the grace, which starts once
                    // the client has received its last answer whole.
                    _ = &mut stop_grace => return None,
                    _ = &mut head_deadline => {
                        tracing::debug!("request head not complete within header_timeout");
                        return None;
                    }
                };
                match idle {
                    Some(Idle::Bytes(bytes)) => pipelined = Some(bytes),
                    Some(Idle::Quiet) => {
                        let left = wait_limit.map(|limit| limit.saturating_sub(PARK_AFTER));
                        let deadline =
                            first.unwrap_or_else(|| Instant::now() + left.unwrap_or_default());
                        match self.park(stream, connection, deadline, first.is_some(), shutdown) {
                            Ok(()) => return None,
                            Err((not_parked, kept)) => {
                                // Not parked: the rest of the wait in the task.
                                (stream, connection) = (not_parked, kept);
                                parks = false;
                                idle_left = left;
                                continue;
                            }
                        }
                    }
                    None => return None,
                }
            }
            // Boxed: the request's state (the session, its head, some 6 KiB of exchange)
            // lives only while the request does, not in every open connection's task, which
            // holds the wait above and no more; the next request (of any connection) reuses
            // that memory while it is still in cache.
            let served = Box::pin(async {
                line.arm(pipelined.as_deref());
                // Boxed: the session (680 bytes) is handed from phase to phase by value,
                // and each move of it was a copy (a dozen a request); a box moves as a pointer.
                let mut client = Box::new(DownstreamSession::new(stream));
                // Requests sent back to back (pipelining) are answered in order: bytes read
                // past one request start the next.
                client.set_pipelining_enabled(true);
                if let Some(prefix) = pipelined.take() {
                    client.set_pipelined_prefix(prefix);
                }
                match header_timeout {
                    Some(limit) => client.set_read_timeout(Some(limit)),
                    None => client.set_server_keepalive(keepalive),
                }
                let read = tokio::select! {
                    biased;
                    read = client.read_request() => read,
                    // Stopping: the rest of a head has until the grace ends.
                    _ = &mut stop_grace => return None,
                    _ = &mut head_deadline => {
                        tracing::debug!("request head not complete within header_timeout");
                        return None;
                    }
                };
                match read {
                    // Each read of the body waits at most `body_timeout` (nginx's
                    // client_body_timeout): a body that stops arriving is answered 408.
                    Ok(Some(_)) => {
                        if line.with_whole(crate::framing::request_line_ok) == Some(false) {
                            tracing::debug!(
                                "request line with a space, control or raw byte in its target"
                            );
                            self.refuse_malformed(client).await;
                            return None;
                        }
                        client.set_read_timeout(Some(self.settings.load().limits.body_timeout))
                    }
                    Ok(None) => return None,
                    Err(e) => {
                        if e.etype() == &ErrorType::InvalidHTTPHeader {
                            tracing::debug!(error = %e, "malformed request head");
                            self.refuse_malformed(client).await;
                        }
                        return None;
                    }
                }
                if let Some(challenges) = self.acme_challenge(&client) {
                    return Box::pin(self.answer_challenge(client, challenges)).await;
                }
                let stopping = *shutdown.borrow();
                self.serve(client, &connection, stopping).await
            });
            (stream, pipelined) = served.await?;
            first = None;
        }
    }
}

impl Forwarder {
    /// Parks the idle connection `stream` (`park.rs`) until `deadline`; both come back when it
    /// cannot be parked (stopping, the connection's place held elsewhere, the lot refused).
    fn park(
        &self,
        stream: Stream,
        connection: Connection,
        deadline: Instant,
        first: bool,
        shutdown: &ShutdownWatch,
    ) -> Result<(), (Stream, Connection)> {
        if *shutdown.borrow() {
            return Err((stream, connection));
        }
        let Connection {
            identity,
            slot,
            peer,
        } = connection;
        let slot = match Arc::try_unwrap(slot) {
            Ok(slot) => slot,
            Err(slot) => {
                return Err((
                    stream,
                    Connection {
                        identity,
                        slot,
                        peer,
                    },
                ))
            }
        };
        let back = Back {
            slot,
            peer,
            trusted_peer: identity.trusted_peer,
            deadline,
            first,
        };
        match park::park(stream, back) {
            Ok(()) => {
                self.metrics.connections_parked.inc();
                Ok(())
            }
            Err((stream, back)) => Err((
                stream,
                Connection {
                    identity,
                    slot: Arc::new(back.slot),
                    peer,
                },
            )),
        }
    }
}

/// Sleeps until `deadline`, or forever when there is none. The timer is boxed: only a new
/// connection's first head has one, and every connection's task would hold its room.
async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => Box::pin(tokio::time::sleep_until(deadline.into())).await,
        None => std::future::pending().await,
    }
}
