//! `gallra check`.

use clap::Args;
use serde::Serialize;

use gallra::check::{self, ReadData};
use gallra::config::Config;
use gallra::error::Error;

use super::TargetArg;
use super::output::print_json;

#[derive(Args)]
pub struct CheckArgs {
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read this percentage of packs, chosen at random
    #[arg(long, value_name = "PCT")]
    read_data_subset: Option<f64>,
    #[command(flatten)]
    target: TargetArg,
}

/// `check --json`: the report and whether the repository is whole.
#[derive(Serialize)]
struct CheckJson<'a> {
    ok: bool,
    #[serde(flatten)]
    report: &'a check::CheckReport,
}

pub fn run(config: &Config, json_out: bool, args: CheckArgs) -> anyhow::Result<i32> {
    let repo = args.target.open(config)?;
    let mode = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(p)) if (0.0..=100.0).contains(&p) => ReadData::Subset(p),
        (false, Some(p)) => anyhow::bail!(Error::Usage(format!(
            "--read-data-subset {p}: give a percentage from 0 to 100"
        ))),
        (false, None) => ReadData::None,
    };
    let report = check::run(&repo, mode, &config.agent.host)?;
    for f in &report.errors {
        eprintln!("error: {}: {}", f.object, f.message);
    }
    if json_out {
        print_json(&CheckJson {
            ok: report.ok(),
            report: &report,
        })?;
    } else {
        for f in &report.unreferenced {
            println!("info: {}: {}", f.object, f.message);
        }
        println!(
            "{}: {} snapshots, {} packs, {} blobs{}; {} errors",
            if report.ok() { "ok" } else { "DAMAGED" },
            report.snapshots,
            report.packs,
            report.blobs,
            if mode == ReadData::None {
                String::new()
            } else {
                format!(", {} blobs read and authenticated", report.blobs_read)
            },
            report.errors.len()
        );
    }
    Ok(if report.ok() { 0 } else { 1 })
}
