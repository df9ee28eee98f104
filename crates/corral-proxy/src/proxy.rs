//! The pingora proxy phases: refuse what breaks limits, answer 503 when no worker is ready,
//! pick the least busy worker, retry once elsewhere when a worker fails before answering,
//! set the forwarded headers, and count and log every request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use corral_config::Limits;
use corral_supervisor::{RoutingTable, SharedRoutes};
use corral_telemetry::Metrics;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};
use prometheus::IntGauge;

use crate::access_log::{self, AccessEntry};
use crate::limits;
use crate::request_id;
use crate::upstream::{choose, Claim};

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

/// The proxy's settings, fixed for the life of the service.
pub struct ProxySettings {
    /// Client limits.
    pub limits: Limits,
    /// Whether to write an access log line per request.
    pub access_log: bool,
}

/// corral's `ProxyHttp` implementation.
pub struct CorralProxy {
    routes: SharedRoutes,
    settings: ProxySettings,
    metrics: Arc<Metrics>,
}

impl CorralProxy {
    /// A proxy routing by `routes`.
    pub fn new(routes: SharedRoutes, settings: ProxySettings, metrics: Arc<Metrics>) -> Self {
        CorralProxy {
            routes,
            settings,
            metrics,
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
            request_id: String::new(),
            refused: None,
            body_bytes: 0,
            _in_flight: InFlight(self.metrics.in_flight.clone()),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let refusal = limits::check(session.req_header(), &self.settings.limits)
            .or_else(|| smuggled_length(session));
        if let Some(refusal) = refusal {
            ctx.refused = Some(refusal.reason);
            // A refused head may have left unread bytes behind: never reuse the connection.
            respond(session, refusal.status, true, false).await?;
            return Ok(true);
        }
        session.set_keepalive(Some(
            self.settings.limits.keepalive_timeout.as_secs().max(1),
        ));
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
            if ctx.body_bytes > self.settings.limits.body_size {
                ctx.refused = Some("body too large");
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over body_size");
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let table = ctx.table(&self.routes);
        ctx.claim = None;
        let tried = &ctx.tried[..ctx.tries];
        let Some(claim) = choose(&table.active.backends, tried, spread_seed()) else {
            let status = if ctx.tries == 0 { 503 } else { 502 };
            return Error::e_explain(ErrorType::HTTPStatus(status), "no ready worker left to try");
        };
        let backend = claim.backend();
        if ctx.tries < MAX_TRIES {
            ctx.tried[ctx.tries] = backend.pid;
        }
        ctx.tries += 1;
        let mut peer = HttpPeer::new(backend.addr, false, String::new());
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.idle_timeout = Some(UPSTREAM_IDLE);
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
            claim
                .backend()
                .served
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(e) = error {
            if ctx.refused.is_none() && status >= 500 {
                tracing::warn!(request_id = %ctx.request_id, status, error = %e, "request failed");
            }
        }
        if !self.settings.access_log {
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
