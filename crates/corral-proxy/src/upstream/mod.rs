//! Choosing a worker: least outstanding requests among the ready workers of the active pool,
//! never more than `concurrency` on one, skipping workers this request already failed on.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use corral_routes::Queue;
use corral_routes::{Backend, WorkerId};

mod ticket;
mod wait;

pub use ticket::next_ticket;
pub use wait::{claim, NoWorker};

/// A claim on one worker for one request: counts in its `in_flight` until dropped, so the
/// count is right on every path out of a request (errors and retries included), and wakes
/// one queued request when it frees the slot.
pub struct Claim {
    backend: Arc<Backend>,
    queue: Arc<Queue>,
    /// The pool's `concurrency` when claimed.
    concurrency: u32,
}

impl Claim {
    /// The claimed worker.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Requests the worker's pool takes at once per worker: more than one means it serves
    /// several connections at once.
    pub fn concurrency(&self) -> u32 {
        self.concurrency
    }

    /// Frees the worker's slot once it has answered in full. True when a queued request was
    /// woken to take the slot.
    pub fn answered(self) -> bool {
        let queued = self.queue.waiting.load(Ordering::SeqCst) > 0;
        drop(self);
        queued
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Every request the worker took counts toward `max_requests`'s cap, whatever its
        // end, and before its slot is freed so the cap never misses it between the two.
        self.backend.answered();
        self.backend.load.release();
        // SeqCst pairs with the waiter's increment of `waiting` before its re-check: either
        // it sees our decrement, or we see it waiting and wake it. The slot is promised to
        // the one woken, so that a request arriving before it runs leaves the slot alone.
        if self.queue.waiting.load(Ordering::SeqCst) > 0 {
            self.queue.promised.fetch_add(1, Ordering::SeqCst);
            self.queue.notify.notify_one();
        }
    }
}

/// The outcome of one attempt to pick a worker.
pub enum Choice {
    /// A worker was claimed.
    Claimed(Claim),
    /// Every untried worker is at its concurrency limit: wait for one to free up.
    Busy,
    /// No untried worker exists.
    Exhausted,
}

/// Picks the ready worker with the fewest requests in flight, below `concurrency`, not in
/// `tried` (by id: remote backends have no pid), and claims it. Ties go to the worker after `spread` (a per-request number),
/// so equally idle workers share the load instead of the first one taking everything.
pub fn choose(
    backends: &[Arc<Backend>],
    queue: &Arc<Queue>,
    concurrency: u32,
    tried: &[WorkerId],
    spread: usize,
) -> Choice {
    let n = backends.len();
    let mut any_untried = false;
    // Backends out of rotation (failed checks, ejected) are left out while any other is in;
    // when none is, they are all there is.
    let mut include_out = false;
    let mut now = None;
    let mut looks = 0;
    while looks < 2 {
        // The least loaded worker with room, preferring workers that are not retiring.
        let mut best: Option<(&Arc<Backend>, (bool, u32))> = None;
        let mut any_out = false;
        let mut any_in = false;
        for i in 0..n {
            let b = &backends[(spread + i) % n];
            if tried.contains(&b.info.id) {
                continue;
            }
            // A worker past its limit plus a tenth takes nothing more, nor one whose drain
            // has begun (this table is older than the one without it): requests wait for
            // the others, its replacement or the next table, as if it were busy.
            if b.is_spent() || b.load.is_draining() {
                any_in = true;
                continue;
            }
            if !include_out && !b.health.in_rotation(&mut now) {
                any_out = true;
                continue;
            }
            any_in = true;
            let load = b.load.in_flight();
            let rank = (b.load.is_retiring(), load);
            if load < concurrency && best.is_none_or(|(_, r)| rank < r) {
                best = Some((b, rank));
                if rank == (false, 0) {
                    break;
                }
            }
        }
        if !any_in && any_out && !include_out {
            include_out = true;
            continue;
        }
        any_untried |= any_in;
        looks += 1;
        let Some((b, (_, load))) = best else { break };
        // Claim only if nobody took the slot since we looked; else look again once.
        if b.load.claim(load) {
            // The count may have gone down and up again since `is_spent` looked (a request
            // answered, another claimed, on other threads): with ours counted, a retiring
            // worker must still be within its cap, or the count is taken back. Not through
            // a `Claim`'s drop: a worker at its cap frees no slot to promise a waiter. The
            // same for a drain begun meanwhile (see `Load::begin_drain`).
            if b.would_pass_cap(b.load.in_flight()) || b.load.is_draining() {
                b.load.release();
                continue;
            }
            return Choice::Claimed(Claim {
                backend: b.clone(),
                queue: queue.clone(),
                concurrency,
            });
        }
    }
    if any_untried {
        Choice::Busy
    } else {
        Choice::Exhausted
    }
}

