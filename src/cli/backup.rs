//! `gallra backup`: back up, audit, then ship what was backed up.

use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;

use gallra::backup::{self, BackupOptions};
use gallra::config::Config;
use gallra::error::Error;
use gallra::failure::Failure;
use gallra::format::snapshot::Snapshot;
use gallra::job::JobReport;
use gallra::lifecycle::gate::Refusal;
use gallra::repo::Repository;
use gallra::ship::{ShipOptions, ShipReport};

use super::json::SnapshotJson;
use super::output::{esc, human_bytes, print_json, print_ship_report};

#[derive(Args)]
pub struct BackupArgs {
    /// Only this tenant (repeatable)
    #[arg(long)]
    tenant: Vec<String>,
    /// Record this creation time (RFC 3339) instead of now
    #[arg(long, value_name = "RFC3339")]
    time: Option<String>,
    /// Tag the snapshots (repeatable)
    #[arg(long, value_name = "K=V")]
    tag: Vec<String>,
    /// Do not ship to the secondary targets afterwards
    #[arg(long)]
    no_ship: bool,
    /// Back up the tenants named by --tenant even if their contract has ended or their erasure was requested (with --yes)
    #[arg(long)]
    include_ended: bool,
    /// Confirm --include-ended
    #[arg(long)]
    yes: bool,
}

pub fn run(config: &Config, json_out: bool, args: BackupArgs) -> anyhow::Result<i32> {
    // Safe beside the agent (tenant locks, the audit log's lock),
    // but the operator should know that its scheduled backups of the
    // same sources may run at the same time.
    if let Some(pid) = gallra::agent::running_agent(&config.agent.state_dir) {
        eprintln!(
            "warning: the gallra agent (pid {pid}) runs on state folder {}; its scheduled backups may run beside this one",
            config.agent.state_dir.display()
        );
    }
    let time = parse_time(args.time.as_deref())?;
    let tags = parse_tags(&args.tag)?;
    let now = jiff::Timestamp::now();
    if let Some(t) = time {
        gallra::lifecycle::gate::check_backup_time(t, now)?;
    }
    if args.include_ended && (args.tenant.is_empty() || !args.yes) {
        return Err(Error::Usage(
            "--include-ended backs up ended or erased tenants: name each with --tenant and confirm with --yes".into(),
        )
        .into());
    }
    let repo = Repository::open_target(config.primary(), &config.key)?;
    let (jobs, _) = backup::plan_jobs(config, &args.tenant);
    let mut wanted: Vec<String> = jobs.iter().map(|j| j.tenant.clone()).collect();
    wanted.extend(args.tenant.iter().cloned());
    wanted.sort();
    wanted.dedup();
    let confirmed = if args.include_ended {
        args.tenant.clone()
    } else {
        Vec::new()
    };
    let refused =
        gallra::lifecycle::gate::backup_refusals(&repo, &config.policy, &wanted, &confirmed, now);
    let mut refusal_failed = false;
    for (tenant, r) in &refused {
        // A tenant asked for by name, or a fault, fails the run; an
        // ended tenant found among the folders is routine.
        if r.fault || args.tenant.contains(tenant) {
            refusal_failed = true;
            eprintln!("error: tenant {tenant} not backed up: {}", r.why);
        } else {
            eprintln!("skipped: tenant {tenant}: {}", r.why);
        }
    }
    let tenants = if refused.is_empty() {
        args.tenant
    } else {
        wanted
            .into_iter()
            .filter(|t| !refused.contains_key(t))
            .collect()
    };
    let job = if !refused.is_empty() && tenants.is_empty() {
        JobReport::default()
    } else {
        let ship = ShipOptions {
            verify: false,
            progress: !json_out,
            ..config.ship_options()
        };
        gallra::job::backup_audit_ship(
            config,
            &repo,
            &BackupOptions {
                tenants,
                time,
                tags,
                progress: !json_out,
                compression: config.repository.compression,
                pack_size: config.repository.pack_size,
                // The nightly service runs this command: it is as
                // gentle on the customers' disks as the agent.
                read_rate: config
                    .agent
                    .max_read
                    .map(|r| std::sync::Arc::new(gallra::pace::Pacer::new(r))),
                ..BackupOptions::default()
            },
            (!args.no_ship).then_some(ship),
            |report, audit_failed| {
                for f in &report.failed {
                    eprintln!(
                        "error: source {} (tenant {}): {}",
                        f.source.as_deref().unwrap_or_default(),
                        f.tenant.as_deref().unwrap_or_default(),
                        f.error
                    );
                }
                for (target, e) in audit_failed {
                    eprintln!("warning: audit record not written to target {target}: {e}");
                }
            },
        )?
    };
    let report = &job.backup;
    for f in &job.ship_failed {
        eprintln!(
            "error: ship to target {} failed: {}; the snapshots stay on the primary and the next `gallra ship` copies them",
            f.target_or_empty(),
            f.error
        );
    }
    if json_out {
        print_json_report(&job, &refused)?;
    } else {
        print_report(&job);
    }
    Ok(
        if report.failed.is_empty() && job.ship_failed.is_empty() && !refusal_failed {
            0
        } else {
            1
        },
    )
}

