//! The units agent.toml and the command line write: sizes ("64 MiB"),
//! rates ("20 MiB/s"), durations ("30s", "10m") and calendar periods
//! ("6 months", "30 days"). Pure; the callers name the key in their errors.

use jiff::{SignedDuration, Span};
use std::time::Duration;

/// Parses "16 MiB", "512KiB", "1 GB", "4096" into bytes. Binary units may
/// be written "k", "m", "g", "t" or "KiB" ...; "kB" ... are powers of ten.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    (num >= 0.0).then_some((num * mult as f64) as u64)
}

/// The least rate a cap may be (1 KiB/s).
pub const MIN_RATE: u64 = 1024;

/// Parses a rate of at least 1 KiB/s, "20 MiB/s", into bytes per second.
pub fn parse_rate(text: &str) -> Option<u64> {
    text.trim()
        .strip_suffix("/s")
        .and_then(parse_size)
        .filter(|r| *r >= MIN_RATE)
}

/// Parses a duration such as "60s", "10m" or "1h 30m", of any sign.
pub fn parse_duration(text: &str) -> Option<SignedDuration> {
    text.trim().parse().ok()
}

/// Parses a duration longer than zero, "30s" or "10m".
pub fn parse_positive_duration(text: &str) -> Option<Duration> {
    parse_duration(text)
        .filter(|d| d.is_positive())
        .map(|d| d.unsigned_abs())
}

/// A positive calendar span such as "6 months", "30 days", "7 years", "12h".
pub fn parse_period(text: &str) -> Result<Span, String> {
    let span: Span = text.trim().parse().map_err(|_| {
        format!("{text:?} is not a period like \"6 months\", \"30 days\" or \"7 years\"")
    })?;
    if !span.is_positive() {
        return Err(format!("{text:?}: a period must be longer than zero"));
    }
    Ok(span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("16 MiB"), Some(16 << 20));
        assert_eq!(parse_size("512KiB"), Some(512 << 10));
        assert_eq!(parse_size("1 GB"), Some(1_000_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn rates_are_sizes_per_second_of_at_least_1_kib() {
        assert_eq!(parse_rate("20 MiB/s"), Some(20 << 20));
        assert_eq!(parse_rate(" 1 KiB/s "), Some(1024));
        assert_eq!(parse_rate("1000/s"), None);
        assert_eq!(parse_rate("50 MiB"), None);
        assert_eq!(parse_rate("fast/s"), None);
    }

    #[test]
    fn durations_and_periods_parse() {
        assert_eq!(
            parse_positive_duration("30s"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_positive_duration("10m"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(parse_positive_duration("-5s"), None);
        assert_eq!(parse_positive_duration("0s"), None);
        assert_eq!(parse_duration("0s"), Some(SignedDuration::ZERO));
        assert_eq!(parse_period("6 months").unwrap().get_months(), 6);
        assert_eq!(parse_period("30 days").unwrap().get_days(), 30);
        let e = parse_period("0 days").unwrap_err();
        assert!(e.contains("longer than zero"), "{e}");
        let e = parse_period("2 yeras").unwrap_err();
        assert!(e.contains("2 yeras") && e.contains("6 months"), "{e}");
    }

    const UNITS: [(&str, u64); 9] = [
        ("", 1),
        ("B", 1),
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("k", 1 << 10),
        ("kB", 1_000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
    ];

    proptest! {
        #[test]
        fn a_written_size_reads_back_as_its_bytes(
            n in 0u64..1 << 20,
            unit in 0..UNITS.len(),
            space in any::<bool>(),
            upper in any::<bool>(),
        ) {
            let (name, mult) = UNITS[unit];
            let name = if upper { name.to_uppercase() } else { name.to_string() };
            let sep = if space { " " } else { "" };
            let text = format!("{n}{sep}{name}");
            prop_assert_eq!(parse_size(&text), Some(n * mult));
            let per_second = format!("{text}/s");
            prop_assert_eq!(parse_rate(&per_second), Some(n * mult).filter(|r| *r >= MIN_RATE));
        }
    }
}
