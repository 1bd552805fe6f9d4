//! Each alert README.md suggests, evaluated against the metrics the agent
//! renders, in states that must fire it and states that must not: an alert
//! that fires for ever (a tenant rightly no longer backed up) is ignored,
//! one that goes quiet when its target is down misses the outage.

use std::collections::BTreeMap;

use crate::common::alerts::{README_ALERTS, Sample, fires, parse};
use gallra::agent_state::JobRun;
use gallra::status::{AgentSummary, SourceStatus, Status, TargetStatus, TenantStatus};

const NOW: &str = "2026-03-10T12:00:00Z";

fn now() -> f64 {
    NOW.parse::<jiff::Timestamp>().unwrap().as_second() as f64
}

fn hours_ago(h: i64) -> String {
    NOW.parse::<jiff::Timestamp>()
        .unwrap()
        .checked_sub(jiff::SignedDuration::from_hours(h))
        .unwrap()
        .to_string()
}

fn source(name: &str, last_backup_hours_ago: i64, backed_up: bool) -> SourceStatus {
    SourceStatus {
        source: name.into(),
        category: "site".into(),
        last_backup: Some(hours_ago(last_backup_hours_ago)),
        backed_up,
        ..Default::default()
    }
}

/// A healthy host: every alert quiet.
fn healthy() -> Status {
    Status {
        host: "web01".into(),
        time: NOW.into(),
        agent: AgentSummary {
            running: true,
            pid: Some(1),
            started: None,
            next_lifecycle: None,
            next_drill: None,
        },
        targets: vec![
            TargetStatus {
                target: "local".into(),
                primary: true,
                ok: true,
                ..Default::default()
            },
            TargetStatus {
                target: "offsite".into(),
                ok: true,
                ..Default::default()
            },
        ],
        tenants: vec![TenantStatus {
            tenant: "acme".into(),
            sources: vec![source("www", 2, true)],
            ..Default::default()
        }],
        overdue_deletions: 0,
        lifecycle: None,
        drill: Some(JobRun {
            time: hours_ago(1),
            ok: true,
            ..Default::default()
        }),
        ship: BTreeMap::new(),
        totals: Default::default(),
        errors: BTreeMap::from([("backup".into(), 2)]),
        problems: Vec::new(),
        audit_head_sequence: None,
        key_epochs: None,
    }
}

fn samples(s: &Status) -> Vec<Sample> {
    parse(&gallra::metrics::render(s))
}

/// Which label sets `alert` fires for in `s`, the scrape an hour earlier
/// being `before`.
fn firing(alert: &str, s: &Status, before: &Status) -> Vec<Vec<(String, String)>> {
    fires(alert, now(), &samples(s), &samples(before))
        .into_iter()
        .collect()
}

fn label(k: &str, v: &str) -> (String, String) {
    (k.into(), v.into())
}

#[test]
fn the_readme_suggests_exactly_the_alerts_tested_here() {
    let readme = include_str!("../../README.md");
    let block = readme
        .split("Alerts worth having")
        .nth(1)
        .and_then(|r| r.split("```promql\n").nth(1))
        .and_then(|r| r.split("```").next())
        .expect("README lists the alerts in a promql block after 'Alerts worth having'");
    let listed: Vec<&str> = block
        .lines()
        .map(|l| l.split("  #").next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(listed, README_ALERTS);
}

#[test]
fn a_healthy_host_fires_no_alert() {
    let s = healthy();
    for alert in README_ALERTS {
        assert_eq!(firing(alert, &s, &s), Vec::<Vec<_>>::new(), "{alert}");
    }
}

#[test]
fn overdue_deletions_fire_their_alert() {
    let alert = README_ALERTS[0];
    let mut s = healthy();
    s.overdue_deletions = 1;
    assert_eq!(firing(alert, &s, &s), vec![vec![label("host", "web01")]]);
}

#[test]
fn a_stale_backup_fires_the_freshness_alert_and_a_fresh_one_does_not() {
    let alert = README_ALERTS[1];
    let mut s = healthy();
    s.tenants[0].sources = vec![source("www", 27, true), source("db", 25, true)];
    assert_eq!(
        firing(alert, &s, &s),
        vec![vec![label("tenant", "acme"), label("source", "www")]]
    );
}

/// A tenant whose contract ended, or whose erasure was requested, is no
/// longer backed up on purpose; its last snapshot only ages.
#[test]
fn an_erased_tenant_has_no_freshness_series() {
    let alert = README_ALERTS[1];
    let mut s = healthy();
    s.tenants.push(TenantStatus {
        tenant: "bravo".into(),
        erasure_requested: true,
        sources: vec![source("www", 24 * 40, false)],
        ..Default::default()
    });
    assert_eq!(firing(alert, &s, &s), Vec::<Vec<_>>::new());
    assert!(
        !samples(&s)
            .iter()
            .any(|(_, l, _)| l.contains(&label("tenant", "bravo"))
                && l.len() == 2
                && l.contains(&label("source", "www"))),
        "no per-source series of bravo"
    );
}

#[test]
fn a_failed_drill_fires_its_alert_and_no_drill_yet_does_not() {
    let alert = README_ALERTS[2];
    let mut s = healthy();
    s.drill.as_mut().unwrap().ok = false;
    assert_eq!(firing(alert, &s, &s), vec![vec![label("host", "web01")]]);
    s.drill = None;
    assert_eq!(firing(alert, &s, &s), Vec::<Vec<_>>::new());
}

#[test]
fn a_backlog_fires_the_backlog_alert() {
    let alert = README_ALERTS[3];
    let mut s = healthy();
    s.targets[1].missing = 3;
    assert_eq!(
        firing(alert, &s, &s),
        vec![vec![label("target", "offsite")]]
    );
}

#[test]
fn the_backlog_alert_fires_while_the_offsite_is_down() {
    let alert = README_ALERTS[3];
    let mut s = healthy();
    s.targets[1].ok = false;
    s.targets[1].error = Some("connection refused".into());
    assert_eq!(
        firing(alert, &s, &s),
        vec![vec![label("target", "offsite")]]
    );
    // The primary has no backlog of its own, down or not.
    s.targets[0].ok = false;
    assert_eq!(
        firing(alert, &s, &s),
        vec![vec![label("target", "offsite")]]
    );
}

#[test]
fn new_errors_fire_the_errors_alert_and_old_ones_do_not() {
    let alert = README_ALERTS[4];
    let before = healthy();
    let mut s = healthy();
    *s.errors.get_mut("backup").unwrap() += 1;
    assert_eq!(
        firing(alert, &s, &before),
        vec![vec![label("kind", "backup")]]
    );
    assert_eq!(firing(alert, &before, &before), Vec::<Vec<_>>::new());
}
