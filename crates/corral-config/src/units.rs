//! Human units in config values: durations (`"30s"`) and sizes (`"10MiB"`).

use std::time::Duration;

/// Parses `"500ms"`, `"30s"`, `"2m"`, `"1h"` or a sum like `"1m30s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("has no unit")?;
        if digits == 0 {
            return Err("does not start with a number".into());
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("has a bad number {number:?}"))?;
        let seconds = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            other => return Err(format!("has an unknown unit {other:?}")),
        };
        total += Duration::try_from_secs_f64(seconds).map_err(|_| "is out of range".to_string())?;
        rest = tail;
    }
    whole_milliseconds(total)
}

/// A duration in whole milliseconds, the step of every timer of corral (and of the printed
/// config): one under a millisecond, which would round to 0 and slip past "more than 0",
/// or between two (`"1.5ms"`), which would not print back the same, is refused. The
/// decimal's float error (under a microsecond) is rounded away.
fn whole_milliseconds(d: Duration) -> Result<Duration, String> {
    let ns = d.as_nanos();
    let ms = (ns + 500_000) / 1_000_000;
    let off = ns.abs_diff(ms * 1_000_000);
    if ns > 0 && ms == 0 {
        return Err("is under a millisecond, the smallest step corral's timers take".into());
    }
    if off > 1_000 {
        return Err("is not a whole number of milliseconds".into());
    }
    let ms = u64::try_from(ms).map_err(|_| "is out of range".to_string())?;
    Ok(Duration::from_millis(ms))
}

/// Formats a duration the way the config accepts it back (`"1500ms"`, `"30s"`).
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// Parses `"10MiB"`, `"512KiB"`, `"1GiB"`, `"100kB"`, `"4096"` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if split == 0 {
        return Err("does not start with a number".into());
    }
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| "is too large".to_string())?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1000 * 1000,
        "MiB" => 1 << 20,
        "GB" => 1000 * 1000 * 1000,
        "GiB" => 1 << 30,
        other => return Err(format!("has an unknown unit {other:?}")),
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| "is too large".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn durations_round_trip() {
        for d in ["30s", "1500ms", "0ms", "2s"] {
            let parsed = parse_duration(d).expect("valid");
            assert_eq!(parse_duration(&format_duration(parsed)), Ok(parsed));
        }
    }

    #[test]
    fn a_duration_under_a_millisecond_or_between_two_is_refused() {
        assert!(parse_duration("0.0001ms").is_err());
        assert!(parse_duration("0.9ms").is_err());
        assert!(parse_duration("1.5ms").is_err());
        assert_eq!(parse_duration("0.001s"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_duration("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    }

    proptest::proptest! {
        /// Any text: no panic, and a duration accepted is whole milliseconds that print
        /// and read back the same.
        #[test]
        fn any_duration_text_parses_or_is_refused_and_round_trips(text in "[0-9.]{0,8}(ms|s|m|h|x|)[0-9.]{0,4}(ms|s|)") {
            if let Ok(d) = parse_duration(&text) {
                proptest::prop_assert_eq!(d.subsec_nanos() % 1_000_000, 0);
                proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
            }
        }

        /// Any text: no panic; a size accepted is what its number times its unit says.
        #[test]
        fn any_size_text_parses_or_is_refused(n in 0u64..1 << 40, unit in proptest::sample::select(vec!["", "B", "kB", "KiB", "MiB", "GiB", "MB", "xB", " KiB"])) {
            let text = format!("{n}{unit}");
            let factor = match unit.trim() {
                "" | "B" => Some(1u64),
                "kB" => Some(1000),
                "KiB" => Some(1 << 10),
                "MiB" => Some(1 << 20),
                "GiB" => Some(1 << 30),
                "MB" => Some(1_000_000),
                _ => None,
            };
            match factor.and_then(|f| n.checked_mul(f)) {
                Some(bytes) => proptest::prop_assert_eq!(parse_size(&text), Ok(bytes)),
                None => proptest::prop_assert!(parse_size(&text).is_err()),
            }
        }

        #[test]
        fn arbitrary_unit_text_never_panics(text in "\\PC{0,24}") {
            let _ = parse_duration(&text);
            let _ = parse_size(&text);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1kB"), Ok(1000));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("10 furlongs").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}
