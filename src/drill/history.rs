//! A drill's record in the audit trail, written locally and on every
//! target, and the past drills read back from it: the `detail` field's
//! `key=value` format is written and parsed here.

use std::collections::HashMap;

use serde::Serialize;

use super::{DrillResult, Problem};
use crate::audit::{Action, Entry, Record, TargetCounts};
use crate::error::Result;
use crate::repo::Repository;

impl DrillResult {
    /// The audit trail's record of this drill: ids, counts and times, never
    /// a file name.
    pub fn audit_entry(&self, selection: &str) -> Entry {
        let mut entry = Entry::new(Action::Drill, Some(&self.tenant));
        if !self.snapshot.is_empty() {
            entry.snapshots.push(self.snapshot.clone());
        }
        entry.targets.push(TargetCounts {
            target: self.target.clone(),
            objects: self.files,
            bytes: self.bytes,
        });
        entry.reason = Some(selection.to_string());
        let mut detail = format!(
            "source={} seconds={:.3} first_byte={} fresh={} result={}",
            if self.source.is_empty() {
                "-".to_string()
            } else {
                escape_value(&self.source)
            },
            self.seconds,
            self.first_byte_seconds
                .map_or("-".into(), |s| format!("{s:.3}")),
            match self.fresh {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            },
            if self.ok { "ok" } else { "failed" },
        );
        if !self.ok {
            let first = self.problems.first().map(Problem::without_file);
            detail.push_str(" error=");
            detail.push_str(&first.unwrap_or_default());
            if self.problems.len() > 1 {
                detail.push_str(&format!(" (and {} more)", self.problems.len() - 1));
            }
        }
        entry.detail = Some(detail);
        entry
    }
}

/// Appends one audit record per drill result, in order, to the local trail
/// and to every target that takes it, `drilled` (`target`'s) first (a fresh
/// machine continues the chain it holds). A target the record did not
/// reach is a warning: the next ship copies it.
pub(super) fn record(
    config: &crate::config::Config,
    target: &crate::config::Target,
    drilled: Repository,
    selection: &str,
    results: &[DrillResult],
    warnings: &mut Vec<String>,
) -> Result<Vec<Option<Record>>> {
    let mut audit_targets = vec![drilled];
    for t in config.targets.iter().filter(|t| t.name != target.name) {
        match Repository::open_target(t, &config.key) {
            Ok(r) => audit_targets.push(r),
            Err(e) => warnings.push(format!(
                "audit records not written to target {}: {e}",
                t.name
            )),
        }
    }
    let refs: Vec<&Repository> = audit_targets.iter().collect();
    let audit = crate::audit::AuditLog::open(&config.agent.state_dir, &config.agent.host)?;
    let mut records = Vec::new();
    for r in results {
        let (record, failed) = audit.append(r.audit_entry(selection), &refs)?;
        for (t, e) in failed {
            warnings.push(format!(
                "audit record #{} not written to target {t} (the next ship copies it): {e}",
                record.seq
            ));
        }
        records.push(Some(record));
    }
    Ok(records)
}

/// A past drill, read back from the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct PastDrill {
    pub seq: u64,
    pub time: String,
    pub host: String,
    pub tenant: String,
    pub snapshot: String,
    pub source: String,
    pub target: String,
    pub files: u64,
    pub bytes: u64,
    pub seconds: Option<f64>,
    pub first_byte_seconds: Option<f64>,
    pub fresh: Option<bool>,
    pub ok: bool,
    pub error: Option<String>,
    pub selection: Option<String>,
}

