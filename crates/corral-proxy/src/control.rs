//! Requests from `corral reload|scale|switch` arriving on the control socket, handed to the
//! master's main loop, which owns config and supervisor.

use tokio::sync::{mpsc, oneshot};

/// What the answer to a control request carries.
pub type Reply = Result<serde_json::Value, Vec<String>>;

/// A request from the CLI, with the channel for its answer.
pub enum ControlRequest {
    /// Re-read the config, like SIGHUP; the answer lists the errors of an invalid file.
    Reload(oneshot::Sender<Reply>),
    /// Set the number of workers of a pool.
    Scale {
        /// The pool; the active pool when `None`.
        pool: Option<String>,
        /// The new number of workers.
        workers: u32,
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
    /// Move traffic to another pool, or split it by weight, once the pools that gain a
    /// share pass their checks (`corral switch`); the answer comes when the switch is done
    /// or refused.
    Switch {
        /// Where new requests are to go.
        to: corral_config::Traffic,
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
}

/// The sending end, held by the admin app of the control socket only.
pub type ControlSender = mpsc::UnboundedSender<ControlRequest>;
