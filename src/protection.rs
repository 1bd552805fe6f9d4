//! What protects each target's copies against the server that writes them
//! (docs/IMMUTABLE.md): the bucket's versioning and Object Lock, the lock
//! gallra puts on every version it writes (`lock`), and whether this
//! server's credentials can delete there. Asked of the store, not believed:
//! `survival::probe_store` probes it with the old versions (at `init`, the
//! agent's start and `config check`) and records it with the time, and
//! `status`, `config check` and the metrics show the record.

use jiff::Timestamp;
use serde::Serialize;
use std::path::Path;

use crate::store::{BucketLock, BucketVersioning, LockMode, ObjectLock, TargetSettings};
use crate::survival::{ProbeRecord, VersionProbe};
use crate::text::days;

/// What protects one target, as last probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Protection {
    /// "folder", "s3", "azure", "gcs" or "memory".
    pub store: &'static str,
    /// When the store was asked; `None`: never (or not an S3 store).
    pub probed: Option<Timestamp>,
    pub versioning: Option<BucketVersioning>,
    /// The bucket's Object Lock; `None` when it has none or was not asked.
    pub bucket_lock: Option<BucketLock>,
    /// The lock gallra puts on what it writes here (`lock`).
    pub lock: Option<ObjectLock>,
    /// Whether this server's credentials may delete outside the lock
    /// folders; `None`: not known.
    pub this_server_deletes: Option<bool>,
    /// Whether every version written here stays, whatever this server
    /// does, until its lock ends: versioning and Object Lock on, and a
    /// lock on each version (gallra's or the bucket's default).
    pub resists_this_server: bool,
    pub words: String,
    /// What is wrong: a `lock` the bucket cannot keep.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

fn store_kind(url: &str) -> &'static str {
    match url.split("://").next().unwrap_or_default() {
        "file" => "folder",
        "memory" => "memory",
        "s3" | "s3a" => "s3",
        "gs" => "gcs",
        _ => "azure",
    }
}

impl Protection {
    /// What protects `t`, from its recorded probe (if one was made of its
    /// present URL).
    pub fn of(t: &TargetSettings, probe: Option<&VersionProbe>) -> Protection {
        let store = store_kind(&t.url);
        let s3 = probe.and_then(|p| p.s3);
        let mut out = Protection {
            store,
            probed: s3.and(probe.map(|p| p.probed)),
            versioning: s3.map(|p| p.versioning),
            bucket_lock: s3.and_then(|p| p.object_lock),
            lock: t.lock,
            this_server_deletes: s3.map(|p| p.may_delete),
            resists_this_server: false,
            words: String::new(),
            problems: Vec::new(),
        };
        let Some(s3) = s3 else {
            out.words = match store {
                "folder" => "a folder on this server: whoever is root here can delete it".into(),
                "memory" => "in this process's memory only".into(),
                "s3" => "not probed yet (gallra init, the agent's start and config check ask the bucket)".into(),
                other => format!(
                    "not probed: gallra asks only S3 buckets what protects them, not {other} (docs/IMMUTABLE.md)"
                ),
            };
            return out;
        };
        let deletes = match s3.may_delete {
            true => "this server's credentials can delete here",
            false => "this server's credentials cannot delete here",
        };
        let versioned = s3.versioning == BucketVersioning::Enabled;
        let default_lock = s3
            .object_lock
            .and_then(|l| l.default_mode.zip(l.default_days));
        let each_version = match (t.lock, default_lock) {
            (Some(l), _) => Some((l.mode, l.days, "gallra locks every version it writes")),
            (None, Some((mode, d))) => Some((mode, d, "the bucket locks every new version")),
            (None, None) => None,
        };
        match (versioned, s3.object_lock, each_version) {
            (true, Some(_), Some((mode, d, who))) => {
                out.resists_this_server = true;
                let bypass = match mode {
                    LockMode::Compliance => "no one can shorten it",
                    LockMode::Governance => {
                        "a user granted s3:BypassGovernanceRetention can shorten it"
                    }
                };
                out.words = format!(
                    "versioning and Object Lock on; {who} for {} in {} mode ({bypass}); {deletes}, and a deletion only hides an object while its versions stay locked",
                    days(d),
                    mode.as_word()
                );
            }
            (true, Some(_), None) => {
                out.words = format!(
                    "versioning and Object Lock on, but no version is locked (no lock here and no default retention on the bucket); {deletes}"
                );
            }
            (true, None, _) => {
                out.words = format!(
                    "versioning on, no Object Lock: whoever may delete versions can destroy what is here; {deletes}"
                );
            }
            (false, _, _) => {
                out.words =
                    format!("no versioning: an overwrite or a deletion here is final; {deletes}");
            }
        }
        if let Some(l) = t.lock
            && (!versioned || s3.object_lock.is_none())
        {
            out.problems.push(format!(
                "lock = \"{}\" but the bucket has no Object Lock: S3 refuses every locked write; create the bucket with Object Lock on (docs/IMMUTABLE.md)",
                days(l.days)
            ));
        }
        out
    }

