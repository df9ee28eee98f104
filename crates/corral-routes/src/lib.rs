//! The contract between the supervisor and the proxy. The supervisor (the only writer)
//! publishes what may take requests as one immutable [`RoutingTable`] behind an `ArcSwap`;
//! the proxy reads it with one `load` per request and reports back on a [`Reporter`]. A
//! [`Backend`] is one ready worker: what it is (fixed while it runs) and its live load,
//! whose counters only move through methods. Each pool's wait [`Queue`], each
//! backend's [`health::BackendHealth`] and the `/status` snapshot live here too, so the
//! proxy needs nothing of the supervisor. Nothing here spawns, signals or knows pingora.

pub mod backend;
pub mod health;
pub mod queue;
pub mod report;
pub mod status;
pub mod table;
pub mod worker;

pub use backend::{Address, Backend, BackendInfo, Load, Recycle};
pub use queue::Queue;
pub use report::{Report, Reporter};
pub use status::{PoolView, RouteView, SharedStatus, StatusSnapshot, WorkerView};
pub use table::{Lane, LaneKey, PoolRoute, RoutingTable, SharedRoutes};
pub use worker::{ExitReason, PoolId, StateKind, WorkerId};
