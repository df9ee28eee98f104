//! The admin listener: `/healthz`, `/readyz`, `/status` and `/metrics`, never on the public
//! port.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use corral_routes::{PoolView, RouteView, SharedStatus, StatusSnapshot};
use corral_telemetry::Metrics;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::{json, Value};

use crate::control::{ControlRequest, ControlSender};
use crate::forward::{ClientIdentity, Peer};
use crate::settings::ProxySettings;
use corral_control::{Refusal, Request};
use corral_routes::health::HealthView;

/// State the admin endpoints report on.
pub struct Admin {
    status: SharedStatus,
    metrics: Arc<Metrics>,
    /// The proxy's settings, for the edge part of `/status`.
    settings: Arc<ArcSwap<ProxySettings>>,
    draining: Arc<AtomicBool>,
    started: Instant,
    /// Present on the control socket only: `POST /reload` and `POST /scale` are never served
    /// on a TCP port.
    control: Option<ControlSender>,
}

impl Admin {
    /// `draining` turns `/readyz` to 503 the moment a stop begins, so load balancers stop
    /// sending before corral stops accepting.
    pub fn new(
        status: SharedStatus,
        metrics: Arc<Metrics>,
        settings: Arc<ArcSwap<ProxySettings>>,
        draining: Arc<AtomicBool>,
        control: Option<ControlSender>,
    ) -> Self {
        Admin {
            status,
            metrics,
            settings,
            draining,
            started: Instant::now(),
            control,
        }
    }

