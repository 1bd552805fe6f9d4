//! `[drill]`: what a restore drill does when the command line does not say.

use serde::Deserialize;
use std::path::PathBuf;

use super::{Agent, ConfigFile, Target};
use crate::error::Result;
use crate::schedule::Schedule;

#[derive(Debug, Clone)]
pub struct DrillSettings {
    /// The target drills restore from: by default the first secondary (the
    /// copy a disaster leaves), or the primary if there is no other.
    pub target: String,
    /// How many tenants a drill without `--tenant` or `--snapshot` samples.
    pub sample: usize,
    /// The latest snapshot of every drilled source must be younger than this.
    pub max_age: jiff::Span,
    /// Where drills restore to; its contents are removed afterwards.
    pub scratch: PathBuf,
    /// When the agent runs a drill; `None` when set to "off".
    pub schedule: Option<Schedule>,
}

pub const DEFAULT_DRILL_MAX_AGE: &str = "26h";
pub const DEFAULT_DRILL_SAMPLE: usize = 2;
pub const DEFAULT_DRILL_SCHEDULE: &str = "cron 30 4 * * 0";

/// The `[drill]` table as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDrill {
    target: Option<String>,
    sample: Option<usize>,
    max_age: Option<String>,
    scratch: Option<PathBuf>,
    schedule: Option<String>,
}

pub(super) fn parse(
    d: RawDrill,
    targets: &[Target],
    agent: &Agent,
    file: &ConfigFile,
) -> Result<DrillSettings> {
    let err = |message: String| file.error(message);
    let target = match d.target {
        Some(name) if targets.iter().any(|t| t.name == name) => name,
        Some(name) => {
            return Err(err(format!("[drill] target: no [[target]] named {name:?}")));
        }
        None => targets
            .iter()
            .find(|t| !t.primary)
            .unwrap_or(&targets[0])
            .name
            .clone(),
    };
    let sample = d.sample.unwrap_or(DEFAULT_DRILL_SAMPLE);
    if sample == 0 {
        return Err(err("[drill] sample: must be at least 1".into()));
    }
    let max_age = d.max_age.as_deref().unwrap_or(DEFAULT_DRILL_MAX_AGE);
    let max_age =
        crate::units::parse_period(max_age).map_err(|m| err(format!("[drill] max_age: {m}")))?;
    let scratch = d
        .scratch
        .map(|p| file.resolve(p))
        .unwrap_or_else(|| agent.state_dir.join("drill"));
    let schedule = match d.schedule.as_deref().map(str::trim) {
        Some("off") => None,
        text => Some(file.schedule("[drill] schedule", text, DEFAULT_DRILL_SCHEDULE)?),
    };
    Ok(DrillSettings {
        target,
        sample,
        max_age,
        scratch,
        schedule,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::schedule::Schedule;

    #[test]
    fn drill_settings_default_to_the_offsite_copy_and_are_checked() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.drill.target, c.primary().name, "the only target");
        assert_eq!(
            (c.drill.sample, format!("{:#}", c.drill.max_age)),
            (2, "26h".into())
        );
        assert_eq!(c.drill.scratch, c.agent.state_dir.join("drill"));
        let two =
            MINIMAL.to_string() + "[[target]]\nname = \"offsite\"\nurl = \"file:///srv/offsite\"\n";
        let two = two.replacen("[[target]]", "[[target]]\nprimary = true", 1);
        assert_eq!(parse(&two).unwrap().drill.target, "offsite");
        for (table, names) in [
            (
                "[drill]\ntarget = \"elsewhere\"\n",
                ["[drill] target", "elsewhere"],
            ),
            ("[drill]\nmax_age = \"soon\"\n", ["[drill] max_age", "soon"]),
            ("[drill]\nsample = 0\n", ["[drill] sample", "at least 1"]),
            ("[drill]\nschedul = \"daily\"\n", ["line", "schedul"]),
        ] {
            let msg = parse(&format!("{MINIMAL}\n{table}"))
                .unwrap_err()
                .to_string();
            assert!(names.iter().all(|n| msg.contains(n)), "{msg}");
        }
    }

    #[test]
    fn drill_schedule_off_or_a_schedule() {
        let drill = |table: &str| parse(&format!("{MINIMAL}\n[drill]\n{table}\n"));
        assert_eq!(drill("schedule = \"off\"").unwrap().drill.schedule, None);
        assert_eq!(drill("schedule = \" off \"").unwrap().drill.schedule, None);
        assert_eq!(
            drill("schedule = \"daily 05:30\"").unwrap().drill.schedule,
            Some(Schedule::Daily {
                hour: 5,
                minute: 30
            })
        );
        for bad in ["sometimes", "daily 5", "cron 0 4 * *", ""] {
            refused(
                &format!("{MINIMAL}\n[drill]\nschedule = {bad:?}\n"),
                &["[drill] schedule"],
            );
        }
    }
}
