//! `[log]`: format, level, the access log, and optional files with rotation.

use std::path::PathBuf;

use crate::model::{Log, LogFormat, Rotation};
use crate::reader::{Reader, Table};

/// Rotated files kept by default, as logrotate's common `rotate 7`.
const DEFAULT_KEEP: u32 = 7;
/// The smallest `max_size`: below it a file would rotate every few lines.
const MIN_ROTATE_SIZE: u64 = 4096;

pub(crate) fn log(r: &mut Reader, top: &mut Table) -> Log {
    let mut t = top.table(r, "log");
    let format = match t.choice(r, "format", &["json", "text"]) {
        Some("text") => LogFormat::Text,
        _ => LogFormat::Json,
    };
    let level = t
        .choice(r, "level", &["trace", "debug", "info", "warn", "error"])
        .unwrap_or("info");
    let access = t.boolean(r, "access").unwrap_or(true);
    let file = path(r, &mut t, "file");
    let access_file = path(r, &mut t, "access_file");
    let max_size = match (t.get("max_size").map(|n| n.span()), t.size(r, "max_size")) {
        (_, Some(0)) | (_, None) => None,
        (Some(span), Some(n)) if n < MIN_ROTATE_SIZE => {
            r.error(
                span,
                &t.key_path("max_size"),
                format!("{n} bytes is too small to rotate at; give at least \"4KiB\", or 0 for no limit"),
            );
            None
        }
        (_, Some(n)) => Some(n),
    };
    let daily = t.boolean(r, "daily").unwrap_or(false);
    let keep = t
        .integer(r, "keep", 1, 10_000)
        .map_or(DEFAULT_KEEP, |n| n as u32);
    let rotates = max_size.is_some() || daily;
    if rotates && file.is_none() && access_file.is_none() {
        let key = if max_size.is_some() {
            "max_size"
        } else {
            "daily"
        };
        r.error_nowhere(
            &t.key_path(key),
            "rotation needs a file: set log.file (or log.access_file); stdout is not rotated",
        );
    }
    t.finish(r);
    Log {
        format,
        level: level.to_string(),
        access,
        file,
        access_file,
        rotation: Rotation {
            max_size,
            daily,
            keep,
        },
    }
}

/// A file path; empty means none (stdout).
fn path(r: &mut Reader, t: &mut Table, key: &'static str) -> Option<PathBuf> {
    t.string(r, key)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}
