//! The pingora proxy phases: refuse what breaks limits, answer 503 when no worker is ready,
//! pick the least busy worker, retry once elsewhere when a worker fails before answering,
//! set the forwarded headers, and count and log every request.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use corral_config::Limits;
use corral_supervisor::routes::Address;
use corral_supervisor::routes::{Report, Reporter};
use corral_supervisor::{Backend, RoutingTable, SharedRoutes};
use corral_telemetry::Metrics;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use prometheus::IntGauge;

use crate::access_log::{self, AccessEntry};
use crate::limits;
use crate::request_id;
use crate::upstream::{choose, Choice, Claim};

/// Attempts per request: the first, and one more on another worker.
const MAX_TRIES: usize = 2;
/// How long connecting to a local worker may take before trying another.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle pooled connections to workers are closed after this.
const UPSTREAM_IDLE: Duration = Duration::from_secs(30);
/// Headers a client could use to forge where a request came from; always replaced.
const FORWARDED_HEADERS: [&str; 6] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "x-real-ip",
];

/// The proxy's settings; swapped whole on reload.
pub struct ProxySettings {
    /// Client limits.
    pub limits: Limits,
    /// Whether to write an access log line per request.
    pub access_log: bool,
}

/// corral's `ProxyHttp` implementation.
pub struct CorralProxy {
    routes: SharedRoutes,
    settings: Arc<ArcSwap<ProxySettings>>,
    metrics: Arc<Metrics>,
    reporter: Reporter,
}

impl CorralProxy {
    /// A proxy routing by `routes`, reporting worker trouble to the supervisor.
    pub fn new(
        routes: SharedRoutes,
        settings: Arc<ArcSwap<ProxySettings>>,
        metrics: Arc<Metrics>,
        reporter: Reporter,
    ) -> Self {
        CorralProxy {
            routes,
            settings,
            metrics,
            reporter,
        }
    }
}

/// Counts a request in `corral_requests_in_flight` for as long as it lives.
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Per-request state.
pub struct Ctx {
    start: Instant,
    table: Option<Arc<RoutingTable>>,
    claim: Option<Claim>,
    tried: [u32; MAX_TRIES],
    tries: usize,
    upstream_start: Option<Instant>,
    upstream_ms: Option<f64>,
    response_started: bool,
    queued: bool,
    request_id: String,
    refused: Option<&'static str>,
    body_bytes: u64,
    _in_flight: InFlight,
}

impl Ctx {
    fn table(&mut self, routes: &SharedRoutes) -> Arc<RoutingTable> {
        self.table.get_or_insert_with(|| routes.load_full()).clone()
    }
}

/// Answers the client directly with an empty body.
async fn respond(session: &mut Session, status: u16, close: bool, retry_after: bool) -> Result<()> {
    let mut head = ResponseHeader::build(status, Some(3))?;
    head.insert_header("content-length", "0")?;
    if retry_after {
        head.insert_header("retry-after", "1")?;
    }
    if close {
        head.insert_header("connection", "close")?;
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(head), true).await
}

fn spread_seed() -> usize {
    thread_local! {
        static NEXT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }
    NEXT.with(|n| {
        let v = n.get().wrapping_add(1);
        n.set(v);
        v
    })
}

#[async_trait]
impl ProxyHttp for CorralProxy {
    type CTX = Ctx;

