//! The access log's own path: each line written straight into the bytes that go to the writer
//! thread, without tracing's event machinery (dispatch, the field visitor, formatting through
//! `fmt::Write` into a shared buffer, then a copy of the finished line), which with the access
//! log on cost the proxy thread about 5% of its time. The line is the one [`JsonLines`]
//! writes for an event on `corral::access`, field for field. It is used for JSON lines when
//! `RUST_LOG` is not set; otherwise (text lines, or a filter of the user's, which this path
//! would not apply) access lines go through tracing.
//!
//! [`JsonLines`]: crate::json::JsonLines

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::logging::ACCESS_TARGET;
use crate::writer::QueuedWriter;

static SINK: OnceLock<QueuedWriter> = OnceLock::new();

thread_local! {
    /// The memory of this thread's last line, so a line allocates nothing.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Makes `writer` the access lines' direct way out (the first call wins, as the first
/// subscriber does).
pub(crate) fn install(writer: QueuedWriter) {
    let _ = SINK.set(writer);
}

/// Where access lines go directly, when they may; `None`: log them through tracing.
pub fn sink() -> Option<&'static QueuedWriter> {
    SINK.get()
}

/// The `,"name":` that opens a field, made at compile time by [`access_key!`]: one copy per
/// field, where writing the comma, the quoted name and the colon apart cost each of a line's
/// 18 fields some 50 instructions.
#[derive(Clone, Copy)]
pub struct Key(&'static str);

impl Key {
    /// For [`access_key!`] only: `text` must be `,"name":` with `name` needing no escape.
    #[doc(hidden)]
    pub const fn made(text: &'static str) -> Key {
        Key(text)
    }
}

/// The [`Key`] of the field `name` (a literal that needs no escape).
#[macro_export]
macro_rules! access_key {
    ($name:literal) => {
        $crate::access::Key::made(concat!(",\"", $name, "\":"))
    };
}

/// One access line being written.
pub struct AccessLine {
    buf: Vec<u8>,
}

impl AccessLine {
    /// A line stamped now, at level `INFO`, message `access`.
    pub fn new() -> AccessLine {
        let mut buf = SCRATCH.try_with(Cell::take).unwrap_or_default();
        buf.clear();
        buf.reserve(512);
        buf.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(SystemTime::now(), &mut buf);
        buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"access\"");
        AccessLine { buf }
    }

    fn name(&mut self, key: Key) {
        self.buf.extend_from_slice(key.0.as_bytes());
    }

    /// A string field, escaped.
    pub fn str(&mut self, name: Key, value: &str) {
        self.name(name);
        self.buf.push(b'"');
        let _ = crate::json::escape(value, |piece| {
            self.buf.extend_from_slice(piece.as_bytes());
            Ok(())
        });
        self.buf.push(b'"');
    }

    /// An integer field.
    pub fn u64(&mut self, name: Key, value: u64) {
        self.name(name);
        decimal(value, &mut self.buf);
    }

    /// A number field, as tracing's JSON lines print it (shortest form; a string when not
    /// finite).
    pub fn f64(&mut self, name: Key, value: f64) {
        use std::io::Write;
        if let Some(short) = crate::json::Thousandths::of(value) {
            self.name(name);
            self.buf.extend_from_slice(short.as_bytes());
        } else if value.is_finite() {
            self.name(name);
            let _ = write!(self.buf, "{value}");
        } else {
            self.str(name, &value.to_string());
        }
    }

    /// A `true` or `false` field.
    pub fn bool(&mut self, name: Key, value: bool) {
        self.name(name);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// Ends the line and hands it to the writer; a writer that has stopped (the process is
    /// ending) takes nothing more, as with any other line.
    pub fn send(mut self, sink: &QueuedWriter) {
        self.buf.extend_from_slice(b",\"target\":\"");
        self.buf.extend_from_slice(ACCESS_TARGET.as_bytes());
        self.buf.extend_from_slice(b"\"}\n");
        let _ = sink.send(&self.buf);
        let _ = SCRATCH.try_with(|scratch| scratch.set(self.buf));
    }

    /// The line so far (for tests).
    #[cfg(test)]
    fn text(&self) -> &str {
        std::str::from_utf8(&self.buf).unwrap_or_default()
    }
}

impl Default for AccessLine {
    fn default() -> Self {
        AccessLine::new()
    }
}

/// `value` in decimal, by itoa (two digits per step from a table, not one per division).
fn decimal(value: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// `now` as RFC 3339 in UTC with microseconds (`2026-12-03T15:03:00.986452Z`), the form of
/// tracing's timestamps.
fn timestamp(now: SystemTime, out: &mut Vec<u8>) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_date(secs / 86_400);
    let of_day = secs % 86_400;
    let two = |v: u64, out: &mut Vec<u8>| {
        out.push(b'0' + (v / 10) as u8);
        out.push(b'0' + (v % 10) as u8);
    };
    decimal(year, out);
    out.push(b'-');
    two(month, out);
    out.push(b'-');
    two(day, out);
    out.push(b'T');
    two(of_day / 3600, out);
    out.push(b':');
    two(of_day / 60 % 60, out);
    out.push(b':');
    two(of_day % 60, out);
    out.push(b'.');
    let micros = u64::from(since.subsec_micros());
    let mut place = 100_000;
    while place > 0 {
        out.push(b'0' + (micros / place % 10) as u8);
        place /= 10;
    }
    out.push(b'Z');
}

/// The (year, month, day) of a count of days since 1970-01-01, in the proleptic Gregorian
/// calendar: by 400-year eras of 146,097 days, with years that start on March 1 so the leap
/// day is each year's last.
fn civil_date(days: u64) -> (u64, u64, u64) {
    let days = days + 719_468; // from 0000-03-01
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_the_calendar() {
        let at = |secs: u64, micros: u64| {
            let mut out = Vec::new();
            timestamp(
                UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros),
                &mut out,
            );
            String::from_utf8(out).unwrap_or_default()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(951_868_799, 999_999), "2000-02-29T23:59:59.999999Z");
        assert_eq!(at(1_796_310_180, 986_452), "2026-12-03T15:03:00.986452Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
    }

    #[test]
    fn a_line_is_one_json_object_with_the_fields_in_order() {
        let mut line = AccessLine::new();
        line.str(access_key!("path"), "/a\"b\\c\nd\u{1}");
        line.u64(access_key!("status"), 200);
        line.u64(access_key!("bytes"), 0);
        line.f64(access_key!("duration_ms"), 0.225);
        line.f64(access_key!("upstream_ms"), f64::NAN);
        line.bool(access_key!("websocket"), false);
        line.buf.extend_from_slice(b"}");
        let text = line.text().to_string();
        let value: serde_json::Value = serde_json::from_str(&text).expect(&text);
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["message"], "access");
        assert_eq!(value["path"], "/a\"b\\c\nd\u{1}");
        assert_eq!(value["status"], 200);
        assert_eq!(value["bytes"], 0);
        assert_eq!(value["duration_ms"], 0.225);
        assert_eq!(value["upstream_ms"], "NaN");
        assert_eq!(value["websocket"], false);
        let keys: Vec<&str> = text
            .split(",\"")
            .skip(1)
            .filter_map(|f| f.split('"').next())
            .collect();
        assert_eq!(
            keys,
            [
                "level",
                "message",
                "path",
                "status",
                "bytes",
                "duration_ms",
                "upstream_ms",
                "websocket"
            ]
        );
    }
}
