//! Requests waiting for a free worker of one pool.

use std::sync::atomic::AtomicU32;

use tokio::sync::Notify;

/// Requests waiting for a free worker of one pool. Lives as long as the pool, across
/// table republishes, so waiters are never stranded on an old table.
#[derive(Debug, Default)]
pub struct Queue {
    /// Woken when a worker frees a slot (one waiter) or the table changes (all waiters).
    pub notify: Notify,
    /// Requests waiting now.
    pub waiting: AtomicU32,
    /// Slots freed while requests waited, each with a waiter woken for it that has not yet
    /// run: a request that was not woken leaves a free slot alone while any is promised, so
    /// the longest waiter gets it rather than whoever looks first.
    pub promised: AtomicU32,
}
