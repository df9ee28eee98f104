//! Logging and metrics for every part of corral: the tracing subscriber (JSON lines or text
//! on stdout, with pingora's `log` records bridged in) and the Prometheus metrics, whose
//! names all live in [`metrics`] so `docs/metrics.md` has one place to follow.

pub mod access;
pub mod buffer;
pub mod file;
pub mod health;
pub mod json;
pub mod logging;
pub mod metrics;
pub mod routes;
pub mod tls;
pub mod websocket;
pub mod writer;

pub use logging::{init_logging, LogGuard};
pub use metrics::{Metrics, PoolMetrics};
pub use routes::RouteMetrics;
pub use websocket::PoolWebSocket;
