//! Reading the config again, whatever asked for it (SIGHUP, the file watch, `corral
//! reload`). An invalid file changes nothing; every error is logged and counted. A valid one
//! is returned for the master to apply (`Master::reload`, the one reload path).

use corral_config::Config;
use corral_telemetry::Metrics;

/// What asked for a reload; logged with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// SIGHUP.
    Signal,
    /// `server.watch_config`: the file changed.
    FileWatch,
    /// `corral reload`, on the control socket.
    Control,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Signal => "SIGHUP",
            Source::FileWatch => "file changed",
            Source::Control => "corral reload",
        }
    }
}

/// A new config that passed every check, with its certificates loaded.
pub struct Reloaded {
    /// The config to apply.
    pub config: Config,
    /// Its `[server.tls]` certificates, for new handshakes from now on.
    pub certificates: Option<corral_tls::CertSet>,
}

/// Reads and validates the config `current` came from (with the same environment
/// overrides), and loads the certificates it names. Returns them, or every error (also
/// logged) to keep `current` and the certificates in use.
pub fn reload(
    current: &Config,
    metrics: &Metrics,
    source: Source,
) -> Result<Reloaded, Vec<String>> {
    tracing::info!(event = "reloading", config = %current.source.display(), source = source.as_str(), "{}: reading the config again", source.as_str());
    let loaded = corral_config::load(Some(&current.source), &|name| std::env::var(name).ok())
        .and_then(|config| match corral_tls::load(&config) {
            Ok(certificates) => Ok(Reloaded {
                config,
                certificates,
            }),
            Err(errors) => Err(corral_config::ConfigErrors(errors)),
        });
    match loaded {
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
            warn_about_restart_only_changes(current, &new.config);
            tracing::info!(
                event = "config_reloaded",
                "config reloaded; replacing workers"
            );
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
        (
            "server.tls.listen",
            s.0.tls.as_ref().map(|t| &t.listen) != s.1.tls.as_ref().map(|t| &t.listen),
        ),
        (
            "server.tls.redirect_http",
            s.0.tls.as_ref().map(|t| t.redirect_http) != s.1.tls.as_ref().map(|t| t.redirect_http),
        ),
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
