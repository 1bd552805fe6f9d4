//! What a store is opened with: a target's URL, options, credentials and
//! request limits, as `[[target]]` in agent.toml gives them (the config
//! parses them into this type; the store knows nothing of the config).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `Store::open` needs to reach one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSettings {
    pub name: String,
    pub url: String,
    /// object_store's own option keys for the scheme (`region`, ...).
    pub options: BTreeMap<String, String>,
    /// `KEY=value` lines read when the store is opened (an absolute path).
    pub credentials_file: Option<PathBuf>,
    pub limits: StoreLimits,
    pub locking: Locking,
    /// What the operator states a bucket rule does with old versions: it
    /// removes a noncurrent version this long after it became one. gallra
    /// cannot read the rule (few stores expose it), so this is the
    /// operator's word, and what gallra says survives rests on it.
    pub noncurrent_expiry: Option<NoncurrentExpiry>,
    /// S3 Object Lock on every version gallra writes (`lock`).
    pub lock: Option<ObjectLock>,
    /// Who deletes on the target (`deletions`).
    pub deletions: Deletions,
}

impl TargetSettings {
    /// A target from a URL, with every setting at its default.
    pub fn new(name: &str, url: &str) -> TargetSettings {
        TargetSettings {
            name: name.to_string(),
            url: url.to_string(),
            options: BTreeMap::new(),
            credentials_file: None,
            limits: StoreLimits::default(),
            locking: Locking::Lease,
            noncurrent_expiry: None,
            lock: None,
            deletions: Deletions::Here,
        }
    }
}

impl AsRef<TargetSettings> for TargetSettings {
    fn as_ref(&self) -> &TargetSettings {
        self
    }
}

/// A bucket rule's expiry of noncurrent versions, in whole days: the unit
/// of S3's `NoncurrentDays`, Azure's `daysAfterVersioningGreaterThan` and
/// GCS's `daysSinceNoncurrentTime`, so the setting says what the rule says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoncurrentExpiry {
    pub days: u32,
}

impl NoncurrentExpiry {
    /// The longest a rule may state: 100 years, past any retention.
    pub const MAX_DAYS: u32 = 36_500;

    /// `"30 days"` or `"2 weeks"`: a period of whole days or weeks, as a
    /// bucket rule states it (months and hours are not a rule's unit).
    pub fn parse(text: &str) -> std::result::Result<NoncurrentExpiry, String> {
        whole_days("noncurrent_expiry", "the bucket rule does", text)
            .map(|days| NoncurrentExpiry { days })
    }

    /// When a version made noncurrent at `at` may be removed by the rule.
    /// S3 rounds up to the next midnight UTC and removes asynchronously,
    /// so the version may live a little longer: a lower bound, said so
    /// where it is printed.
    pub fn after(&self, at: jiff::Timestamp) -> jiff::Timestamp {
        at.checked_add(jiff::SignedDuration::from_hours(24 * i64::from(self.days)))
            .unwrap_or(jiff::Timestamp::MAX)
    }
}

impl std::fmt::Display for NoncurrentExpiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::text::days(self.days))
    }
}

/// A period of whole days or weeks, 1 day to 100 years, as the store
/// states it (`setting` and `as_stated` name it in a refusal).
fn whole_days(setting: &str, as_stated: &str, text: &str) -> std::result::Result<u32, String> {
    let unit = format!("state it in days, as {as_stated}, like \"30 days\"");
    let span: jiff::Span = text
        .trim()
        .parse()
        .map_err(|_| format!("{setting} {text:?}: not a period; {unit}"))?;
    let calendar_or_clock = span.get_years() != 0
        || span.get_months() != 0
        || span.get_hours() != 0
        || span.get_minutes() != 0
        || span.get_seconds() != 0
        || span.get_milliseconds() != 0
        || span.get_microseconds() != 0
        || span.get_nanoseconds() != 0;
    if calendar_or_clock {
        return Err(format!("{setting} {text:?}: {unit}"));
    }
    let days = i64::from(span.get_weeks()) * 7 + i64::from(span.get_days());
    match u32::try_from(days) {
        Ok(days @ 1..=NoncurrentExpiry::MAX_DAYS) => Ok(days),
        _ => Err(format!(
            "{setting} {text:?}: must be between 1 day and {} days",
            NoncurrentExpiry::MAX_DAYS
        )),
    }
}

/// The S3 Object Lock mode a version is locked in: in compliance mode no
/// one can shorten or remove the lock, not even the account's root; in
/// governance mode a user granted `s3:BypassGovernanceRetention` can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    Compliance,
    Governance,
}

impl LockMode {
    /// As S3 writes it in headers and XML.
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }

    pub fn from_s3(text: &str) -> Option<LockMode> {
        match text {
            "COMPLIANCE" => Some(LockMode::Compliance),
            "GOVERNANCE" => Some(LockMode::Governance),
            _ => None,
        }
    }

    pub fn as_word(self) -> &'static str {
        match self {
            LockMode::Compliance => "compliance",
            LockMode::Governance => "governance",
        }
    }
}

/// `lock = "30 days"` (and `lock_mode`): every version gallra writes to
/// the target is locked with S3 Object Lock for at least this long from
/// the moment it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ObjectLock {
    pub mode: LockMode,
    pub days: u32,
}

impl ObjectLock {
    pub fn parse(text: &str, mode: LockMode) -> std::result::Result<ObjectLock, String> {
        whole_days("lock", "Object Lock's retention does", text)
            .map(|days| ObjectLock { mode, days })
    }

    /// Until when a version written at `at` is locked, to the whole second
    /// above (the header's precision).
    pub fn until(&self, at: jiff::Timestamp) -> jiff::Timestamp {
        let end = at
            .checked_add(jiff::SignedDuration::from_hours(24 * i64::from(self.days)))
            .unwrap_or(jiff::Timestamp::MAX);
        let whole = end.as_second() + i64::from(end.subsec_nanosecond() > 0);
        jiff::Timestamp::from_second(whole).unwrap_or(end)
    }
}

impl std::fmt::Display for ObjectLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({})",
            crate::text::days(self.days),
            self.mode.as_word()
        )
    }
}

/// Who deletes what the lifecycle removes from a target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Deletions {
    /// This agent: its lifecycle deletes, prunes and destroys keys there.
    #[default]
    Here,
    /// A lifecycle host with credentials of its own (docs/IMMUTABLE.md):
    /// this agent plans the target's deletions, leaves them to that host,
    /// and exports the ones overdue; it deletes nothing there but its
    /// locks.
    LifecycleHost,
}

impl Deletions {
    pub fn as_word(self) -> &'static str {
        match self {
            Deletions::Here => "here",
            Deletions::LifecycleHost => "lifecycle-host",
        }
    }
}

/// Whether a target's locks can be trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locking {
    /// Per-tenant lock objects, created with a conditional put.
    #[default]
    Lease,
    /// No lock objects: for a store that cannot do conditional creates, where
    /// the operator guarantees that one agent at a time uses each tenant.
    None,
}

/// A target's request limits, from its `max_upload`, `timeout` and
/// `concurrency` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Bytes per second, if capped.
    pub upload_rate: Option<u64>,
    pub timeout: Duration,
    pub concurrency: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            upload_rate: None,
            timeout: Duration::from_secs(120),
            concurrency: 8,
        }
    }
}
