//! Waiting for a worker: the pool's bounded queue, first come first served. A slot freed
//! while requests wait is promised to the waiter woken for it (`Queue::promised`); a request
//! that arrives meanwhile queues behind instead of taking it, as it would under nginx or the
//! kernel's accept queue.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use corral_routes::Queue;
use corral_routes::{LaneKey, RoutingTable, SharedRoutes, WorkerId};
use corral_telemetry::PoolMetrics;

use super::{choose, has_room, Choice, Claim};

/// Why a request got no worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoWorker {
    /// Every ready worker was tried (or none is ready).
    Exhausted,
    /// All workers are busy and the wait queue is full.
    QueueFull,
    /// All workers stayed busy for the pool's `queue_timeout`.
    QueueTimeout,
}

/// Claims a worker of the pool `ticket` is routed to for one attempt, waiting in the pool's
/// bounded queue while every worker is at its concurrency. `table` is refreshed after each
/// wake-up, since workers may have become ready or retired meanwhile.
pub async fn claim(
    routes: &SharedRoutes,
    table: &mut Arc<RoutingTable>,
    ticket: u32,
    lane: Option<&LaneKey>,
    tried: &[WorkerId],
    spread: usize,
) -> Result<Claim, NoWorker> {
    let mut deadline = None;
    let mut counted = false;
    let mut woken = false;
    loop {
        let Some(route) = table.pick(ticket, lane) else {
            return Err(NoWorker::Exhausted);
        };
        let queue = route.queue.clone();
        if woken || !is_promised(&queue) {
            match choose(&route.backends, &queue, route.concurrency, tried, spread) {
                Choice::Claimed(claim) => {
                    if woken {
                        wake_next_if_room(&queue, route);
                    }
                    return Ok(claim);
                }
                Choice::Exhausted => return Err(NoWorker::Exhausted),
                Choice::Busy => {}
            }
        }
        if !counted {
            if queue.waiting.load(Ordering::SeqCst) >= route.queue_size {
                return Err(NoWorker::QueueFull);
            }
            counted = true;
        }
        let until =
            *deadline.get_or_insert_with(|| tokio::time::Instant::now() + route.queue_timeout);
        let notified = queue.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let waiting = Waiting::new(&queue, &route.metrics);
        // Re-check after registering: a slot freed before `enable` would not wake us. One
        // promised to a woken waiter is left to it.
        if !is_promised(&queue) {
            match choose(&route.backends, &queue, route.concurrency, tried, spread) {
                Choice::Claimed(claim) => return Ok(claim),
                Choice::Exhausted => return Err(NoWorker::Exhausted),
                Choice::Busy => {}
            }
        }
        if tokio::time::timeout_at(until, notified).await.is_err() {
            return Err(NoWorker::QueueTimeout);
        }
        drop(waiting);
        take_promise(&queue);
        woken = true;
        *table = routes.load_full();
    }
}

/// Whether a free slot may be kept for a woken waiter. Only while requests wait: the count
/// is reset when the queue empties, so a promise whose waiter went elsewhere (two wake-ups
/// that met no registered waiter leave one stored permit) never holds a slot at an idle pool.
fn is_promised(queue: &Queue) -> bool {
    queue.waiting.load(Ordering::SeqCst) > 0 && queue.promised.load(Ordering::SeqCst) > 0
}

/// Takes up the slot promised to the waiter just woken. Saturating: a table change wakes
/// every waiter with no slot promised to any.
fn take_promise(queue: &Queue) {
    let _ = queue
        .promised
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
}

/// After a woken waiter took its slot: when requests still wait, none is woken for a slot,
/// and a worker has room (freed while nobody was woken for it, or passed over by a waiter
/// that could not use it), wakes the next, which would otherwise wait for the next answer.
fn wake_next_if_room(queue: &Queue, route: &corral_routes::PoolRoute) {
    if queue.waiting.load(Ordering::SeqCst) > 0
        && !is_promised(queue)
        && has_room(&route.backends, route.concurrency)
    {
        queue.promised.fetch_add(1, Ordering::SeqCst);
        queue.notify.notify_one();
    }
}

/// One request counted in its pool's queue (`waiting` and the depth gauge) for as long as it
/// waits, however the wait ends: a request dropped mid-wait (its HTTP/2 connection gone)
/// must not stay counted, or the queue would fill with requests nobody waits for.
struct Waiting<'a> {
    queue: &'a Queue,
    metrics: &'a PoolMetrics,
}

