//! Whether a drilled source's latest snapshot is young enough, and which
//! tenants are not expected to have one.

use std::collections::BTreeMap;

use jiff::{Timestamp, tz::TimeZone};

use super::{DrillOptions, DrillResult, Problem};
use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::repo::Repository;
use crate::text::human_age;

pub(super) fn freshness(result: &mut DrillResult, newest: &Snapshot, opts: &DrillOptions) {
    if let Some(why) = opts.not_expected_fresh.get(&result.tenant) {
        result.freshness = format!("not checked: {why}");
        return;
    }
    let taken = newest.timestamp();
    let limit = taken
        .to_zoned(opts.time_zone.clone())
        .checked_add(opts.max_age)
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MAX);
    let age = human_age(opts.now.duration_since(taken));
    if opts.now < limit {
        result.fresh = Some(true);
        result.freshness = format!("latest {age} old, under {:#}", opts.max_age);
    } else {
        result.fresh = Some(false);
        result.freshness = format!("latest {age} old, over {:#}", opts.max_age);
        result.problems.push(Problem::of_snapshot(format!(
            "stale: the latest snapshot of {}/{} was taken {} ({age} ago), longer ago than the maximum age {:#}",
            result.tenant,
            newest.source,
            taken.strftime("%Y-%m-%d %H:%M:%S UTC"),
            opts.max_age
        )));
    }
}

/// Tenants whose backups are not expected to be fresh, with why: a
/// contract whose last day has passed, or an erasure requested. Read from
/// the lifecycle events on `repo`.
pub fn not_expected_fresh(
    repo: &Repository,
    now: Timestamp,
    tz: &TimeZone,
) -> Result<BTreeMap<String, String>> {
    let events = crate::lifecycle::journal::load(repo)?;
    let today = now.to_zoned(tz.clone()).date();
    let mut out = BTreeMap::new();
    for (tenant, state) in crate::lifecycle::events::fold(&events) {
        if let Some(end) = &state.contract_end
            && end.last_day < today
        {
            out.insert(tenant, format!("contract ended {}", end.last_day));
        } else if let Some(e) = state.erasures.last() {
            let day = e.at.to_zoned(tz.clone()).date();
            out.insert(tenant, format!("erasure requested {day}"));
        }
    }
    Ok(out)
}
