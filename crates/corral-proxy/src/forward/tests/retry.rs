//! After a failed attempt: which failures go to another worker, and which never do.

use std::sync::atomic::Ordering;

use corral_routes::Report;

use super::{answers, breaks_off_after, closes_after_request, hangs, refuses, FakeClient, World};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// Connections each worker was given.
fn connections(world: &World) -> Vec<usize> {
    world
        .workers
        .iter()
        .map(|w| w.seen.connections.load(Ordering::SeqCst))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_refused_connect_is_retried_on_another_worker() {
    let world = World::new(vec![refuses(), answers(OK)], "");
    // Whichever worker is tried first, the answer comes from the one that listens.
    for _ in 0..4 {
        let mut client = FakeClient::get("/");
        let (exchange, result) = world.exchange(&mut client).await;
        assert!(result.is_ok(), "answered");
        assert_eq!(client.status(), 200);
        assert_eq!(exchange.backend.as_ref().map(|b| b.info.pid), Some(101));
    }
    assert_eq!(world.workers[1].seen.requests.lock().len(), 4);
    // A refused connect counts against the worker (passive health), however many times.
    let route = world.route();
    assert!(route.backends[0].health.view().fails > 0);
}

#[tokio::test(start_paused = true)]
async fn a_post_is_not_sent_again_after_its_worker_closed_without_answering() {
    let world = World::new(vec![closes_after_request(), closes_after_request()], "");
    let mut client = FakeClient::new("POST", "/orders", &[], b"{\"n\":1}");
    assert_eq!(world.serve(&mut client).await, 502);
    assert_eq!(
        connections(&world).iter().sum::<usize>(),
        1,
        "the body reached one worker, which may have acted on it: never replayed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_get_whose_worker_closed_before_answering_goes_to_another_once() {
    let world = World::new(vec![closes_after_request(), closes_after_request()], "");
    let mut client = FakeClient::get("/");
    assert_eq!(world.serve(&mut client).await, 502);
    assert_eq!(
        connections(&world),
        vec![1, 1],
        "one try on each worker, no more"
    );
}

#[tokio::test(start_paused = true)]
async fn no_retry_once_answer_bytes_were_sent_to_the_client() {
    // The head and part of the body came; then the worker died.
    let part: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf";
    let world = World::new(vec![breaks_off_after(part), breaks_off_after(part)], "");
    let mut client = FakeClient::get("/");
    let (exchange, result) = world.exchange(&mut client).await;
    let failure = result.err().expect("the answer broke off");
    assert_eq!(failure.status, 0, "nothing more can be said to the client");
    assert_eq!(client.status(), 200, "the head went out");
    assert_eq!(client.body_out, b"half");
    assert!(!client.finished);
    assert_eq!(connections(&world).iter().sum::<usize>(), 1, "not replayed");
    drop(exchange);
}

#[tokio::test(start_paused = true)]
async fn a_worker_silent_past_timeout_gets_504_and_is_reported_hung() {
    // pingora's read timeout runs on its own timer thread, in real time: a short one.
    let mut world = World::new(vec![hangs()], "timeout = \"300ms\"");
    let mut client = FakeClient::get("/slow");
    assert_eq!(world.serve(&mut client).await, 504);
    match world.reports.try_recv() {
        Ok(Report::Hung { worker, request }) => {
            assert_eq!(worker, world.route().backends[0].info.id);
            assert!(request.contains("/slow"), "{request}");
        }
        other => panic!("expected a hung report, got {other:?}"),
    }
}
