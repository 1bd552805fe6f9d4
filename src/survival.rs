//! What a deletion leaves behind, per target: whether the store keeps old
//! versions of what gallra deletes, until when, and what still opens them.
//!
//! gallra never claims more than holds. A tenant's key object deleted from
//! a versioned bucket stays there as a noncurrent version, and a copy of a
//! target made outside gallra (a disk snapshot, a replica, a backup of the
//! backup server) keeps everything; either opens with the key file or a
//! passphrase for as long as the master key wraps tenant keys
//! ([`Shredding::MasterKey`]). So every command that deletes or plans to
//! says, per target, what survives there ([`Leftovers`]).
//!
//! Whether a store keeps old versions is probed (`Store::keeps_old_versions`:
//! one put, one delete) and recorded per target in
//! `<state_dir>/target-versions.json` with the time probed, so that each
//! erasure does not add another probe version to a versioned bucket. The
//! record names the target's URL: a target pointed elsewhere is probed
//! again. What a bucket rule does with old versions cannot be read from
//! most stores; the operator states it as the target's `noncurrent_expiry`.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::audit::Survives;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{Store, TargetSettings};

/// The record of probes in the state folder.
pub const RECORD_FILE: &str = "target-versions.json";

/// A record larger than this is not a record gallra wrote (a target's
/// entry is about 150 bytes).
const RECORD_MAX_BYTES: u64 = 1 << 20;

/// How an erased tenant's surviving copies stop opening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Shredding {
    /// No [key_service]: surviving copies open with the key file and every passphrase slot until the copies themselves are gone.
    MasterKey,
    /// Epoch keys in a key service: surviving copies stop opening when a rotation destroys the epoch key that wrapped the tenant's key.
    KeyService {
        service: String,
        rotation_due: Option<Timestamp>,
    },
}

impl Shredding {
    pub fn of(config: &Config) -> Shredding {
        match &config.key.service {
            None => Shredding::MasterKey,
            Some(s) => Shredding::KeyService {
                service: s.describe(),
                rotation_due: None,
            },
        }
    }
}

/// Whether a target keeps old versions of what gallra deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OldVersions {
    Kept,
    NotKept,
    /// The probe failed (the store was down): assume they are kept.
    Unknown,
}

impl OldVersions {
    /// "yes", "no", "unknown": as `status` and `config check` print it.
    pub fn as_word(&self) -> &'static str {
        match self {
            OldVersions::Kept => "yes",
            OldVersions::NotKept => "no",
            OldVersions::Unknown => "unknown",
        }
    }
}

/// One target's probe as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionProbe {
    /// The URL probed: a record of another URL is not this target's.
    pub url: String,
    pub keeps_old_versions: bool,
    pub probed: Timestamp,
    /// What an S3 bucket said protects the target (`crate::protection`),
    /// probed with the old versions; absent for other stores and in
    /// records written before it was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<crate::store::S3Protection>,
}

/// `<state_dir>/target-versions.json`: the last probe of each target, by
/// target name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeRecord {
    pub targets: BTreeMap<String, VersionProbe>,
}

impl ProbeRecord {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(RECORD_FILE)
    }

    /// The record, or an empty one if there is none yet.
    pub fn load(state_dir: &Path) -> Result<ProbeRecord> {
        let path = ProbeRecord::path(state_dir);
        let read = std::fs::File::open(&path)
            .and_then(|mut f| crate::files::read_capped(&mut f, RECORD_MAX_BYTES));
        match read {
            Ok(None) => Err(Error::Corrupt {
                object: path.display().to_string(),
                message: format!("larger than a probe record can be ({RECORD_MAX_BYTES} bytes)"),
            }),
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                object: path.display().to_string(),
                message: format!("the record of target probes does not parse: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ProbeRecord::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Written whole (temp file + rename), as the agent state is.
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        crate::files::ensure_state_dir(state_dir).map_err(|e| Error::io(state_dir, e))?;
        let path = ProbeRecord::path(state_dir);
        let bytes = serde_json::to_vec_pretty(self).expect("serialisable");
        crate::files::replace_file(&path, &bytes).map_err(|e| Error::io(&path, e))
    }

    /// The probe of `t`, if one was recorded for its present URL.
    pub fn of(&self, t: &TargetSettings) -> Option<&VersionProbe> {
        self.targets.get(&t.name).filter(|p| p.url == t.url)
    }
}

/// What is known of one target's old versions, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Versioning {
    pub old_versions: OldVersions,
    /// When the answer was found; `None` when the probe failed.
    pub probed: Option<Timestamp>,
    /// Why it is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Versioning {
    fn from_probe(p: &VersionProbe) -> Versioning {
        Versioning {
            old_versions: if p.keeps_old_versions {
                OldVersions::Kept
            } else {
                OldVersions::NotKept
            },
            probed: Some(p.probed),
            error: None,
        }
    }
}

