//! `watch_config = true`: the config file watched with the `notify` crate. Its directory is
//! watched rather than the file, since editors and deploy tools replace files by rename;
//! changes arriving together are debounced into one reload, the same as SIGHUP's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long changes must stop before the reload: an editor's save is several events.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches the config file while alive.
pub struct ConfigWatch {
    _watcher: RecommendedWatcher,
    changes: mpsc::UnboundedReceiver<()>,
    /// When the burst seen so far counts as settled. Kept here, not in the future, so a
    /// `select!` that drops [`ConfigWatch::changed`] for another branch loses nothing.
    settle_at: Option<tokio::time::Instant>,
}

impl ConfigWatch {
    /// Starts watching `file`.
    pub fn start(file: &Path) -> notify::Result<Self> {
        let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let dir = file
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let name = file.file_name().map(|n| n.to_os_string());
        let (tx, changes) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access() {
                    return;
                }
                if event.paths.iter().any(|p| p.file_name() == name.as_deref()) {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(ConfigWatch {
            _watcher: watcher,
            changes,
            settle_at: None,
        })
    }

    /// Resolves once a burst of changes has settled. Cancel-safe.
    pub async fn changed(&mut self) {
        loop {
            let Some(at) = self.settle_at else {
                if self.changes.recv().await.is_none() {
                    return std::future::pending().await;
                }
                self.settle_at = Some(tokio::time::Instant::now() + DEBOUNCE);
                continue;
            };
            match tokio::time::timeout_at(at, self.changes.recv()).await {
                Ok(Some(())) => self.settle_at = Some(tokio::time::Instant::now() + DEBOUNCE),
                Ok(None) => return std::future::pending().await,
                Err(_) => {
                    self.settle_at = None;
                    return;
                }
            }
        }
    }
}

/// The watch `config` asks for (`server.watch_config`); `None` when it does not, or when the
/// directory cannot be watched (logged: SIGHUP still reloads).
pub fn start_if_asked(config: &corral_config::Config) -> Option<ConfigWatch> {
    if !config.server.watch_config {
        return None;
    }
    match ConfigWatch::start(&config.source) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(event = "watch_failed", config = %config.source.display(), error = %e, "cannot watch the config file; reload with SIGHUP instead");
            None
        }
    }
}

/// Waits for a change when watching, forever otherwise.
pub async fn changed(watch: &mut Option<ConfigWatch>) {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}
