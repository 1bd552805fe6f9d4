//! Restore drills: restore a snapshot into scratch space, verify every
//! file's bytes and metadata against the snapshot, time it, check that the
//! tenant's backups are fresh, and leave evidence in the audit trail.
//!
//! A drill reads only the target it is given, so that drilling the offsite
//! copy proves what a disaster that takes the server leaves. Each tenant is
//! drilled under a shared lock, so a prune cannot remove what is being read
//! and make it look lost. The scratch folder holds customers' data while a
//! drill runs: it is created 0700, and what a drill restored is removed when
//! the drill ends, failed or not; what a killed drill left is removed by the
//! next one.
//!
//! In the order a drill runs: `choose` resolves the selection to tenants
//! and snapshots; each snapshot is restored into a `scratch` folder and
//! `examine`d against the snapshot, and its source's `freshness` judged;
//! `result` is what that came to, `history` writes it to the audit trail and
//! reads past drills back, and `report` renders a run for an auditor.

mod choose;
mod examine;
mod freshness;
mod history;
mod report;
mod result;
mod scratch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use jiff::{Span, Timestamp, tz::TimeZone};

use crate::audit::Record;
use crate::error::{Error, Result};
use crate::format::Id;
use crate::format::snapshot::Snapshot;
use crate::repo::{Repository, Tenant};

pub use choose::{Chosen, Selection, choose};
use examine::{examine, restore_into};
use freshness::freshness;
pub use freshness::not_expected_fresh;
pub use history::{PastDrill, history};
pub use report::{ReportFormat, ReportHeader, report};
pub use result::{DrillResult, Problem};
use scratch::Scratch;

pub struct DrillOptions {
    /// Where drills restore to (created 0700 if absent).
    pub scratch: PathBuf,
    /// The latest snapshot of each drilled source must be younger than this.
    pub max_age: Span,
    pub time_zone: TimeZone,
    /// Tenants whose freshness is not expected, with why (a contract that
    /// has ended stops its backups).
    pub not_expected_fresh: BTreeMap<String, String>,
    /// Goes into the locks the drill takes.
    pub host: String,
    pub now: Timestamp,
}

/// A drill run from the configuration, and its evidence.
pub struct DrillRun {
    pub results: Vec<DrillResult>,
    /// The audit record of each result, in order.
    pub records: Vec<Option<Record>>,
    /// How many tenants were chosen.
    pub tenants: usize,
    pub now: jiff::Timestamp,
    /// What went wrong beside the drills themselves (events unread, a
    /// target the audit record did not reach).
    pub warnings: Vec<String>,
}

/// Chooses, drills from `target`, and records one audit record per drilled
/// snapshot on every target that takes it, the drilled one first (a fresh
/// machine continues the chain it holds).
pub fn drill_and_record(
    config: &crate::config::Config,
    target: &crate::config::Target,
    selection: &Selection,
    scratch: PathBuf,
    max_age: jiff::Span,
) -> Result<DrillRun> {
    let repo = Repository::open_target(target, &config.key)?;
    let now = jiff::Timestamp::now();
    let time_zone = config.policy.time_zone.clone();
    let mut warnings = Vec::new();
    let not_expected_fresh = not_expected_fresh(&repo, now, &time_zone).unwrap_or_else(|e| {
        warnings.push(format!(
            "lifecycle events not read, every tenant must be fresh: {e}"
        ));
        Default::default()
    });
    let chosen = choose(&repo, selection)?;
    let opts = DrillOptions {
        scratch,
        max_age,
        time_zone,
        not_expected_fresh,
        host: config.agent.host.clone(),
        now,
    };
    let results = run(&repo, &chosen, &opts)?;
    let records = history::record(
        config,
        target,
        repo,
        &selection.describe(),
        &results,
        &mut warnings,
    )?;
    Ok(DrillRun {
        results,
        records,
        tenants: chosen.tenants.len(),
        now,
        warnings,
    })
}

