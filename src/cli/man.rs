//! `gallra man`, generated from the command's clap definition.

use clap::{Args, CommandFactory};

#[derive(Args)]
pub struct ManArgs {}

pub fn run(_args: ManArgs) -> anyhow::Result<i32> {
    clap_mangen::Man::new(crate::Cli::command()).render(&mut std::io::stdout())?;
    Ok(0)
}
