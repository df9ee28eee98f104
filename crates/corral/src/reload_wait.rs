//! A valid config whose app pools are still importing their new code. The supervisor says
//! whether the reload went ahead ([`corral_supervisor::ReloadVerdict`]); until then the
//! master keeps the config in force, and `corral reload` waits for that verdict, so a new
//! app that does not import is reported as refused instead of as reloaded.

use corral_control::Reply;
use tokio::sync::oneshot;

use crate::reload::Reloaded;

/// A reload handed to the supervisor, waiting for its verdict.
pub struct ReloadWait {
    /// What to apply once the supervisor went ahead.
    pub reloaded: Reloaded,
    verdict: oneshot::Receiver<Result<(), String>>,
    /// The `corral reload` callers waiting for the outcome.
    pub callers: Vec<oneshot::Sender<Reply>>,
}

impl ReloadWait {
    /// Waits on `verdict` for `reloaded`; the callers of an older wait it replaces hear this
    /// one's outcome (the supervisor refuses the older reload for it).
    pub fn new(
        reloaded: Reloaded,
        verdict: oneshot::Receiver<Result<(), String>>,
        replaced: Option<ReloadWait>,
    ) -> Self {
        ReloadWait {
            reloaded,
            verdict,
            callers: replaced.map(|old| old.callers).unwrap_or_default(),
        }
    }

    /// The verdict of the reload under way (left in `slot` for the caller to take); pending
    /// forever when there is none. Cancel-safe.
    pub async fn verdict(slot: &mut Option<ReloadWait>) -> Result<(), String> {
        let Some(pending) = slot.as_mut() else {
            return std::future::pending().await;
        };
        (&mut pending.verdict)
            .await
            .unwrap_or_else(|_| Err("the supervisor stopped before the reload went ahead".into()))
    }
}
