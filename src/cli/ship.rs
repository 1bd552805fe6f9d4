//! `gallra ship`.

use clap::Args;
use serde_json::Value;

use gallra::config::{Config, Target};
use gallra::error::Error;
use gallra::ship::{self, ShipOptions};

use super::output::{print_json, print_ship_report};

#[derive(Args)]
pub struct ShipArgs {
    /// Only this target (repeatable; default: every secondary)
    #[arg(long, value_name = "NAME")]
    target: Vec<String>,
    /// Only this tenant (repeatable)
    #[arg(long)]
    tenant: Vec<String>,
    /// Read every copied object back and check its hash
    #[arg(long)]
    verify: bool,
}

pub fn run(config: &Config, json_out: bool, args: ShipArgs) -> anyhow::Result<i32> {
    let targets: Vec<&Target> = if args.target.is_empty() {
        config.secondaries().collect()
    } else {
        let mut v = Vec::new();
        for name in &args.target {
            let t = config.target(name)?;
            if t.primary {
                anyhow::bail!(Error::Usage(format!(
                    "target {name} is the primary: ship copies from it, not to it (to rebuild it, use `gallra repair-target {name}`)"
                )));
            }
            v.push(t);
        }
        v
    };
    if targets.is_empty() {
        anyhow::bail!(Error::Usage(format!(
            "{} names no secondary target to ship to",
            config.path.display()
        )));
    }
    let (reports, failed) = ship::ship_to(
        config.primary(),
        &config.key,
        &targets,
        &ShipOptions {
            tenants: args.tenant,
            verify: args.verify,
            progress: !json_out,
            ..config.ship_options()
        },
    )?;
    for f in &failed {
        eprintln!(
            "error: ship to target {} failed: {}",
            f.target_or_empty(),
            f.error
        );
    }
    if json_out {
        // The reports, then each target that failed as {target, error}.
        let mut all: Vec<Value> = reports
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        for f in &failed {
            all.push(serde_json::to_value(gallra::failure::json::ship_one(f))?);
        }
        print_json(&all)?;
    } else {
        reports.iter().for_each(print_ship_report);
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}
