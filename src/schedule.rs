//! When backups, drills and lifecycle runs fire, as written in agent.toml.
//!
//! Pure: the caller passes the current time and any randomness, so every
//! answer here can be tested with fixed dates.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::civil::date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

const FORMS: &str =
    r#"expected "daily HH:MM", "every 6h" or a cron expression like "cron 0 2 * * *""#;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Wall-clock time in the agent's zone, so a backup at 02:00 stays at
    /// 02:00 across DST changes.
    Daily {
        hour: i8,
        minute: i8,
    },
    /// Fires on multiples of the interval since the Unix epoch, so a
    /// restarted agent keeps the same grid.
    Every(Duration),
    Cron(Box<Cron>),
}

/// A standard five-field cron expression with standard semantics, which
/// jiff-cron alone does not give (it numbers Sunday 1 and ANDs the two day
/// fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// The five fields as written, for `Display`.
    fields: String,
    /// One schedule, or two whose union is the cron's when both day fields
    /// are restricted (cron fires when either matches).
    alternatives: Vec<jiff_cron::Schedule>,
    /// Computed once at parse time, which also proves the expression fires.
    interval: Duration,
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let keyword = words.first().map(|w| w.to_ascii_lowercase());
        let parsed = match (keyword.as_deref(), words.len()) {
            (Some("daily"), 2) => parse_daily(words[1]),
            (Some("hourly"), 1) => Ok(Schedule::Every(Duration::from_secs(3600))),
            (Some("every"), 2 | 3) => parse_every(&words[1..].join(" ")),
            (Some("cron"), _) => parse_cron(&words[1..]),
            (_, 5..=7) => parse_cron(&words),
            _ => Err(String::new()),
        };
        parsed.map_err(|why| format!("schedule {:?}: {why}{FORMS}", text.trim()))
    }
}

fn parse_daily(time: &str) -> Result<Schedule, String> {
    let parsed = time.split_once(':').and_then(|(h, m)| {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (h.len() <= 2 && m.len() == 2 && digits(h) && digits(m)).then(|| (h.parse(), m.parse()))
    });
    match parsed {
        Some((Ok(hour @ 0..=23), Ok(minute @ 0..=59))) => Ok(Schedule::Daily { hour, minute }),
        _ => Err(format!("{time:?} is not a time of day 00:00..23:59; ")),
    }
}

/// `amount` is the number and unit, spaced or not: "6h", "30 min".
fn parse_every(amount: &str) -> Result<Schedule, String> {
    let compact = amount.replace(' ', "");
    let unit = compact.trim_start_matches(|c: char| c.is_ascii_digit());
    let number = &compact[..compact.len() - unit.len()];
    let seconds = match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => 0,
    };
    match number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(seconds))
    {
        Some(total) if total > 0 => Ok(Schedule::Every(Duration::from_secs(total))),
        _ => Err(format!(
            "{amount:?} is not a whole number ≥ 1 followed by s, m, h or d; "
        )),
    }
}

