//! The process-wide tracing subscriber.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;

use corral_config::{Log, LogFormat};
use tracing_subscriber::fmt;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

use crate::json::JsonLines;
use crate::writer::{self, WriterGuard};

/// Target of the access log lines, so they can be filtered or routed apart from the rest.
pub const ACCESS_TARGET: &str = "corral::access";
/// Target of lines a worker wrote to its stdout or stderr.
pub const WORKER_OUTPUT_TARGET: &str = "corral::worker";

/// Keeps the log writer thread alive; dropping it writes every line still queued.
pub type LogGuard = Option<WriterGuard>;

/// Lines that may wait for the writer thread before a request's log call waits for room.
const LOG_QUEUE: usize = 64 * 1024;

/// Installs the subscriber once for the process; `RUST_LOG` refines the configured level.
/// pingora logs through the `log` crate; those records are bridged into tracing here.
/// Lines are written by a thread of their own, so a request never writes to stdout under
/// its lock; none is dropped (the queue applies backpressure when full). Hold the guard
/// until the end of the process.
pub fn init_logging(config: &Log) -> LogGuard {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default_directive(&config.level)));
    // Without a writer thread (none could be started), lines go to stdout directly.
    let (writer, guard) = match writer::spawn(stdout_writer(), LOG_QUEUE) {
        Ok((queued, guard)) => (BoxMakeWriter::new(queued), Some(guard)),
        Err(_) => (BoxMakeWriter::new(std::io::stdout), None),
    };
    let builder = fmt().with_env_filter(filter).with_writer(writer);
    let result = match config.format {
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
        LogFormat::Text => builder
            .with_target(true)
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
    };
    // A second init (tests, or a reload) keeps the first subscriber; that is harmless.
    drop(result);
    guard
}

/// Standard output without its line buffering (a write per line costs a system call per
/// request with the access log on): the writer thread flushes after each batch of lines.
fn stdout_writer() -> Box<dyn Write + Send> {
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(BufWriter::with_capacity(64 * 1024, File::from(fd))),
        Err(_) => Box::new(std::io::stdout()),
    }
}

/// pingora is chatty at info about per-connection errors a proxy sees all day (clients
/// closing early); keep it at warn unless the user asks for debug.
fn default_directive(level: &str) -> String {
    match level {
        "trace" | "debug" => level.to_string(),
        _ => format!("{level},pingora_core=warn"),
    }
}
