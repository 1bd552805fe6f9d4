//! agent.toml: typed, validated; errors name the line and key.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::chunker::ChunkerParams;
use crate::crypto::KeySource;
use crate::error::{Error, Result};
use crate::schedule::Schedule;
use crate::tenant_name;

pub use crate::lifecycle::rules::{Retention, Rule};
pub use crate::store::{Locking, StoreLimits, TargetSettings};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/gallra/agent.toml";

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub agent: Agent,
    pub key: KeySource,
    pub repository: RepositorySettings,
    pub targets: Vec<Target>,
    pub sources: Vec<Source>,
    pub retention: Retention,
    /// The retention rules, parsed; in `agent.time_zone`.
    pub policy: crate::lifecycle::Policy,
    pub drill: DrillSettings,
}

/// `[drill]`: what a restore drill does when the command line does not say.
#[derive(Debug, Clone)]
pub struct DrillSettings {
    /// The target drills restore from: by default the first secondary (the
    /// copy a disaster leaves), or the primary if there is no other.
    pub target: String,
    /// How many tenants a drill without `--tenant` or `--snapshot` samples.
    pub sample: usize,
    /// The latest snapshot of every drilled source must be younger than this.
    pub max_age: jiff::Span,
    /// Where drills restore to; its contents are removed afterwards.
    pub scratch: PathBuf,
    /// When the agent runs a drill; `None` when set to "off".
    pub schedule: Option<Schedule>,
}

pub const DEFAULT_DRILL_MAX_AGE: &str = "26h";
pub const DEFAULT_DRILL_SAMPLE: usize = 2;

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
pub const DEFAULT_DRILL_SCHEDULE: &str = "cron 30 4 * * 0";

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

#[derive(Debug, Clone)]
pub struct RepositorySettings {
    pub compression: i32,
    pub pack_size: u64,
    /// Used only when a repository is created.
    pub chunker: ChunkerParams,
}

/// A `[[target]]`: the settings its store is opened with, and its role.
#[derive(Debug, Clone)]
pub struct Target {
    pub store: TargetSettings,
    /// The target backups write to; the others receive ships.
    pub primary: bool,
    /// The target's own shorter keep period, as written.
    pub retention: Option<Rule>,
}

/// A target reads as its store settings (`t.name`, `t.url`, and
/// `Store::open(t)`): the role is the only thing the config adds.
impl std::ops::Deref for Target {
    type Target = TargetSettings;
    fn deref(&self) -> &TargetSettings {
        &self.store
    }
}

/// A `[[target]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    url: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    options: BTreeMap<String, String>,
    credentials_file: Option<PathBuf>,
    retention: Option<Rule>,
    /// Upload bandwidth cap, e.g. "20 MiB/s" (parsed into `upload_rate`).
    max_upload: Option<String>,
    /// Longest a single store request may take, e.g. "60s".
    timeout: Option<String>,
    /// Store requests in flight at once on this target.
    concurrency: Option<usize>,
    #[serde(default)]
    locking: Locking,
}

