//! `[[target]]`: the stores a repository lives in. One is the primary,
//! which backups write; the others receive ships. What a store is opened
//! with is `store::TargetSettings`; a target adds its role and its own
//! retention rule.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::ConfigFile;
use crate::error::Result;
use crate::lifecycle::rules::Rule;
use crate::store::{
    Deletions, LockMode, Locking, NoncurrentExpiry, ObjectLock, StoreLimits, TargetSettings,
};

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

impl AsRef<TargetSettings> for Target {
    fn as_ref(&self) -> &TargetSettings {
        &self.store
    }
}

/// A `[[target]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
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
    /// What a bucket rule does with old versions, e.g. "30 days".
    noncurrent_expiry: Option<String>,
    /// S3 Object Lock on every version written, e.g. "30 days".
    lock: Option<String>,
    lock_mode: Option<LockMode>,
    /// "here" (default) or "lifecycle-host".
    #[serde(default)]
    deletions: Deletions,
}

impl RawTarget {
    /// Parses `max_upload`, `timeout` and `concurrency`.
    fn limits(&self) -> std::result::Result<StoreLimits, String> {
        let mut limits = StoreLimits::default();
        if let Some(text) = &self.max_upload {
            let rate = crate::units::parse_rate(text).ok_or_else(|| {
                format!(
                    "max_upload {text:?}: expected a rate of at least 1 KiB/s, like \"20 MiB/s\""
                )
            })?;
            limits.upload_rate = Some(rate);
        }
        if let Some(text) = &self.timeout {
            let d = crate::units::parse_duration(text)
                .ok_or_else(|| format!("timeout {text:?}: expected a duration, like \"60s\""))?;
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

impl RawTarget {
    /// `lock` and `lock_mode`: only on an S3 target (Object Lock is S3's;
    /// docs/IMMUTABLE.md says what Azure and GCS offer instead), and no
    /// mode without a period.
    fn object_lock(&self) -> std::result::Result<Option<ObjectLock>, String> {
        let Some(text) = &self.lock else {
            return match self.lock_mode {
                Some(_) => {
                    Err("lock_mode without lock: say how long, like lock = \"30 days\"".into())
                }
                None => Ok(None),
            };
        };
        let scheme = self.url.split("://").next().unwrap_or_default();
        if !matches!(scheme, "s3" | "s3a") {
            return Err(format!(
                "lock {text:?}: S3 Object Lock needs an s3:// target, not {scheme}://"
            ));
        }
        ObjectLock::parse(text, self.lock_mode.unwrap_or(LockMode::Compliance)).map(Some)
    }
}

/// The targets, checked: at least one, names unique, exactly one primary
/// (a lone target is it), limits in range, credentials files resolved
/// against the config's folder.
pub(super) fn parse(mut raw: Vec<RawTarget>, file: &ConfigFile) -> Result<Vec<Target>> {
    let err = |message: String| file.error(message);
    if raw.is_empty() {
        return Err(err("no [[target]]: name at least one store".into()));
    }
    for (i, t) in raw.iter().enumerate() {
        if raw[..i].iter().any(|o| o.name == t.name) {
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
    if raw.len() == 1 {
        raw[0].primary = true;
    }
    if let Some(t) = raw
        .iter()
        .find(|t| t.primary && t.deletions == Deletions::LifecycleHost)
    {
        return Err(err(format!(
            "[[target]] {}: the primary deletes its own expired snapshots; deletions = \"lifecycle-host\" is for a secondary",
            t.name
        )));
    }
    let primaries = raw.iter().filter(|t| t.primary).count();
    if primaries != 1 {
        return Err(err(format!(
            "exactly one [[target]] must have primary = true (found {primaries})"
        )));
    }
    let mut targets = Vec::with_capacity(raw.len());
    for t in raw {
        let limits = t
            .limits()
            .map_err(|m| err(format!("[[target]] {}: {m}", t.name)))?;
        let noncurrent_expiry = t
            .noncurrent_expiry
            .as_deref()
            .map(NoncurrentExpiry::parse)
            .transpose()
            .map_err(|m| err(format!("[[target]] {}: {m}", t.name)))?;
        let lock = t
            .object_lock()
            .map_err(|m| err(format!("[[target]] {}: {m}", t.name)))?;
        targets.push(Target {
            store: TargetSettings {
                name: t.name,
                url: t.url,
                options: t.options,
                credentials_file: t.credentials_file.map(|p| file.resolve(p)),
                limits,
                locking: t.locking,
                noncurrent_expiry,
                lock,
                deletions: t.deletions,
            },
            primary: t.primary,
            retention: t.retention,
        });
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::store::NoncurrentExpiry;

    fn with_expiry(value: &str) -> String {
        MINIMAL.replace(
            "url = \"file:///srv/gallra\"",
            &format!("url = \"file:///srv/gallra\"\nnoncurrent_expiry = {value}"),
        )
    }

    #[test]
    fn noncurrent_expiry_is_optional_and_read_in_days() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.targets[0].noncurrent_expiry, None);
        for (text, days) in [("30 days", 30), ("1 day", 1), ("2 weeks", 14), ("1w 2d", 9)] {
            let c = parse(&with_expiry(&format!("{text:?}"))).unwrap();
            assert_eq!(
                c.targets[0].noncurrent_expiry,
                Some(NoncurrentExpiry { days }),
                "{text}"
            );
        }
        let c = parse(&with_expiry("\"30 days\"")).unwrap();
        assert_eq!(
            c.targets[0].noncurrent_expiry.unwrap().to_string(),
            "30 days"
        );
    }

    #[test]
    fn a_noncurrent_expiry_a_bucket_rule_cannot_state_is_refused() {
        for (value, words) in [
            ("\"6 months\"", "state it in days"),
            ("\"1 year\"", "state it in days"),
            ("\"36h\"", "state it in days"),
            ("\"0 days\"", "between 1 day and 36500 days"),
            ("\"-3 days\"", "between 1 day"),
            ("\"40000 days\"", "between 1 day"),
            ("\"soon\"", "not a period"),
        ] {
            refused(
                &with_expiry(value),
                &["[[target]] local", "noncurrent_expiry", words],
            );
        }
        // A bare number is refused by the TOML reader, which names the line.
        refused(&with_expiry("30"), &["line 8", "expected a string"]);
    }

    /// MINIMAL with its target on S3 and `more` lines in the table.
    fn s3_with(more: &str) -> String {
        MINIMAL.replace(
            "url = \"file:///srv/gallra\"",
            &format!("url = \"s3://fleet/web01\"\n{more}"),
        )
    }

    #[test]
    fn an_object_lock_is_days_on_an_s3_target_in_compliance_mode_unless_told() {
        use crate::store::{LockMode, ObjectLock};
        assert_eq!(parse(&s3_with("")).unwrap().targets[0].lock, None);
        let c = parse(&s3_with("lock = \"30 days\"")).unwrap();
        assert_eq!(
            c.targets[0].lock,
            Some(ObjectLock {
                mode: LockMode::Compliance,
                days: 30
            })
        );
        let c = parse(&s3_with("lock = \"2 weeks\"\nlock_mode = \"governance\"")).unwrap();
        assert_eq!(
            c.targets[0].lock.unwrap().to_string(),
            "14 days (governance)"
        );
        refused(
            &with_expiry("\"1 day\"\nlock = \"30 days\""),
            &[
                "[[target]] local",
                "lock",
                "needs an s3:// target, not file://",
            ],
        );
        refused(
            &s3_with("lock_mode = \"compliance\""),
            &["[[target]] local", "lock_mode without lock"],
        );
        refused(
            &s3_with("lock = \"6 months\""),
            &[
                "lock \"6 months\"",
                "state it in days, as Object Lock's retention does",
            ],
        );
        refused(
            &s3_with("lock_mode = \"strict\""),
            &["line 8", "strict", "compliance", "governance"],
        );
    }
}
