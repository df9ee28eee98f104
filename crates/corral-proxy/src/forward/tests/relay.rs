//! Relaying the worker's answer through the session path (the path of HTTP/2 streams and
//! of answers that are not plain): framing, informational answers, the answer rules.

use std::sync::atomic::Ordering;

use corral_routes::Report;

use super::{answers, FakeClient, World};

#[tokio::test(start_paused = true)]
async fn a_chunked_answer_is_relayed_whole_and_its_connection_kept() {
    let chunked: &[u8] =
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let world = World::new(vec![answers(chunked)], "");
    for _ in 0..2 {
        let mut client = FakeClient::get("/stream");
        assert_eq!(world.serve(&mut client).await, 200);
        assert_eq!(client.body_out, b"hello world");
        assert!(client.finished);
    }
    assert_eq!(
        world.workers[0].seen.connections.load(Ordering::SeqCst),
        1,
        "the worker's connection was kept for the second request"
    );
}

#[tokio::test(start_paused = true)]
async fn an_informational_answer_goes_to_the_client_before_the_final_one() {
    let hints: &[u8] = b"HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let world = World::new(vec![answers(hints)], "");
    let mut client = FakeClient::get("/");
    assert_eq!(world.serve(&mut client).await, 200);
    let statuses: Vec<u16> = client.heads.iter().map(|h| h.status.as_u16()).collect();
    assert_eq!(statuses, [103, 200]);
    assert_eq!(
        client.heads[0].headers.get("link").map(|v| v.as_bytes()),
        Some(&b"</app.css>; rel=preload"[..])
    );
    assert_eq!(client.body_out, b"ok");
}

#[tokio::test(start_paused = true)]
async fn a_100_continue_from_the_worker_is_not_passed_on() {
    let continued: &[u8] =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";
    let world = World::new(vec![answers(continued)], "");
    let mut client = FakeClient::new("POST", "/up", &[], b"data");
    assert_eq!(world.serve(&mut client).await, 201);
    let statuses: Vec<u16> = client.heads.iter().map(|h| h.status.as_u16()).collect();
    assert_eq!(
        statuses,
        [201],
        "100 Continue was corral's to send, not the worker's"
    );
    let requests = world.workers[0].seen.requests.lock().clone();
    assert!(requests[0].ends_with("\r\n\r\ndata"), "{requests:?}");
}

#[tokio::test(start_paused = true)]
async fn the_request_reaches_the_worker_with_the_forwarded_fields() {
    let world = World::new(vec![answers(b"HTTP/1.1 204 No Content\r\n\r\n")], "");
    let mut client = FakeClient::get("/who");
    assert_eq!(world.serve(&mut client).await, 204);
    let requests = world.workers[0].seen.requests.lock().clone();
    let request = requests[0].to_ascii_lowercase();
    assert!(request.starts_with("get /who http/1.1\r\n"), "{request}");
    assert!(
        request.contains("x-forwarded-for: 192.0.2.7\r\n"),
        "{request}"
    );
    assert!(request.contains("x-request-id: "), "{request}");
}

#[tokio::test(start_paused = true)]
async fn a_worker_at_max_requests_is_marked_retiring_and_reported_once() {
    let ok: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    let mut world = World::new(vec![answers(ok)], "max_requests = 4");
    for _ in 0..4 {
        let mut client = FakeClient::get("/");
        assert_eq!(world.serve(&mut client).await, 200);
    }
    let backend = world.route().backends[0].clone();
    assert_eq!(backend.load.served(), 4);
    assert!(backend.load.is_retiring());
    let mut retires = 0;
    while let Ok(report) = world.reports.try_recv() {
        if matches!(report, Report::Retire { .. }) {
            retires += 1;
        }
    }
    assert_eq!(retires, 1);
}

#[tokio::test(start_paused = true)]
async fn answers_with_a_failing_status_eject_the_worker_after_max_fails() {
    let bad: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n";
    let good: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    let world = World::new(
        vec![answers(bad), answers(good)],
        "[pools.web.health]\nmax_fails = 2\neject_for = \"30s\"",
    );
    let route = world.route();
    for _ in 0..8 {
        let mut client = FakeClient::get("/");
        world.serve(&mut client).await;
    }
    assert!(
        !route.backends[0].health.in_rotation(&mut None),
        "two 502s in a row took it out"
    );
    assert!(route.backends[1].health.in_rotation(&mut None));
}
