//! The connection task's size: every open client connection holds its future, idle or
//! not, so its size is most of corral's memory per idle keep-alive connection (issue 36).

use std::sync::Arc;

use super::{answers, World};

/// What a connection's future may take at most: the wait for the next request and the
/// loop's own state. A request's state (the session, its head, the exchange) is boxed for
/// the request's life only, so it must not grow this (1,008 bytes in a debug build, with what a
/// parked connection needs to come back; a parked connection holds no task at all).
const BUDGET: usize = 1024;

#[tokio::test]
async fn the_connection_future_fits_its_budget() {
    let world = World::new(
        vec![answers(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")],
        "",
    );
    let (near, _far) = tokio::io::duplex(1024);
    let (_tx, shutdown) = tokio::sync::watch::channel(false);
    let forwarder: Arc<_> = world.forwarder.clone();
    let future = forwarder.connection(Box::new(near), shutdown);
    let size = std::mem::size_of_val(&future);
    println!("connection future: {size} bytes");
    assert!(size <= BUDGET, "{size} bytes");
}
