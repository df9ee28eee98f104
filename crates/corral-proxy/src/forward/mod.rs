//! corral's HTTP/1 forwarder, built on pingora-core's sessions and listeners rather than
//! pingora-proxy: one task per client connection reads requests, claims a worker, and relays
//! the exchange over a kept-open connection to that worker. Doing the loop here removes
//! pingora-proxy's per-request machinery (session objects, channels, a task spawned per
//! released connection) and lets upgraded connections run on small buffers.

mod accept;
mod acme;
mod admit;
mod answer;
mod body;
pub(crate) mod buffer;
mod client;
mod coalesce;
mod compress;
mod conns;
mod context;
mod copy;
mod deadline;
mod delivered;
mod exchange;
mod failure;
mod fields;
mod frames;
mod h2;
mod headers;
mod identity;
mod idle;
mod linger;
mod outcome;
mod passive;
mod proxy_protocol;
mod pump;
mod rate_limit;
mod relay;
mod replay;
mod retry;
mod route;
mod send;
mod sniff;
mod static_files;
mod tls;
mod tunnel;
mod tunnels;
mod websocket;
mod wrapped;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use corral_routes::Reporter;
use corral_routes::SharedRoutes;
use corral_telemetry::Metrics;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_error::ErrorType;

use crate::settings::ProxySettings;
pub(crate) use acme::key_authorization;
pub(crate) use fields::{AnswerRules, ForwardMask};
pub(crate) use identity::{ClientIdentity, Peer};
pub(crate) use route::RouteTable;
pub use tunnels::Tunnels;

/// Once corral stops accepting (SIGTERM, or a SIGUSR2 hand-over), how long an idle
/// keep-alive connection is kept for its next request, which is then answered with
/// `Connection: close`. Closing idle connections at once would race requests already on
/// their way (a client sees a reset); a quiet connection closes after this, counted from
/// when the client has received its last answer whole (`delivered.rs`): a client still
/// reading it has not had the chance to send its next request.
const STOP_IDLE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The public proxy: serves every client connection of the public listeners (`listen.rs`).
/// A clone shares everything; [`Forwarder::for_tls`] and `for_thread` make the variants.
#[derive(Clone)]
pub struct Forwarder {
    routes: SharedRoutes,
    settings: Arc<ArcSwap<ProxySettings>>,
    metrics: Arc<Metrics>,
    reporter: Reporter,
    /// Client connections open now, for `max_connections`.
    connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Open tunnels, for `[websocket] max_connections` and the stop sequence.
    tunnels: Arc<Tunnels>,
    /// Connections to each worker of a pool whose workers take one request at a time,
    /// kept open between requests, shared by the proxy threads.
    conns: Arc<conns::ConnMap>,
    /// Connections to each worker of a pool whose workers take several at once (remote
    /// pools, async servers): this proxy thread's own, so a request and its worker
    /// connection are served by one thread's event loop.
    own_conns: Arc<conns::ConnMap>,
    /// The TLS side of an HTTPS listener's forwarder; `None` for plain HTTP.
    tls: Option<Arc<pingora_core::listeners::tls::Acceptor>>,
    /// ACME HTTP-01 challenges answered before anything else (plain listeners, with
    /// `[server.tls.acme]` only).
    challenges: Option<Arc<corral_tls::Challenges>>,
    /// The counters of static routes' answers (`pool="static"`), made at the first one.
    static_metrics: Arc<std::sync::OnceLock<corral_telemetry::PoolMetrics>>,
}

impl Forwarder {
    /// A forwarder routing by `routes`, reporting worker trouble to the supervisor.
    pub fn new(
        routes: SharedRoutes,
        settings: Arc<ArcSwap<ProxySettings>>,
        metrics: Arc<Metrics>,
        reporter: Reporter,
        tunnels: Arc<Tunnels>,
    ) -> Self {
        Forwarder {
            routes,
            settings,
            metrics,
            reporter,
            connections: Arc::default(),
            tunnels,
            conns: Arc::default(),
            own_conns: Arc::default(),
            tls: None,
            challenges: None,
            static_metrics: Arc::default(),
        }
    }

    /// This (plain) forwarder answers the HTTP-01 challenges of `challenges` first.
    pub fn answering(mut self, challenges: Arc<corral_tls::Challenges>) -> Self {
        self.challenges = Some(challenges);
        self
    }

    /// The forwarder of the HTTPS listeners: the same routes, settings, counters and
    /// `max_connections` as this one, with each connection's TLS handshake first.
    pub fn for_tls(&self, acceptor: pingora_core::listeners::tls::Acceptor) -> Self {
        Forwarder {
            tls: Some(Arc::new(acceptor)),
            challenges: None,
            ..self.clone()
        }
    }
}

