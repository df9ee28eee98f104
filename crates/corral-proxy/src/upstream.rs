//! Choosing a worker: least outstanding requests among the ready workers of the active pool,
//! skipping workers this request already failed on.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use corral_supervisor::Backend;

/// A claim on one worker for one request: counts in its `in_flight` until dropped, so the
/// count is right on every path out of a request, errors and retries included.
pub struct Claim(Arc<Backend>);

impl Claim {
    /// The claimed worker.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Picks the ready worker with the fewest requests in flight, not in `tried` (pids), and
/// claims it. Ties go to the worker after `spread` (a per-request number), so equally idle
/// workers share the load instead of the first one taking everything.
pub fn choose(backends: &[Arc<Backend>], tried: &[u32], spread: usize) -> Option<Claim> {
    let n = backends.len();
    let mut best: Option<(&Arc<Backend>, u32)> = None;
    for i in 0..n {
        let b = &backends[(spread + i) % n];
        if tried.contains(&b.pid) {
            continue;
        }
        let load = b.load();
        if best.is_none_or(|(_, l)| load < l) {
            best = Some((b, load));
            if load == 0 {
                break;
            }
        }
    }
    best.map(|(b, _)| {
        b.in_flight.fetch_add(1, Ordering::Relaxed);
        Claim(b.clone())
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn backends(n: u32) -> Vec<Arc<Backend>> {
        (0..n)
            .map(|i| {
                let addr = format!("127.0.0.1:{}", 9000 + i).parse().expect("addr");
                Arc::new(Backend::new(
                    Arc::from("web"),
                    i + 1,
                    100 + i,
                    addr,
                    Instant::now(),
                ))
            })
            .collect()
    }

    #[test]
    fn picks_the_least_loaded_and_counts_the_claim() {
        let b = backends(3);
        b[0].in_flight.store(2, Ordering::Relaxed);
        b[1].in_flight.store(1, Ordering::Relaxed);
        b[2].in_flight.store(3, Ordering::Relaxed);
        let claim = choose(&b, &[], 0).expect("a backend");
        assert_eq!(claim.backend().pid, 101);
        assert_eq!(b[1].load(), 2);
        drop(claim);
        assert_eq!(b[1].load(), 1);
    }

    #[test]
    fn idle_workers_share_by_spread() {
        let b = backends(4);
        let picked: Vec<u32> = (0..4)
            .map(|s| choose(&b, &[], s).map(|c| c.backend().pid).unwrap_or(0))
            .collect();
        assert_eq!(picked, vec![100, 101, 102, 103]);
    }

    #[test]
    fn skips_tried_workers_and_gives_up_when_all_were_tried() {
        let b = backends(2);
        assert_eq!(choose(&b, &[100], 0).map(|c| c.backend().pid), Some(101));
        assert!(choose(&b, &[100, 101], 0).is_none());
        assert!(choose(&[], &[], 0).is_none());
    }
}
