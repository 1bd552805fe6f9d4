//! The backup job: every tenant of one source, then its ship.

use jiff::Timestamp;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{RwLock, Semaphore};
use tokio::task::JoinSet;

use crate::agent::{Done, TenantBackup, blocking};
use crate::agent_state::BackupRun;
use crate::backup::{self, BackupOptions};
use crate::cancel::Cancel;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::lifecycle::gate::Refusal;
use crate::pace::Pacer;
use crate::repo::Repository;
use crate::ship::ShipOptions;

/// Backs one source up for each of its tenants, a few tenants at a time,
/// and ships each tenant's new snapshot to the secondaries.
pub(super) async fn backup_source(
    config: Arc<Config>,
    source: String,
    slots: Arc<Semaphore>,
    exclusive: Arc<RwLock<()>>,
    cancel: Cancel,
    read_rate: Option<Arc<Pacer>>,
) -> Done {
    let (jobs, failed) = backup::plan_jobs(&config, &[]);
    let mut tenants: Vec<String> = jobs
        .iter()
        .filter(|j| j.source.name == source)
        .map(|j| j.tenant.clone())
        .collect();
    tenants.dedup();
    let refusals = refusals_of(&config, &tenants).await;
    let mut results: Vec<TenantBackup> = failed
        .into_iter()
        .filter(|f| f.source.as_ref() == Some(&source))
        .map(|f| {
            let tenant = f.tenant.unwrap_or_default();
            TenantBackup::failed(tenant, &source, Timestamp::now(), f.error)
        })
        .collect();
    tenants.retain(|t| {
        let Some(r) = refusals.get(t) else {
            return true;
        };
        if r.fault {
            tracing::error!(tenant = %t, source = %source, "not backed up: {}", r.why);
            results.push(TenantBackup::failed(
                t.clone(),
                &source,
                Timestamp::now(),
                format!("not backed up: {}", r.why),
            ));
        } else {
            tracing::debug!(tenant = %t, source = %source, "not backed up: {}", r.why);
        }
        false
    });
    let mut set = JoinSet::new();
    for tenant in tenants {
        set.spawn(backup_tenant_in_turn(
            config.clone(),
            tenant,
            source.clone(),
            slots.clone(),
            exclusive.clone(),
            cancel.clone(),
            read_rate.clone(),
        ));
    }
    while let Some(r) = set.join_next().await {
        match r {
            Ok(t) => results.push(t),
            Err(e) => tracing::error!("a backup panicked: {e}"),
        }
    }
    Done::Backup {
        source,
        tenants: results,
    }
}

/// Which of `tenants` the lifecycle gate refuses a backup, and why.
async fn refusals_of(config: &Arc<Config>, tenants: &[String]) -> BTreeMap<String, Refusal> {
    // A customer whose contract is over, or who asked for erasure, is not
    // backed up again; when that cannot be known, no one is (fail closed).
    let c = config.clone();
    let asked = tenants.to_vec();
    match blocking(move || {
        let repo = Repository::open_target(c.primary(), &c.key)?;
        Ok(crate::lifecycle::gate::backup_refusals(
            &repo,
            &c.policy,
            &asked,
            &[],
            Timestamp::now(),
        ))
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            let why = format!("lifecycle events not read, so no tenant is backed up: {e}");
            tenants
                .iter()
                .map(|t| {
                    let r = Refusal {
                        why: why.clone(),
                        fault: true,
                    };
                    (t.clone(), r)
                })
                .collect()
        }
    }
}

/// One tenant's backup, when a tenant slot is free and no lifecycle runs;
/// its error or cancellation is the tenant's result.
async fn backup_tenant_in_turn(
    config: Arc<Config>,
    tenant: String,
    source: String,
    slots: Arc<Semaphore>,
    exclusive: Arc<RwLock<()>>,
    cancel: Cancel,
    read_rate: Option<Arc<Pacer>>,
) -> TenantBackup {
    let _slot = slots.acquire_owned().await.expect("never closed");
    let _shared = exclusive.read_owned().await;
    let t = tenant.clone();
    let s = source.clone();
    let attempt = Timestamp::now();
    match blocking(move || backup_tenant(&config, &t, &s, cancel, read_rate)).await {
        Ok(done) => done,
        Err(Error::Cancelled) => {
            let mut t = TenantBackup::failed(tenant, &source, attempt, String::new());
            t.cancelled = true;
            t
        }
        Err(e) => TenantBackup::failed(tenant, &source, attempt, e.to_string()),
    }
}

fn backup_tenant(
    config: &Config,
    tenant: &str,
    source: &str,
    cancel: Cancel,
    read_rate: Option<Arc<Pacer>>,
) -> Result<TenantBackup> {
    let attempt = Timestamp::now();
    let started = Instant::now();
    let repo = Repository::open_target(config.primary(), &config.key)?;
    let job = crate::job::backup_audit_ship(
        config,
        &repo,
        &BackupOptions {
            tenants: vec![tenant.to_string()],
            sources: vec![source.to_string()],
            compression: config.repository.compression,
            pack_size: config.repository.pack_size,
            cancel: cancel.clone(),
            read_rate,
            ..Default::default()
        },
        Some(ShipOptions {
            cancel,
            ..config.ship_options()
        }),
        |report, audit_failed| {
            for (target, e) in audit_failed {
                tracing::warn!(target_name = %target, "audit record not written: {e}");
            }
            if let Some(f) = report.failed.first() {
                tracing::error!(tenant, source, "backup failed: {}", f.error);
            }
            if let Some(s) = report.snapshots.last() {
                tracing::info!(
                    tenant, source, snapshot = %s.id.short(), files = s.snapshot.files,
                    bytes_read = s.snapshot.bytes_read, bytes_added = s.snapshot.bytes_added,
                    seconds = format!("{:.1}", s.seconds), "snapshot taken"
                );
            }
        },
    )?;
    let report = &job.backup;
    let mut run = BackupRun {
        tenant: tenant.to_string(),
        source: source.to_string(),
        last_attempt: Some(attempt.to_string()),
        last_duration_seconds: started.elapsed().as_secs_f64(),
        ..Default::default()
    };
    if let Some(f) = report.failed.first() {
        run.last_error = Some(f.error.clone());
    }
    let mut out = TenantBackup::new(tenant.to_string(), run);
    out.cancelled = report.cancelled && report.snapshots.is_empty() && report.failed.is_empty();
    let Some(s) = report.snapshots.last() else {
        return Ok(out);
    };
    out.run.last_success = Some(attempt.to_string());
    out.run.last_snapshot = Some(s.id.to_hex());
    out.run.bytes_read = s.snapshot.bytes_read;
    out.run.bytes_added = s.snapshot.bytes_added;
    for r in &job.ships {
        out.shipped_bytes += r.copied_bytes;
        out.shipped_objects += r.copied as u64;
        if r.ok() {
            tracing::info!(tenant, target_name = %r.target, objects = r.copied, bytes = r.copied_bytes, "shipped");
            out.shipped_to.push(r.target.clone());
        }
    }
    out.ship_failed = job.ship_failed;
    Ok(out)
}
