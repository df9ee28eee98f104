//! The proxy-wide count of upgraded connections (`[websocket] max_connections`) and the
//! signal that closes them all at corral's drain deadline. A leaf: the per-request
//! `Exchange` holds a place, and `websocket` runs the tunnels.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

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

    /// Turns true when [`Tunnels::close_all`] is called, for a tunnel to wait on.
    pub(super) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
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
