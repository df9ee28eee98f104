//! The per-request context: what every phase of one request reads and what it leaves for
//! the outcome (counters and the access line), gathered as the request goes.

use std::sync::Arc;
use std::time::Instant;

use corral_compress::{Choice, Compressor};
use corral_routes::{Backend, PoolRoute, RoutingTable};
use http::header::USER_AGENT;
use pingora_http::RequestHeader;

use corral_telemetry::buffer::BufferMetrics;

use super::body::BodyStart;
use super::buffer::Buffered;
use super::fields::{AnswerContext, AnswerRules};
use super::headers::is_upgrade;
use super::identity::ClientIdentity;
use super::tunnels::TunnelPlace;
use crate::settings::ProxySettings;

/// One request through the proxy.
pub(super) struct Exchange {
    /// The client, as resolved for its connection.
    pub(super) client: Arc<ClientIdentity>,
    /// The proxy settings, loaded once for the whole request.
    pub(super) settings: Arc<ProxySettings>,
    /// The keep-alive timeout to offer the client, or `None` to close after this request.
    pub(super) keepalive: Option<u64>,
    pub(super) start: Instant,
    /// The routing table the request was routed by (read again to choose a worker, and
    /// while it waits in a queue).
    pub(super) table: Arc<RoutingTable>,
    /// Which pool of a canary split the request goes to ([`RoutingTable::route`]); drawn
    /// once, so a retry or a wait in a queue stays in the same pool.
    pub(super) ticket: u32,
    /// The lane of the request's `[[routes]]` pool route; `None` without routes (the
    /// routing table's own `active` and `split`).
    pub(super) lane: Option<corral_routes::LaneKey>,
    /// The `[[routes]]` route the request matched, for the access line.
    pub(super) route_name: Option<Arc<str>>,
    /// Its place in `settings.routes`, for its metrics.
    pub(super) route_index: Option<usize>,
    /// Whether the route rewrote the request head (`strip_prefix`), so the worker gets
    /// it rebuilt rather than as read.
    pub(super) rewritten: bool,
    /// What answered instead of a pool (`static`, `redirect`), for metrics and the log.
    pub(super) served_by: Option<&'static str>,
    /// The route's own answer rules (`headers` on a `[[routes]]` table), made once per config.
    pub(super) route_rules: Option<Arc<AnswerRules>>,
    pub(super) request_id: String,
    /// The worker that took the request, once one did.
    pub(super) backend: Option<Arc<Backend>>,
    pub(super) upstream_start: Instant,
    /// Time from sending the request to the worker's answer head.
    pub(super) upstream_ms: Option<f64>,
    /// Forwarding fields an untrusted peer sent, left out of the worker's request.
    pub(super) forged: u32,
    /// Fields with `_` in their name, left out (`server.underscores_in_headers` off).
    pub(super) underscored: u32,
    /// The body read before a worker was chosen.
    pub(super) body: BodyStart,
    /// The rate limit state for the answer (`RateLimit`, `RateLimit-Policy`).
    pub(super) rate_fields: Vec<(&'static str, String)>,
    /// Places under rate limit in-flight caps, held until the request (or tunnel) ends.
    pub(super) rate_guards: Vec<corral_ratelimit::inflight::InFlightGuard>,
    /// The coding the client accepts for the answer, when compression is on.
    pub(super) encoding: Option<Choice>,
    /// An upgrade's place under `[websocket] max_connections`, held until its tunnel ends.
    pub(super) tunnel_place: Option<TunnelPlace>,
    _in_flight: InFlight,
}

impl Exchange {
    pub(super) fn new(
        client: Arc<ClientIdentity>,
        settings: Arc<ProxySettings>,
        keepalive: Option<u64>,
        table: Arc<RoutingTable>,
        in_flight: &prometheus::IntGauge,
    ) -> Exchange {
        let start = Instant::now();
        let ticket = if !table.splits() {
            0
        } else {
            crate::upstream::next_ticket()
        };
        Exchange {
            ticket,
            lane: None,
            route_name: None,
            route_index: None,
            rewritten: false,
            served_by: None,
            route_rules: None,
            client,
            settings,
            keepalive,
            start,
            table,
            request_id: String::new(),
            backend: None,
            upstream_start: start,
            upstream_ms: None,
            forged: 0,
            underscored: 0,
            body: BodyStart::default(),
            rate_fields: Vec::new(),
            rate_guards: Vec::new(),
            encoding: None,
            tunnel_place: None,
            _in_flight: InFlight::start(in_flight),
        }
    }

