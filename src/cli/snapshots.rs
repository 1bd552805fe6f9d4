//! `gallra snapshots`: each snapshot with when it expires and why.

use clap::Args;
use serde::Serialize;

use gallra::config::Config;
use gallra::error::Error;
use gallra::format::Id;
use gallra::format::snapshot::Snapshot;

use super::TargetArg;
use super::json::SnapshotJson;
use super::output::{esc, human_bytes, print_json, rfc3339};

#[derive(Args)]
pub struct SnapshotsArgs {
    /// Only this tenant's snapshots
    #[arg(long)]
    tenant: Vec<String>,
    #[command(flatten)]
    target: TargetArg,
}

/// A snapshot in `snapshots --json`, with when the lifecycle would delete
/// it, why, and by which rule.
#[derive(Serialize)]
struct SnapshotExpiry<'a> {
    #[serde(flatten)]
    snapshot: SnapshotJson<'a>,
    expires: jiff::Timestamp,
    reason: &'static str,
    rule: String,
}

pub fn run(config: &Config, json_out: bool, args: SnapshotsArgs) -> anyhow::Result<i32> {
    let tenant = &args.tenant;
    let repo = args.target.open(config)?;
    let mut all = Vec::new();
    // One object that cannot be read is named, and the rest listed.
    let mut bad = Vec::new();
    for name in repo.tenant_names()? {
        if !tenant.is_empty() && !tenant.contains(&name) {
            continue;
        }
        let t = match repo.tenant(&name) {
            Ok(t) => t,
            // A folder holding only locks: a first backup is starting.
            Err(Error::NotFound { .. }) => continue,
            Err(e) => {
                bad.push(format!("tenant {name}: {e}"));
                continue;
            }
        };
        match repo.readable_snapshots(&t) {
            Ok((snaps, unreadable)) => {
                all.extend(snaps);
                bad.extend(
                    unreadable
                        .iter()
                        .map(|(_, e)| format!("tenant {name}: {e}")),
                );
            }
            Err(e) => bad.push(format!("tenant {name}: {e}")),
        }
    }
    all.sort_by_key(|(id, s)| (s.time_secs, s.time_nanos, s.tenant.clone(), *id));
    let events = gallra::lifecycle::journal::load_target(&repo)?;
    bad.extend(events.unreadable.iter().map(|id| {
        let path = gallra::layout::event_path(id);
        format!("event object {path} cannot be read; expiries shown without it")
    }));
    let states = gallra::lifecycle::events::fold(&events.events);
    let expiry = |id: &Id, s: &Snapshot| {
        gallra::lifecycle::plan::expiry(
            &config.policy,
            states.get(&s.tenant),
            &gallra::lifecycle::SnapshotFacts {
                tenant: s.tenant.clone(),
                id: *id,
                target: repo.store.name().to_string(),
                created: s.timestamp(),
                category: s.category.clone(),
                source: s.source.clone(),
            },
        )
    };
    if json_out {
        print_json(
            &all.iter()
                .map(|(id, s)| {
                    let e = expiry(id, s);
                    SnapshotExpiry {
                        snapshot: SnapshotJson::new(id, s),
                        expires: e.at,
                        reason: e.reason.as_str(),
                        rule: e.rule,
                    }
                })
                .collect::<Vec<_>>(),
        )?;
    } else {
        println!(
            "{:<12}  {:<16} {:<10} {:<10} {:<25} {:<10} {:>8} {:>10}  {:<21} reason",
            "id", "tenant", "source", "category", "time", "host", "files", "size", "expires"
        );
        for (id, s) in &all {
            let e = expiry(id, s);
            let held = states.get(&s.tenant).is_some_and(|st| st.held());
            println!(
                "{:<12}  {:<16} {:<10} {:<10} {:<25} {:<10} {:>8} {:>10}  {:<21} {}{}",
                id.short(),
                s.tenant,
                s.source,
                s.category,
                rfc3339(s.time_secs, 0),
                s.host,
                s.files,
                human_bytes(s.bytes),
                e.at.to_zoned(config.policy.time_zone.clone())
                    .strftime("%Y-%m-%d %H:%M %Z"),
                e.reason.as_str(),
                if held { " (held)" } else { "" }
            );
        }
    }
    for b in &bad {
        eprintln!("error: target {}: {}", repo.store.name(), esc(b));
    }
    Ok(i32::from(!bad.is_empty()))
}