fn parse_cron(fields: &[&str]) -> Result<Schedule, String> {
    let &[minute, hour, dom, month, dow] = fields else {
        return Err(format!(
            "a cron expression has 5 fields (minute hour day-of-month month day-of-week), not {}; ",
            fields.len()
        ));
    };
    let weekdays = cron_weekdays(dow)?;
    // jiff-cron's message quotes the translated expression, then the reason.
    let reason = |e: jiff_cron::error::Error| {
        let text = e.to_string();
        format!("{}; ", text.lines().last().unwrap_or_default().trim())
    };
    // Vixie cron: a day field starting with '*' is unrestricted; when both
    // are restricted, a day matching either fires.
    let days = match (dom.starts_with('*'), dow.starts_with('*')) {
        (false, false) => vec![(dom, "*"), ("*", weekdays.as_str())],
        _ => vec![(dom, weekdays.as_str())],
    };
    let alternatives = days
        .iter()
        .map(|(dom, dow)| {
            format!("0 {minute} {hour} {dom} {month} {dow}")
                .parse()
                .map_err(reason)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (fields, interval) = (fields.join(" "), Duration::ZERO);
    let mut cron = Cron {
        fields,
        alternatives,
        interval,
    };
    let start = date(2026, 1, 1).to_zoned(TimeZone::UTC).expect("in range");
    let firings: Vec<Zoned> =
        std::iter::successors(cron.next_after(&start), |t| cron.next_after(t))
            .take(8)
            .collect();
    let gaps = firings
        .windows(2)
        .map(|w| w[1].timestamp().duration_since(w[0].timestamp()));
    let smallest = gaps.min().ok_or("this cron expression never fires; ")?;
    cron.interval = smallest.unsigned_abs();
    Ok(Schedule::Cron(Box::new(cron)))
}

/// Translates standard cron days (0 or 7 = Sunday, 1 = Monday) to
/// jiff-cron's (1 = Sunday ... 7 = Saturday) as an explicit list, since
/// shifting ranges and steps in place breaks on 7.
fn cron_weekdays(field: &str) -> Result<String, String> {
    if field == "*" {
        return Ok(field.to_string());
    }
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let named = |s: &str| NAMES.iter().position(|n| n.eq_ignore_ascii_case(s));
    let day = |s: &str| named(s).or_else(|| s.parse().ok().filter(|d| *d <= 7));
    let mut days = [false; 7];
    for item in field.split(',') {
        let bad = || {
            format!("day of week {item:?} is not 0-7 or sun-sat, with optional range and /step; ")
        };
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, step.parse().ok().filter(|s| *s > 0).ok_or_else(bad)?),
            None => (item, 1),
        };
        let (first, last) = match range.split_once('-') {
            _ if range == "*" => (Some(0), Some(7)),
            Some((a, b)) => (day(a), day(b)),
            None if step > 1 => (day(range), Some(7)),
            None => (day(range), day(range)),
        };
        let Some((first, last)) = first.zip(last).filter(|(f, l)| f <= l) else {
            return Err(bad());
        };
        (first..=last)
            .step_by(step)
            .for_each(|d| days[d % 7] = true);
    }
    let list: Vec<String> = (0..7)
        .filter(|&d| days[d])
        .map(|d| (d + 1).to_string())
        .collect();
    Ok(list.join(","))
}

impl Cron {
    fn next_after(&self, after: &Zoned) -> Option<Zoned> {
        self.alternatives
            .iter()
            .filter_map(|s| s.after(after.clone()).next())
            .min()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Daily { hour, minute } => write!(f, "daily {hour:02}:{minute:02}"),
            Schedule::Every(interval) => {
                let secs = interval.as_secs();
                let (n, unit) = [(86_400, "d"), (3600, "h"), (60, "m")]
                    .into_iter()
                    .find(|(k, _)| secs % k == 0)
                    .map_or((secs, "s"), |(k, unit)| (secs / k, unit));
                write!(f, "every {n}{unit}")
            }
            Schedule::Cron(cron) => write!(f, "cron {}", cron.fields),
        }
    }
}

impl Schedule {
    /// The first firing strictly after `after`, in the time zone of `after`.
    ///
    /// A schedule with no firing left in jiff's range (past year 9999, or
    /// 2100 for cron) answers the last representable instant: never.
    pub fn next_after(&self, after: &Zoned) -> Zoned {
        let tz = after.time_zone();
        let next = match self {
            // `to_zoned` disambiguates compatibly: a time in a gap moves
            // forward by the gap, a time in a fold is its first occurrence,
            // so a fold day fires once.
            Schedule::Daily { hour, minute } => {
                std::iter::successors(Some(after.date()), |d| d.tomorrow().ok()).find_map(|d| {
                    let at = d.at(*hour, *minute, 0, 0).to_zoned(tz.clone()).ok();
                    at.filter(|at| at > after)
                })
            }
            Schedule::Every(interval) => {
                let step = i128::try_from(interval.as_nanos())
                    .unwrap_or(i128::MAX)
                    .max(1);
                let next =
                    (after.timestamp().as_nanosecond().div_euclid(step) + 1).saturating_mul(step);
                Timestamp::from_nanosecond(next)
                    .ok()
                    .map(|t| t.to_zoned(tz.clone()))
            }
            Schedule::Cron(cron) => cron.next_after(after),
        };
        next.unwrap_or_else(|| Timestamp::MAX.to_zoned(tz.clone()))
    }

