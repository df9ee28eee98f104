//! The keep-alive wait's limit as one timer per connection, moved lazily. A timer set and
//! dropped on every request (pingora's `timeout`: a boxed wait, an entry in a shared
//! ordered map, a `Notify`) cost some 900 instructions a request, about 3% of one; here a
//! connection arms a tokio timer once, and each wait only notes its own deadline. A timer
//! armed for an earlier deadline fires early, finds the wait's deadline not yet passed, and
//! is set again: once per keep-alive timeout at most, not once per request. nginx likewise
//! keeps one timer per connection in its tree.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// One connection's timer for its waits between requests; armed at the first wait.
#[derive(Default)]
pub(super) struct LazyDeadline {
    /// Boxed: made only once a connection waits for a second request, and small in the
    /// connection's future, which every open connection holds.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl LazyDeadline {
    /// `wait`'s output, or `None` when it did not end within `limit` from now.
    pub(super) async fn within<F: Future>(
        &mut self,
        limit: Duration,
        wait: F,
    ) -> Option<F::Output> {
        let due = Instant::now() + limit;
        let mut wait = std::pin::pin!(wait);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = wait.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if sleep.deadline() > due {
                // Armed for a later deadline (a shorter limit since a reload): set it sooner.
                sleep.as_mut().reset(due);
            }
            while sleep.as_mut().poll(cx).is_ready() {
                // Fired: for this wait's deadline, or for an earlier one, then set again.
                if sleep.deadline() >= due || Instant::now() >= due {
                    return Poll::Ready(None);
                }
                sleep.as_mut().reset(due);
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_shorter_limit_than_the_armed_one_sets_the_timer_sooner() {
        let mut deadline = LazyDeadline::default();
        let start = Instant::now();
        assert_eq!(
            deadline.within(Duration::from_secs(10), async { 1 }).await,
            Some(1)
        );
        // Arms the timer for 10 s, and ends at 1 s.
        let done = deadline
            .within(
                Duration::from_secs(10),
                tokio::time::sleep(Duration::from_secs(1)),
            )
            .await;
        assert_eq!(done, Some(()));
        // A limit of 2 s now (a reload shortened it): due at 3 s, not at the armed 10 s.
        let waited = deadline
            .within(Duration::from_secs(2), std::future::pending::<()>())
            .await;
        assert_eq!(waited, None);
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_armed_for_an_earlier_wait_is_moved_on_not_taken_for_this_one() {
        let mut deadline = LazyDeadline::default();
        let start = Instant::now();
        // Arm the timer at 10 s with a wait that ends at 2 s.
        let done = deadline
            .within(
                Duration::from_secs(10),
                tokio::time::sleep(Duration::from_secs(2)),
            )
            .await;
        assert_eq!(done, Some(()));
        // Due at 2 + 30 = 32 s: the timer fires at 10 s and is set again.
        let waited = deadline
            .within(Duration::from_secs(30), std::future::pending::<()>())
            .await;
        assert_eq!(waited, None);
        assert_eq!(Instant::now() - start, Duration::from_secs(32));
    }
}