/// Probes `t` now and records the answer. A probe that fails is
/// "unknown", with the error; a record that cannot be written is warned
/// and the answer still returned (the next command probes again).
pub fn probe(state_dir: &Path, t: &TargetSettings) -> Versioning {
    match Store::open(t) {
        Ok(store) => probe_store(state_dir, t, &store),
        Err(e) => record_answer(state_dir, t, Err(e), None),
    }
}

/// As [`probe`], on a store already open for `t`; an S3 bucket is also
/// asked what protects it (`Store::s3_protection`).
pub fn probe_store(state_dir: &Path, t: &TargetSettings, store: &Store) -> Versioning {
    let answer = store.keeps_old_versions();
    let s3 = match answer.is_ok().then(|| store.s3_protection()) {
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            tracing::warn!(target_name = %t.name, "what protects the bucket is unknown: {e}");
            None
        }
        None => None,
    };
    record_answer(state_dir, t, answer, s3)
}

fn record_answer(
    state_dir: &Path,
    t: &TargetSettings,
    answer: Result<bool>,
    s3: Option<crate::store::S3Protection>,
) -> Versioning {
    match answer {
        Ok(keeps_old_versions) => {
            let probe = VersionProbe {
                url: t.url.clone(),
                keeps_old_versions,
                probed: Timestamp::now(),
                s3,
            };
            let recorded = ProbeRecord::load(state_dir).and_then(|mut record| {
                record.targets.insert(t.name.clone(), probe.clone());
                record.save(state_dir)
            });
            if let Err(e) = recorded {
                tracing::warn!(target_name = %t.name, "old-versions probe not recorded: {e}");
            }
            Versioning::from_probe(&probe)
        }
        Err(e) => Versioning {
            old_versions: OldVersions::Unknown,
            probed: None,
            error: Some(e.to_string()),
        },
    }
}

/// The recorded probe of `t`, if there is one; never probes.
pub fn recorded(state_dir: &Path, t: &TargetSettings) -> Option<Versioning> {
    let record = ProbeRecord::load(state_dir).ok()?;
    record.of(t).map(Versioning::from_probe)
}

/// The recorded probe of `t`, or a live one (recorded) when there is none.
pub fn known(state_dir: &Path, t: &TargetSettings) -> Versioning {
    let recorded = match ProbeRecord::load(state_dir) {
        Ok(record) => record.of(t).cloned(),
        Err(e) => {
            tracing::warn!("{e}; probing the targets again");
            None
        }
    };
    match recorded {
        Some(p) => Versioning::from_probe(&p),
        None => probe(state_dir, t),
    }
}

/// What a deletion on one target leaves behind, who can read it, and until
/// when; `words` says it in one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leftovers {
    pub target: String,
    pub old_versions: OldVersions,
    /// When `old_versions` was probed; `None`: unknown.
    pub probed: Option<Timestamp>,
    /// As the target states it, e.g. "30 days".
    pub noncurrent_expiry: Option<String>,
    /// The earliest the store's rule may remove the old versions. `None`:
    /// the store keeps none (`old_versions` not-kept), or keeps them until
    /// someone deletes them (no `noncurrent_expiry`).
    pub survives_until: Option<Timestamp>,
    /// What opens what survives (here or in a copy of the target).
    pub readable_by: String,
    pub words: String,
}

