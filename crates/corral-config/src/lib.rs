//! corral's configuration: finds `corral.toml`, reads it into a validated [`Config`], and
//! reports every mistake with `file:line:column`, the key path and what was expected.
//!
//! The pipeline is `source text -> spanned TOML tree (toml::de::DeTable) -> Config`. The
//! tree keeps byte spans, so each error can point at the exact value; lowering walks it
//! table by table and keeps going after an error, so one run reports them all. Only this
//! crate knows TOML: everything downstream sees plain types (`Duration`, `SocketAddr`).

mod acme;
mod choices;
mod cidr;
mod compression;
mod edge;
mod env;
mod error;
mod health;
mod lanes;
mod log;
mod lower;
mod model;
mod pool;
mod python;
mod ratelimit;
mod reader;
mod remote;
mod render;
mod route_edge;
mod routes;
mod tls;
mod traffic;
mod units;
mod websocket;

use std::path::{Path, PathBuf};

pub use acme::{Acme, AcmeChallenge, Eab, LETSENCRYPT, LETSENCRYPT_STAGING};
pub use cidr::Cidr;
pub use compression::{compressed_already, DEFAULT_LEVELS, DEFAULT_TYPES};
pub use edge::DEFAULT_REMOVED;
pub use env::apply_env;
pub use error::{ConfigError, ConfigErrors};
pub use health::DEFAULT_FAIL_STATUS;
pub use lanes::Lane;
pub use lower::{
    default_runtime_dir, DEFAULT_ADMIN, DEFAULT_BUFFER_MEMORY, DEFAULT_LISTEN, MAX_WORKERS,
};
pub use model::prefix_matches;
pub use model::{
    Bind, Buffering, Certificate, Coding, Compression, Config, ForwardedField, HeaderPreset,
    Headers, Health, Interface, Limits, Log, LogFormat, OnStoreError, Place, Pool, PythonApp,
    RateKey, RateLimit, RateMatch, RateStore, Ready, Rollback, Rotation, Route, RouteEdge,
    RouteHeaders, RouteTarget, Routing, RunAs, Server, Smoke, StoreKind, Tls, Upstream, WebSocket,
};
pub use pool::{auto_workers, unknown_pool};
pub use python::DEFAULT_PYTHON;
pub use ratelimit::{parse_rate, DEFAULT_MAX_KEYS};
pub use render::{render, toml_string};
pub use routes::switched;
pub use tls::DEFAULT_H2_MAX_STREAMS;
pub use traffic::Traffic;
pub use units::{format_duration, parse_duration, parse_size};
pub use websocket::DEFAULT_IDLE_TIMEOUT;

/// Where corral looks for its config when `--config` is not given, after `$CORRAL_CONFIG`.
pub const DEFAULT_PATHS: [&str; 2] = ["./corral.toml", "/etc/corral/corral.toml"];

/// Picks the config file: `--config`, else `$CORRAL_CONFIG`, else the first of
/// [`DEFAULT_PATHS`] that exists.
pub fn locate(explicit: Option<&Path>, env_value: Option<&str>) -> Result<PathBuf, ConfigErrors> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = env_value.filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    DEFAULT_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            ConfigErrors::whole_file(
                Path::new("corral.toml"),
                "no config file found; pass --config FILE, set $CORRAL_CONFIG, or create ./corral.toml",
            )
        })
}

/// Reads and validates the file at `path`, without environment overrides.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::whole_file(path, format!("cannot read the config file: {e}")))?;
    parse(path, &text)
}

/// Validates config `text` as if read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut reader = reader::Reader::new(path.to_path_buf(), text);
    let (root, syntax_errors) = toml::de::DeTable::parse_recoverable(text);
    for e in syntax_errors {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_string();
        reader.error(span, "", format!("TOML syntax error: {message}"));
    }
    if !reader.errors.is_empty() {
        return Err(ConfigErrors(reader.errors));
    }
    match lower::lower(&mut reader, path.to_path_buf(), root.get_ref()) {
        Some(config) if reader.errors.is_empty() => Ok(config),
        _ => Err(ConfigErrors(reader.errors)),
    }
}

/// The whole load as `corral run` and `corral check` do it: locate, read, validate, then
/// apply `$PORT`, `$HOST` and `$WEB_CONCURRENCY`.
pub fn load(
    explicit: Option<&Path>,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let path = locate(explicit, getenv("CORRAL_CONFIG").as_deref())?;
    let mut config = load_file(&path)?;
    apply_env(&mut config, getenv)?;
    Ok(config)
}

#[cfg(test)]
mod tests;
