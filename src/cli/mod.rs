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
    /// Read the target as it was at TIME (an S3 target's old versions, after an attack): 2026-12-01T03:00:00Z, or a date and time in the configured time zone
    #[arg(long, value_name = "TIME", requires = "target")]
    as_of: Option<String>,
}

impl TargetArg {
    /// Opens the repository on the named target, else on the primary; with
    /// `--as-of`, as it was then.
    pub fn open(&self, config: &Config) -> anyhow::Result<Repository> {
        let t = match &self.target {
            Some(name) => config.target(name)?,
            None => config.primary(),
        };
        match &self.as_of {
            None => Ok(Repository::open_target(t, &config.key)?),
            Some(text) => {
                let at = parse_moment(config, "--as-of", text)?;
                let past = gallra::store::Store::open(t)?.as_of(at)?;
                Ok(Repository::open(past, &config.key)?)
            }
        }
    }
}

/// A moment on the command line: a timestamp (`2026-12-01T03:00:00Z`), or
/// a date with or without a time of day (`2026-12-01 03:00`), read in the
/// configured time zone.
pub fn parse_moment(config: &Config, flag: &str, text: &str) -> anyhow::Result<jiff::Timestamp> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let civil = text
        .parse::<jiff::civil::DateTime>()
        .or_else(|_| text.parse::<jiff::civil::Date>().map(|d| d.at(0, 0, 0, 0)))
        .map_err(|_| {
            gallra::Error::Usage(format!(
                "{flag} {text:?}: expected a time like 2026-12-01T03:00:00Z or 2026-12-01 03:00"
            ))
        })?;
    Ok(civil
        .to_zoned(config.policy.time_zone.clone())
        .map_err(|e| gallra::Error::Usage(format!("{flag} {text:?}: {e}")))?
        .timestamp())
}
