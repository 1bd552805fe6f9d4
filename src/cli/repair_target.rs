//! `gallra repair-target`.

use clap::Args;

use gallra::config::Config;
use gallra::ship::ShipOptions;

use super::output::{print_json, print_ship_report};

#[derive(Args)]
pub struct RepairTargetArgs {
    /// The target to rebuild
    name: String,
    /// Copy from this target (default: the first other target that has the repository)
    #[arg(long, value_name = "NAME")]
    from: Option<String>,
    /// Read every copied object back and check its hash
    #[arg(long)]
    verify: bool,
    /// Copy what the source held at TIME (an S3 target's old versions, after an attack); needs --from
    #[arg(long, value_name = "TIME", requires = "from")]
    as_of: Option<String>,
}

pub fn run(config: &Config, json_out: bool, args: RepairTargetArgs) -> anyhow::Result<i32> {
    let name = &args.name;
    let as_of = args
        .as_of
        .as_deref()
        .map(|t| super::parse_moment(config, "--as-of", t))
        .transpose()?;
    let report = gallra::repair::repair_target(
        config,
        name,
        args.from.as_deref(),
        as_of,
        ShipOptions {
            verify: args.verify,
            progress: !json_out,
            host: config.agent.host.clone(),
            retention: Some(config.retention_expiry()),
            ..Default::default()
        },
    )?;
    for r in &report.rejected {
        eprintln!("error: repair of target {name}: {}", r.error);
    }
    for f in &report.failed {
        eprintln!(
            "error: repair of target {name}: tenant {}: {}",
            f.tenant, f.error
        );
    }
    if json_out {
        print_json(&report)?;
    } else {
        print_ship_report(&report);
    }
    Ok(if report.ok() { 0 } else { 1 })
}