/// `--time`, checked.
fn parse_time(time: Option<&str>) -> anyhow::Result<Option<jiff::Timestamp>> {
    let time = time
        .map(|t| {
            t.parse::<jiff::Timestamp>()
                .map_err(|e| Error::Usage(format!("--time {t:?}: {e}")))
        })
        .transpose()?;
    Ok(time)
}

/// `--tag K=V`, each split at its first `=`.
fn parse_tags(tag: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut tags = Vec::new();
    for t in tag {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--tag {t:?}: expected K=V")))?;
        tags.push((k.to_string(), v.to_string()));
    }
    Ok(tags)
}

/// A snapshot taken, in `backup --json`: the snapshot as `snapshots --json`
/// prints it, with what this backup read, added and stored, and its
/// warnings.
#[derive(Serialize)]
struct SnapshotTakenJson<'a> {
    #[serde(flatten)]
    snapshot: SnapshotJson<'a>,
    bytes_read: u64,
    bytes_added: u64,
    bytes_stored: u64,
    seconds: f64,
    warnings: &'a [String],
}

/// A tenant the backup gate skipped, and why.
#[derive(Serialize)]
struct SkippedJson<'a> {
    tenant: &'a str,
    reason: &'a str,
}

/// The `--json` document: each snapshot with its sizes and warnings, the
/// failures, the ships and the tenants skipped, and the totals.
#[derive(Serialize)]
struct BackupJson<'a> {
    snapshots: Vec<SnapshotTakenJson<'a>>,
    #[serde(serialize_with = "gallra::failure::json::backup")]
    failed: &'a [Failure],
    shipped: &'a [ShipReport],
    #[serde(serialize_with = "gallra::failure::json::ship")]
    ship_failed: &'a [Failure],
    skipped: Vec<SkippedJson<'a>>,
    files: u64,
    bytes_read: u64,
    bytes_added: u64,
    bytes_stored: u64,
    seconds: f64,
}

fn print_json_report(job: &JobReport, refused: &BTreeMap<String, Refusal>) -> anyhow::Result<()> {
    let report = &job.backup;
    let total =
        |f: fn(&Snapshot) -> u64| -> u64 { report.snapshots.iter().map(|s| f(&s.snapshot)).sum() };
    print_json(&BackupJson {
        snapshots: report
            .snapshots
            .iter()
            .map(|s| SnapshotTakenJson {
                snapshot: SnapshotJson::new(&s.id, &s.snapshot),
                bytes_read: s.snapshot.bytes_read,
                bytes_added: s.snapshot.bytes_added,
                bytes_stored: s.snapshot.bytes_stored,
                seconds: s.seconds,
                warnings: &s.snapshot.warnings,
            })
            .collect(),
        failed: &report.failed,
        shipped: &job.ships,
        ship_failed: &job.ship_failed,
        skipped: refused
            .iter()
            .map(|(tenant, r)| SkippedJson {
                tenant,
                reason: &r.why,
            })
            .collect(),
        files: total(|s| s.files),
        bytes_read: total(|s| s.bytes_read),
        bytes_added: total(|s| s.bytes_added),
        bytes_stored: total(|s| s.bytes_stored),
        seconds: report.seconds,
    })
}

fn print_report(job: &JobReport) {
    let report = &job.backup;
    let total =
        |f: fn(&Snapshot) -> u64| -> u64 { report.snapshots.iter().map(|s| f(&s.snapshot)).sum() };
    for s in &report.snapshots {
        let snap = &s.snapshot;
        println!(
            "snapshot {} {}/{}: {} files, {} read, {} new, {} stored, {:.1}s{}",
            s.id.short(),
            snap.tenant,
            snap.source,
            snap.files,
            human_bytes(snap.bytes_read),
            human_bytes(snap.bytes_added),
            human_bytes(snap.bytes_stored),
            s.seconds,
            if snap.warnings.is_empty() {
                String::new()
            } else {
                format!(", {} warnings", snap.warnings.len())
            }
        );
        for w in &snap.warnings {
            eprintln!("warning: {}/{}: {}", snap.tenant, snap.source, esc(w));
        }
    }
    println!(
        "{} snapshots, {} failed; {} files, {} read, {} new after dedup, {} stored after compression; {:.1}s",
        report.snapshots.len(),
        report.failed.len(),
        total(|s| s.files),
        human_bytes(total(|s| s.bytes_read)),
        human_bytes(total(|s| s.bytes_added)),
        human_bytes(total(|s| s.bytes_stored)),
        report.seconds
    );
    for r in &job.ships {
        print_ship_report(r);
    }
}
