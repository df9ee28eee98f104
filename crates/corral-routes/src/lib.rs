//! The contract between the supervisor and the proxy. The supervisor (the only writer)
//! publishes what may take requests as one immutable [`RoutingTable`] behind an `ArcSwap`;
//! the proxy reads it with one `load` per request and reports back on a [`Reporter`]. A
//! [`Backend`] is one ready worker: what it is (fixed while it runs) and its live load,
//! whose counters only move through methods. Each pool's wait [`routes::Queue`], each
//! backend's [`health::BackendHealth`] and the `/status` snapshot live here too, so the
//! proxy needs nothing of the supervisor. Nothing here spawns, signals or knows pingora.

pub mod health;
pub mod routes;
pub mod status;
pub mod worker;

pub use routes::{
    Address, Backend, PoolRoute, Queue, Recycle, Report, Reporter, RoutingTable, SharedRoutes,
};
pub use status::{PoolView, SharedStatus, StatusSnapshot, WorkerView};
pub use worker::{ExitReason, PoolId, StateKind, WorkerId};