    /// The pool the request is routed to: the one place that picks it from the table.
    pub(super) fn route(&self) -> &PoolRoute {
        self.table
            .pick(self.ticket, self.lane.as_ref())
            .unwrap_or(&self.table.active)
    }

    /// What this request adds to its answer.
    pub(super) fn answer_context(&self) -> AnswerContext<'_> {
        AnswerContext {
            https: self.client.proto == "https",
            request_id: &self.request_id,
            extra: &self.rate_fields,
        }
    }

    /// The answer rules of the request's route: its own `headers`, else `[headers]`.
    pub(super) fn answer_rules(&self) -> &AnswerRules {
        self.route_rules.as_deref().unwrap_or(&self.settings.answer)
    }

    /// The compressor and the request's coding, when its answer may be compressed.
    pub(super) fn compression(&self) -> Option<(&Compressor, Choice)> {
        Some((self.settings.compression.as_ref()?, self.encoding?))
    }

    /// What relaying the answer holds for a slow client: the pool's buffering, or one
    /// piece at a time where the pool opted out (`response_buffering = false`).
    pub(super) fn buffered<'a>(&'a self, metrics: &'a BufferMetrics) -> Buffered<'a> {
        let settings = if self.route().response_buffering {
            &self.settings.buffering
        } else {
            &self.settings.unbuffered
        };
        Buffered {
            settings,
            metrics,
            send_timeout: self.settings.limits.send_timeout,
        }
    }

    /// Marks the moment the answer head arrived.
    pub(super) fn answer_began(&mut self) {
        self.upstream_ms = Some(self.upstream_start.elapsed().as_secs_f64() * 1000.0);
    }
}

/// Counts a request in `corral_requests_in_flight` for as long as it lives.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn start(gauge: &prometheus::IntGauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What the access log shows of a request, borrowed from its head (or owned, for a tunnel
/// that outlives the head).
pub(super) struct RequestLine<S> {
    pub(super) method: S,
    pub(super) path: S,
    pub(super) user_agent: S,
    pub(super) websocket: bool,
    /// `HTTP/1.1`, `HTTP/1.0` or `HTTP/2.0`, as nginx's `$server_protocol`.
    pub(super) version: &'static str,
}

impl<'a> RequestLine<&'a str> {
    pub(super) fn of(head: &'a RequestHeader) -> Self {
        RequestLine {
            method: head.method.as_str(),
            path: head.uri.path_and_query().map_or("/", |p| p.as_str()),
            user_agent: head
                .headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            websocket: is_upgrade(head),
            version: match head.version {
                http::Version::HTTP_2 => "HTTP/2.0",
                http::Version::HTTP_10 => "HTTP/1.0",
                http::Version::HTTP_09 => "HTTP/0.9",
                _ => "HTTP/1.1",
            },
        }
    }

    pub(super) fn to_owned(&self) -> RequestLine<String> {
        RequestLine {
            method: self.method.to_owned(),
            path: self.path.to_owned(),
            user_agent: self.user_agent.to_owned(),
            websocket: self.websocket,
            version: self.version,
        }
    }
}

impl RequestLine<String> {
    pub(super) fn as_ref(&self) -> RequestLine<&str> {
        RequestLine {
            method: &self.method,
            path: &self.path,
            user_agent: &self.user_agent,
            websocket: self.websocket,
            version: self.version,
        }
    }
}
