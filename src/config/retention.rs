//! `[retention]` and the targets' own `retention` keys, parsed into the
//! lifecycle's `Policy` (the rules themselves are `lifecycle::rules`).

use super::{ConfigFile, Target};
use crate::error::Result;
use crate::lifecycle::Policy;
use crate::lifecycle::rules::{Retention, Rule};

pub(super) fn policy(
    retention: &Retention,
    targets: &[Target],
    time_zone: jiff::tz::TimeZone,
    file: &ConfigFile,
) -> Result<Policy> {
    if let Some(t) = targets.iter().find(|t| !t.primary && t.retention.is_some()) {
        return Err(file.error(format!(
            "[[target]] {}: retention on a secondary target is not supported: ship copies what the primary holds, so a shorter rule belongs on the primary",
            t.name
        )));
    }
    let rules: Vec<(String, Option<Rule>)> = targets
        .iter()
        .map(|t| (t.name.clone(), t.retention.clone()))
        .collect();
    Policy::new(retention, &rules, time_zone).map_err(|m| file.error(m))
}
