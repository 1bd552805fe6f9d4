//! Backup: discover tenants, walk sources, and run the parallel pipeline
//! read -> chunk -> id -> dedup -> compress -> encrypt -> pack -> store.
//!
//! The walk is sequential and keeps only metadata; file contents are read by
//! rayon workers (one file per task), each with its own reusable chunk buffer
//! and zstd context, and sealed blobs go through a bounded channel to the
//! packer thread, which keeps at most four packs' uploads in flight
//! (`MAX_PENDING_UPLOADS`). Memory is bounded by those queues, not by the
//! data.
//!
//! `jobs` plans a run from the sources and holds its report; this module
//! runs the jobs one tenant at a time; `snapshot` takes one job's snapshot:
//! the `walk` of its paths (beneath held descriptors), the `read` of the
//! files it found, or a `command`'s output, each streamed through the
//! `pipeline`.

mod command;
mod jobs;
mod pipeline;
mod read;
mod snapshot;
mod walk;

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::format::Id;
use crate::format::snapshot::Snapshot;
use crate::lock::{self, Holder, LockKind, TenantLock};
use crate::repo::{Index, Repository, Tenant};

pub use jobs::{BackupOptions, BackupReport, Failure, Job, SnapshotSummary, plan_jobs};
use snapshot::snapshot_job;

/// The tenant being backed up: its shared lock (taken before its index is
/// read, so that no prune can delete what the index names meanwhile), keys,
/// index and snapshots.
struct TenantState {
    name: String,
    lock: TenantLock,
    tenant: Arc<Tenant>,
    index: Index,
    snaps: Vec<(Id, Snapshot)>,
}

impl TenantState {
    /// Locks the tenant (creating it if new), then reads its index and
    /// snapshots.
    fn load(repo: &Repository, config: &Config, name: &str) -> Result<TenantState> {
        let holder = Holder {
            host: config.agent.host.clone(),
            command: "backup".into(),
        };
        let lock = lock::acquire(&repo.store, name, LockKind::Shared, &holder)?;
        let tenant = repo.tenant_or_create(name)?;
        let index = repo.load_index(&tenant)?;
        let snaps = repo.snapshots(&tenant)?;
        Ok(TenantState {
            name: name.to_string(),
            lock,
            tenant,
            index,
            snaps,
        })
    }
}

/// Runs every job; a failing job is reported and the others go on.
pub fn run(repo: &Repository, config: &Config, opts: &BackupOptions) -> Result<BackupReport> {
    let started = Instant::now();
    let (jobs, mut failed) = jobs::plan_run(config, opts);
    let mut report = BackupReport::default();
    let mut current: Option<TenantState> = None;
    for job in &jobs {
        if opts.cancel.is_cancelled() {
            report.cancelled = true;
            break;
        }
        // A failure carries its tenant and source; the error's own text
        // must not name them a second time.
        let fail = |e: Error| {
            let error = match e {
                Error::Source { message, .. } => message,
                e => e.to_string(),
            };
            Failure::of_source(&job.tenant, &job.source.name, error)
        };
        if current.as_ref().is_none_or(|c| c.name != job.tenant) {
            // Release the previous tenant's lock before taking the next.
            drop(current.take());
            match TenantState::load(repo, config, &job.tenant) {
                Ok(c) => current = Some(c),
                Err(e) => {
                    current = None;
                    failed.push(fail(e));
                    continue;
                }
            }
        }
        let state = current.as_mut().expect("loaded above");
        let parent = state
            .snaps
            .iter()
            .rev()
            .find(|(_, s)| s.source == job.source.name && s.host == config.agent.host)
            .cloned();
        match snapshot_job(repo, config, opts, job, state, parent) {
            Ok(summary) => {
                tracing::info!(
                    tenant = %job.tenant, source = %job.source.name, snapshot = %summary.id.short(),
                    "snapshot written"
                );
                state.snaps.push((summary.id, summary.snapshot.clone()));
                report.snapshots.push(summary);
            }
            // Once a stop is requested, whatever a job ends with (the
            // typed Cancelled, or a read or packer torn down under it) is the
            // stop's doing, not the source's: counting it as a failure would
            // leave a backup "failing" that nothing is wrong with.
            Err(e) if matches!(e, Error::Cancelled) || opts.cancel.is_cancelled() => {
                tracing::info!(
                    tenant = %job.tenant, source = %job.source.name,
                    "backup abandoned, nothing committed: {e}"
                );
                report.cancelled = true;
            }
            Err(e) => failed.push(fail(e)),
        }
    }
    report.failed = failed;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Records each snapshot taken in the audit trail, locally and on the
/// primary: evidence an auditor may ask for after the snapshot itself is
/// long deleted. Returns the targets a record could not be written to.
pub fn audit_snapshots(
    config: &Config,
    repo: &Repository,
    report: &BackupReport,
) -> Result<Vec<(String, Error)>> {
    use crate::audit::{Action, AuditLog, Entry, TargetCounts};
    let audit = AuditLog::open(&config.agent.state_dir, &config.agent.host)?;
    let mut failed = Vec::new();
    for s in &report.snapshots {
        let snap = &s.snapshot;
        let mut entry = Entry::new(Action::Backup, Some(&snap.tenant));
        entry.snapshots = vec![s.id.to_hex()];
        entry.targets = vec![TargetCounts {
            target: config.primary().name.clone(),
            objects: 0,
            bytes: snap.bytes_stored,
        }];
        entry.detail = Some(format!(
            "taken {}, source {}, category {}, {} files, {} bytes",
            jiff::Timestamp::from_second(snap.time_secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            snap.source,
            snap.category,
            snap.files,
            snap.bytes
        ));
        failed.extend(audit.append(entry, &[repo])?.1);
    }
    Ok(failed)
}