/// Whether some worker could take one more request now: a woken waiter that took its slot
/// asks this before waking the next, for room freed while no one was woken for it.
fn has_room(backends: &[Arc<Backend>], concurrency: u32) -> bool {
    backends
        .iter()
        .any(|b| b.load.in_flight() < concurrency && !b.is_spent())
}

/// A per-thread counter that spreads ties between equally idle workers.
pub fn spread_seed() -> usize {
    thread_local! {
        static NEXT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }
    NEXT.with(|n| {
        let v = n.get().wrapping_add(1);
        n.set(v);
        v
    })
}

#[cfg(test)]
mod tests {

    use std::time::Instant;

    use super::*;

    fn backends(n: u32) -> Vec<Arc<Backend>> {
        (0..n).map(|i| backend(i, 0)).collect()
    }

    pub(super) fn backend(i: u32, max_requests: u64) -> Arc<Backend> {
        Arc::new(Backend::new(corral_routes::BackendInfo {
            id: corral_routes::WorkerId(u64::from(i)),
            pool: Arc::from("web"),
            worker: i + 1,
            pid: 100 + i,
            addr: corral_routes::Address::Tcp(
                format!("127.0.0.1:{}", 9000 + i).parse().expect("addr"),
            ),
            started: Instant::now(),
            max_requests,
            recycle: corral_routes::Recycle::new(
                max_requests,
                std::time::Duration::from_secs(1),
                Instant::now(),
            ),
        }))
    }

    fn pid(choice: Choice) -> Option<u32> {
        match choice {
            Choice::Claimed(c) => Some(c.backend().info.pid),
            _ => None,
        }
    }

    /// Moves `b`'s in-flight count to `n` the way requests do: claims and releases.
    fn set_in_flight(b: &Backend, n: u32) {
        while b.load.in_flight() < n {
            assert!(b.load.claim(b.load.in_flight()));
        }
        while b.load.in_flight() > n {
            b.load.release();
        }
    }

    /// Counts `n` more answers given in full by `b`.
    fn answer(b: &Backend, n: u32) {
        for _ in 0..n {
            b.answered();
        }
    }

    #[test]
    fn picks_the_least_loaded_and_counts_the_claim() {
        let (b, q) = (backends(3), Arc::new(Queue::default()));
        set_in_flight(&b[0], 2);
        set_in_flight(&b[1], 1);
        set_in_flight(&b[2], 3);
        let Choice::Claimed(claim) = choose(&b, &q, 10, &[], 0) else {
            panic!("expected a claim")
        };
        assert_eq!(claim.backend().info.pid, 101);
        assert_eq!(b[1].load.in_flight(), 2);
        drop(claim);
        assert_eq!(b[1].load.in_flight(), 1);
    }

    #[test]
    fn a_worker_whose_drain_began_is_not_taken_from_an_older_table() {
        // Regression (bench/soak): a request holding the table of a moment before could
        // claim a worker its drain had just found idle, and the worker was stopped under it.
        let (b, q) = (backends(2), Arc::new(Queue::default()));
        b[0].load.begin_drain();
        for spread in 0..4 {
            assert_eq!(pid(choose(&b, &q, 10, &[], spread)), Some(101));
        }
        b[1].load.begin_drain();
        assert!(matches!(choose(&b, &q, 10, &[], 0), Choice::Busy));
        assert_eq!(b[0].load.in_flight() + b[1].load.in_flight(), 0);
    }

    #[test]
    fn idle_workers_share_by_spread() {
        let (b, q) = (backends(4), Arc::new(Queue::default()));
        let picked: Vec<Option<u32>> = (0..4).map(|s| pid(choose(&b, &q, 1, &[], s))).collect();
        assert_eq!(picked, vec![Some(100), Some(101), Some(102), Some(103)]);
    }

    #[test]
    fn never_more_than_concurrency_on_a_worker() {
        let (b, q) = (backends(2), Arc::new(Queue::default()));
        let claims: Vec<Choice> = (0..4).map(|s| choose(&b, &q, 2, &[], s)).collect();
        assert!(claims.iter().all(|c| matches!(c, Choice::Claimed(_))));
        assert!(matches!(choose(&b, &q, 2, &[], 0), Choice::Busy));
        assert_eq!((b[0].load.in_flight(), b[1].load.in_flight()), (2, 2));
        drop(claims);
        assert!(matches!(choose(&b, &q, 2, &[], 0), Choice::Claimed(_)));
    }

