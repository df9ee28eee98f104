//! What the proxy tells the supervisor about a worker: reports on a channel, sent without
//! ever blocking the request path.

use tokio::sync::mpsc;

use crate::worker::{ExitReason, WorkerId};

/// What the proxy tells the supervisor about a worker.
#[derive(Debug)]
pub enum Report {
    /// The worker reached a limit the proxy counts (`max_requests`): replace it.
    Retire {
        /// The worker's [`crate::BackendInfo::id`].
        worker: WorkerId,
        /// Why, for logs and metrics.
        reason: ExitReason,
    },
    /// The worker will reach `max_requests` about when a replacement started now is
    /// ready: start it, and let the worker serve on at full share until its limit.
    StartReplacement {
        /// The worker's [`crate::BackendInfo::id`].
        worker: WorkerId,
    },
    /// A sync worker did not answer within `timeout`: it is stuck; kill and replace it.
    Hung {
        /// The worker's [`crate::BackendInfo::id`].
        worker: WorkerId,
        /// The request that hung it, for the log line.
        request: String,
    },
}

/// The proxy's end of the report channel; sending never blocks the request path.
#[derive(Clone)]
pub struct Reporter(mpsc::UnboundedSender<Report>);

impl Reporter {
    /// A report channel: the proxy's end, and the supervisor's.
    pub fn channel() -> (Reporter, mpsc::UnboundedReceiver<Report>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Reporter(tx), rx)
    }

    /// Sends a report; if the supervisor is gone (shutting down) there is no one to tell.
    pub fn send(&self, report: Report) {
        let _ = self.0.send(report);
    }
}