    /// No downstream modules: pingora's default installs a (disabled) compression module that
    /// every request would still set up. corral does not compress responses.
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        self.metrics.in_flight.inc();
        Ctx {
            start: Instant::now(),
            table: None,
            claim: None,
            tried: [0; MAX_TRIES],
            tries: 0,
            upstream_start: None,
            upstream_ms: None,
            response_started: false,
            queued: false,
            request_id: String::new(),
            refused: None,
            body_bytes: 0,
            _in_flight: InFlight(self.metrics.in_flight.clone()),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let settings = self.settings.load();
        let refusal = limits::check(session.req_header(), &settings.limits)
            .or_else(|| smuggled_length(session));
        if let Some(refusal) = refusal {
            ctx.refused = Some(refusal.reason);
            // A refused head may have left unread bytes behind: never reuse the connection.
            respond(session, refusal.status, true, false).await?;
            return Ok(true);
        }
        session.set_keepalive(Some(settings.limits.keepalive_timeout.as_secs().max(1)));
        if ctx.table(&self.routes).active.backends.is_empty() {
            ctx.refused = Some("no ready worker");
            self.metrics.no_ready_worker.inc();
            respond(session, 503, false, true).await?;
            return Ok(true);
        }
        ctx.request_id = request_id::next();
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > self.settings.load().limits.body_size {
                ctx.refused = Some("body too large");
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over body_size");
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        ctx.claim = None;
        let mut deadline = None;
        let claim = loop {
            let table = ctx.table(&self.routes);
            let route = &table.active;
            let tried = &ctx.tried[..ctx.tries.min(MAX_TRIES)];
            match choose(
                &route.backends,
                &route.queue,
                route.concurrency,
                tried,
                spread_seed(),
            ) {
                Choice::Claimed(claim) => break claim,
                Choice::Exhausted => {
                    let status = if ctx.tries == 0 { 503 } else { 502 };
                    return Error::e_explain(
                        ErrorType::HTTPStatus(status),
                        "no ready worker left to try",
                    );
                }
                Choice::Busy => {}
            }
            // Every worker is at its concurrency: wait in the pool's bounded queue.
            let queue = route.queue.clone();
            if !ctx.queued {
                if queue.waiting.load(Ordering::SeqCst) >= route.queue_size {
                    ctx.refused = Some("queue full");
                    return Error::e_explain(ErrorType::HTTPStatus(503), "queue full");
                }
                ctx.queued = true;
            }
            let until =
                *deadline.get_or_insert_with(|| tokio::time::Instant::now() + route.queue_timeout);
            let metrics = route.metrics.clone();
            let notified = queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            queue.waiting.fetch_add(1, Ordering::SeqCst);
            metrics.queue_depth.inc();
            // Re-check after registering: a slot freed before `enable` would not wake us.
            let tried = &ctx.tried[..ctx.tries.min(MAX_TRIES)];
            let retry = choose(
                &route.backends,
                &route.queue,
                route.concurrency,
                tried,
                spread_seed(),
            );
            let woke = match retry {
                Choice::Claimed(claim) => {
                    queue.waiting.fetch_sub(1, Ordering::SeqCst);
                    metrics.queue_depth.dec();
                    break claim;
                }
                _ => tokio::time::timeout_at(until, notified).await.is_ok(),
            };
            queue.waiting.fetch_sub(1, Ordering::SeqCst);
            metrics.queue_depth.dec();
            if !woke {
                ctx.refused = Some("queue timeout");
                return Error::e_explain(
                    ErrorType::HTTPStatus(503),
                    "no worker freed up within queue_timeout",
                );
            }
            // The table may have changed (workers ready, retired): read it again.
            ctx.table = Some(self.routes.load_full());
        };
        let table = ctx.table(&self.routes);
        let backend = claim.backend();
        if ctx.tries < MAX_TRIES {
            ctx.tried[ctx.tries] = backend.pid;
        }
        ctx.tries += 1;
        let Some(mut peer) = peer_of(backend) else {
            return Error::e_explain(ErrorType::HTTPStatus(502), "worker address unusable");
        };
        if !session.is_upgrade_req() {
            // A worker silent this long is stuck (Gunicorn's `timeout`); upgraded
            // connections (WebSocket) may rightly be idle far longer.
            peer.options.read_timeout = Some(table.active.timeout);
        }
        ctx.claim = Some(claim);
        ctx.upstream_start = Some(Instant::now());
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        for name in FORWARDED_HEADERS {
            upstream.remove_header(name);
        }
        let client = client_addr(session);
        if let Some(client) = client {
            let ip = client.ip().to_string();
            upstream.insert_header("x-forwarded-for", &ip)?;
            upstream.insert_header("x-real-ip", &ip)?;
        }
        upstream.insert_header("x-forwarded-proto", "http")?;
        if let Some(host) = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .cloned()
        {
            upstream.insert_header("x-forwarded-host", host)?;
        }
        if let Some(local) = session.server_addr().and_then(|a| a.as_inet()) {
            upstream.insert_header("x-forwarded-port", local.port().to_string())?;
        }
        upstream.insert_header("x-request-id", &ctx.request_id)?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.response_started = true;
        ctx.upstream_ms = ctx
            .upstream_start
            .map(|t| t.elapsed().as_secs_f64() * 1000.0);
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if ctx.tries < MAX_TRIES {
            tracing::warn!(peer = %peer, error = %e, "cannot connect to worker; trying another");
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("worker {peer}"));
        // Like nginx's proxy_next_upstream: a worker that died before answering an idempotent
        // request did not act on it in a way the client saw, so another worker may take it.
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated();
        e.set_retry(replayable && !ctx.response_started && ctx.tries < MAX_TRIES);
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(code), _) => *code,
            (ErrorType::ReadTimedout, pingora_error::ErrorSource::Upstream) => 504,
            (_, pingora_error::ErrorSource::Upstream) => 502,
            (
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
                pingora_error::ErrorSource::Downstream,
            ) => 0,
            (_, pingora_error::ErrorSource::Downstream) => 400,
            _ => 500,
        };
        if code == 504 {
            self.report_hung(session, ctx);
        }
        if code > 0 && !ctx.response_started {
            if let Err(write) = respond(session, code, true, code == 503).await {
                tracing::debug!(error = %write, "cannot send the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut Ctx) {
        let status = match session.response_written() {
            Some(head) => head.status.as_u16(),
            None => match error.map(|e| e.etype()) {
                Some(ErrorType::HTTPStatus(code)) => *code,
                Some(_) => 502,
                None => 0,
            },
        };
        let table = ctx.table(&self.routes);
        let route = &table.active;
        route
            .metrics
            .observe(status, ctx.start.elapsed().as_secs_f64());
        let backend = ctx.claim.take();
        if let Some(claim) = &backend {
            let b = claim.backend();
            let served = b.served.fetch_add(1, Ordering::Relaxed) + 1;
            // Exactly one request sees the count reach the limit, so one report is sent.
            if served == b.max_requests {
                b.retiring.store(true, Ordering::Relaxed);
                self.reporter.send(Report::Retire {
                    worker: b.id,
                    reason: "max_requests",
                });
            }
        }
        if let Some(e) = error {
            if ctx.refused.is_none() && status >= 500 {
                tracing::warn!(request_id = %ctx.request_id, status, error = %e, "request failed");
            }
        }
        if !self.settings.load().access_log {
            return;
        }
        let head = session.req_header();
        let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
        let user_agent = head
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        access_log::write(&AccessEntry {
            request_id: &ctx.request_id,
            client_ip: client_addr(session)
                .map(|a| a.ip().to_string())
                .unwrap_or_default(),
            method: head.method.as_str(),
            path,
            status,
            bytes: session.body_bytes_sent(),
            duration_ms: ctx.start.elapsed().as_secs_f64() * 1000.0,
            upstream_ms: ctx.upstream_ms,
            pool: &route.name,
            worker: backend.as_ref().map(|c| c.backend().worker),
            pid: backend.as_ref().map(|c| c.backend().pid),
            user_agent,
            refused: ctx.refused,
            websocket: session.is_upgrade_req(),
        });
    }
}

impl CorralProxy {
    /// A sync worker (`concurrency = 1`) that let a request time out is stuck on it: ask the
    /// supervisor to kill and replace it, naming the request. A worker that takes several
    /// requests at once may just be slow on one; it is left alone.
    fn report_hung(&self, session: &Session, ctx: &mut Ctx) {
        let table = ctx.table(&self.routes);
        let Some(claim) = &ctx.claim else { return };
        if table.active.concurrency != 1 {
            return;
        }
        let head = session.req_header();
        let request = format!(
            "{} {} (request_id {})",
            head.method,
            head.uri.path_and_query().map_or("/", |p| p.as_str()),
            ctx.request_id
        );
        self.reporter.send(Report::Hung {
            worker: claim.backend().id,
            request,
        });
    }
}

/// A request whose raw head had both `Transfer-Encoding` and `Content-Length`.
fn smuggled_length(session: &Session) -> Option<limits::Refusal> {
    if !session
        .req_header()
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
    {
        return None;
    }
    let raw = session.as_downstream().as_http1()?.get_headers_raw_bytes();
    limits::raw_has_content_length(&raw).then_some(limits::Refusal {
        status: 400,
        reason: "both Content-Length and Transfer-Encoding",
    })
}

fn client_addr(session: &Session) -> Option<SocketAddr> {
    session.client_addr().and_then(|a| a.as_inet()).copied()
}

/// The worker's upstream peer, built on first use and kept on its `Backend`, so a request
/// clones a ready value instead of building one from the address.
fn peer_of(backend: &Backend) -> Option<HttpPeer> {
    let cached = backend.proxy_data.get_or_init(|| {
        let peer = match &backend.addr {
            Address::Tcp(addr) => Some(HttpPeer::new(*addr, false, String::new())),
            Address::Unix(path) => {
                HttpPeer::new_uds(&path.to_string_lossy(), false, String::new()).ok()
            }
        };
        Box::new(peer.map(|mut peer| {
            peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
            peer.options.idle_timeout = Some(UPSTREAM_IDLE);
            peer
        }))
    });
    cached
        .downcast_ref::<Option<HttpPeer>>()
        .and_then(|p| p.clone())
}
