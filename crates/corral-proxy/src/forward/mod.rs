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
pub(crate) mod park;
mod passive;
mod proxy_protocol;
mod pump;
mod rate_limit;
mod relay;
mod replay;
mod requests;
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
use std::time::Instant;

use arc_swap::ArcSwap;
use corral_routes::Reporter;
use corral_routes::SharedRoutes;
use corral_telemetry::Metrics;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;

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
    /// Whether this forwarder's idle connections are parked (`park.rs`): a plain one's.
    pub(crate) fn parks(&self) -> bool {
        self.tls.is_none()
    }

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
        // The once-a-connection steps are boxed (admission, the TLS handshake, HTTP/2): a
        // future holds room for its largest state for its whole life, and every open
        // connection's task holds this one.
        let started = Box::pin(self.start(stream, &shutdown)).await;
        if let Some((stream, connection, pipelined, first)) = started {
            let _ = self
                .requests(stream, connection, pipelined, Some(first), None, &shutdown)
                .await;
        }
    }

    /// Admits a new connection and makes its TLS handshake on an HTTPS listener; serves it
    /// whole when it speaks HTTP/2. What its HTTP/1.x requests start from, with the deadline
    /// of its first head; `None` when it is done.
    async fn start(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<(Stream, accept::Connection, Option<bytes::BytesMut>, Instant)> {
        let (connection, mut pipelined) = self.accept(&mut stream, &self.settings.load()).await?;
        match &self.tls {
            Some(acceptor) => {
                let limit = self.settings.load().limits.header_timeout;
                stream = self
                    .handshake(acceptor, stream, pipelined.take(), limit)
                    .await?;
                if stream.selected_alpn_proto() == Some(pingora_core::protocols::ALPN::H2) {
                    self.metrics.tls.connection("h2");
                    Box::pin(self.serve_h2(stream, connection, shutdown)).await;
                    return None;
                }
                self.metrics.tls.https.inc();
            }
            None => self.metrics.tls.http.inc(),
        }
        // A new connection has `header_timeout` for its whole first head, from here.
        let first = Instant::now() + self.settings.load().limits.header_timeout;
        Some((stream, connection, pipelined, first))
    }
}

impl Forwarder {
    /// Answers a head that cannot be parsed with 400 and closes the connection.
    async fn refuse_malformed(&self, mut client: Box<DownstreamSession>) {
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
