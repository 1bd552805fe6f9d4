//! `gallra unlock`.

use clap::Args;

use gallra::config::{Config, Target};
use gallra::error::Error;
use gallra::store::Store;

use super::output::print_json;

#[derive(Args)]
pub struct UnlockArgs {
    #[arg(long)]
    tenant: String,
    /// Only on this target
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
}

pub fn run(config: &Config, json_out: bool, args: UnlockArgs) -> anyhow::Result<i32> {
    let tenant = &args.tenant;
    gallra::tenant_name::check(tenant)
        .map_err(|m| Error::Usage(format!("--tenant {tenant:?}: {m}")))?;
    let targets: Vec<&Target> = match &args.target {
        Some(name) => vec![config.target(name)?],
        None => config.targets.iter().collect(),
    };
    let mut reports = Vec::new();
    for t in targets {
        reports.push(gallra::lock::unlock(
            &Store::open(t)?,
            tenant,
            &config.agent.host,
        )?);
    }
    if json_out {
        print_json(&reports)?;
    } else {
        for r in &reports {
            for l in &r.removed {
                println!("target {}: removed {l}", r.target);
            }
            for l in &r.live {
                println!("target {}: kept {l} (its holder renews it)", r.target);
            }
            if r.removed.is_empty() && r.live.is_empty() {
                println!("target {}: tenant {} has no locks", r.target, r.tenant);
            }
        }
    }
    Ok(0)
}
