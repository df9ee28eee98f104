//! The proxy's reloadable settings.

use corral_config::Limits;

/// The proxy's settings; swapped whole on reload, read once per request.
pub struct ProxySettings {
    /// Client limits.
    pub limits: Limits,
    /// Whether to write an access log line per request.
    pub access_log: bool,
}

impl ProxySettings {
    /// The keep-alive timeout in whole seconds, at least 1 (0 would mean "forever" to pingora).
    pub fn keepalive_secs(&self) -> u64 {
        self.limits.keepalive_timeout.as_secs().max(1)
    }
}
