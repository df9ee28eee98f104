//! corral's side of the service manager's protocols: `sd_notify` (readiness, status,
//! reloading, stopping, the watchdog), listeners inherited by socket activation, and the
//! hand-over of those listeners to a new corral binary on `SIGUSR2`, which reuses socket
//! activation's convention (`LISTEN_FDS` from fd 3) so the new binary has one way to
//! receive sockets whoever passed them.

pub mod activation;
pub mod handoff;
pub mod notify;

pub use activation::{inherited_listeners, Inherited, LISTEN_PID_SHIM};
pub use handoff::{Successor, SuccessorReport, UpgradeError};
pub use notify::{watchdog_interval, Notifier};