impl Forwarder {
    /// The same forwarder for another proxy thread (`listen.rs`): everything shared but
    /// the connections to workers that take several requests at once, which are the
    /// thread's own. Those of workers that take one at a time stay shared: such a worker (a
    /// sync worker, a single-threaded server) waits on the one connection it accepted (the
    /// spare one thread opened, or one kept alive), so the next request must take that one,
    /// whichever thread serves it; with a set per thread the other thread's request waited
    /// in the worker's accept queue (`tests/reload.rs` hung 30 s).
    pub(crate) fn for_thread(&self) -> Self {
        Forwarder {
            own_conns: Arc::default(),
            ..self.clone()
        }
    }
}

/// A client connection that may carry another request, with the bytes of the next one
/// already read (pipelining).
type Reusable = (Stream, Option<bytes::BytesMut>);

impl Forwarder {
    /// Serves one client connection to its end: admission, the TLS handshake on an HTTPS
    /// listener, then its requests (HTTP/1.x here, HTTP/2 in `h2.rs`). Its future is the
    /// connection's task (`listen.rs`), held for the connection's whole life.
    pub(crate) async fn connection(self: Arc<Self>, stream: Stream, shutdown: ShutdownWatch) {
        self.serve_connection(stream, &shutdown).await;
    }

    async fn serve_connection(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<()> {
        // The rare or once-a-connection steps are boxed (accept, the TLS handshake, HTTP/2,
        // refusals): a future holds room for its largest state for its whole life, and every
        // open connection holds this one.
        let (connection, mut pipelined) =
            Box::pin(self.accept(&mut stream, &self.settings.load())).await?;
        match &self.tls {
            Some(acceptor) => {
                let limit = self.settings.load().limits.header_timeout;
                stream =
                    Box::pin(self.handshake(acceptor, stream, pipelined.take(), limit)).await?;
                if stream.selected_alpn_proto() == Some(pingora_core::protocols::ALPN::H2) {
                    self.metrics.tls.connection("h2");
                    Box::pin(self.serve_h2(stream, connection, shutdown)).await;
                    return None;
                }
                self.metrics.tls.https.inc();
            }
            None => self.metrics.tls.http.inc(),
        }
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
        let mut first = true;
        let mut idle_deadline = deadline::LazyDeadline::default();
        // Each request line as sent, before pingora's parser rewrites a bad target.
        let (mut stream, line) = sniff::Sniff::wrap(stream);
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
            // A new connection has `header_timeout` for its whole first head, from here;
            // between requests the wait is the keep-alive timeout per read, then a quiet close.
            let header_timeout = first.then(|| self.settings.load().limits.header_timeout);
            let head_deadline = sleep_or_never(header_timeout);
            tokio::pin!(head_deadline);
            let keepalive = (!first).then(|| self.settings.load().keepalive_secs());
            if pipelined.is_none() {
                // Idle: no session and no buffer until the client sends (`idle.rs`); past the
                // keep-alive timeout (one timer for the connection, `deadline.rs`) a quiet close.
                let wait = async {
                    let bytes = idle::first_bytes(&mut stream);
                    match keepalive {
                        Some(secs) => idle_deadline
                            .within(Duration::from_secs(secs), bytes)
                            .await
                            .flatten(),
                        None => bytes.await,
                    }
                };
                pipelined = tokio::select! {
                    biased;
                    bytes = wait => match bytes {
                        Some(bytes) => Some(bytes),
                        None => return None,
                    },
                    // Stopping: an idle connection closes after the grace, which starts once
                    // the client has received its last answer whole.
                    _ = &mut stop_grace => return None,
                    _ = &mut head_deadline => {
                        tracing::debug!("request head not complete within header_timeout");
                        return None;
                    }
                };
            }
            // Boxed: the request's state (the session, its head, some 6 KiB of exchange)
            // lives only while the request does, not in every open connection's task, which
            // holds the wait above and no more; the next request (of any connection) reuses
            // that memory while it is still in cache.
            let served = Box::pin(async {
                line.arm(pipelined.as_deref());
                let mut client = DownstreamSession::new(stream);
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
            first = false;
        }
    }
}

/// Sleeps for `limit`, or forever when there is none. The timer is boxed: only a new
/// connection's first head has one, and every connection's task would hold its room.
async fn sleep_or_never(limit: Option<std::time::Duration>) {
    match limit {
        Some(limit) => Box::pin(tokio::time::sleep(limit)).await,
        None => std::future::pending().await,
    }
}

impl Forwarder {
    /// Answers a head that cannot be parsed with 400 and closes the connection.
    async fn refuse_malformed(&self, mut client: DownstreamSession) {
        if let Ok(mut head) = pingora_http::ResponseHeader::build(400, Some(2)) {
            let _ = head.insert_header("content-length", "0");
            client.set_server_keepalive(None);
            if client.write_response_header(Box::new(head)).await.is_ok() {
                let _ = client.finish_body().await;
            }
        }
        linger::close(client).await;
    }
}
