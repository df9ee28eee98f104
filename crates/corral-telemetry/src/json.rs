//! JSON lines for log events, written straight into the line buffer. tracing-subscriber's own
//! JSON formatter goes through serde_json and checks every fragment it writes for UTF-8;
//! with the access log on, that alone cost the proxy thread about 7% of its time. The lines
//! have the same shape: `timestamp`, `level`, the event's fields at the top level (`message`
//! first), `target`.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats each event as one JSON object on a line.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Records bridged from the `log` crate carry their real target in their fields.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;
        let mut fields = Fields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`, remembering the first error.
struct Fields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        // `log.*` fields are the bridged record's metadata, already used above.
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = (|| {
            // A field name is almost always an identifier: written in one piece.
            let name = field.name();
            if name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
                self.writer.write_str(",\"")?;
                self.writer.write_str(name)?;
                self.writer.write_str("\":")?;
            } else {
                self.writer.write_char(',')?;
                write_string(self.writer, name)?;
                self.writer.write_char(':')?;
            }
            value(self.writer)
        })();
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |w| write_string(w, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |w| {
            if let Some(short) = Thousandths::of(value) {
                w.write_str(short.as_str())
            } else if value.is_finite() {
                write!(w, "{value}")
            } else {
                write_string(w, &value.to_string())
            }
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

fn write_string(w: &mut Writer<'_>, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(s)?;
    w.write_char('"')
}

/// Writes text escaped for the inside of a JSON string.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape(s, |piece| self.0.write_str(piece))
    }
}

/// Hands `s` to `put` in pieces, escaped for the inside of a JSON string.
pub(crate) fn escape(s: &str, mut put: impl FnMut(&str) -> fmt::Result) -> fmt::Result {
    // Almost every value needs no escape: one pass without an early exit, which the compiler
    // turns into whole-register compares, then one piece. Byte by byte, the access line's
    // strings cost more than the rest of the line.
    let dirty = s.bytes().fold(false, |dirty, b| {
        dirty | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !dirty {
        return put(s);
    }
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        put(&s[plain..i])?;
        if escape.is_empty() {
            put(&format!("\\u{b:04x}"))?;
        } else {
            put(escape)?;
        }
        plain = i + 1;
    }
    put(&s[plain..])
}

/// A number that is a whole count of thousandths (a duration in milliseconds rounded to the
/// microsecond, as every duration corral logs is), written as `Display` writes it but without
/// the shortest-digits search, which cost each access line two of its ~1.7 µs.
pub(crate) struct Thousandths {
    /// The text, right-aligned: `text[start..]`.
    text: [u8; 24],
    start: usize,
}

impl Thousandths {
    /// `None` unless `value` is the double nearest some `k / 1000` with `0 <= k < 10^15`:
    /// then `k / 1000` with its trailing zeros dropped is the shortest decimal that reads
    /// back as `value` (15 significant digits always do), so the text is `Display`'s.
    pub(crate) fn of(value: f64) -> Option<Thousandths> {
        if !(0.0..1e12).contains(&value) || value.is_sign_negative() {
            return None;
        }
        let count = (value * 1000.0).round();
        if count / 1000.0 != value {
            return None;
        }
        let count = count as u64;
        let mut out = Thousandths {
            text: [0; 24],
            start: 24,
        };
        let mut fraction = count % 1000;
        if fraction != 0 {
            let mut places = 3;
            while fraction.is_multiple_of(10) {
                fraction /= 10;
                places -= 1;
            }
            for _ in 0..places {
                out.push_front(b'0' + (fraction % 10) as u8);
                fraction /= 10;
            }
            out.push_front(b'.');
        }
        let mut digits = itoa::Buffer::new();
        let whole = digits.format(count / 1000).as_bytes();
        out.start -= whole.len();
        out.text[out.start..out.start + whole.len()].copy_from_slice(whole);
        Some(out)
    }

    fn push_front(&mut self, byte: u8) {
        self.start -= 1;
        self.text[self.start] = byte;
    }

    /// The digits, as `Display` would write them.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.text[self.start..]
    }

    /// The same, as text.
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and a point were pushed.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::Thousandths;

    #[test]
    fn thousandths_read_as_display_writes_them() {
        let mut checked = 0;
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut samples: Vec<f64> = vec![0.0, 0.001, 0.01, 0.1, 1.0, 10.0, 0.225, 1.5, 999.999];
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let ms = (seed % 10_000_000_000) as f64 / 1000.0;
            samples.push(ms);
            samples.push((seed % 100_000) as f64 / 1000.0);
        }
        for value in samples {
            let short = Thousandths::of(value).expect("a count of thousandths");
            assert_eq!(short.as_str(), format!("{value}"), "{value:?}");
            checked += 1;
        }
        assert!(checked > 400_000);
        for other in [-0.0, -1.0, 0.0001, 1.0 / 3.0, f64::NAN, f64::INFINITY, 1e13] {
            assert!(Thousandths::of(other).is_none(), "{other:?}");
        }
    }
}