/// The drills among audit records, oldest first; of one tenant if given.
pub fn history(records: &[Record], tenant: Option<&str>) -> Vec<PastDrill> {
    records
        .iter()
        .filter(|r| r.action == Action::Drill)
        .filter(|r| tenant.is_none() || r.tenant.as_deref() == tenant)
        .map(|r| {
            let detail = r.detail.as_deref().unwrap_or("");
            let (fields, error) = match detail.split_once(" error=") {
                Some((f, e)) => (f, Some(e.to_string())),
                None => (detail, None),
            };
            let kv: HashMap<&str, &str> = fields
                .split(' ')
                .filter_map(|t| t.split_once('='))
                .collect();
            let num = |k: &str| kv.get(k).and_then(|v| v.parse::<f64>().ok());
            let counts = r.targets.first().cloned().unwrap_or_default();
            PastDrill {
                seq: r.seq,
                time: r.time.clone(),
                host: r.host.clone(),
                tenant: r.tenant.clone().unwrap_or_default(),
                snapshot: r.snapshots.first().cloned().unwrap_or_default(),
                source: kv.get("source").map_or("-".into(), |v| unescape_value(v)),
                target: counts.target,
                files: counts.objects,
                bytes: counts.bytes,
                seconds: num("seconds"),
                first_byte_seconds: num("first_byte"),
                fresh: match kv.get("fresh") {
                    Some(&"yes") => Some(true),
                    Some(&"no") => Some(false),
                    _ => None,
                },
                ok: kv.get("result") == Some(&"ok"),
                error,
                selection: r.reason.clone(),
            }
        })
        .collect()
}

/// A value of the audit detail's `key=value` fields, which spaces separate:
/// `%` and space as `%25` and `%20`.
fn escape_value(v: &str) -> String {
    v.replace('%', "%25").replace(' ', "%20")
}

fn unescape_value(v: &str) -> String {
    v.replace("%20", " ").replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::super::Selection;
    use super::super::result::fixtures::*;
    use super::*;
    use crate::audit::AuditLog;

    #[test]
    fn drills_round_trip_through_the_audit_trail_without_file_names() {
        let (pass, fail) = (passing(), failing());
        assert!(pass.ok && pass.error.is_none());
        assert!(!fail.ok);
        // The report's error names the file; the audit trail's must not.
        assert!(fail.error.as_deref().unwrap().starts_with(SECRET));

        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), "web01").unwrap();
        let selection = Selection::Tenants(vec!["acme".into(), "beta".into()]).describe();
        log.append(pass.audit_entry(&selection), &[]).unwrap();
        log.append(Entry::new(Action::Backup, Some("acme")), &[])
            .unwrap();
        log.append(fail.audit_entry(&selection), &[]).unwrap();
        let records = log.records().unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(!text.contains("secret-ledger"), "{text}");

        let all = history(&records, None);
        assert_eq!(all.len(), 2, "the backup record is no drill");
        let p = &all[0];
        assert_eq!((p.seq, p.host.as_str()), (1, "web01"));
        assert_eq!(
            (p.tenant.as_str(), p.snapshot.as_str()),
            ("beta", &*pass.snapshot)
        );
        assert_eq!((p.source.as_str(), p.target.as_str()), ("www", "offsite"));
        assert_eq!((p.files, p.bytes), (3, 4096));
        assert_eq!((p.seconds, p.first_byte_seconds), (Some(1.25), Some(0.5)));
        assert_eq!(
            (p.fresh, p.ok, p.error.as_deref()),
            (Some(true), true, None)
        );
        assert_eq!(p.selection.as_deref(), Some("tenants acme, beta"));

        let acme = history(&records, Some("acme"));
        assert_eq!(acme.len(), 1);
        let f = &acme[0];
        assert_eq!((f.seq, f.tenant.as_str()), (3, "acme"));
        assert_eq!(f.snapshot, fail.snapshot);
        assert_eq!((f.target.as_str(), f.files, f.bytes), ("offsite", 1, 10));
        assert_eq!((f.seconds, f.first_byte_seconds), (Some(2.5), None));
        assert_eq!((f.fresh, f.ok), (Some(false), false));
        let error = f.error.as_deref().unwrap();
        let want =
            format!("a file: blob 0123456789abcdef: {PACK}: authentication failed (and 1 more)");
        assert_eq!(error, want);
        assert_eq!(f.selection.as_deref(), Some("tenants acme, beta"));
        assert!(history(&records, Some("gamma")).is_empty());
    }

    #[test]
    fn history_keeps_a_source_name_with_a_space() {
        let mut r = passing();
        r.source = "mail archive".into();
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), "web01").unwrap();
        log.append(r.audit_entry("x"), &[]).unwrap();
        let past = history(&log.records().unwrap(), None);
        assert_eq!(past[0].source, "mail archive");
    }
}
