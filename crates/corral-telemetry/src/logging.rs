//! The process-wide tracing subscriber.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use corral_config::{Log, LogFormat};
use tracing_subscriber::fmt;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriter};
use tracing_subscriber::EnvFilter;

use crate::file::RotatingFile;
use crate::json::JsonLines;
use crate::writer::{self, QueuedWriter, WriterGuard};

/// Target of the access log lines, so they can be filtered or routed apart from the rest.
pub const ACCESS_TARGET: &str = "corral::access";
/// Target of lines a worker wrote to its stdout or stderr.
pub const WORKER_OUTPUT_TARGET: &str = "corral::worker";

/// Keeps the log writer threads alive; dropping it writes every line still queued.
#[derive(Default)]
pub struct LogGuard {
    _writers: Vec<WriterGuard>,
    reopen: Vec<Arc<AtomicBool>>,
}

impl LogGuard {
    /// SIGUSR1: every log file is reopened by path before its next line (after logrotate
    /// moved it away); lines up to then go to the moved file, none is lost.
    pub fn reopen(&self) {
        for flag in &self.reopen {
            flag.store(true, Ordering::Release);
        }
    }

    /// Whether any log file is open (stdout needs no reopening).
    pub fn has_files(&self) -> bool {
        !self.reopen.is_empty()
    }
}

/// Bytes of lines a thread may have waiting for the writer thread before its next log call
/// waits for room: 4 MiB, some 13,000 access lines, 0.8 GB/s at the writer's pace.
const LOG_QUEUE: usize = 4 << 20;

/// Installs the subscriber once for the process; `RUST_LOG` refines the configured level.
/// pingora logs through the `log` crate; those records are bridged into tracing here.
/// Lines are written by a thread of their own, so a request never writes to stdout under
/// its lock; none is dropped (the queue applies backpressure when full). With `file` the
/// lines go to a rotating file instead of stdout, and with `access_file` access lines go to
/// their own. Fails only when a log file cannot be opened. Hold the guard until the end of
/// the process.
pub fn init_logging(config: &Log) -> std::io::Result<LogGuard> {
    let user_filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok());
    // Access lines take their own path unless a filter of the user's must see them.
    let direct_access = user_filter.is_none() && config.format == LogFormat::Json;
    let filter = user_filter
        .unwrap_or_else(|| EnvFilter::new(default_directive(&config.level, config.access)));
    let mut guard = LogGuard::default();
    let mut queue = |path: Option<&std::path::Path>| -> std::io::Result<Option<QueuedWriter>> {
        let out: Box<dyn Write + Send> = match path {
            Some(path) => {
                let reopen = Arc::new(AtomicBool::new(false));
                let file = RotatingFile::open(path, config.rotation, reopen.clone())?;
                guard.reopen.push(reopen);
                Box::new(file)
            }
            None => stdout_writer(),
        };
        // Without a writer thread (none could be started), stdout is written directly.
        Ok(writer::spawn(out, LOG_QUEUE).ok().map(|(queued, thread)| {
            guard._writers.push(thread);
            queued
        }))
    };
    let main = queue(config.file.as_deref())?;
    let access = match &config.access_file {
        Some(path) => queue(Some(path))?,
        None => None,
    };
    if direct_access {
        if let Some(queue) = access.as_ref().or(main.as_ref()) {
            crate::access::install(queue.clone());
        }
    }
    let writer = match (main, access) {
        (Some(main), Some(access)) => BoxMakeWriter::new(Routed { main, access }),
        (Some(main), None) => BoxMakeWriter::new(main),
        _ => BoxMakeWriter::new(std::io::stdout),
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
    Ok(guard)
}

/// Access lines to their own writer, every other line to the main one.
struct Routed {
    main: QueuedWriter,
    access: QueuedWriter,
}

impl<'a> MakeWriter<'a> for Routed {
    type Writer = &'a QueuedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        &self.main
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        if meta.target() == ACCESS_TARGET {
            &self.access
        } else {
            &self.main
        }
    }
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
fn default_directive(level: &str, access: bool) -> String {
    let mut directive = match level {
        "trace" | "debug" => level.to_string(),
        _ => format!("{level},pingora_core=warn"),
    };
    // `access` is the access log's own switch (nginx's `access_log` beside its `error_log`
    // level): a quieter `level` does not silence it, unless the level names it.
    if access && !level.contains(ACCESS_TARGET) {
        directive.push(',');
        directive.push_str(ACCESS_TARGET);
        directive.push_str("=info");
    }
    directive
}