impl RawTarget {
    /// Parses `max_upload`, `timeout` and `concurrency`.
    fn limits(&self) -> std::result::Result<StoreLimits, String> {
        let mut limits = StoreLimits::default();
        if let Some(text) = &self.max_upload {
            let rate = parse_rate(text).ok_or_else(|| {
                format!(
                    "max_upload {text:?}: expected a rate of at least 1 KiB/s, like \"20 MiB/s\""
                )
            })?;
            limits.upload_rate = Some(rate);
        }
        if let Some(text) = &self.timeout {
            let d: jiff::SignedDuration = text
                .trim()
                .parse()
                .map_err(|_| format!("timeout {text:?}: expected a duration, like \"60s\""))?;
            if d.as_secs() < 1 || d.as_secs() > 3600 {
                return Err(format!("timeout {text:?}: must be between 1s and 1h"));
            }
            limits.timeout = d.unsigned_abs();
        }
        if let Some(n) = self.concurrency {
            if !(1..=256).contains(&n) {
                return Err(format!("concurrency {n}: must be between 1 and 256"));
            }
            limits.concurrency = n;
        }
        Ok(limits)
    }
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    /// Paths, each possibly holding one `{tenant}` component.
    Paths(Vec<String>),
    Command {
        argv: Vec<String>,
        stdout_file: String,
    },
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub category: String,
    /// Set for a source of one named tenant; `None` for `{tenant}` discovery.
    pub tenant: Option<String>,
    pub kind: SourceKind,
    pub exclude: Vec<String>,
    pub one_file_system: bool,
    /// When the agent backs this source up.
    pub schedule: Schedule,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    agent: RawAgent,
    key: Option<RawKey>,
    #[serde(default)]
    repository: RawRepository,
    #[serde(default)]
    target: Vec<RawTarget>,
    #[serde(default)]
    source: Vec<RawSource>,
    #[serde(default)]
    retention: Retention,
    #[serde(default)]
    drill: RawDrill,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrill {
    target: Option<String>,
    sample: Option<usize>,
    max_age: Option<String>,
    scratch: Option<PathBuf>,
    schedule: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    file: Option<PathBuf>,
    passphrase_env: Option<String>,
    credential: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    compression: Option<i32>,
    pack_size: Option<String>,
    chunk_min: Option<String>,
    chunk_avg: Option<String>,
    chunk_max: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    category: String,
    tenant: Option<String>,
    paths: Option<Vec<String>>,
    command: Option<Vec<String>>,
    stdout_file: Option<String>,
    #[serde(default)]
    exclude: Vec<String>,
    one_file_system: Option<bool>,
    schedule: Option<toml::Spanned<String>>,
}

/// Parses a rate of at least 1 KiB/s, "20 MiB/s", into bytes per second.
fn parse_rate(text: &str) -> Option<u64> {
    text.trim()
        .strip_suffix("/s")
        .and_then(parse_size)
        .filter(|r| *r >= 1024)
}

/// Parses "16 MiB", "512KiB", "1 GB", "4096" into bytes.
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

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let err = |message: String| Error::Config {
            file: path.to_path_buf(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, s.start)))
                .unwrap_or_default();
            err(format!("{at}{}", e.message().trim().replace('\n', " ")))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let host = match raw.agent.host.clone() {
            Some(h) => h,
            None => hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into()),
        };
        let time_zone = raw
            .agent
            .time_zone
            .clone()
            .unwrap_or_else(|| "Europe/Stockholm".into());
        let tz = jiff::tz::TimeZone::get(&time_zone).map_err(|_| {
            err(format!(
                "[agent] time_zone: unknown time zone {time_zone:?}"
            ))
        })?;
        let a = raw.agent;
        let schedule = |key: &str, text: Option<&str>, default: &str| -> Result<Schedule> {
            text.unwrap_or(default)
                .parse::<Schedule>()
                .map_err(|m| err(format!("{key}: {m}")))
        };
        let duration = |key: &str, text: Option<&str>, default: &str| -> Result<Duration> {
            let text = text.unwrap_or(default);
            text.trim()
                .parse::<jiff::SignedDuration>()
                .ok()
                .filter(|d| d.is_positive())
                .map(|d| d.unsigned_abs())
                .ok_or_else(|| {
                    err(format!(
                        "{key}: {text:?} is not a duration like \"30s\" or \"10m\""
                    ))
                })
        };
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
        let io_class = match a.io_class.as_deref().map(str::trim) {
            None => IoClass::BestEffort(7),
            Some("idle") => IoClass::Idle,
            Some(t) => match t.strip_prefix("best-effort").map(str::trim) {
                Some("") => IoClass::BestEffort(4),
                Some(level) => {
                    IoClass::BestEffort(level.parse().ok().filter(|l| *l <= 7).ok_or_else(
                        || err(format!("[agent] io_class: level {level:?} is not 0..=7")),
                    )?)
                }
                None => {
                    return Err(err(format!(
                        "[agent] io_class: {t:?}: expected \"idle\" or \"best-effort N\" (N 0..=7)"
                    )));
                }
            },
        };
        let max_read = a
            .max_read
            .map(|text| {
                parse_rate(&text).ok_or_else(|| {
                    err(format!(
                        "[agent] max_read {text:?}: expected a rate of at least 1 KiB/s, like \"50 MiB/s\""
                    ))
                })
            })
            .transpose()?;
        let agent = Agent {
            host,
            state_dir: resolve(
                a.state_dir
                    .unwrap_or_else(|| PathBuf::from("/var/lib/gallra")),
            ),
            time_zone,
            metrics,
            metrics_textfile: a.metrics_textfile.map(&resolve),
            log_format: a.log_format.unwrap_or(LogFormat::Human),
            schedule: schedule("[agent] schedule", a.schedule.as_deref(), DEFAULT_SCHEDULE)?,
            // "0s" or "off": every run at its exact time (a fleet of one,
            // or a test that needs its schedule to the second).
            splay: match a.splay.as_deref().map(str::trim) {
                Some("off" | "0" | "0s" | "0m") => Duration::ZERO,
                other => duration("[agent] splay", other, "10m")?,
            },
            max_concurrent_tenants,
            nice,
            io_class,
            max_read,
            lifecycle: schedule(
                "[agent] lifecycle",
                a.lifecycle.as_deref(),
                DEFAULT_LIFECYCLE_SCHEDULE,
            )?,
            ship_retry: duration("[agent] ship_retry", a.ship_retry.as_deref(), "1m")?,
            inbox_poll: duration("[agent] inbox_poll", a.inbox_poll.as_deref(), "5s")?,
        };

        let key = match raw.key {
            Some(RawKey {
                file: Some(f),
                passphrase_env: None,
                credential: None,
            }) => KeySource::File(resolve(f)),
            Some(RawKey {
                file: None,
                passphrase_env: Some(v),
                credential: None,
            }) => KeySource::PassphraseEnv(v),
            Some(RawKey {
                file: None,
                passphrase_env: None,
                credential: Some(name),
            }) if crate::format::tree::is_safe_name(name.as_bytes()) => KeySource::Credential(name),
            Some(RawKey {
                credential: Some(name),
                file: None,
                passphrase_env: None,
            }) => {
                return Err(err(format!(
                    "[key] credential {name:?}: must be a plain file name, as in LoadCredential=NAME:PATH"
                )));
            }
            Some(_) => {
                return Err(err(
                    "[key]: give exactly one of `file`, `credential` and `passphrase_env`".into(),
                ));
            }
            None => {
                return Err(err(
                    "missing [key] section (file, credential or passphrase_env)".into(),
                ));
            }
        };

        let size = |key: &str, v: &Option<String>, default: u64| -> Result<u64> {
            match v {
                None => Ok(default),
                Some(s) => parse_size(s)
                    .ok_or_else(|| err(format!("[repository] {key}: not a size: {s:?}"))),
            }
        };
        let compression = raw.repository.compression.unwrap_or(3);
        if !(1..=22).contains(&compression) {
            return Err(err(format!(
                "[repository] compression: zstd level {compression} is outside 1..=22"
            )));
        }
        let pack_size = size("pack_size", &raw.repository.pack_size, 16 << 20)?;
        if !(64 << 10..=1 << 30).contains(&pack_size) {
            return Err(err(
                "[repository] pack_size: must be between 64 KiB and 1 GiB".into(),
            ));
        }
        let d = ChunkerParams::default();
        let chunker = ChunkerParams {
            min: size("chunk_min", &raw.repository.chunk_min, d.min.into())? as u32,
            avg: size("chunk_avg", &raw.repository.chunk_avg, d.avg.into())? as u32,
            max: size("chunk_max", &raw.repository.chunk_max, d.max.into())? as u32,
        };
        if !chunker.is_valid() {
            return Err(err(
                "[repository] chunk_min/chunk_avg/chunk_max: need 64 B <= min <= 1 MiB, 256 B <= avg <= 4 MiB, 1 KiB <= max <= 16 MiB, min <= avg <= max, all even".into(),
            ));
        }

        let mut raw_targets = raw.target;
        if raw_targets.is_empty() {
            return Err(err("no [[target]]: name at least one store".into()));
        }
        for (i, t) in raw_targets.iter().enumerate() {
            if raw_targets[..i].iter().any(|o| o.name == t.name) {
                return Err(err(format!("[[target]] name {:?} appears twice", t.name)));
            }
            if let Some(f) = &t.credentials_file
                && f.as_os_str().is_empty()
            {
                return Err(err(format!(
                    "[[target]] {}: credentials_file is empty",
                    t.name
                )));
            }
        }
        if raw_targets.len() == 1 {
            raw_targets[0].primary = true;
        }
        let primaries = raw_targets.iter().filter(|t| t.primary).count();
        if primaries != 1 {
            return Err(err(format!(
                "exactly one [[target]] must have primary = true (found {primaries})"
            )));
        }
        let mut targets = Vec::with_capacity(raw_targets.len());
        for t in raw_targets {
            let limits = t
                .limits()
                .map_err(|m| err(format!("[[target]] {}: {m}", t.name)))?;
            targets.push(Target {
                store: TargetSettings {
                    name: t.name,
                    url: t.url,
                    options: t.options,
                    credentials_file: t.credentials_file.map(&resolve),
                    limits,
                    locking: t.locking,
                },
                primary: t.primary,
                retention: t.retention,
            });
        }

        if let Some(t) = targets.iter().find(|t| !t.primary && t.retention.is_some()) {
            return Err(err(format!(
                "[[target]] {}: retention on a secondary target is not supported: ship copies what the primary holds, so a shorter rule belongs on the primary",
                t.name
            )));
        }
        let rules: Vec<(String, Option<Rule>)> = targets
            .iter()
            .map(|t| (t.name.clone(), t.retention.clone()))
            .collect();
        let policy = crate::lifecycle::Policy::new(&raw.retention, &rules, tz).map_err(err)?;

        let mut sources = Vec::new();
        for s in raw.source {
            let at = format!("[[source]] {:?}", s.name);
            if sources.iter().any(|o: &Source| o.name == s.name) {
                return Err(err(format!("{at}: the name appears twice")));
            }
            if let Some(t) = &s.tenant {
                tenant_name::check(t).map_err(|m| err(format!("{at}: {m}")))?;
            }
            let kind = match (s.paths, s.command) {
                (Some(paths), None) => {
                    if paths.is_empty() {
                        return Err(err(format!("{at}: paths is empty")));
                    }
                    for p in &paths {
                        if !p.starts_with('/') {
                            return Err(err(format!("{at}: path {p:?} is not absolute")));
                        }
                        // A source path is opened one folder at a time from
                        // `/` (`beneath::open_source`); `..` after a tenant's
                        // folder would climb out of what the operator named.
                        if p.split('/').any(|c| c == ".." || c == ".") {
                            return Err(err(format!(
                                "{at}: path {p:?} holds a \".\" or \"..\" component; write the path it means"
                            )));
                        }
                        let n = p.matches("{tenant}").count();
                        let whole = p.split('/').filter(|c| *c == "{tenant}").count();
                        if n > 1 || n != whole {
                            return Err(err(format!(
                                "{at}: path {p:?}: {{tenant}} may appear once, as a whole path component"
                            )));
                        }
                        if n == 0 && s.tenant.is_none() {
                            return Err(err(format!(
                                "{at}: path {p:?} has no {{tenant}} pattern, so the source needs `tenant = \"...\"`"
                            )));
                        }
                        if n == 1 && s.tenant.is_some() {
                            return Err(err(format!(
                                "{at}: path {p:?} discovers tenants with {{tenant}}; drop `tenant` or the pattern"
                            )));
                        }
                    }
                    if s.stdout_file.is_some() {
                        return Err(err(format!(
                            "{at}: stdout_file is only for command sources"
                        )));
                    }
                    SourceKind::Paths(paths)
                }
                (None, Some(argv)) => {
                    if argv.is_empty() {
                        return Err(err(format!("{at}: command is empty")));
                    }
                    if s.tenant.is_none() {
                        return Err(err(format!(
                            "{at}: a command source needs `tenant = \"...\"`"
                        )));
                    }
                    let stdout_file = s.stdout_file.unwrap_or_else(|| format!("{}.out", s.name));
                    if !crate::format::tree::is_safe_name(stdout_file.as_bytes()) {
                        return Err(err(format!(
                            "{at}: stdout_file {stdout_file:?} must be a plain file name"
                        )));
                    }
                    SourceKind::Command { argv, stdout_file }
                }
                _ => {
                    return Err(err(format!(
                        "{at}: give exactly one of `paths` and `command`"
                    )));
                }
            };
            for g in &s.exclude {
                globset::Glob::new(g).map_err(|e| err(format!("{at}: exclude {g:?}: {e}")))?;
            }
            let schedule = match &s.schedule {
                Some(spanned) => spanned.get_ref().parse::<Schedule>().map_err(|m| {
                    err(format!(
                        "line {}: {at}: schedule: {m}",
                        line_of(text, spanned.span().start)
                    ))
                })?,
                None => agent.schedule.clone(),
            };
            sources.push(Source {
                name: s.name,
                category: s.category,
                tenant: s.tenant,
                kind,
                exclude: s.exclude,
                one_file_system: s.one_file_system.unwrap_or(true),
                schedule,
            });
        }

        let drill = {
            let d = raw.drill;
            let target = match d.target {
                Some(name) if targets.iter().any(|t| t.name == name) => name,
                Some(name) => {
                    return Err(err(format!("[drill] target: no [[target]] named {name:?}")));
                }
                None => targets
                    .iter()
                    .find(|t| !t.primary)
                    .unwrap_or(&targets[0])
                    .name
                    .clone(),
            };
            let sample = d.sample.unwrap_or(DEFAULT_DRILL_SAMPLE);
            if sample == 0 {
                return Err(err("[drill] sample: must be at least 1".into()));
            }
            let max_age = d.max_age.as_deref().unwrap_or(DEFAULT_DRILL_MAX_AGE);
            let max_age = crate::lifecycle::rules::parse_period(max_age)
                .map_err(|m| err(format!("[drill] max_age: {m}")))?;
            let scratch = d
                .scratch
                .map(&resolve)
                .unwrap_or_else(|| agent.state_dir.join("drill"));
            let schedule = match d.schedule.as_deref().map(str::trim) {
                Some("off") => None,
                text => Some(schedule("[drill] schedule", text, DEFAULT_DRILL_SCHEDULE)?),
            };
            DrillSettings {
                target,
                sample,
                max_age,
                scratch,
                schedule,
            }
        };

        Ok(Config {
            path: path.to_path_buf(),
            agent,
            key,
            repository: RepositorySettings {
                compression,
                pack_size,
                chunker,
            },
            targets,
            sources,
            retention: raw.retention,
            policy,
            drill,
        })
    }

    pub fn primary(&self) -> &Target {
        self.targets
            .iter()
            .find(|t| t.primary)
            .expect("validated: one primary")
    }

    /// The targets that receive ships.
    pub fn secondaries(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter().filter(|t| !t.primary)
    }

    /// The target of this name, or an error listing the names there are.
    pub fn target(&self, name: &str) -> Result<&Target> {
        self.targets.iter().find(|t| t.name == name).ok_or_else(|| {
            Error::Usage(format!(
                "no target named {name:?} in {} (targets: {})",
                self.path.display(),
                self.targets
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/gallra/agent.toml"))
    }

    const MINIMAL: &str = r#"
[key]
file = "key"

[[target]]
name = "local"
url = "file:///srv/gallra"

[[source]]
name = "www"
category = "site"
paths = ["/var/www/{tenant}"]
"#;

    #[test]
    fn the_example_config_parses() {
        let c = parse(include_str!("../agent.toml.example")).unwrap();
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.primary().name, "local");
        assert_eq!(c.sources.len(), 3);
        assert!(c.retention.category["bookkeeping"].legal_obligation);
        assert_eq!((c.drill.target.as_str(), c.drill.sample), ("offsite", 2));
    }

    #[test]
    fn drill_settings_default_to_the_offsite_copy_and_are_checked() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.drill.target, c.primary().name, "the only target");
        assert_eq!(
            (c.drill.sample, format!("{:#}", c.drill.max_age)),
            (2, "26h".into())
        );
        assert_eq!(c.drill.scratch, c.agent.state_dir.join("drill"));
        let two =
            MINIMAL.to_string() + "[[target]]\nname = \"offsite\"\nurl = \"file:///srv/offsite\"\n";
        let two = two.replacen("[[target]]", "[[target]]\nprimary = true", 1);
        assert_eq!(parse(&two).unwrap().drill.target, "offsite");
        for (table, names) in [
            (
                "[drill]\ntarget = \"elsewhere\"\n",
                ["[drill] target", "elsewhere"],
            ),
            ("[drill]\nmax_age = \"soon\"\n", ["[drill] max_age", "soon"]),
            ("[drill]\nsample = 0\n", ["[drill] sample", "at least 1"]),
            ("[drill]\nschedul = \"daily\"\n", ["line", "schedul"]),
        ] {
            let msg = parse(&format!("{MINIMAL}\n{table}"))
                .unwrap_err()
                .to_string();
            assert!(names.iter().all(|n| msg.contains(n)), "{msg}");
        }
    }

    #[test]
    fn minimal_config_has_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.key, KeySource::File("/etc/gallra/key".into()));
        assert!(c.primary().primary);
        assert_eq!(c.repository.compression, 3);
        assert_eq!(c.repository.pack_size, 16 << 20);
        assert_eq!(c.agent.time_zone, "Europe/Stockholm");
        assert!(c.sources[0].one_file_system);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = MINIMAL.replace("[key]", "[repository]\ncompresion = 3\n\n[key]");
        let e = parse(&text).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("line 3") && msg.contains("compresion"),
            "{msg}"
        );
        assert_eq!(e.exit_code(), 2);
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn bad_sources_are_refused() {
        for (bad, needle) in [
            (r#"paths = ["/var/{tenant}/x/{tenant}"]"#, "once"),
            (r#"paths = ["/var/www/x{tenant}"]"#, "whole path component"),
            (r#"paths = ["/var/www/static"]"#, "needs `tenant"),
            (r#"paths = ["relative/{tenant}"]"#, "not absolute"),
            (r#"paths = ["/srv/{tenant}/../common"]"#, "\"..\" component"),
        ] {
            let text = MINIMAL.replace(r#"paths = ["/var/www/{tenant}"]"#, bad);
            let msg = parse(&text).unwrap_err().to_string();
            assert!(msg.contains(needle), "{bad}: {msg}");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("16 MiB"), Some(16 << 20));
        assert_eq!(parse_size("512KiB"), Some(512 << 10));
        assert_eq!(parse_size("1 GB"), Some(1_000_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("lots"), None);
    }

    /// MINIMAL with an `[agent]` table holding `lines` in front.
    fn with_agent(lines: &str) -> String {
        format!("[agent]\n{lines}\n{MINIMAL}")
    }

    /// MINIMAL with its `[key]` table replaced by one holding `lines`.
    fn with_key(lines: &str) -> String {
        MINIMAL.replace("[key]\nfile = \"key\"\n", &format!("[key]\n{lines}\n"))
    }

    /// The config error of `text`: exit code 2, one line, naming every needle.
    fn refused(text: &str, needles: &[&str]) {
        let e = parse(text).expect_err(text);
        let msg = e.to_string();
        assert_eq!(e.exit_code(), 2, "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        for n in needles {
            assert!(
                msg.contains(n),
                "{text}\nmessage {msg:?} does not name {n:?}"
            );
        }
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

    #[test]
    fn a_bad_source_schedule_names_its_line() {
        let text = MINIMAL.replace(
            "category = \"site\"\n",
            "category = \"site\"\nschedule = \"every 6h\"\n",
        ) + "\n[[source]]\nname = \"mail\"\ncategory = \"mail\"\npaths = [\"/var/mail/{tenant}\"]\nschedule = \"every fortnight\"\n";
        let line = text.lines().position(|l| l.contains("fortnight")).unwrap() + 1;
        assert_eq!(line, 19, "the second source's schedule, not the first's");
        refused(
            &text,
            &[
                &format!("line {line}:"),
                "[[source]] \"mail\"",
                "schedule",
                "every fortnight",
            ],
        );
        let msg = parse(&text).unwrap_err().to_string();
        assert!(!msg.contains("www"), "{msg}");

        let good = text.replace("every fortnight", "every 15m");
        let c = parse(&good).unwrap();
        assert_eq!(c.sources[0].schedule.to_string(), "every 6h");
        assert_eq!(c.sources[1].schedule.to_string(), "every 15m");
    }

    #[test]
    fn drill_schedule_off_or_a_schedule() {
        let drill = |table: &str| parse(&format!("{MINIMAL}\n[drill]\n{table}\n"));
        assert_eq!(drill("schedule = \"off\"").unwrap().drill.schedule, None);
        assert_eq!(drill("schedule = \" off \"").unwrap().drill.schedule, None);
        assert_eq!(
            drill("schedule = \"daily 05:30\"").unwrap().drill.schedule,
            Some(Schedule::Daily {
                hour: 5,
                minute: 30
            })
        );
        for bad in ["sometimes", "daily 5", "cron 0 4 * *", ""] {
            refused(
                &format!("{MINIMAL}\n[drill]\nschedule = {bad:?}\n"),
                &["[drill] schedule"],
            );
        }
    }

    #[test]
    fn the_key_may_be_a_systemd_credential() {
        let c = parse(&with_key("credential = \"gallra.key\"")).unwrap();
        assert_eq!(c.key, KeySource::Credential("gallra.key".into()));
        let c = parse(&with_key("passphrase_env = \"GALLRA_PASSPHRASE\"")).unwrap();
        assert_eq!(c.key, KeySource::PassphraseEnv("GALLRA_PASSPHRASE".into()));

        for name in ["keys/gallra.key", "/etc/gallra/key", "..", ".", ""] {
            refused(
                &with_key(&format!("credential = {name:?}")),
                &["[key] credential", "plain file name"],
            );
        }
        for two in [
            "file = \"key\"\ncredential = \"gallra.key\"",
            "credential = \"gallra.key\"\npassphrase_env = \"P\"",
            "file = \"key\"\npassphrase_env = \"P\"",
            "file = \"key\"\ncredential = \"gallra/key\"",
            "",
        ] {
            refused(&with_key(two), &["[key]", "exactly one"]);
        }
        refused(
            &MINIMAL.replace("[key]\nfile = \"key\"\n", ""),
            &["missing [key]"],
        );
    }
}
