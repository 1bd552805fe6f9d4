//! `[agent]`: who the agent is, where it keeps its state, when it runs,
//! and how much of the machine it may take.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use super::ConfigFile;
use crate::error::Result;
use crate::schedule::Schedule;

#[derive(Debug, Clone)]
pub struct Agent {
    pub host: String,
    pub state_dir: PathBuf,
    pub time_zone: String,
    /// Where `gallra agent` serves Prometheus text at /metrics.
    pub metrics: Option<std::net::SocketAddr>,
    /// A node_exporter textfile the agent rewrites after each job.
    pub metrics_textfile: Option<PathBuf>,
    pub log_format: LogFormat,
    /// The backup schedule of a source that names none.
    pub schedule: Schedule,
    /// Most a scheduled run is delayed at random, so that a fleet does not
    /// hit the store at the same second; never more than a tenth of the
    /// schedule's interval.
    pub splay: Duration,
    /// Tenant backups the agent runs at once.
    pub max_concurrent_tenants: usize,
    /// CPU niceness of the agent (0..=19).
    pub nice: i32,
    pub io_class: IoClass,
    /// Bytes per second backups may read, if capped.
    pub max_read: Option<u64>,
    /// When the agent applies the lifecycle (besides at start, after an
    /// event, and when a snapshot expires).
    pub lifecycle: Schedule,
    /// The first wait before a failed ship is tried again; it doubles up
    /// to an hour.
    pub ship_retry: Duration,
    /// How often the agent looks into its inbox.
    pub inbox_poll: Duration,
}

pub const DEFAULT_SCHEDULE: &str = "daily 02:00";
pub const DEFAULT_LIFECYCLE_SCHEDULE: &str = "daily 03:00";
pub const DEFAULT_TIME_ZONE: &str = "Europe/Stockholm";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// The I/O scheduling class of the agent's reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoClass {
    /// Only when no one else uses the disk.
    Idle,
    /// Best effort at a level 0 (first) ..= 7 (last).
    BestEffort(u8),
}

/// The `[agent]` table as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    host: Option<String>,
    state_dir: Option<PathBuf>,
    time_zone: Option<String>,
    metrics: Option<String>,
    metrics_textfile: Option<PathBuf>,
    log_format: Option<LogFormat>,
    schedule: Option<String>,
    splay: Option<String>,
    max_concurrent_tenants: Option<usize>,
    nice: Option<i32>,
    io_class: Option<String>,
    max_read: Option<String>,
    lifecycle: Option<String>,
    ship_retry: Option<String>,
    inbox_poll: Option<String>,
}

fn time_zone_name(a: &RawAgent) -> String {
    a.time_zone
        .clone()
        .unwrap_or_else(|| DEFAULT_TIME_ZONE.into())
}

/// The agent's time zone, which the retention rules' calendar periods are
/// counted in.
pub(super) fn time_zone(a: &RawAgent, file: &ConfigFile) -> Result<jiff::tz::TimeZone> {
    let name = time_zone_name(a);
    jiff::tz::TimeZone::get(&name)
        .map_err(|_| file.error(format!("[agent] time_zone: unknown time zone {name:?}")))
}