    /// `words` with the time of the probe, for `status` and `config check`.
    pub fn line(&self) -> String {
        match self.probed {
            Some(at) => format!(
                "{} (asked {})",
                self.words,
                at.strftime("%Y-%m-%d %H:%M UTC")
            ),
            None => self.words.clone(),
        }
    }
}

/// What protects `t`, from the record in the state folder; never probes.
pub fn recorded(state_dir: &Path, t: &TargetSettings) -> Protection {
    let record = ProbeRecord::load(state_dir).unwrap_or_default();
    Protection::of(t, record.of(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::S3Protection;

    fn probe(s3: Option<S3Protection>) -> VersionProbe {
        VersionProbe {
            url: "s3://fleet/web01".into(),
            keeps_old_versions: s3.is_some_and(|p| p.versioning == BucketVersioning::Enabled),
            probed: "2026-12-03T10:00:00Z".parse().unwrap(),
            s3,
        }
    }

    /// What protects `t` when its bucket answered so.
    fn answered(
        t: &TargetSettings,
        versioning: BucketVersioning,
        object_lock: Option<BucketLock>,
        may_delete: bool,
    ) -> Protection {
        let s3 = S3Protection {
            versioning,
            object_lock,
            may_delete,
        };
        Protection::of(t, Some(&probe(Some(s3))))
    }

    const NO_DEFAULT: BucketLock = BucketLock {
        default_mode: None,
        default_days: None,
    };

    const THIRTY_DAYS: ObjectLock = ObjectLock {
        mode: LockMode::Compliance,
        days: 30,
    };

    #[test]
    fn a_locked_bucket_resists_the_server_only_when_each_version_is_locked() {
        use BucketVersioning::Enabled;
        let mut t = TargetSettings::new("offsite", "s3://fleet/web01");
        let p = answered(&t, Enabled, Some(NO_DEFAULT), false);
        assert!(!p.resists_this_server, "{p:?}");
        assert!(p.words.contains("no version is locked"), "{}", p.words);

        t.lock = Some(THIRTY_DAYS);
        let p = answered(&t, Enabled, Some(NO_DEFAULT), false);
        assert!(p.resists_this_server && p.problems.is_empty(), "{p:?}");
        assert!(
            p.words.contains("for 30 days in compliance mode")
                && p.words.contains("cannot delete here"),
            "{}",
            p.words
        );
        assert!(
            p.line().contains("asked 2026-12-03 10:00 UTC"),
            "{}",
            p.line()
        );

        let default = BucketLock {
            default_mode: Some(LockMode::Governance),
            default_days: Some(7),
        };
        t.lock = None;
        let p = answered(&t, Enabled, Some(default), true);
        assert!(p.resists_this_server, "{p:?}");
        assert!(
            p.words
                .contains("the bucket locks every new version for 7 days")
                && p.words.contains("BypassGovernanceRetention")
                && p.words.contains("can delete here"),
            "{}",
            p.words
        );
    }

    #[test]
    fn a_lock_the_bucket_cannot_keep_is_a_problem() {
        let mut t = TargetSettings::new("offsite", "s3://fleet/web01");
        t.lock = Some(THIRTY_DAYS);
        for (versioning, may_delete) in [
            (BucketVersioning::Enabled, false),
            (BucketVersioning::Off, true),
        ] {
            let p = answered(&t, versioning, None, may_delete);
            assert!(!p.resists_this_server);
            assert_eq!(p.problems.len(), 1, "{p:?}");
            assert!(p.problems[0].contains("no Object Lock"), "{:?}", p.problems);
        }
        let p = answered(&t, BucketVersioning::Off, None, true);
        assert!(p.words.contains("final"), "{}", p.words);
    }

    #[test]
    fn stores_gallra_does_not_ask_say_so() {
        let p = Protection::of(&TargetSettings::new("local", "file:///srv/gallra"), None);
        assert!(p.words.contains("root here can delete"), "{}", p.words);
        let p = Protection::of(&TargetSettings::new("az", "az://c/web01"), None);
        assert!(p.words.contains("not azure"), "{}", p.words);
        let p = Protection::of(
            &TargetSettings::new("s3", "s3://b/web01"),
            Some(&probe(None)),
        );
        assert!(
            p.words.contains("not probed yet") && p.probed.is_none(),
            "{p:?}"
        );
    }
}
