//! Platform conventions: `$PORT`/`$HOST` (Heroku, Render, Fly) and `$WEB_CONCURRENCY`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::error::{ConfigError, ConfigErrors};
use crate::lower::MAX_WORKERS;
use crate::model::Config;

/// Overrides the first listener with `$HOST`/`$PORT` and every pool's worker count with
/// `$WEB_CONCURRENCY`. A malformed variable is an error naming it, never silently ignored.
pub fn apply_env(
    config: &mut Config,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    let mut bad = |var: &str, message: String| {
        errors.push(ConfigError {
            file: PathBuf::from(format!("${var}")),
            line: 0,
            column: 0,
            key: String::new(),
            message,
        })
    };
    let port = getenv("PORT").filter(|v| !v.is_empty());
    let host = getenv("HOST").filter(|v| !v.is_empty());
    if let Some(first) = config.server.listen.first_mut() {
        let mut addr: SocketAddr = *first;
        if let Some(port) = port {
            match port.parse::<u16>() {
                Ok(p) => addr.set_port(p),
                Err(_) => bad("PORT", format!("{port:?} is not a port number (0-65535)")),
            }
        }
        if let Some(host) = host {
            match host.parse::<IpAddr>() {
                Ok(ip) => addr.set_ip(ip),
                Err(_) => bad(
                    "HOST",
                    format!("{host:?} is not an IP address such as 0.0.0.0 or ::"),
                ),
            }
        }
        *first = addr;
    }
    if let Some(value) = getenv("WEB_CONCURRENCY").filter(|v| !v.is_empty()) {
        match value.parse::<i64>() {
            Ok(n) if (1..=MAX_WORKERS).contains(&n) => {
                for pool in &mut config.pools {
                    pool.workers = n as u32;
                }
            }
            _ => bad(
                "WEB_CONCURRENCY",
                format!("{value:?} is not a worker count from 1 to {MAX_WORKERS}"),
            ),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}