impl<'a> Waiting<'a> {
    fn new(queue: &'a Queue, metrics: &'a PoolMetrics) -> Self {
        queue.waiting.fetch_add(1, Ordering::SeqCst);
        metrics.queue_depth.inc();
        Waiting { queue, metrics }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.queue.waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last waiter left: no slot is owed to anyone.
            self.queue.promised.store(0, Ordering::SeqCst);
        }
        self.metrics.queue_depth.dec();
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;
    use std::time::Duration;

    use arc_swap::ArcSwap;
    use corral_routes::PoolRoute;

    use super::*;
    use crate::upstream::tests::backend;

    /// One pool of `workers` workers taking one request each, with a queue of ten.
    fn pool(workers: u32) -> (SharedRoutes, Arc<PoolRoute>) {
        let metrics = corral_telemetry::Metrics::new().expect("metrics");
        let route = Arc::new(PoolRoute {
            name: Arc::from("web"),
            backends: (0..workers).map(|i| backend(i, 0)).collect(),
            metrics: metrics.pool("web"),
            concurrency: 1,
            queue_size: 10,
            queue_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            queue: Arc::default(),
            health: corral_config::Health {
                interval: None,
                timeout: Duration::from_secs(1),
                healthy: 1,
                unhealthy: 1,
                max_fails: 0,
                fail_status: Vec::new(),
                eject_for: Duration::from_secs(1),
            },
            response_buffering: true,
            request_buffering: true,
        });
        let table = RoutingTable {
            pools: vec![route.clone()],
            active: route.clone(),
            previous: None,
            split: Vec::new(),
            generation: 1,
            steered: Arc::from(""),
            lanes: Vec::new(),
        };
        (Arc::new(ArcSwap::from_pointee(table)), route)
    }

    async fn request(routes: SharedRoutes) -> Result<Claim, NoWorker> {
        let mut table = routes.load_full();
        claim(&routes, &mut table, 0, None, &[], 0).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_slot_freed_for_a_waiter_goes_to_it_not_to_a_later_request() {
        let (routes, route) = pool(1);
        let first = request(routes.clone()).await.expect("an idle worker");
        let waiter = tokio::spawn(request(routes.clone()));
        tokio::task::yield_now().await;
        assert_eq!(route.queue.waiting.load(Ordering::SeqCst), 1);
        // The waiter is woken but has not run when the later request looks.
        drop(first);
        let later = request(routes.clone());
        tokio::pin!(later);
        assert!(
            futures::poll!(later.as_mut()).is_pending(),
            "the later request took the slot freed for the waiter"
        );
        let second = waiter.await.expect("task").expect("the waiter's slot");
        assert!(futures::poll!(later.as_mut()).is_pending());
        drop(second);
        assert!(later.await.is_ok(), "then the later request, in turn");
        assert_eq!(route.queue.waiting.load(Ordering::SeqCst), 0);
        assert_eq!(route.queue.promised.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_dropped_while_it_waits_leaves_the_queue() {
        let (routes, route) = pool(1);
        let first = request(routes.clone()).await.expect("an idle worker");
        {
            let waiting = request(routes.clone());
            tokio::pin!(waiting);
            assert!(matches!(futures::poll!(waiting.as_mut()), Poll::Pending));
            assert_eq!(route.queue.waiting.load(Ordering::SeqCst), 1);
            assert_eq!(route.metrics.queue_depth.get(), 1);
        }
        assert_eq!(route.queue.waiting.load(Ordering::SeqCst), 0);
        assert_eq!(route.metrics.queue_depth.get(), 0);
        drop(first);
        // Nobody waits: the freed slot is nobody's, and the next request takes it at once.
        assert!(futures::poll!(std::pin::pin!(request(routes.clone()))).is_ready());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn two_slots_freed_while_one_waiter_was_woken_serve_the_next_at_once() {
        let (routes, route) = pool(2);
        let a = request(routes.clone()).await.expect("idle");
        let b = request(routes.clone()).await.expect("idle");
        let waiter = tokio::spawn(request(routes.clone()));
        tokio::task::yield_now().await;
        // Both slots freed before the woken waiter runs: two promises, one waiter.
        drop(a);
        drop(b);
        let first = waiter.await.expect("task").expect("slot");
        assert_eq!(route.queue.waiting.load(Ordering::SeqCst), 0);
        // The other slot is free and nobody waits: a new request must not be kept from it.
        let next = tokio::time::timeout(Duration::from_secs(1), request(routes.clone())).await;
        assert!(matches!(next, Ok(Ok(_))), "a free slot was held for nobody");
        drop(first);
    }
}
