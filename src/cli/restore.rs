//! `gallra restore`.

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

use gallra::config::Config;
use gallra::restore::{self, OpenSnapshot, RestoreOptions, RestoreReport};

use super::TargetArg;
use super::output::{esc, human_bytes, print_json};

#[derive(Args)]
pub struct RestoreArgs {
    snapshot: String,
    /// Directory to restore into
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Restore only this path of the snapshot
    #[arg(long, value_name = "P")]
    path: Option<String>,
    /// Check every restored file against its recorded SHA-256
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    target: TargetArg,
}

/// `restore --json`: the report and the full id of the snapshot restored.
#[derive(Serialize)]
struct RestoreJson<'a> {
    snapshot: String,
    #[serde(flatten)]
    report: &'a RestoreReport,
}

pub fn run(config: &Config, json_out: bool, args: RestoreArgs) -> anyhow::Result<i32> {
    let repo = args.target.open(config)?;
    let snap = OpenSnapshot::open(&repo, &args.snapshot)?;
    let verify = args.verify;
    let report = restore::restore(
        &snap,
        &RestoreOptions {
            to: args.to.clone(),
            path: args.path,
            verify,
        },
    )
    .with_context(|| format!("restore of snapshot {}", snap.id.short()))?;
    for e in &report.errors {
        eprintln!("error: {}", esc(&e.to_string()));
    }
    if json_out {
        print_json(&RestoreJson {
            snapshot: snap.id.to_hex(),
            report: &report,
        })?;
    } else {
        println!(
            "restored snapshot {} ({}/{}) to {}: {} files, {} dirs, {} symlinks, {}{}; {:.1}s",
            snap.id.short(),
            snap.snapshot.tenant,
            snap.snapshot.source,
            args.to.display(),
            report.files,
            report.dirs,
            report.symlinks,
            human_bytes(report.bytes),
            if verify {
                format!(", {} verified", report.verified)
            } else {
                String::new()
            },
            report.seconds
        );
    }
    Ok(if report.errors.is_empty() { 0 } else { 1 })
}
