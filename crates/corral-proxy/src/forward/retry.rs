//! When a failed attempt may go to a worker again: the one rule, as a pure function.
//!
//! Nothing is ever re-sent that a worker may have started on, unless the request can be
//! replayed safely (idempotent, no body) and the worker gave no answer at all.

/// Attempts per request on distinct workers: the first, and one more on another worker.
pub(super) const MAX_TRIES: usize = 2;

/// How one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failed {
    /// No connection to the worker: nothing was sent.
    Connect,
    /// The worker gave no answer; `reused` says the connection was a kept-open one, which
    /// the worker may have closed just before the request went out.
    NoAnswer { reused: bool },
    /// The answer had begun, or the failure was the client's: never retried.
    Other,
}

/// What the request has been through so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tries {
    /// Workers that failed the request (each is skipped from now on).
    pub(super) failed_workers: usize,
    /// Whether the one retry for a stale kept-open connection was spent.
    pub(super) stale_retried: bool,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Try again on a fresh, checked connection (to any worker not failed yet).
    Again,
    /// Try another worker; this one is skipped.
    OtherWorker,
    /// Give up with the failure.
    GiveUp,
}

/// The retry rule: a failed connect moves to another worker (nothing was sent); a request
/// that can be replayed gets one more try when a kept-open connection turns out closed, and
/// another worker when the worker gave no answer; everything else ends the request.
pub(super) fn next(failed: Failed, replayable: bool, tries: Tries) -> Next {
    let last = tries.failed_workers + 1 >= MAX_TRIES;
    match failed {
        Failed::Connect if last => Next::GiveUp,
        Failed::Connect => Next::OtherWorker,
        Failed::NoAnswer { reused: true } if replayable && !tries.stale_retried => Next::Again,
        Failed::NoAnswer { .. } if replayable && !last => Next::OtherWorker,
        Failed::NoAnswer { .. } | Failed::Other => Next::GiveUp,
    }
}

/// Records the step in `tries`.
pub(super) fn record(tries: &mut Tries, next: Next) {
    match next {
        Next::Again => tries.stale_retried = true,
        Next::OtherWorker => tries.failed_workers += 1,
        Next::GiveUp => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Tries = Tries {
        failed_workers: 0,
        stale_retried: false,
    };

    #[test]
    fn a_failed_connect_moves_on_even_for_a_post() {
        assert_eq!(next(Failed::Connect, false, FIRST), Next::OtherWorker);
        let second = Tries {
            failed_workers: 1,
            ..FIRST
        };
        assert_eq!(next(Failed::Connect, true, second), Next::GiveUp);
    }

    #[test]
    fn a_stale_connection_gets_one_fresh_try_for_replayable_requests() {
        let stale = Failed::NoAnswer { reused: true };
        assert_eq!(next(stale, true, FIRST), Next::Again);
        let mut tries = FIRST;
        record(&mut tries, Next::Again);
        assert_eq!(next(stale, true, tries), Next::OtherWorker);
        assert_eq!(
            next(stale, false, FIRST),
            Next::GiveUp,
            "a POST is never re-sent"
        );
    }

    #[test]
    fn no_answer_moves_to_one_other_worker_only() {
        let silent = Failed::NoAnswer { reused: false };
        assert_eq!(next(silent, true, FIRST), Next::OtherWorker);
        let mut tries = FIRST;
        record(&mut tries, Next::OtherWorker);
        assert_eq!(next(silent, true, tries), Next::GiveUp);
        assert_eq!(next(silent, false, FIRST), Next::GiveUp);
    }

    #[test]
    fn a_begun_answer_is_never_retried() {
        assert_eq!(next(Failed::Other, true, FIRST), Next::GiveUp);
    }
}