    #[test]
    fn retiring_workers_take_only_the_overflow() {
        let (b, q) = (backends(2), Arc::new(Queue::default()));
        b[0].load.retire();
        set_in_flight(&b[1], 1);
        let first = choose(&b, &q, 2, &[], 0);
        let second = choose(&b, &q, 2, &[], 0);
        let pids: Vec<Option<u32>> = [&first, &second]
            .iter()
            .map(|c| match c {
                Choice::Claimed(c) => Some(c.backend().info.pid),
                _ => None,
            })
            .collect();
        assert_eq!(
            pids,
            vec![Some(101), Some(100)],
            "the busier worker that stays wins; the retiring one takes the overflow"
        );
    }

    #[test]
    fn a_retiring_worker_past_its_limit_and_a_tenth_takes_no_more_requests() {
        let q = Arc::new(Queue::default());
        let b = vec![backend(0, 100), backend(1, 100)];
        b[0].load.retire();
        answer(&b[0], 108);
        set_in_flight(&b[1], 2);
        let overflow = choose(&b, &q, 2, &[], 0);
        assert_eq!(pid(overflow), Some(100), "up to 110 it takes the overflow");
        answer(&b[0], 1);
        set_in_flight(&b[0], 1);
        assert!(
            matches!(choose(&b, &q, 2, &[], 0), Choice::Busy),
            "with the other busy, the request waits rather than overshoot"
        );
        set_in_flight(&b[1], 1);
        assert_eq!(pid(choose(&b, &q, 2, &[], 0)), Some(101));
        // Alone too: its requests wait for its replacement, as they would behind a
        // gunicorn worker that restarts.
        let alone = vec![b[0].clone()];
        assert!(matches!(choose(&alone, &q, 2, &[], 0), Choice::Busy));
    }

    /// Claims and answers racing on several threads (as on a multi-thread runtime): the
    /// in-flight count goes down and up between a claimer's look and its claim, and a
    /// retiring worker must still never be given more than its cap.
    #[test]
    fn racing_claims_never_take_a_retiring_worker_past_its_cap() {
        let mut over = Vec::new();
        for round in 0..5000 {
            let q = Arc::new(Queue::default());
            let b = vec![backend(0, 10)];
            b[0].load.retire();
            let granted = std::sync::atomic::AtomicU64::new(0);
            std::thread::scope(|scope| {
                for _ in 0..4 {
                    scope.spawn(|| {
                        for _ in 0..200 {
                            if let Choice::Claimed(claim) = choose(&b, &q, 2, &[], 0) {
                                granted.fetch_add(1, Ordering::SeqCst);
                                claim.answered();
                            }
                        }
                    });
                }
            });
            let granted = granted.load(Ordering::SeqCst);
            if granted != 11 {
                over.push((round, granted));
            }
        }
        assert!(over.is_empty(), "a cap of 11: (round, granted) {over:?}");
    }

    #[test]
    fn a_backend_out_of_rotation_gets_requests_only_when_no_other_is_in() {
        let (b, q) = (backends(2), Arc::new(Queue::default()));
        for _ in 0..3 {
            b[0].health.record_check(false, 1, 3);
        }
        // Even when the one in rotation is busy: the request waits rather than go to it.
        let first = choose(&b, &q, 1, &[], 0);
        assert!(matches!(&first, Choice::Claimed(c) if c.backend().info.pid == 101));
        assert!(matches!(choose(&b, &q, 1, &[], 1), Choice::Busy));
        drop(first);
        // Alone (the other tried, as on a retry), it is all there is.
        assert_eq!(pid(choose(&b, &q, 1, &[b[1].info.id], 0)), Some(100));
    }

    #[test]
    fn skips_tried_workers_and_says_when_none_is_left() {
        let (b, q) = (backends(2), Arc::new(Queue::default()));
        assert_eq!(pid(choose(&b, &q, 1, &[b[0].info.id], 0)), Some(101));
        assert!(matches!(
            choose(&b, &q, 1, &[b[0].info.id, b[1].info.id], 0),
            Choice::Exhausted
        ));
        assert!(matches!(choose(&[], &q, 1, &[], 0), Choice::Exhausted));
    }
}
