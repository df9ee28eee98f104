//! Lowering `[websocket]`: how many upgraded connections, how long one may be silent, and
//! whether one takes a share of its worker's `concurrency`.

use std::time::Duration;

use crate::model::WebSocket;
use crate::reader::{Reader, Table};

/// Silence after which a tunnel is closed when the file does not say: long enough for any
/// heartbeat (browsers' and libraries' pings come every 20-60 s), short enough that
/// half-open sockets from vanished clients do not pile up for hours.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) fn websocket(r: &mut Reader, top: &mut Table) -> WebSocket {
    let mut t = top.table(r, "websocket");
    let max_connections = t
        .integer(r, "max_connections", 1, 1_000_000)
        .map(|n| n as usize);
    let idle_timeout = t
        .positive_duration(r, "idle_timeout")
        .unwrap_or(DEFAULT_IDLE_TIMEOUT);
    let counts_against_concurrency = t.boolean(r, "counts_against_concurrency").unwrap_or(false);
    t.finish(r);
    WebSocket {
        max_connections,
        idle_timeout,
        counts_against_concurrency,
    }
}
