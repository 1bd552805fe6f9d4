//! What a backup run is asked to do and what it comes to: its options, the
//! jobs planned from the configured sources, and its report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cancel::Cancel;
use crate::config::{Config, Source, SourceKind};
pub use crate::failure::Failure;
use crate::format::Id;
use crate::format::snapshot::Snapshot;
use crate::pace::Pacer;

#[derive(Default)]
pub struct BackupOptions {
    /// Only these tenants (all when empty).
    pub tenants: Vec<String>,
    pub time: Option<jiff::Timestamp>,
    pub tags: Vec<(String, String)>,
    pub progress: bool,
    pub compression: i32,
    pub pack_size: u64,
    /// Only these sources (all when empty).
    pub sources: Vec<String>,
    /// Stops the backup between files; nothing of it is committed.
    pub cancel: Cancel,
    /// Caps the rate at which files are read, so that customers' sites on
    /// the same disks stay fast.
    pub read_rate: Option<Arc<Pacer>>,
}

#[derive(Debug, Clone)]
pub struct SnapshotSummary {
    pub id: Id,
    pub snapshot: Snapshot,
    pub seconds: f64,
}

#[derive(Debug, Default)]
pub struct BackupReport {
    pub snapshots: Vec<SnapshotSummary>,
    pub failed: Vec<Failure>,
    /// A stop was requested and at least one job was abandoned for it (or
    /// not started): neither a success nor a failure of those jobs.
    pub cancelled: bool,
    pub seconds: f64,
}

/// One snapshot to take: a source for one tenant.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub tenant: String,
    pub source: &'a Source,
    /// Concrete paths (for a path source).
    pub paths: Vec<PathBuf>,
}

/// One job per (tenant, source), a source's `{tenant}` patterns expanded
/// over the folders they match; only of the tenants in `only`, if any.
/// Returns the jobs, sorted by tenant and source, and what failed to expand.
pub fn plan_jobs<'a>(config: &'a Config, only: &[String]) -> (Vec<Job<'a>>, Vec<Failure>) {
    let mut jobs: Vec<Job<'a>> = Vec::new();
    let mut failed = Vec::new();
    for source in &config.sources {
        match (&source.kind, &source.tenant) {
            (SourceKind::Command { .. }, Some(t)) => jobs.push(Job {
                tenant: t.clone(),
                source,
                paths: vec![],
            }),
            (SourceKind::Paths(paths), Some(t)) => jobs.push(Job {
                tenant: t.clone(),
                source,
                paths: paths.iter().map(PathBuf::from).collect(),
            }),
            (SourceKind::Paths(patterns), None) => {
                let mut by_tenant = BTreeMap::new();
                for pattern in patterns {
                    expand_pattern(source, pattern, &mut by_tenant, &mut failed);
                }
                for (tenant, paths) in by_tenant {
                    jobs.push(Job {
                        tenant,
                        source,
                        paths,
                    });
                }
            }
            (SourceKind::Command { .. }, None) => unreachable!("validated: command has tenant"),
        }
    }
    if !only.is_empty() {
        jobs.retain(|j| only.contains(&j.tenant));
        failed.retain(|f| f.tenant.as_ref().is_some_and(|t| only.contains(t)));
    }
    jobs.sort_by(|a, b| (&a.tenant, &a.source.name).cmp(&(&b.tenant, &b.source.name)));
    (jobs, failed)
}

/// The jobs of a run: those of `opts`' tenants and sources, and a failure
/// for each tenant named that no source backs up.
pub(super) fn plan_run<'a>(
    config: &'a Config,
    opts: &BackupOptions,
) -> (Vec<Job<'a>>, Vec<Failure>) {
    let (mut jobs, mut failed) = plan_jobs(config, &opts.tenants);
    if !opts.sources.is_empty() {
        jobs.retain(|j| opts.sources.contains(&j.source.name));
        failed.retain(|f| f.source.as_ref().is_some_and(|s| opts.sources.contains(s)));
    }
    for t in &opts.tenants {
        if !config
            .sources
            .iter()
            .any(|s| s.tenant.as_deref() == Some(t))
            && !jobs.iter().any(|j| &j.tenant == t)
        {
            failed.push(Failure::of_source(
                t,
                "*",
                "no source of this tenant was found",
            ));
        }
    }
    (jobs, failed)
}

/// Adds each folder that `pattern`'s `{tenant}` matches to the paths of
/// its tenant. A folder whose name is not a usable tenant name is a
/// failure, not silently skipped; `lost+found` and hidden folders are no
/// customer's and are passed over.
fn expand_pattern(
    source: &Source,
    pattern: &str,
    by_tenant: &mut BTreeMap<String, Vec<PathBuf>>,
    failed: &mut Vec<Failure>,
) {
    let (prefix, suffix) = pattern.split_once("{tenant}").expect("validated");
    let suffix = suffix.trim_start_matches('/');
    let entries = match std::fs::read_dir(prefix) {
        Ok(e) => e,
        Err(e) => {
            failed.push(Failure::of_source(
                "*",
                &source.name,
                format!("cannot list {prefix}: {e}"),
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        // NFC, so that a folder named in NFD (as a Mac copies `å`) is the
        // same tenant, not a second one.
        let Some(tenant) = name
            .to_str()
            .map(|n| crate::tenant_name::nfc(n).into_owned())
        else {
            failed.push(Failure::of_source(
                name.to_string_lossy(),
                &source.name,
                "folder name is not UTF-8, so it cannot name a tenant",
            ));
            continue;
        };
        if crate::tenant_name::is_system_folder(&tenant) {
            tracing::info!(
                "source {}: {} is a system folder, not a tenant; skipped",
                source.name,
                entry.path().display()
            );
            continue;
        }
        if let Err(m) = crate::tenant_name::check(&tenant) {
            failed.push(Failure::of_source(&tenant, &source.name, m));
            continue;
        }
        let path = if suffix.is_empty() {
            entry.path()
        } else {
            entry.path().join(suffix)
        };
        if path.exists() {
            by_tenant.entry(tenant).or_default().push(path);
        }
    }
}