    /// A control verb (`corral-control`'s protocol), carried to the master and answered.
    async fn control(&self, head: &pingora_http::RequestHeader) -> Response<Vec<u8>> {
        let Some(control) = &self.control else {
            return reply(404, "text/plain", "not found\n".into());
        };
        let request = match Request::parse(head.uri.path(), head.uri.query().unwrap_or("")) {
            None => return reply(404, "text/plain", "not found\n".into()),
            Some(Ok(request)) => request,
            Some(Err(refusal)) => return answer(&Err(refusal)),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = control.send(ControlRequest { request, reply: tx });
        // A master that is gone, or drops the request unanswered, is stopping.
        let outcome = match sent {
            Ok(()) => rx.await.unwrap_or(Err(Refusal::Stopping)),
            Err(_) => Err(Refusal::Stopping),
        };
        answer(&outcome)
    }

    fn readiness(&self, snapshot: &StatusSnapshot) -> Result<String, String> {
        if self.draining.load(Ordering::Acquire) || snapshot.stopping {
            return Err("stopping".into());
        }
        // The pool each route sends its requests to (one without `[[routes]]`).
        let mut ready = Vec::new();
        for pool in snapshot.pools.iter().filter(|p| p.active) {
            if let Some(failed) = &pool.failed {
                return Err(format!("pool {} failed: {failed}", pool.name));
            }
            if pool.ready() == 0 {
                return Err(format!("no ready worker in pool {}", pool.name));
            }
            ready.push(format!(
                "{} of {} workers of pool {}",
                pool.ready(),
                pool.workers.len(),
                pool.name
            ));
        }
        if ready.is_empty() {
            return Err("no active pool".into());
        }
        Ok(format!("ready: {}", ready.join("; ")))
    }

    fn status_json(&self, snapshot: &StatusSnapshot, session: &ServerSession) -> Value {
        let now = Instant::now();
        let mut status = json!({
            "edge": self.edge_json(session),
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "generation": snapshot.generation,
            "stopping": self.draining.load(Ordering::Acquire) || snapshot.stopping,
            "active_pool": snapshot.routes.first().map(|r| &*r.active),
            "active_for_seconds": snapshot.active_since.map(|(since, _)| now.duration_since(since).as_secs_f64()),
            "active_because": snapshot.active_since.map(|(_, why)| why),
            "weights": snapshot.routes.first().and_then(weights_json),
            "pools": snapshot.pools.iter().map(|p| pool_json(p, now)).collect::<Vec<_>>(),
        });
        // With `[[routes]]`, each pool route's own traffic, and what its requests did.
        if snapshot.routes.iter().any(|r| !r.route.is_empty()) {
            let settings = self.settings.load();
            status["routes"] = snapshot
                .routes
                .iter()
                .map(|r| {
                    let (requests, errors) = settings.routes.answered(&r.route);
                    json!({
                        "name": &*r.route,
                        "active_pool": &*r.active,
                        "weights": weights_json(r),
                        "previous_pool": r.previous.as_deref(),
                        "active_for_seconds": r.since.map(|(since, _)| now.duration_since(since).as_secs_f64()),
                        "active_because": r.since.map(|(_, why)| why),
                        "requests": requests,
                        "requests_5xx": errors,
                    })
                })
                .collect();
        }
        status
    }
}

impl Admin {
    /// Who corral trusts, what it removed from the others, and who it takes the caller
    /// of `/status` for: the same resolution as a proxied request, so an operator can
    /// check `trusted_proxies` through their own load balancer.
    fn edge_json(&self, session: &ServerSession) -> Value {
        let settings = self.settings.load();
        let trusted = &settings.trusted_proxies;
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let you = peer.map(|addr| {
            let peer = Peer {
                addr: Some(addr),
                local_port: None,
                tls: false,
            };
            let who = ClientIdentity::of_request(peer, session.req_header(), trusted);
            let text = |v: &Option<http::HeaderValue>| {
                v.as_ref().and_then(|v| v.to_str().ok()).map(str::to_string)
            };
            json!({
                "peer": addr.to_canonical().to_string(),
                "trusted_peer": who.trusted_peer,
                "client_ip": who.ip_text,
                "forwarded_for": text(&who.forwarded_for),
                "scheme": who.proto,
                "host": text(&who.host),
            })
        });
        json!({
            "trusted_proxies": trusted.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "proxy_protocol": settings.proxy_protocol,
            "connections": self.metrics.connections.get(),
            "max_connections": settings.max_connections,
            "connections_refused": self.metrics.connections_refused.get(),
            "untrusted_forwarded_fields_removed": self.metrics.untrusted_forwarded_fields.get(),
            "you": you,
        })
    }
}

/// A route's split as `{ pool: weight }`; `None` when all its requests go to one pool.
fn weights_json(route: &RouteView) -> Option<Value> {
    (!route.weights.is_empty()).then(|| {
        route
            .weights
            .iter()
            .map(|(pool, w)| (pool.to_string(), json!(w)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    })
}

fn pool_json(pool: &PoolView, now: Instant) -> Value {
    json!({
        "name": &*pool.name,
        "active": pool.active,
        "weight": pool.weight,
        "ready": pool.ready(),
        "desired": pool.desired,
        "generation": pool.generation,
        "failed": pool.failed,
        "workers": pool.workers.iter().map(|w| json!({
            "id": w.worker,
            "pid": w.pid,
            "addr": w.backend.as_ref().map(|b| b.info.addr.to_string()),
            "state": w.state.as_str(),
            "state_seconds": now.duration_since(w.since).as_secs_f64(),
            "age_seconds": w.started.map(|s| now.duration_since(s).as_secs_f64()),
            "requests": w.backend.as_ref().map_or(0, |b| b.load.served()),
            "in_flight": w.backend.as_ref().map_or(0, |b| b.load.in_flight()),
            "delivering": w.backend.as_ref().map_or(0, |b| b.load.delivering()),
            "restarts": w.restarts,
            "generation": w.generation,
            "health": w.backend.as_ref().map(|b| health_json(b.health.view())),
        })).collect::<Vec<_>>(),
    })
}

/// A backend's health: active checks and passive ejection.
fn health_json(h: HealthView) -> Value {
    json!({
        "healthy": h.healthy,
        "last_check_seconds_ago": h.last_check.map(|(ms, _)| ms as f64 / 1000.0),
        "last_check_passed": h.last_check.map(|(_, passed)| passed),
        "checks_failed_in_a_row": h.checks_failed,
        "requests_failed_in_a_row": h.fails,
        "ejected_for_seconds": h.ejected_for.map(|ms| ms as f64 / 1000.0),
    })
}

/// Sets `corral_backends` from the snapshot, at scrape time: health changes between
/// republishes, so no snapshot holds it.
fn count_backends(metrics: &Metrics, snapshot: &StatusSnapshot) {
    for pool in &snapshot.pools {
        // Its share of its own route's requests (each pool serves one route).
        let split = snapshot
            .routes
            .iter()
            .find(|r| r.weights.iter().any(|(p, _)| *p == pool.name));
        let share = match (split, pool.weight) {
            (Some(route), Some(w)) => {
                let total: u32 = route.weights.iter().map(|(_, w)| w).sum();
                f64::from(w) / f64::from(total.max(1))
            }
            _ => f64::from(u8::from(pool.active)),
        };
        metrics.set_traffic_share(&pool.name, share);
        let mut counts = [0i64; 3];
        for backend in pool.workers.iter().filter_map(|w| w.backend.as_ref()) {
            let h = backend.health.view();
            let state = if h.ejected_for.is_some() {
                2
            } else if !h.healthy {
                1
            } else {
                0
            };
            counts[state] += 1;
        }
        metrics.set_backends(&pool.name, counts);
        metrics.set_active_pool(&pool.name, pool.active);
    }
}

/// A control reply as HTTP.
fn answer(outcome: &corral_control::Reply) -> Response<Vec<u8>> {
    let (status, body) = corral_control::to_http(outcome);
    reply(status, "application/json", body)
}

fn reply(status: u16, content_type: &str, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let snapshot = self.status.load();
        let head = session.req_header();
        if head.method == http::Method::POST {
            let head = head.clone();
            return self.control(&head).await;
        }
        if head.method != http::Method::GET && head.method != http::Method::HEAD {
            return reply(405, "text/plain", "only GET\n".into());
        }
        match head.uri.path() {
            "/healthz" => reply(200, "text/plain", "ok\n".into()),
            "/readyz" => match self.readiness(&snapshot) {
                Ok(why) => reply(200, "text/plain", why + "\n"),
                Err(why) => reply(503, "text/plain", why + "\n"),
            },
            "/status" => reply(
                200,
                "application/json",
                self.status_json(&snapshot, session).to_string(),
            ),
            "/metrics" => {
                count_backends(&self.metrics, &snapshot);
                reply(200, "text/plain; version=0.0.4", self.metrics.render())
            }
            _ => reply(
                404,
                "text/plain",
                "not found; try /healthz, /readyz, /status or /metrics\n".into(),
            ),
        }
    }
}