/// Runs the drills of `chosen` against `repo`, one tenant at a time.
pub fn run(repo: &Repository, chosen: &Chosen, opts: &DrillOptions) -> Result<Vec<DrillResult>> {
    let target = repo.store.name().to_string();
    let scratch = Scratch::open(&opts.scratch)?;
    let mut results = Vec::new();
    for name in &chosen.absent {
        let message = format!("tenant {name} has no snapshot on target {target}");
        results.push(DrillResult::failed(
            name,
            &target,
            Problem::of_snapshot(message),
        ));
    }
    let holder = crate::lock::Holder {
        host: opts.host.clone(),
        command: "drill".into(),
    };
    for (name, named) in &chosen.tenants {
        let lock = crate::lock::acquire(&repo.store, name, crate::lock::LockKind::Shared, &holder);
        let _lock = match lock {
            Ok(l) => l,
            Err(e) => {
                let why = Problem::of_snapshot(format!("not drilled: {e}"));
                results.push(DrillResult::failed(name, &target, why));
                continue;
            }
        };
        match drill_tenant(repo, name, *named, opts, &scratch) {
            Ok(mut r) => results.append(&mut r),
            Err(e) => results.push(DrillResult::failed(name, &target, Problem::whole(e))),
        }
    }
    scratch.close();
    Ok(results)
}

/// Drills the named snapshot, or the latest of each of the tenant's sources.
fn drill_tenant(
    repo: &Repository,
    name: &str,
    named: Option<Id>,
    opts: &DrillOptions,
    scratch: &Scratch,
) -> Result<Vec<DrillResult>> {
    let tenant = repo.tenant(name)?;
    let snapshots = repo.snapshots(&tenant)?;
    let mut latest: BTreeMap<&str, (Id, &Snapshot)> = BTreeMap::new();
    for (id, snap) in &snapshots {
        // Oldest first: the last one seen per source is its latest.
        latest.insert(&snap.source, (*id, snap));
    }
    let picks: Vec<(Id, &Snapshot)> = match named {
        Some(id) => {
            let snap = snapshots
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, s)| s)
                .ok_or_else(|| Error::SnapshotNotFound(id.to_hex()))?;
            vec![(id, snap)]
        }
        None => latest.values().copied().collect(),
    };
    let mut results = Vec::new();
    for (id, snap) in picks {
        let newest = latest.get(snap.source.as_str()).map_or(snap, |(_, s)| *s);
        results.push(drill_one(repo, &tenant, id, snap, newest, opts, scratch));
    }
    Ok(results)
}

/// Drills one snapshot: judges its source's freshness, restores it into a
/// scratch folder of its own and examines what was restored; the folder is
/// removed whatever happened.
fn drill_one(
    repo: &Repository,
    tenant: &Arc<Tenant>,
    id: Id,
    snap: &Snapshot,
    newest: &Snapshot,
    opts: &DrillOptions,
    scratch: &Scratch,
) -> DrillResult {
    let mut result = DrillResult::new(&tenant.name, repo.store.name());
    result.snapshot = id.to_hex();
    result.source = snap.source.clone();
    result.taken = Some(snap.timestamp().to_string());
    result.latest = Some(newest.timestamp().to_string());
    result.expected_files = snap.files;
    result.expected_bytes = snap.bytes;
    freshness(&mut result, newest, opts);

    if let Err(p) = scratch.has_room_for(snap.bytes) {
        result.problems.push(p);
        return result.finish();
    }
    let dir = match scratch.make_dir() {
        Ok(d) => d,
        Err(e) => {
            result.problems.push(Problem::whole(e));
            return result.finish();
        }
    };
    let started = Instant::now();
    let restored = restore_into(repo, tenant, id, snap, dir.path(), started);
    match restored {
        Ok((open, planned, report)) => {
            result.seconds = started.elapsed().as_secs_f64();
            result.first_byte_seconds = report.first_byte;
            examine(&mut result, &open, &planned, &report, dir.path());
        }
        Err(e) => {
            result.seconds = started.elapsed().as_secs_f64();
            result.problems.push(Problem::whole(e));
        }
    }
    if result.seconds > 0.0 {
        result.mb_per_s = result.bytes as f64 / 1e6 / result.seconds;
    }
    if let Err(e) = dir.remove() {
        result.problems.push(Problem::whole(e));
    }
    result.finish()
}
