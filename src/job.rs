//! One backup job as `gallra backup` and the agent both run it: the
//! backup, an audit record per snapshot, then a ship of the tenants it
//! backed up to every secondary.

use crate::backup::{self, BackupOptions, BackupReport};
use crate::config::{Config, Target};
use crate::error::{Error, Result};
use crate::failure::Failure;
use crate::repo::Repository;
use crate::ship::{self, ShipOptions, ShipReport};

/// What the job did; `ships` and `ship_failed` are empty when nothing
/// was shipped.
#[derive(Debug, Default)]
pub struct JobReport {
    pub backup: BackupReport,
    pub ships: Vec<ShipReport>,
    /// Each target the ship could not complete (see `ship::ship_to`).
    pub ship_failed: Vec<Failure>,
}

/// Backs up with `backup` into `repo` (the primary), writes the audit
/// records of the snapshots taken, and ships the tenants that got a
/// snapshot with `ship` (its `tenants` are set here); `ship` None is
/// `--no-ship`. `backed_up` sees the backup's report and the targets whose
/// audit record was not written, before the ship starts, so that what the
/// caller says about the backup comes before the ship's progress.
///
/// An audit record not written is not a failure of the job: the snapshot
/// is taken, and the record is on the other targets. A target the ship
/// could not complete is in `ship_failed`; the snapshots stay on the
/// primary for the next ship.
pub fn backup_audit_ship(
    config: &Config,
    repo: &Repository,
    backup: &BackupOptions,
    ship: Option<ShipOptions>,
    backed_up: impl FnOnce(&BackupReport, &[(String, Error)]),
) -> Result<JobReport> {
    let report = backup::run(repo, config, backup)?;
    let audit_failed = backup::audit_snapshots(config, repo, &report)?;
    backed_up(&report, &audit_failed);
    let mut tenants: Vec<String> = report
        .snapshots
        .iter()
        .map(|s| s.snapshot.tenant.clone())
        .collect();
    tenants.sort();
    tenants.dedup();
    let secondaries: Vec<&Target> = config.secondaries().collect();
    let mut job = JobReport {
        backup: report,
        ..Default::default()
    };
    let Some(ship) = ship else {
        return Ok(job);
    };
    if tenants.is_empty() || secondaries.is_empty() {
        return Ok(job);
    }
    (job.ships, job.ship_failed) = ship::ship_to(
        config.primary(),
        &config.key,
        &secondaries,
        &ShipOptions { tenants, ..ship },
    )?;
    Ok(job)
}
