//! The proxy's own map of per-worker connections (`ConnMap`).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_routes::{Address, Backend, BackendInfo, Recycle, WorkerId};

use super::super::conns::ConnMap;

fn backend(id: u64) -> Arc<Backend> {
    Arc::new(Backend::new(BackendInfo {
        id: WorkerId(id),
        pool: Arc::from("web"),
        worker: id as u32,
        pid: 100 + id as u32,
        addr: Address::Tcp(([127, 0, 0, 1], 9000 + id as u16).into()),
        started: Instant::now(),
        max_requests: 0,
        recycle: Recycle::new(0, Duration::ZERO, Instant::now()),
    }))
}

/// A map whose workers are pipes; `dialled` counts the connections opened.
fn map(dialled: Arc<AtomicUsize>) -> ConnMap {
    let mut map = ConnMap::default();
    map.memory = Some(Arc::new(move |_: &Address| -> io::Result<_> {
        dialled.fetch_add(1, Ordering::SeqCst);
        let (ours, theirs) = tokio::io::duplex(1024);
        // The worker's end stays open as long as the test runs.
        std::mem::forget(theirs);
        Ok(Box::new(ours) as pingora_core::protocols::Stream)
    }));
    map
}

#[tokio::test(start_paused = true)]
async fn a_kept_connection_is_reused_and_the_entry_of_a_worker_gone_is_dropped() {
    let dialled = Arc::new(AtomicUsize::new(0));
    let conns = map(dialled.clone());
    let (a, b) = (backend(1), backend(2));
    let first = conns.get(&a, false, true).await.expect("a connection");
    assert!(!first.reused);
    first.home.put(first.stream);
    let again = conns.get(&a, false, true).await.expect("the kept one");
    assert!(again.reused, "the kept connection came back");
    assert_eq!(dialled.load(Ordering::SeqCst), 1);
    // Worker 1 goes (its backend dropped by every table), its connection kept: its entry,
    // and the connection with it, go when the next worker's entry is made.
    again.home.put(again.stream);
    drop(again.home);
    drop(a);
    let other = conns
        .get(&b, false, true)
        .await
        .expect("a connection to worker 2");
    other.home.put(other.stream);
    // A worker of the same id (never, in corral: ids are not reused) would find nothing.
    let late = backend(1);
    let fresh = conns
        .get(&late, false, true)
        .await
        .expect("a fresh connection");
    assert!(!fresh.reused, "nothing of the gone worker was kept");
    assert_eq!(dialled.load(Ordering::SeqCst), 3);
}
