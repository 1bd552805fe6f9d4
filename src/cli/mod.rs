//! The commands: each has its own argument struct, calls the library and
//! prints for people or for `--json`. The work is the library's.

use clap::Args;

use gallra::config::Config;
use gallra::repo::Repository;

pub mod agent;
pub mod backup;
pub mod check;
pub mod completions;
pub mod config;
pub mod drill;
pub mod dump;
pub mod init;
pub mod json;
pub mod key;
pub mod lifecycle;
pub mod ls;
pub mod man;
pub mod output;
pub mod quickstart;
pub mod repair_target;
pub mod restore;
pub mod ship;
pub mod snapshots;
pub mod unlock;

/// `--target`, for the commands that read a snapshot.
#[derive(Args)]
pub struct TargetArg {
    /// Read from this target instead of the primary (e.g. offsite, after a disaster)
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
}

impl TargetArg {
    /// Opens the repository on the named target, else on the primary.
    pub fn open(&self, config: &Config) -> anyhow::Result<Repository> {
        let t = match &self.target {
            Some(name) => config.target(name)?,
            None => config.primary(),
        };
        Ok(Repository::open_target(t, &config.key)?)
    }
}