impl Leftovers {
    /// What deleting on `target` at `deleted_at` leaves behind; dates in
    /// the words are days of `zone` (the agent's time zone).
    pub fn of(
        target: &TargetSettings,
        versioning: &Versioning,
        shredding: &Shredding,
        deleted_at: Timestamp,
        zone: &TimeZone,
    ) -> Leftovers {
        let expiry = target.noncurrent_expiry;
        let survives_until = match versioning.old_versions {
            OldVersions::NotKept => None,
            OldVersions::Kept | OldVersions::Unknown => expiry.map(|e| e.after(deleted_at)),
        };
        let until_words = match (survives_until, expiry) {
            (Some(until), Some(e)) => format!(
                "until the bucket rule removes it, on or after {} (noncurrent_expiry = {e})",
                until.to_zoned(zone.clone()).strftime("%Y-%m-%d")
            ),
            _ => {
                "until someone deletes those versions (no noncurrent_expiry stated for this target)"
                    .to_string()
            }
        };
        // A locked version outlives any rule: the rule removes it only once
        // its lock has ended.
        let until_words = match target.lock {
            Some(lock) => format!(
                "{until_words}, and not before its S3 Object Lock ends ({} mode: at least {} after it was written, and what a snapshot brought not before that snapshot's retention ends)",
                lock.mode.as_word(),
                crate::text::days(lock.days)
            ),
            None => until_words,
        };
        let (readable_by, opens_until_then, copy_opens) = match shredding {
            Shredding::MasterKey => (
                "the key file or a passphrase".to_string(),
                "opens with the key file or a passphrase until then".to_string(),
                "still opens with the key file or a passphrase until that copy is destroyed"
                    .to_string(),
            ),
            Shredding::KeyService { rotation_due, .. } => {
                let rotation = match rotation_due {
                    Some(t) => format!(
                        "the next rotation (due by {})",
                        t.to_zoned(zone.clone()).strftime("%Y-%m-%d %H:%M %Z")
                    ),
                    None => "the next rotation".to_string(),
                };
                (
                    format!(
                        "the key file or a passphrase, until the key epoch is destroyed by {rotation}"
                    ),
                    format!("opens with nothing once the key epoch is destroyed by {rotation}"),
                    format!(
                        "opens with the key file or a passphrase only until the key epoch is destroyed by {rotation}"
                    ),
                )
            }
        };
        let copies = format!(
            "A copy of this target made outside gallra (disk snapshot, replica, backup of the backup server) {copy_opens}."
        );
        let name = &target.name;
        let words = match versioning.old_versions {
            OldVersions::NotKept => {
                format!(
                    "target {name}: the store keeps no old versions of what gallra deletes. {copies}"
                )
            }
            OldVersions::Kept => format!(
                "target {name}: the bucket keeps old versions: what gallra deletes survives {until_words}, and {opens_until_then}. {copies}"
            ),
            OldVersions::Unknown => format!(
                "target {name}: unknown whether the store keeps old versions (the probe failed: {}): if it does, what gallra deletes survives {until_words}, and {opens_until_then}. {copies}",
                versioning
                    .error
                    .as_deref()
                    .unwrap_or("no answer")
                    .replace('\n', " ")
            ),
        };
        Leftovers {
            target: name.clone(),
            old_versions: versioning.old_versions,
            probed: versioning.probed,
            noncurrent_expiry: expiry.map(|e| e.to_string()),
            survives_until,
            readable_by,
            words,
        }
    }

    /// Whether erasure does not hold against this target's old versions:
    /// they are (or may be) kept, with no stated end, and nothing but the
    /// copies' own deletion stops them opening.
    pub fn open_indefinitely(&self, shredding: &Shredding) -> bool {
        self.old_versions != OldVersions::NotKept
            && self.noncurrent_expiry.is_none()
            && *shredding == Shredding::MasterKey
    }

    /// The line an audit record keeps of it.
    pub fn survives(&self) -> Survives {
        Survives {
            target: self.target.clone(),
            old_versions: old_versions_word(self.old_versions),
            until: self.survives_until.map(|t| t.to_string()),
            words: self.words.clone(),
        }
    }
}

/// "kept", "not-kept", "unknown": the word serde writes.
fn old_versions_word(v: OldVersions) -> String {
    match v {
        OldVersions::Kept => "kept",
        OldVersions::NotKept => "not-kept",
        OldVersions::Unknown => "unknown",
    }
    .to_string()
}

/// What deleting at `deleted_at` leaves on every target of `config`, the
/// primary first, each from its recorded probe or a live one.
pub fn leftovers(config: &Config, deleted_at: Timestamp) -> Vec<Leftovers> {
    let shredding = Shredding::of(config);
    let primary_first = std::iter::once(config.primary()).chain(config.secondaries());
    primary_first
        .map(|t| {
            let versioning = known(&config.agent.state_dir, t);
            Leftovers::of(
                t,
                &versioning,
                &shredding,
                deleted_at,
                &config.policy.time_zone,
            )
        })
        .collect()
}

