//! `gallra quickstart`.

use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct QuickstartArgs {
    #[arg(long, default_value = "gallra-quickstart")]
    dir: PathBuf,
}

pub fn run(args: QuickstartArgs) -> anyhow::Result<i32> {
    gallra::quickstart::run(&args.dir, &std::env::current_exe()?)?;
    Ok(0)
}