    /// The nominal gap between firings, used to cap the splay: 24h for
    /// daily, the interval for every, and for cron the smallest gap among
    /// its first eight firings from 2026-01-01 UTC.
    pub fn interval(&self) -> Duration {
        match self {
            Schedule::Daily { .. } => Duration::from_secs(86_400),
            Schedule::Every(interval) => *interval,
            Schedule::Cron(cron) => cron.interval,
        }
    }
}

/// The splay actually used: the configured maximum, never more than a
/// tenth of the interval, so splay cannot push a firing into the next one.
pub fn splay_cap(configured: Duration, interval: Duration) -> Duration {
    configured.min(interval / 10)
}

/// A delay in [0, cap) from a uniform fraction in [0, 1) the caller draws,
/// so tests are deterministic; fractions out of range are clamped.
pub fn splay_delay(cap: Duration, fraction: f64) -> Duration {
    if cap.is_zero() || fraction.is_nan() || fraction <= 0.0 {
        return Duration::ZERO;
    }
    // Rounding can reach `cap` for fractions just below 1.
    cap.mul_f64(fraction.min(1.0))
        .min(cap - Duration::from_nanos(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;
    use jiff::civil::DateTime;
    use jiff::tz::AmbiguousOffset;
    use proptest::prelude::*;

    fn parse(text: &str) -> Schedule {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(civil: &str, zone: &str) -> Zoned {
        civil.parse::<DateTime>().unwrap().in_tz(zone).unwrap()
    }

    /// One case a line: schedule | civil time | zone | expected next firing.
    fn check(table: &str) {
        for line in table.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let [schedule, after, zone, expected] =
                line.split('|').map(str::trim).collect::<Vec<_>>()[..]
            else {
                panic!("bad case {line:?}")
            };
            let next = parse(schedule).next_after(&at(after, zone));
            assert_eq!(next.time_zone().iana_name(), Some(zone));
            assert_eq!(next.strftime("%FT%T%:z").to_string(), expected, "{line}");
        }
    }

    #[test]
    fn parse_display_round_trip() {
        for (text, shown) in [
            ("daily 02:00", "daily 02:00"),
            ("  DAILY 2:05 ", "daily 02:05"),
            ("every 6h", "every 6h"),
            ("every 30 min", "every 30m"),
            ("Every 10s", "every 10s"),
            ("every 2 hours", "every 2h"),
            ("every 90m", "every 90m"),
            ("every 24h", "every 1d"),
            ("hourly", "every 1h"),
            ("cron 0 3 * * *", "cron 0 3 * * *"),
            ("0  3 * * 1-5", "cron 0 3 * * 1-5"),
            ("CRON */15 * * * mon-fri", "cron */15 * * * mon-fri"),
        ] {
            let schedule = parse(text);
            assert_eq!(schedule.to_string(), shown, "{text}");
            assert_eq!(parse(shown), schedule, "{text}");
        }
    }

    #[test]
    fn bad_inputs_name_the_input() {
        let bad = "|daily 25:00|daily 2|daily 02:60|daily 2:5|every 0s|every -1h|every 6|every 6 weeks\
                   |cron 1 2 3|cron 0 0 1 1 * 2030|0 0 0 1 1 * 2030|weekly|dayly 2|cron 0 3 * * 8\
                   |cron 0 3 * * 5-1|cron 61 * * * *|cron 0 0 30 2 *";
        for text in bad.split('|') {
            let err = text.parse::<Schedule>().unwrap_err();
            assert!(err.contains(&format!("{text:?}")), "{err}");
            assert!(
                err.contains("cron 0 2 * * *") && !err.contains('\n'),
                "{err}"
            );
        }
    }

    #[test]
    fn daily_fires_at_its_wall_clock_time_across_midnight_and_dst() {
        // Europe/Stockholm springs forward 02:00 -> 03:00 on 2026-03-29, so
        // 02:30 does not exist and compatible disambiguation reads it with
        // the old offset: 03:30 CEST. It falls back 03:00 -> 02:00 on
        // 2026-10-25, so 02:30 happens twice and fires once, at the first;
        // 02:45 (first occurrence) lies between the two and waits a day.
        check(
            "
            daily 02:00 | 2026-01-10T01:59    | Europe/Stockholm | 2026-01-10T02:00:00+01:00
            daily 02:00 | 2026-01-10T02:00    | Europe/Stockholm | 2026-01-11T02:00:00+01:00
            daily 00:00 | 2026-12-31T23:59:59 | Europe/Stockholm | 2027-01-01T00:00:00+01:00
            daily 23:30 | 2026-06-01T23:45    | UTC              | 2026-06-02T23:30:00+00:00
            daily 02:30 | 2026-03-29T01:00    | Europe/Stockholm | 2026-03-29T03:30:00+02:00
            daily 02:30 | 2026-03-29T03:30    | Europe/Stockholm | 2026-03-30T02:30:00+02:00
            daily 03:00 | 2026-03-29T01:00    | Europe/Stockholm | 2026-03-29T03:00:00+02:00
            daily 02:30 | 2026-10-25T01:00    | Europe/Stockholm | 2026-10-25T02:30:00+02:00
            daily 02:30 | 2026-10-25T02:45    | Europe/Stockholm | 2026-10-26T02:30:00+01:00
            daily 03:00 | 2026-10-25T01:00    | Europe/Stockholm | 2026-10-25T03:00:00+01:00
        ",
        );
    }

    #[test]
    fn every_is_on_the_epoch_grid_and_strictly_after() {
        check(
            "            every 6h  | 2026-03-01T07:00              | UTC              | 2026-03-01T12:00:00+00:00
            every 6h  | 2026-03-01T12:00              | UTC              | 2026-03-01T18:00:00+00:00
            every 6h  | 2026-03-01T12:00:00.000000001 | UTC              | 2026-03-01T18:00:00+00:00
            every 10s | 2026-03-01T12:00:05           | UTC              | 2026-03-01T12:00:10+00:00
            every 6h  | 2026-07-01T01:00              | Europe/Stockholm | 2026-07-01T02:00:00+02:00
            every 1h  | 1969-12-31T23:59:59           | UTC              | 1970-01-01T00:00:00+00:00
        ",
        );
    }

    #[test]
    fn cron_fires_like_standard_cron() {
        // 2026-01-01 is a Thursday, 2026-01-04 a Sunday. "0 0 13 * 5" fires
        // on the 13th or on a Friday, as both day fields are restricted.
        check(
            "            cron 0 3 * * 1 | 2026-01-04T12:00 | Europe/Stockholm | 2026-01-05T03:00:00+01:00
            */15 * * * *   | 2026-01-04T10:07 | Europe/Stockholm | 2026-01-04T10:15:00+01:00
            */15 * * * *   | 2026-01-04T10:15 | Europe/Stockholm | 2026-01-04T10:30:00+01:00
            0 3 * * 0      | 2026-01-01T00:00 | UTC              | 2026-01-04T03:00:00+00:00
            0 3 * * 7      | 2026-01-01T00:00 | UTC              | 2026-01-04T03:00:00+00:00
            0 3 * * SUN    | 2026-01-01T00:00 | UTC              | 2026-01-04T03:00:00+00:00
            0 3 * * 0/7    | 2026-01-01T00:00 | UTC              | 2026-01-04T03:00:00+00:00
            0 3 * * 5-7    | 2026-01-04T04:00 | UTC              | 2026-01-09T03:00:00+00:00
            0 3 * * 6      | 2026-01-01T00:00 | UTC              | 2026-01-03T03:00:00+00:00
            0 0 13 * 5     | 2026-01-09T00:00 | UTC              | 2026-01-13T00:00:00+00:00
            0 0 13 * 5     | 2026-01-13T00:00 | UTC              | 2026-01-16T00:00:00+00:00
        ",
        );
    }

    #[test]
    fn interval_of_each_form() {
        let hours = |h: u64| Duration::from_secs(h * 3600);
        assert_eq!(parse("daily 02:00").interval(), hours(24));
        assert_eq!(parse("every 6h").interval(), hours(6));
        assert_eq!(parse("cron 0 3 * * *").interval(), hours(24));
        assert_eq!(
            parse("cron */15 * * * *").interval(),
            Duration::from_secs(900)
        );
        assert_eq!(parse("cron 0 3 * * 1").interval(), hours(7 * 24));
        assert_eq!(parse("cron 0 3 * * 1-5").interval(), hours(24));
        assert_eq!(parse("cron 0 3,4 * * *").interval(), hours(1));
    }

    #[test]
    fn splay_is_capped_and_below_the_cap() {
        let secs = Duration::from_secs;
        assert_eq!(splay_cap(secs(600), secs(86_400)), secs(600));
        assert_eq!(splay_cap(secs(3600), secs(6000)), secs(600));
        assert_eq!(splay_cap(secs(3600), secs(10)), secs(1));
        assert_eq!(splay_delay(secs(100), 0.0), Duration::ZERO);
        assert_eq!(splay_delay(secs(100), 0.5), secs(50));
        assert!(splay_delay(secs(100), 0.999_999_999_999_999_9) < secs(100));
        assert!(splay_delay(secs(100), 7.0) < secs(100));
        assert_eq!(splay_delay(secs(100), f64::NAN), Duration::ZERO);
        assert_eq!(splay_delay(Duration::ZERO, 0.5), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn every_lands_on_the_next_grid_point(secs in 1u64..=7 * 86_400, ns in 0i128..4_000_000_000_000_000_000) {
            let t = Timestamp::from_nanosecond(ns).unwrap().to_zoned(TimeZone::get("Europe/Stockholm").unwrap());
            let n = parse(&format!("every {secs}s")).next_after(&t);
            let gap = n.timestamp().duration_since(t.timestamp());
            prop_assert!(gap > SignedDuration::ZERO);
            prop_assert!(gap <= SignedDuration::from_secs(secs as i64));
            prop_assert_eq!(n.timestamp().as_nanosecond() % (i128::from(secs) * 1_000_000_000), 0);
        }

        #[test]
        fn daily_is_within_25h_at_its_wall_clock(hour in 0i8..24, minute in 0i8..60, secs in 0i64..4_000_000_000) {
            let zone = TimeZone::get("Europe/Stockholm").unwrap();
            let t = Timestamp::from_second(secs).unwrap().to_zoned(zone.clone());
            let n = Schedule::Daily { hour, minute }.next_after(&t);
            let gap = n.timestamp().duration_since(t.timestamp());
            prop_assert!(gap > SignedDuration::ZERO && gap <= SignedDuration::from_hours(25));
            let civil = n.date().at(hour, minute, 0, 0);
            let in_gap = matches!(zone.to_ambiguous_zoned(civil).offset(), AmbiguousOffset::Gap { .. });
            prop_assert!(in_gap || (n.hour(), n.minute()) == (hour, minute));
        }
    }
}
