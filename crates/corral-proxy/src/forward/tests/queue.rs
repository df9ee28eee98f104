//! Choosing a worker and waiting for one: the pool's queue on the paused clock.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{answers, FakeClient, World};
use crate::upstream;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test(start_paused = true)]
async fn a_request_waits_its_queue_timeout_for_a_busy_worker_then_gets_503() {
    let world = World::new(vec![answers(OK)], "concurrency = 1\nqueue_timeout = \"7s\"");
    let route = world.route();
    let mut table = world.routes.load_full();
    let busy = upstream::claim(&world.routes, &mut table, 0, None, &[], 0)
        .await
        .expect("the idle worker");
    let started = tokio::time::Instant::now();
    let mut client = FakeClient::get("/");
    assert_eq!(world.serve(&mut client).await, 503);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(7),
        "the whole queue_timeout"
    );
    assert_eq!(route.queue.waiting.load(Ordering::SeqCst), 0);
    assert_eq!(world.workers[0].seen.connections.load(Ordering::SeqCst), 0);
    let retry_after = client.heads[0]
        .headers
        .get("retry-after")
        .expect("Retry-After");
    assert_eq!(retry_after, "1");
    drop(busy);
}

#[tokio::test(start_paused = true)]
async fn a_slot_freed_within_queue_timeout_serves_the_waiting_request() {
    let world = World::new(vec![answers(OK)], "concurrency = 1\nqueue_timeout = \"7s\"");
    let mut table = world.routes.load_full();
    let busy = upstream::claim(&world.routes, &mut table, 0, None, &[], 0)
        .await
        .expect("the idle worker");
    let release = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(busy);
    };
    let mut client = FakeClient::get("/");
    let started = tokio::time::Instant::now();
    let (status, ()) = tokio::join!(world.serve(&mut client), release);
    assert_eq!(status, 200);
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(client.body_out, b"ok");
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once() {
    let world = World::new(vec![answers(OK)], "concurrency = 1\nqueue_size = 0");
    let mut table = world.routes.load_full();
    let _busy = upstream::claim(&world.routes, &mut table, 0, None, &[], 0)
        .await
        .expect("the idle worker");
    let started = tokio::time::Instant::now();
    let mut client = FakeClient::get("/");
    assert_eq!(world.serve(&mut client).await, 503);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_client_gone_while_queued_leaves_the_queue_and_its_slot_to_the_next() {
    let world = World::new(
        vec![answers(OK)],
        "concurrency = 1\nqueue_timeout = \"60s\"",
    );
    let route = world.route();
    let mut table = world.routes.load_full();
    let busy = upstream::claim(&world.routes, &mut table, 0, None, &[], 0)
        .await
        .expect("the idle worker");
    {
        // The client's connection goes (an HTTP/2 connection's streams are dropped) while
        // its request waits.
        let mut gone = FakeClient::get("/gone");
        let waiting = world.exchange(&mut gone);
        let outcome = tokio::time::timeout(Duration::from_secs(2), waiting).await;
        assert!(outcome.is_err(), "still queued after 2 s");
    }
    assert_eq!(route.queue.waiting.load(Ordering::SeqCst), 0);
    assert_eq!(route.metrics.queue_depth.get(), 0);
    drop(busy);
    // Nobody waits now: the freed slot was promised to no one, and a new request takes it.
    assert_eq!(route.queue.promised.load(Ordering::SeqCst), 0);
    let mut next = FakeClient::get("/next");
    let started = tokio::time::Instant::now();
    assert_eq!(world.serve(&mut next).await, 200);
    assert_eq!(started.elapsed(), Duration::ZERO);
    let requests = world.workers[0].seen.requests.lock().clone();
    assert_eq!(
        requests.len(),
        1,
        "the gone client's request never reached the worker"
    );
    assert!(requests[0].starts_with("GET /next "));
}

#[tokio::test(start_paused = true)]
async fn a_pool_without_a_ready_worker_answers_503_without_waiting() {
    let world = World::new(Vec::new(), "queue_timeout = \"30s\"");
    let mut client = FakeClient::get("/");
    let started = tokio::time::Instant::now();
    assert_eq!(world.serve(&mut client).await, 503);
    assert_eq!(started.elapsed(), Duration::ZERO);
}
