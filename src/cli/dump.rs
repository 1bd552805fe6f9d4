//! `gallra dump`.

use clap::Args;
use std::io::Write;

use gallra::config::Config;
use gallra::restore::{self, OpenSnapshot};

use super::TargetArg;

#[derive(Args)]
pub struct DumpArgs {
    snapshot: String,
    path: String,
    #[command(flatten)]
    target: TargetArg,
}

pub fn run(config: &Config, args: DumpArgs) -> anyhow::Result<i32> {
    let repo = args.target.open(config)?;
    let snap = OpenSnapshot::open(&repo, &args.snapshot)?;
    let mut out = std::io::stdout().lock();
    restore::dump(&snap, &args.path, &mut out)?;
    out.flush()?;
    Ok(0)
}
