//! `[websocket]` around each tunnel: an upgrade takes a place under `max_connections` before
//! it is forwarded (one over is answered 503 and never reaches a worker); once the worker has
//! answered 101 the tunnel runs as a task of its own, holding a share of its worker's
//! `concurrency` only when `counts_against_concurrency` says so, and ends on `idle_timeout`,
//! its worker's drain deadline or corral's, with its metrics and access line.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use corral_routes::Backend;
use tokio::sync::watch;

use super::context::{Exchange, RequestLine};
use super::outcome::Failure;
use super::tunnel::{End, Tunnel};
use super::Forwarder;
use crate::upstream::Claim;

/// Every open tunnel of the proxy, across reloads: the count `max_connections` is held to,
/// and the signal that closes them all at corral's own drain deadline.
pub struct Tunnels {
    open: AtomicUsize,
    closing: watch::Sender<bool>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            open: AtomicUsize::new(0),
            closing: watch::Sender::new(false),
        }
    }
}

impl Tunnels {
    /// Upgraded connections open now, or being set up.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Closes every tunnel: corral's drain deadline has passed and its workers stop next.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// A place for one more tunnel, unless `max` are open.
    pub(super) fn reserve(self: &Arc<Self>, max: Option<usize>) -> Option<TunnelPlace> {
        let limit = max.unwrap_or(usize::MAX);
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| TunnelPlace(self.clone()))
    }
}

/// One place under `max_connections`, given back when dropped: with the request when the
/// worker did not upgrade, with the tunnel task when it did.
pub(super) struct TunnelPlace(Arc<Tunnels>);

impl Drop for TunnelPlace {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A tunnel riding on a worker without holding one of its `concurrency` slots; counted on
/// the worker so its drain waits for it.
struct Riding(Arc<Backend>);

impl Riding {
    fn on(backend: &Arc<Backend>) -> Riding {
        backend.load.tunnel_opened();
        Riding(backend.clone())
    }
}

impl Drop for Riding {
    fn drop(&mut self) {
        self.0.load.tunnel_closed();
    }
}

impl Forwarder {
    /// Takes a place for an upgrade request, or refuses it with 503.
    pub(super) fn admit_upgrade(&self, exchange: &mut Exchange) -> Result<(), Failure> {
        match self
            .tunnels
            .reserve(exchange.settings.websocket.max_connections)
        {
            Some(place) => {
                exchange.tunnel_place = Some(place);
                Ok(())
            }
            None => {
                self.metrics.websocket_refused();
                let mut failure = Failure::refused(503, "websocket limit");
                failure.keep_alive = true;
                Err(failure)
            }
        }
    }

    /// Runs an upgraded connection to its end in a task of its own, holding only what it
    /// needs, so an idle WebSocket does not keep the request's state machine alive.
    pub(super) fn spawn_tunnel<T: Send + 'static>(
        self: &Arc<Self>,
        tunnel: Tunnel,
        claim: Claim,
        exchange: Exchange,
        request: RequestLine<String>,
        connection_slot: T,
    ) {
        let backend = claim.backend().clone();
        let websocket = exchange.settings.websocket;
        let (held, riding) = if websocket.counts_against_concurrency {
            (Some(claim), None)
        } else {
            drop(claim);
            (None, Some(Riding::on(&backend)))
        };
        let metrics = exchange.route().metrics.websocket.clone();
        metrics.open.inc();
        metrics.total.inc();
        let closing = [backend.load.closing(), self.tunnels.closing.subscribe()];
        let forwarder = self.clone();
        tokio::spawn(async move {
            let _connection = connection_slot;
            let opened = std::time::Instant::now();
            let carried = tunnel.run(websocket.idle_timeout, closing).await;
            drop((held, riding));
            metrics.open.dec();
            metrics.duration.observe(opened.elapsed().as_secs_f64());
            metrics.to_client.inc_by(carried.to_client);
            metrics.to_worker.inc_by(carried.to_worker);
            match &carried.end {
                End::Closed => {}
                End::Failed(e) => {
                    tracing::debug!(request_id = %exchange.request_id, error = %e, "upgraded connection ended with an error")
                }
                end => {
                    tracing::debug!(request_id = %exchange.request_id, end = ?end, "upgraded connection closed by corral")
                }
            }
            forwarder.log_access(
                request.as_ref(),
                &exchange,
                101,
                carried.to_client as usize,
                None,
            );
            forwarder.count(&exchange, 101);
        });
    }
}
