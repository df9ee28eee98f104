//! Requests from `corral reload|scale|switch` arriving on the control socket, handed to the
//! master's main loop, which owns config and supervisor. The verbs and their answers are
//! `corral-control`'s; this is only the envelope that carries one to the master and its
//! answer back.

use corral_control::{Reply, Request};
use tokio::sync::{mpsc, oneshot};

/// A request from the CLI, with the channel for its answer.
pub struct ControlRequest {
    /// What is asked.
    pub request: Request,
    /// Where the answer goes; dropped unanswered, it tells the caller corral is stopping.
    pub reply: oneshot::Sender<Reply>,
}

/// The sending end, held by the admin app of the control socket only.
pub type ControlSender = mpsc::UnboundedSender<ControlRequest>;
