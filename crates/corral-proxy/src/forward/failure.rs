//! How a request or one attempt of it failed: what the client is to be told and whether
//! another worker may be tried. A leaf: every phase returns these, and they know none.

use pingora_error::{Error, ErrorType};

/// Why a request ended without a normal answer: what to tell the client and the log.
#[derive(Debug)]
pub(super) struct Failure {
    /// The status to answer; 0 when the client is gone or the answer had begun.
    pub(super) status: u16,
    /// Why corral answered itself (limits, queue, no worker), for the access log.
    pub(super) refused: Option<&'static str>,
    /// Seconds for `Retry-After`, when the client may try again.
    pub(super) retry_after: Option<u64>,
    /// Fields the refusal carries (the rate limit state of a 429).
    pub(super) fields: Vec<(&'static str, String)>,
    /// The rate limit rule that refused the request.
    pub(super) rate_limit: Option<std::sync::Arc<str>>,
    /// Whether the client connection may carry another request afterwards.
    pub(super) keep_alive: bool,
    /// The underlying error, logged at warn when corral or a worker failed.
    pub(super) error: Option<Box<Error>>,
}

impl Failure {
    /// corral refuses the request itself.
    pub(super) fn refused(status: u16, reason: &'static str) -> Failure {
        Failure {
            status,
            refused: Some(reason),
            retry_after: (status == 503).then_some(1),
            fields: Vec::new(),
            rate_limit: None,
            keep_alive: false,
            error: None,
        }
    }

    /// The worker failed the request.
    pub(super) fn worker(status: u16, error: Box<Error>) -> Failure {
        Failure {
            status,
            refused: None,
            retry_after: None,
            fields: Vec::new(),
            rate_limit: None,
            keep_alive: false,
            error: Some(error),
        }
    }

    /// The client went away or broke the protocol; nothing useful can be sent.
    pub(super) fn client(error: &Error) -> Failure {
        let status = match error.etype() {
            ErrorType::ReadTimedout => 408,
            ErrorType::InvalidHTTPHeader => 400,
            _ => 0,
        };
        Failure {
            status,
            refused: Some("client error"),
            retry_after: None,
            fields: Vec::new(),
            rate_limit: None,
            keep_alive: false,
            error: None,
        }
    }
}

/// Why one attempt on one worker failed.
pub(super) struct AttemptError {
    pub(super) failure: Failure,
    /// True when the worker gave no answer, so the request may go to another worker.
    pub(super) no_answer: bool,
}

impl AttemptError {
    /// The worker gave no answer: the request may go to another worker.
    pub(super) fn no_answer(error: Box<Error>) -> AttemptError {
        AttemptError {
            failure: Failure::worker(502, error),
            no_answer: true,
        }
    }

    /// A failure that ends the request.
    pub(super) fn ends(failure: Failure) -> AttemptError {
        AttemptError {
            failure,
            no_answer: false,
        }
    }
}