/// The audit lines of `leftovers`.
pub fn survives(leftovers: &[Leftovers]) -> Vec<Survives> {
    leftovers.iter().map(Leftovers::survives).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NoncurrentExpiry;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn target(name: &str, expiry_days: Option<u32>) -> TargetSettings {
        let mut t = TargetSettings::new(name, "s3://bucket/prefix");
        t.noncurrent_expiry = expiry_days.map(|days| NoncurrentExpiry { days });
        t
    }

    fn versioning(old_versions: OldVersions) -> Versioning {
        let known = old_versions != OldVersions::Unknown;
        Versioning {
            old_versions,
            probed: known.then(|| at("2026-12-01T10:00:00Z")),
            error: (!known).then(|| "target offsite: connection refused".to_string()),
        }
    }

    const DELETED: &str = "2026-12-03T14:30:00Z";

    fn words(
        name: &str,
        expiry: Option<u32>,
        old: OldVersions,
        shredding: &Shredding,
    ) -> Leftovers {
        Leftovers::of(
            &target(name, expiry),
            &versioning(old),
            shredding,
            at(DELETED),
            &TimeZone::UTC,
        )
    }

    const COPY_MASTER: &str = "A copy of this target made outside gallra (disk snapshot, replica, backup of the backup server) still opens with the key file or a passphrase until that copy is destroyed.";

    #[test]
    fn the_wording_table_with_the_master_key() {
        let m = Shredding::MasterKey;
        let table = [
            (
                words("local", None, OldVersions::NotKept, &m),
                format!(
                    "target local: the store keeps no old versions of what gallra deletes. {COPY_MASTER}"
                ),
                None,
            ),
            (
                // An expiry stated for a store that keeps no versions has
                // nothing to expire.
                words("local", Some(30), OldVersions::NotKept, &m),
                format!(
                    "target local: the store keeps no old versions of what gallra deletes. {COPY_MASTER}"
                ),
                None,
            ),
            (
                words("offsite", Some(30), OldVersions::Kept, &m),
                format!(
                    "target offsite: the bucket keeps old versions: what gallra deletes survives until the bucket rule removes it, on or after 2027-01-02 (noncurrent_expiry = 30 days), and opens with the key file or a passphrase until then. {COPY_MASTER}"
                ),
                Some(at("2027-01-02T14:30:00Z")),
            ),
            (
                words("offsite", None, OldVersions::Kept, &m),
                format!(
                    "target offsite: the bucket keeps old versions: what gallra deletes survives until someone deletes those versions (no noncurrent_expiry stated for this target), and opens with the key file or a passphrase until then. {COPY_MASTER}"
                ),
                None,
            ),
            (
                words("offsite", Some(1), OldVersions::Unknown, &m),
                format!(
                    "target offsite: unknown whether the store keeps old versions (the probe failed: target offsite: connection refused): if it does, what gallra deletes survives until the bucket rule removes it, on or after 2026-12-04 (noncurrent_expiry = 1 day), and opens with the key file or a passphrase until then. {COPY_MASTER}"
                ),
                Some(at("2026-12-04T14:30:00Z")),
            ),
        ];
        for (got, want, until) in table {
            assert_eq!(got.words, want);
            assert_eq!(got.survives_until, until, "{want}");
            assert_eq!(got.readable_by, "the key file or a passphrase");
            assert!(!got.words.contains('\n'), "one line: {want}");
        }
    }

    #[test]
    fn the_wording_table_with_a_key_service() {
        let due = Shredding::KeyService {
            service: "key service http://127.0.0.1:5000 (us-east-1)".into(),
            rotation_due: Some(at("2026-12-04T02:00:00Z")),
        };
        let undated = Shredding::KeyService {
            service: "key service http://127.0.0.1:5000 (us-east-1)".into(),
            rotation_due: None,
        };
        let got = words("offsite", Some(30), OldVersions::Kept, &due);
        assert_eq!(
            got.words,
            "target offsite: the bucket keeps old versions: what gallra deletes survives until the bucket rule removes it, on or after 2027-01-02 (noncurrent_expiry = 30 days), and opens with nothing once the key epoch is destroyed by the next rotation (due by 2026-12-04 02:00 UTC). A copy of this target made outside gallra (disk snapshot, replica, backup of the backup server) opens with the key file or a passphrase only until the key epoch is destroyed by the next rotation (due by 2026-12-04 02:00 UTC)."
        );
        assert_eq!(
            got.readable_by,
            "the key file or a passphrase, until the key epoch is destroyed by the next rotation (due by 2026-12-04 02:00 UTC)"
        );
        let got = words("local", None, OldVersions::NotKept, &undated);
        assert_eq!(
            got.words,
            "target local: the store keeps no old versions of what gallra deletes. A copy of this target made outside gallra (disk snapshot, replica, backup of the backup server) opens with the key file or a passphrase only until the key epoch is destroyed by the next rotation."
        );
        let got = words("offsite", None, OldVersions::Kept, &undated);
        assert!(
            got.words.contains("survives until someone deletes those versions (no noncurrent_expiry stated for this target), and opens with nothing once the key epoch is destroyed by the next rotation."),
            "{}",
            got.words
        );
    }

    #[test]
    fn the_date_is_a_day_of_the_agents_time_zone() {
        let t = target("offsite", Some(30));
        let late = at("2026-12-03T23:30:00Z");
        let zone = TimeZone::get("Europe/Stockholm").unwrap();
        let v = versioning(OldVersions::Kept);
        let m = Shredding::MasterKey;
        let here = Leftovers::of(&t, &v, &m, late, &zone);
        assert!(
            here.words.contains("on or after 2027-01-03 "),
            "{}",
            here.words
        );
        let utc = Leftovers::of(&t, &v, &m, late, &TimeZone::UTC);
        assert!(
            utc.words.contains("on or after 2027-01-02 "),
            "{}",
            utc.words
        );
        assert_eq!(here.survives_until, utc.survives_until);
    }

    #[test]
    fn erasure_does_not_hold_only_against_versions_kept_with_no_end_under_the_master_key() {
        let m = Shredding::MasterKey;
        let service = Shredding::KeyService {
            service: "s".into(),
            rotation_due: None,
        };
        let open = |expiry, old, s: &Shredding| words("t", expiry, old, s).open_indefinitely(s);
        assert!(open(None, OldVersions::Kept, &m));
        assert!(open(None, OldVersions::Unknown, &m));
        assert!(!open(Some(30), OldVersions::Kept, &m));
        assert!(!open(None, OldVersions::NotKept, &m));
        assert!(!open(None, OldVersions::Kept, &service));
    }

    #[test]
    fn the_audit_line_keeps_the_words_and_the_date() {
        let l = words(
            "offsite",
            Some(30),
            OldVersions::Kept,
            &Shredding::MasterKey,
        );
        let s = l.survives();
        assert_eq!(s.target, "offsite");
        assert_eq!(s.old_versions, "kept");
        assert_eq!(s.until.as_deref(), Some("2027-01-02T14:30:00Z"));
        assert_eq!(s.words, l.words);
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["old_versions"], "kept");
        assert_eq!(json["noncurrent_expiry"], "30 days");
        assert_eq!(json["survives_until"], "2027-01-02T14:30:00Z");
    }

    #[test]
    fn a_probe_is_recorded_per_target_and_url() {
        let dir = tempfile::tempdir().unwrap();
        let folder = tempfile::tempdir().unwrap();
        let url = format!("file://{}", folder.path().display());
        let t = TargetSettings::new("local", &url);
        let before = Timestamp::now();
        let v = known(dir.path(), &t);
        assert_eq!(v.old_versions, OldVersions::NotKept);
        let record = ProbeRecord::load(dir.path()).unwrap();
        let p = record.of(&t).expect("recorded");
        assert!(!p.keeps_old_versions && p.probed >= before && p.url == url);

        // The record answers from now on, even one that says otherwise.
        let mut record = record;
        record.targets.get_mut("local").unwrap().keeps_old_versions = true;
        record.save(dir.path()).unwrap();
        assert_eq!(known(dir.path(), &t).old_versions, OldVersions::Kept);

        // A target pointed elsewhere is not the one recorded: probed again.
        let other = tempfile::tempdir().unwrap();
        let moved = TargetSettings::new("local", &format!("file://{}", other.path().display()));
        assert_eq!(known(dir.path(), &moved).old_versions, OldVersions::NotKept);
        assert!(!ProbeRecord::load(dir.path()).unwrap().targets["local"].keeps_old_versions);
    }

    #[test]
    fn a_probe_that_fails_is_unknown_and_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let t = TargetSettings::new("offsite", "s3://no-such-bucket/x");
        let mut t = t;
        t.options
            .insert("endpoint".into(), "http://127.0.0.1:9".into());
        t.options.insert("allow_http".into(), "true".into());
        t.options.insert("access_key_id".into(), "x".into());
        t.options.insert("secret_access_key".into(), "x".into());
        t.options.insert("region".into(), "us-east-1".into());
        t.limits.timeout = std::time::Duration::from_secs(2);
        let v = probe(dir.path(), &t);
        assert_eq!(v.old_versions, OldVersions::Unknown);
        assert!(v.probed.is_none() && v.error.is_some());
        assert!(ProbeRecord::load(dir.path()).unwrap().targets.is_empty());
    }

    #[test]
    fn a_record_that_does_not_parse_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(ProbeRecord::path(dir.path()), "{").unwrap();
        let e = ProbeRecord::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(RECORD_FILE), "{e}");
    }
}
