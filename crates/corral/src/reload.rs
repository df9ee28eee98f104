//! SIGHUP: read the config again. An invalid file changes nothing; every error is logged
//! and counted. A valid one is returned for the proxy and supervisor to apply.

use corral_config::Config;
use corral_telemetry::Metrics;

/// Reads and validates the config `current` came from (with the same environment
/// overrides). Returns the new config, or every error (also logged) to keep `current`.
pub fn reload(current: &Config, metrics: &Metrics) -> Result<Config, Vec<String>> {
    tracing::info!(event = "reloading", config = %current.source.display(), "SIGHUP: reading the config again");
    match corral_config::load(Some(&current.source), &|name| std::env::var(name).ok()) {
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(event = "config_error", file = %e.file.display(), line = e.line, column = e.column, key = %e.key, "{e}");
            }
            tracing::error!(
                event = "config_rejected",
                errors = errors.0.len(),
                "the new config is invalid; still running the previous one"
            );
            metrics.reload("error");
            Err(errors.0.iter().map(|e| e.to_string()).collect())
        }
        Ok(new) => {
            warn_about_restart_only_changes(current, &new);
            tracing::info!(
                event = "config_reloaded",
                "config reloaded; replacing workers"
            );
            metrics.reload("ok");
            Ok(new)
        }
    }
}

/// Listeners, threads and the log subscriber are fixed for the life of the process.
fn warn_about_restart_only_changes(current: &Config, new: &Config) {
    let s = (&current.server, &new.server);
    for (key, changed) in [
        ("server.listen", s.0.listen != s.1.listen),
        ("server.admin", s.0.admin != s.1.admin),
        ("server.threads", s.0.threads != s.1.threads),
        ("log.format", current.log.format != new.log.format),
        ("log.level", current.log.level != new.log.level),
    ] {
        if changed {
            tracing::warn!(
                event = "config_needs_restart",
                key,
                "this change takes effect at the next restart, not on reload"
            );
        }
    }
}
