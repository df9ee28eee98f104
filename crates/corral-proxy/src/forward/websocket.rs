//! `[websocket]` around each tunnel: an upgrade takes a place under `max_connections` before
//! it is forwarded (one over is answered 503 and never reaches a worker); once the worker has
//! answered 101 the tunnel runs as a task of its own, holding a share of its worker's
//! `concurrency` only when `counts_against_concurrency` says so, and ends on `idle_timeout`,
//! its worker's drain deadline or corral's, with its metrics and access line.

use std::sync::Arc;

use corral_routes::Backend;

use super::context::{Exchange, RequestLine};
use super::failure::Failure;
use super::tunnel::{End, Tunnel};
use super::Forwarder;
use crate::upstream::Claim;

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
        self.count_served(&backend);
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
        let closing = (backend.load.closing(), self.tunnels.closing());
        let forwarder = self.clone();
        tokio::spawn(async move {
            let _connection = connection_slot;
            let opened = std::time::Instant::now();
            let carried = tunnel
                .run(websocket.idle_timeout, closing.0, closing.1)
                .await;
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
            forwarder.count_request(&exchange, 101);
        });
    }
}
