//! `gallra drill` and `gallra drill history`.

use clap::{Args, Subcommand};
use jiff::Timestamp;
use std::path::PathBuf;

use gallra::audit::AuditLog;
use gallra::config::Config;
use gallra::drill::{self, DrillResult, ReportFormat, ReportHeader, Selection};
use gallra::error::Error;
use gallra::text::{escape_control, human_age, short_hex};

use super::output::{human_bytes, print_json};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DrillArgs {
    #[command(subcommand)]
    pub command: Option<DrillCommand>,
    /// Drill the latest snapshot of each source of this tenant (repeatable)
    #[arg(long, conflicts_with_all = ["snapshot", "sample", "seed"])]
    pub tenant: Vec<String>,
    /// Drill this snapshot (id or unique prefix)
    #[arg(long, value_name = "ID", conflicts_with_all = ["sample", "seed"])]
    pub snapshot: Option<String>,
    /// Drill this many tenants chosen at random (default: [drill] sample)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub sample: Option<u32>,
    /// Seed of the random choice, to repeat an earlier drill
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Restore from this target (default: [drill] target, else the first secondary)
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Restore into this folder; what the drill puts there is removed afterwards
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// The latest snapshot of each drilled source must be younger than this (e.g. 26h, 2 days)
    #[arg(long, value_name = "DURATION")]
    pub max_age: Option<String>,
    /// Write a report for an auditor: HTML if FILE ends in .html, else Markdown
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum DrillCommand {
    /// List past drills from the audit trail
    History {
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub fn drill(config: &Config, json_out: bool, args: DrillArgs) -> anyhow::Result<i32> {
    if let Some(DrillCommand::History { tenant }) = args.command {
        return history(config, json_out, tenant.as_deref());
    }
    let target_name = args.target.as_deref().unwrap_or(&config.drill.target);
    let target = config.target(target_name)?;
    let max_age = match &args.max_age {
        Some(text) => gallra::lifecycle::rules::parse_period(text)
            .map_err(|m| Error::Usage(format!("--max-age: {m}")))?,
        None => config.drill.max_age,
    };
    let selection = if let Some(id) = &args.snapshot {
        Selection::Snapshot(id.clone())
    } else if !args.tenant.is_empty() {
        Selection::Tenants(args.tenant.clone())
    } else {
        Selection::Sample {
            count: args.sample.map_or(config.drill.sample, |n| n as usize),
            seed: args
                .seed
                .unwrap_or_else(|| u64::from_le_bytes(gallra::crypto::random_bytes::<8>())),
        }
    };

    let scratch = args.scratch.clone().unwrap_or(config.drill.scratch.clone());
    let run = drill::drill_and_record(config, target, &selection, scratch, max_age)?;
    for w in &run.warnings {
        eprintln!("warning: {}", escape_control(w));
    }
    let (results, records, now, tz) = (run.results, run.records, run.now, &config.policy.time_zone);
    let described = selection.describe();
    if let Selection::Sample { count, seed } = &selection {
        let line = format!(
            "drilling {} of the tenants on target {} ({count} asked), chosen with seed {seed}: repeat with --seed {seed}",
            run.tenants, target.name
        );
        if json_out {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    if let Some(file) = &args.report {
        let head = ReportHeader {
            host: &config.agent.host,
            target: &target.name,
            time: now,
            time_zone: tz,
            selection: &described,
            max_age,
            records: &records,
        };
        let text = drill::report(&results, &head, ReportFormat::for_path(file));
        std::fs::write(file, text).map_err(|e| Error::io(file, e))?;
    }

    for r in &results {
        for p in &r.problems {
            eprintln!(
                "error: drill of {} {}: {}",
                r.tenant,
                short_hex(&r.snapshot, 12),
                escape_control(&p.to_string())
            );
        }
    }
    if json_out {
        print_json(&serde_json::to_value(&results)?)?;
    } else {
        print_table(&results, now);
        if let Some(file) = &args.report {
            println!("report written to {}", file.display());
        }
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    if results.is_empty() {
        eprintln!(
            "error: nothing drilled: target {} holds no snapshot to restore",
            target.name
        );
        return Ok(1);
    }
    if !json_out {
        match failed {
            0 => println!("all {} drills passed", results.len()),
            n => println!("{n} of {} drills FAILED", results.len()),
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

fn print_table(results: &[DrillResult], now: Timestamp) {
    println!(
        "{:<16} {:<10} {:<12} {:>8} {:>7} {:>10} {:>8} {:>8}  result",
        "tenant", "source", "snapshot", "age", "files", "bytes", "seconds", "MB/s"
    );
    for r in results {
        let age = r
            .taken
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map_or("-".into(), |t| human_age(now.duration_since(t)));
        let result = match (r.ok, r.problems.len()) {
            (true, _) => "ok".to_string(),
            (false, 1) if r.fresh == Some(false) => "FAILED (stale)".to_string(),
            (false, 1) => "FAILED".to_string(),
            (false, n) => format!("FAILED ({n} problems)"),
        };
        println!(
            "{:<16} {:<10} {:<12} {:>8} {:>7} {:>10} {:>8.2} {:>8.1}  {result}",
            r.tenant,
            if r.source.is_empty() { "-" } else { &r.source },
            if r.snapshot.is_empty() {
                "-"
            } else {
                short_hex(&r.snapshot, 12)
            },
            age,
            r.files,
            human_bytes(r.bytes),
            r.seconds,
            r.mb_per_s
        );
    }
}

fn history(config: &Config, json_out: bool, tenant: Option<&str>) -> anyhow::Result<i32> {
    let audit = AuditLog::open(&config.agent.state_dir, &config.agent.host)?;
    let past = drill::history(&audit.records()?, tenant);
    if json_out {
        print_json(&serde_json::to_value(&past)?)?;
        return Ok(0);
    }
    if past.is_empty() {
        println!(
            "no drills in the audit trail{}",
            tenant.map_or(String::new(), |t| format!(" for tenant {t}"))
        );
        return Ok(0);
    }
    println!(
        "{:<21} {:<16} {:<10} {:<12} {:<10} {:>7} {:>10} {:>8}  result",
        "time", "tenant", "source", "snapshot", "target", "files", "bytes", "seconds"
    );
    for d in &past {
        println!(
            "{:<21} {:<16} {:<10} {:<12} {:<10} {:>7} {:>10} {:>8}  {}",
            d.time,
            d.tenant,
            d.source,
            short_hex(&d.snapshot, 12),
            d.target,
            d.files,
            human_bytes(d.bytes),
            d.seconds.map_or("-".into(), |s| format!("{s:.2}")),
            match (&d.ok, &d.error) {
                (true, _) => "ok".to_string(),
                (false, Some(e)) => format!("FAILED: {e}"),
                (false, None) => "FAILED".to_string(),
            }
        );
    }
    Ok(0)
}