pub(super) fn parse(a: RawAgent, file: &ConfigFile) -> Result<Agent> {
    let err = |message: String| file.error(message);
    let host = match a.host.clone() {
        Some(h) => h,
        None => hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into()),
    };
    let time_zone = time_zone_name(&a);
    let metrics = a
        .metrics
        .map(|m| {
            m.parse::<std::net::SocketAddr>().map_err(|_| {
                err(format!(
                    "[agent] metrics: {m:?} is not an address like \"127.0.0.1:9477\""
                ))
            })
        })
        .transpose()?;
    let max_concurrent_tenants = a.max_concurrent_tenants.unwrap_or(2);
    if !(1..=64).contains(&max_concurrent_tenants) {
        return Err(err(
            "[agent] max_concurrent_tenants: must be between 1 and 64".into(),
        ));
    }
    let nice = a.nice.unwrap_or(10);
    if !(0..=19).contains(&nice) {
        return Err(err("[agent] nice: must be between 0 and 19".into()));
    }
    let io_class = io_class(a.io_class.as_deref(), file)?;
    let max_read = a
        .max_read
        .map(|text| {
            crate::units::parse_rate(&text).ok_or_else(|| {
                err(format!(
                    "[agent] max_read {text:?}: expected a rate of at least 1 KiB/s, like \"50 MiB/s\""
                ))
            })
        })
        .transpose()?;
    Ok(Agent {
        host,
        state_dir: file.resolve(
            a.state_dir
                .unwrap_or_else(|| PathBuf::from("/var/lib/gallra")),
        ),
        time_zone,
        metrics,
        metrics_textfile: a.metrics_textfile.map(|p| file.resolve(p)),
        log_format: a.log_format.unwrap_or(LogFormat::Human),
        schedule: file.schedule("[agent] schedule", a.schedule.as_deref(), DEFAULT_SCHEDULE)?,
        // "0s" or "off": every run at its exact time (a fleet of one,
        // or a test that needs its schedule to the second).
        splay: match a.splay.as_deref().map(str::trim) {
            Some("off" | "0" | "0s" | "0m") => Duration::ZERO,
            other => file.duration("[agent] splay", other, "10m")?,
        },
        max_concurrent_tenants,
        nice,
        io_class,
        max_read,
        lifecycle: file.schedule(
            "[agent] lifecycle",
            a.lifecycle.as_deref(),
            DEFAULT_LIFECYCLE_SCHEDULE,
        )?,
        ship_retry: file.duration("[agent] ship_retry", a.ship_retry.as_deref(), "1m")?,
        inbox_poll: file.duration("[agent] inbox_poll", a.inbox_poll.as_deref(), "5s")?,
    })
}

