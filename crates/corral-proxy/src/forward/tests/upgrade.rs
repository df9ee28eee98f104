//! An upgrade request whose worker does not switch protocols.

use super::{answers, FakeClient, World};

fn websocket() -> FakeClient {
    FakeClient::new(
        "GET",
        "/chat",
        &[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    )
}

#[tokio::test(start_paused = true)]
async fn an_upgrade_refused_by_the_worker_is_an_answer_and_gives_its_place_back() {
    let refused: &[u8] = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 6\r\n\r\nno way";
    let world = World::new(vec![answers(refused)], "");
    let mut client = websocket();
    assert_eq!(world.serve(&mut client).await, 403);
    assert_eq!(client.body_out, b"no way");
    assert_eq!(world.forwarder.tunnels.open(), 0, "no tunnel holds a place");
    let requests = world.workers[0].seen.requests.lock().clone();
    assert!(
        requests[0]
            .to_ascii_lowercase()
            .contains("upgrade: websocket"),
        "the worker was asked: {requests:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_upgrade_over_the_websocket_limit_never_reaches_a_worker() {
    let world = World::with_server(
        vec![answers(b"HTTP/1.1 500 X\r\n\r\n")],
        "",
        "[websocket]\nmax_connections = 1",
    );
    let _open = world
        .forwarder
        .tunnels
        .reserve(Some(1))
        .expect("the one place");
    let mut client = websocket();
    assert_eq!(world.serve(&mut client).await, 503);
    assert!(world.workers[0].seen.requests.lock().is_empty());
}