/// `io_class`: "idle", "best-effort" or "best-effort N"; by default the
/// last best-effort level, so that backups yield to the services they copy.
fn io_class(text: Option<&str>, file: &ConfigFile) -> Result<IoClass> {
    Ok(match text.map(str::trim) {
        None => IoClass::BestEffort(7),
        Some("idle") => IoClass::Idle,
        Some(t) => match t.strip_prefix("best-effort").map(str::trim) {
            Some("") => IoClass::BestEffort(4),
            Some(level) => {
                IoClass::BestEffort(level.parse().ok().filter(|l| *l <= 7).ok_or_else(|| {
                    file.error(format!("[agent] io_class: level {level:?} is not 0..=7"))
                })?)
            }
            None => {
                return Err(file.error(format!(
                    "[agent] io_class: {t:?}: expected \"idle\" or \"best-effort N\" (N 0..=7)"
                )));
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::DEFAULT_DRILL_SCHEDULE;
    use super::super::testing::*;
    use super::{DEFAULT_LIFECYCLE_SCHEDULE, DEFAULT_SCHEDULE, IoClass, LogFormat};
    use crate::schedule::Schedule;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    /// MINIMAL with an `[agent]` table holding `lines` in front.
    fn with_agent(lines: &str) -> String {
        format!("[agent]\n{lines}\n{MINIMAL}")
    }

    #[test]
    fn minimal_config_has_the_agent_defaults() {
        let c = parse(MINIMAL).unwrap();
        let a = &c.agent;
        assert_eq!(a.state_dir, PathBuf::from("/var/lib/gallra"));
        assert_eq!(a.metrics, None);
        assert_eq!(a.metrics_textfile, None);
        assert_eq!(a.log_format, LogFormat::Human);
        assert_eq!(a.schedule.to_string(), "daily 02:00");
        assert_eq!(a.schedule, DEFAULT_SCHEDULE.parse().unwrap());
        assert_eq!(a.splay, Duration::from_secs(600));
        assert_eq!(a.max_concurrent_tenants, 2);
        assert_eq!(a.nice, 10);
        assert_eq!(a.io_class, IoClass::BestEffort(7));
        assert_eq!(a.max_read, None);
        assert_eq!(a.lifecycle.to_string(), "daily 03:00");
        assert_eq!(a.lifecycle, DEFAULT_LIFECYCLE_SCHEDULE.parse().unwrap());
        assert_eq!(a.ship_retry, Duration::from_secs(60));
        assert_eq!(a.inbox_poll, Duration::from_secs(5));
        assert_eq!(
            c.sources[0].schedule, a.schedule,
            "a source without a schedule takes the agent's"
        );
        let drill = c.drill.schedule.as_ref().expect("drills are on by default");
        assert_eq!(drill.to_string(), "cron 30 4 * * 0");
        assert_eq!(*drill, DEFAULT_DRILL_SCHEDULE.parse().unwrap());
    }

    #[test]
    fn agent_keys_are_read() {
        let c = parse(&with_agent(
            r#"metrics = "127.0.0.1:9477"
metrics_textfile = "textfile/gallra.prom"
log_format = "json"
schedule = "every 6h"
splay = "30s"
max_concurrent_tenants = 64
nice = 19
io_class = "idle"
max_read = "50 MiB/s"
lifecycle = "cron 0 3 * * *"
ship_retry = "2m"
inbox_poll = "1s"
"#,
        ))
        .unwrap();
        let a = &c.agent;
        assert_eq!(a.metrics, Some("127.0.0.1:9477".parse().unwrap()));
        assert_eq!(
            a.metrics_textfile.as_deref(),
            Some(Path::new("/etc/gallra/textfile/gallra.prom")),
            "relative to the config file"
        );
        assert_eq!(a.log_format, LogFormat::Json);
        assert_eq!(a.schedule, Schedule::Every(Duration::from_secs(6 * 3600)));
        assert_eq!(c.sources[0].schedule, a.schedule);
        assert_eq!(a.splay, Duration::from_secs(30));
        assert_eq!(a.max_concurrent_tenants, 64);
        assert_eq!(a.nice, 19);
        assert_eq!(a.io_class, IoClass::Idle);
        assert_eq!(a.max_read, Some(50 << 20));
        assert_eq!(a.lifecycle.to_string(), "cron 0 3 * * *");
        assert_eq!(a.ship_retry, Duration::from_secs(120));
        assert_eq!(a.inbox_poll, Duration::from_secs(1));

        // The other ends of the ranges, and the forms of io_class.
        let c = parse(&with_agent(
            "max_concurrent_tenants = 1\nnice = 0\nmax_read = \"1 KiB/s\"\nmetrics = \"[::1]:9477\"",
        ))
        .unwrap();
        assert_eq!((c.agent.max_concurrent_tenants, c.agent.nice), (1, 0));
        assert_eq!(c.agent.max_read, Some(1024));
        assert_eq!(c.agent.metrics, Some("[::1]:9477".parse().unwrap()));
        for (text, class) in [
            ("best-effort", IoClass::BestEffort(4)),
            ("best-effort 0", IoClass::BestEffort(0)),
            (" best-effort 7 ", IoClass::BestEffort(7)),
            (" idle", IoClass::Idle),
        ] {
            let c = parse(&with_agent(&format!("io_class = {text:?}"))).unwrap();
            assert_eq!(c.agent.io_class, class, "{text:?}");
        }
    }

    #[test]
    fn bad_agent_values_are_refused_naming_the_key() {
        for (line, needles) in [
            ("nice = 20", &["[agent] nice", "0 and 19"][..]),
            ("nice = -1", &["[agent] nice"]),
            ("io_class = \"realtime\"", &["[agent] io_class", "realtime"]),
            ("io_class = \"best-effort 8\"", &["[agent] io_class", "8"]),
            (
                "io_class = \"best-effort high\"",
                &["[agent] io_class", "high"],
            ),
            ("io_class = \"\"", &["[agent] io_class"]),
            ("max_read = \"50 MiB\"", &["[agent] max_read", "50 MiB"]),
            ("max_read = \"1000/s\"", &["[agent] max_read", "1 KiB/s"]),
            ("max_read = \"fast/s\"", &["[agent] max_read", "fast"]),
            (
                "metrics = \"localhost:9477\"",
                &["[agent] metrics", "localhost"],
            ),
            ("metrics = \"127.0.0.1\"", &["[agent] metrics"]),
            ("metrics = \"127.0.0.1:99999\"", &["[agent] metrics"]),
            ("splay = \"ten minutes\"", &["[agent] splay", "ten minutes"]),
            (
                "max_concurrent_tenants = 0",
                &["[agent] max_concurrent_tenants", "1 and 64"],
            ),
            (
                "max_concurrent_tenants = 65",
                &["[agent] max_concurrent_tenants"],
            ),
            ("schedule = \"weekly\"", &["[agent] schedule", "weekly"]),
            (
                "lifecycle = \"daily 25:00\"",
                &["[agent] lifecycle", "25:00"],
            ),
            ("ship_retry = \"soon\"", &["[agent] ship_retry", "soon"]),
            ("inbox_poll = \"-5s\"", &["[agent] inbox_poll"]),
            ("log_format = \"xml\"", &["line 2", "xml"]),
            ("max_concurrent_tenants = \"2\"", &["line 2"]),
        ] {
            refused(&with_agent(line), needles);
        }
    }
}
