//! Prometheus text exposition (format 0.0.4) of a [`Status`]: what an
//! operator alerts on. Pure: the agent serves it and writes it as a
//! node_exporter textfile.

use std::fmt::Write;

use crate::status::{SourceStatus, Status};

/// Escapes a label value: backslash, double quote and newline.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn seconds_of(rfc3339: &str) -> Option<i64> {
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// The metrics of a status, every family with HELP and TYPE.
pub fn render(s: &Status) -> String {
    let mut o = Out {
        text: String::new(),
    };
    let host = s.host.as_str();

    o.family(
        "gallra_audit_head_sequence",
        "gauge",
        "Sequence of this host's last audit record. Only grows: a drop means records were removed from the trail's end.",
    );
    if let Some(seq) = s.audit_head_sequence {
        o.sample("gallra_audit_head_sequence", &[("host", host)], seq);
    }

    o.family(
        "gallra_overdue_deletions",
        "gauge",
        "Snapshot copies past their expiry that still exist (not held). Must be 0.",
    );
    // Unknown while the primary cannot be read: no sample, rather than a 0
    // that would silence the alert (gallra_target_up says why).
    if s.targets.iter().all(|t| t.ok || !t.primary) {
        o.sample(
            "gallra_overdue_deletions",
            &[("host", host)],
            s.overdue_deletions,
        );
    }

    // One sample per tenant's source the agent still backs up, where the
    // status has a value: a source removed from the config, or of a tenant
    // whose contract ended or whose erasure was requested, has none, or
    // the freshness alert would fire for it for ever.
    let mut per_source = |name: &str, help: &str, value: &dyn Fn(&SourceStatus) -> Option<f64>| {
        o.family(name, "gauge", help);
        for t in &s.tenants {
            for src in t.sources.iter().filter(|src| src.backed_up) {
                if let Some(v) = value(src) {
                    o.sample(name, &[("tenant", &t.tenant), ("source", &src.source)], v);
                }
            }
        }
    };
    per_source(
        "gallra_last_backup_timestamp_seconds",
        "Time of the newest snapshot of each tenant's source on any target.",
        &|src| {
            src.last_backup
                .as_deref()
                .and_then(seconds_of)
                .map(|t| t as f64)
        },
    );
    per_source(
        "gallra_last_backup_duration_seconds",
        "How long the agent's last backup of each tenant's source took.",
        &|src| src.last_duration_seconds,
    );
    per_source(
        "gallra_backup_failing",
        "1 if the agent's last backup of the tenant's source failed.",
        &|src| Some(if src.last_error.is_some() { 1.0 } else { 0.0 }),
    );

    for (name, help, value) in [
        (
            "gallra_bytes_read_total",
            "Bytes the agent's backups read.",
            s.totals.bytes_read,
        ),
        (
            "gallra_bytes_added_total",
            "Bytes the agent's backups added after deduplication.",
            s.totals.bytes_added,
        ),
        (
            "gallra_bytes_shipped_total",
            "Bytes the agent shipped to secondary targets.",
            s.totals.bytes_shipped,
        ),
        (
            "gallra_backups_total",
            "Snapshots the agent took.",
            s.totals.backups,
        ),
    ] {
        o.family(name, "counter", help);
        o.sample(name, &[("host", host)], value);
    }

    o.family(
        "gallra_target_up",
        "gauge",
        "1 if the target could be read.",
    );
    for t in &s.targets {
        o.sample("gallra_target_up", &[("target", &t.target)], u8::from(t.ok));
    }
    o.family(
        "gallra_target_snapshots",
        "gauge",
        "Snapshots on each target.",
    );
    for t in s.targets.iter().filter(|t| t.ok) {
        o.sample(
            "gallra_target_snapshots",
            &[("target", &t.target)],
            t.snapshots,
        );
    }
    o.family(
        "gallra_target_bytes",
        "gauge",
        "Bytes of tenant objects on each target.",
    );
    for t in s.targets.iter().filter(|t| t.ok) {
        o.sample("gallra_target_bytes", &[("target", &t.target)], t.bytes);
    }
    o.family(
        "gallra_target_overdue_deletions",
        "gauge",
        "Snapshot copies on the target past their expiry that still exist (not held); on a target a lifecycle host deletes on, how far it lags. Must be 0.",
    );
    if s.targets.iter().all(|t| t.ok || !t.primary) {
        for t in s.targets.iter().filter(|t| t.ok) {
            o.sample(
                "gallra_target_overdue_deletions",
                &[("target", &t.target)],
                t.overdue_deletions,
            );
        }
    }
    o.family(
        "gallra_target_resists_this_server",
        "gauge",
        "1 if every version written to the target stays locked whatever this server does (versioning, Object Lock and a lock on each version, as last probed).",
    );
    o.family(
        "gallra_target_this_server_deletes",
        "gauge",
        "1 if this server's credentials can delete on the target, as last probed (absent when not probed).",
    );
    o.family(
        "gallra_target_lock_days",
        "gauge",
        "Days each version written to the target is locked for (gallra's lock, or the bucket's default).",
    );
    for t in &s.targets {
        let Some(p) = &t.protection else { continue };
        let at = [("target", t.target.as_str())];
        o.sample(
            "gallra_target_resists_this_server",
            &at,
            u8::from(p.resists_this_server),
        );
        if let Some(deletes) = p.this_server_deletes {
            o.sample("gallra_target_this_server_deletes", &at, u8::from(deletes));
        }
        let days = p
            .lock
            .map(|l| l.days)
            .or_else(|| p.bucket_lock.and_then(|b| b.default_days));
        if let Some(days) = days {
            o.sample("gallra_target_lock_days", &at, days);
        }
    }
    o.family(
        "gallra_ship_backlog_objects",
        "gauge",
        "Objects the primary holds that a secondary target lacks.",
    );
    for t in s.targets.iter().filter(|t| t.ok && !t.primary) {
        o.sample(
            "gallra_ship_backlog_objects",
            &[("target", &t.target)],
            t.missing,
        );
    }
    o.family(
        "gallra_ship_backlog_bytes",
        "gauge",
        "Bytes the primary holds that a secondary target lacks.",
    );
    for t in s.targets.iter().filter(|t| t.ok && !t.primary) {
        o.sample(
            "gallra_ship_backlog_bytes",
            &[("target", &t.target)],
            t.missing_bytes,
        );
    }

    o.family(
        "gallra_ship_backlog_unknown",
        "gauge",
        "1 if a secondary target's backlog is unknown because it or the primary could not be read.",
    );
    // The backlog series above cannot be given for a target that is down;
    // this one is, so that the backlog alert fires on either.
    for t in s.targets.iter().filter(|t| !t.primary) {
        o.sample(
            "gallra_ship_backlog_unknown",
            &[("target", &t.target)],
            u8::from(!t.ok),
        );
    }

    o.family(
        "gallra_tenant_snapshots",
        "gauge",
        "Snapshots of each tenant on each target.",
    );
    for t in &s.tenants {
        for (target, h) in &t.targets {
            o.sample(
                "gallra_tenant_snapshots",
                &[("tenant", &t.tenant), ("target", target)],
                h.snapshots,
            );
        }
    }
    o.family(
        "gallra_oldest_snapshot_age_seconds",
        "gauge",
        "Age of each tenant's oldest snapshot on any target.",
    );
    for t in &s.tenants {
        if let Some(age) = t.oldest_age_seconds {
            o.sample(
                "gallra_oldest_snapshot_age_seconds",
                &[("tenant", &t.tenant)],
                age,
            );
        }
    }

    let drill = s.drill.as_ref();
    o.family(
        "gallra_last_drill_success",
        "gauge",
        "1 if the agent's last restore drill passed, 0 if it failed.",
    );
    if let Some(d) = drill {
        o.sample(
            "gallra_last_drill_success",
            &[("host", host)],
            u8::from(d.ok),
        );
    }
    o.family(
        "gallra_last_drill_timestamp_seconds",
        "gauge",
        "When the agent's last restore drill ran.",
    );
    if let Some(at) = drill.and_then(|d| seconds_of(&d.time)) {
        o.sample("gallra_last_drill_timestamp_seconds", &[("host", host)], at);
    }
    o.family(
        "gallra_last_drill_duration_seconds",
        "gauge",
        "How long the agent's last restore drill took.",
    );
    if let Some(d) = drill {
        o.sample(
            "gallra_last_drill_duration_seconds",
            &[("host", host)],
            d.seconds,
        );
    }

    o.family(
        "gallra_errors_total",
        "counter",
        "Failures of the agent's jobs, by kind.",
    );
    for kind in ["backup", "ship", "lifecycle", "inbox", "drill", "status"] {
        let n = s.errors.get(kind).copied().unwrap_or(0);
        o.sample("gallra_errors_total", &[("kind", kind)], n);
    }
    o.text
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::agent_state::{JobRun, Totals};
    use crate::status::{AgentSummary, SourceStatus, TargetHolding, TargetStatus, TenantStatus};
    use std::collections::BTreeMap;

    /// A sample line: its name, labels (unescaped) and value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// Parses `name{k="v",...} value` strictly, undoing the escapes.
    fn parse_sample(line: &str) -> std::result::Result<Sample, String> {
        let bad = |why: &str| format!("{line:?}: {why}");
        let end = line.find(['{', ' ']).ok_or_else(|| bad("no value"))?;
        let name = &line[..end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(bad("bad metric name"));
        }
        let mut rest = &line[end..];
        let mut labels = Vec::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            loop {
                let (start, _) = *chars.peek().ok_or_else(|| bad("unclosed labels"))?;
                let eq = body[start..].find('=').ok_or_else(|| bad("no '='"))? + start;
                let key = &body[start..eq];
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(bad("bad label name"));
                }
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(bad("label value not quoted"));
                }
                let mut value = String::new();
                loop {
                    match chars.next().ok_or_else(|| bad("unterminated value"))?.1 {
                        '"' => break,
                        '\\' => match chars.next().ok_or_else(|| bad("dangling escape"))?.1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            c => return Err(bad(&format!("unknown escape \\{c}"))),
                        },
                        '\n' => return Err(bad("raw newline in value")),
                        c => value.push(c),
                    }
                }
                labels.push((key.to_string(), value));
                match chars.next().ok_or_else(|| bad("unclosed labels"))? {
                    (_, ',') => continue,
                    (i, '}') => {
                        rest = &body[i + 1..];
                        break;
                    }
                    _ => return Err(bad("expected ',' or '}'")),
                }
            }
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| bad("no space before the value"))?;
        let value: f64 = value.parse().map_err(|_| bad("value is not a number"))?;
        Ok((name.to_string(), labels, value))
    }

    /// Every sample of `text`, checking the families on the way: each
    /// `# TYPE` once, right after its `# HELP`, before the family's first
    /// sample, and each family's samples in one run.
    fn samples(text: &str) -> Vec<Sample> {
        let mut families: Vec<String> = Vec::new();
        let mut help: Option<&str> = None;
        // Families whose run of samples has ended.
        let mut closed: Vec<String> = Vec::new();
        let mut out: Vec<Sample> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, doc) = rest.split_once(' ').expect("HELP has a text");
                assert!(!doc.trim().is_empty(), "{line}");
                help = Some(name);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
                assert!(matches!(kind, "gauge" | "counter"), "{line}");
                assert_eq!(help, Some(name), "HELP right before {line}");
                assert!(
                    !families.iter().any(|f| f == name),
                    "# TYPE {name} appears twice"
                );
                families.push(name.to_string());
                help = None;
            } else {
                assert!(!line.starts_with('#'), "{line}");
                let sample = parse_sample(line).unwrap();
                let name = sample.0.as_str();
                assert!(
                    families.iter().any(|f| f == name),
                    "{line} comes before its # TYPE"
                );
                assert!(
                    !closed.iter().any(|f| f == name),
                    "{line}: the samples of {name} are split"
                );
                if let Some((last, _, _)) = out.last()
                    && last != name
                {
                    closed.push(last.clone());
                }
                out.push(sample);
            }
        }
        assert!(text.ends_with('\n'), "the exposition ends with a newline");
        out
    }

    /// The values of the samples of `name` whose labels include `labels`.
    fn values(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        all.iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
            .collect()
    }

    const TENANT: &str = "ac\"me";
    const OFFSITE: &str = r"off\site";
    const HOST: &str = "host \"1\"\\a";

    /// A bucket with versioning and Object Lock that this server cannot
    /// delete in, with `lock = "30 days"`.
    fn offsite_protection() -> crate::protection::Protection {
        let mut t = crate::store::TargetSettings::new(OFFSITE, "s3://bucket/gallra");
        t.lock = Some(crate::store::ObjectLock {
            mode: crate::store::LockMode::Compliance,
            days: 30,
        });
        let probe = crate::survival::VersionProbe {
            url: t.url.clone(),
            keeps_old_versions: true,
            probed: "2026-03-01T00:00:00Z".parse().unwrap(),
            s3: Some(crate::store::S3Protection {
                versioning: crate::store::BucketVersioning::Enabled,
                object_lock: Some(crate::store::BucketLock {
                    default_mode: None,
                    default_days: None,
                }),
                may_delete: false,
            }),
        };
        crate::protection::Protection::of(&t, Some(&probe))
    }

    fn status() -> Status {
        Status {
            host: HOST.into(),
            time: "2026-03-01T12:00:00Z".into(),
            agent: AgentSummary {
                running: true,
                pid: Some(42),
                started: Some("2026-03-01T00:00:00Z".into()),
                next_lifecycle: None,
                next_drill: None,
            },
            targets: vec![
                TargetStatus {
                    target: "local".into(),
                    url: "file:///srv/gallra".into(),
                    primary: true,
                    ok: true,
                    initialised: true,
                    snapshots: 5,
                    objects: 40,
                    bytes: 123_456,
                    ..Default::default()
                },
                TargetStatus {
                    target: OFFSITE.into(),
                    url: "s3://bucket/gallra".into(),
                    primary: false,
                    ok: false,
                    error: Some("connection refused".into()),
                    // What a failed read leaves: nothing it may report.
                    snapshots: 9,
                    bytes: 9,
                    missing: 9,
                    missing_bytes: 9,
                    // The last probe stays known while the target is down.
                    protection: Some(offsite_protection()),
                    ..Default::default()
                },
            ],
            tenants: vec![TenantStatus {
                tenant: TENANT.into(),
                sources: vec![SourceStatus {
                    source: "www".into(),
                    category: "site".into(),
                    last_backup: Some("2026-03-01T02:03:04Z".into()),
                    age_seconds: Some(35_816),
                    last_duration_seconds: Some(2.5),
                    last_error: Some("disk \"gone\"".into()),
                    backed_up: true,
                    snapshots: BTreeMap::from([("local".into(), 5)]),
                    ..Default::default()
                }],
                targets: BTreeMap::from([(
                    "local".into(),
                    TargetHolding {
                        snapshots: 5,
                        bytes: 123_456,
                    },
                )]),
                oldest_snapshot: Some("2026-02-01T02:00:00Z".into()),
                oldest_age_seconds: Some(2_455_200),
                ..Default::default()
            }],
            overdue_deletions: 3,
            lifecycle: None,
            drill: Some(JobRun {
                time: "2026-03-01T04:30:00Z".into(),
                ok: false,
                seconds: 12.25,
                error: Some("hash mismatch".into()),
                detail: String::new(),
            }),
            ship: BTreeMap::new(),
            totals: Totals {
                backups: 7,
                bytes_read: 1000,
                bytes_added: 600,
                bytes_shipped: 500,
                ..Default::default()
            },
            errors: BTreeMap::from([("ship".into(), 4), ("backup".into(), 1)]),
            problems: Vec::new(),
            audit_head_sequence: Some(7),
            key_epochs: None,
        }
    }

    #[test]
    fn every_family_once_before_its_samples_and_every_sample_parses() {
        let text = render(&status());
        let all = samples(&text);
        assert!(!all.is_empty());
        // Every family is declared even when it has no sample.
        for family in [
            "gallra_audit_head_sequence",
            "gallra_overdue_deletions",
            "gallra_last_backup_timestamp_seconds",
            "gallra_last_backup_duration_seconds",
            "gallra_backup_failing",
            "gallra_bytes_read_total",
            "gallra_bytes_added_total",
            "gallra_bytes_shipped_total",
            "gallra_backups_total",
            "gallra_target_up",
            "gallra_target_snapshots",
            "gallra_target_bytes",
            "gallra_ship_backlog_objects",
            "gallra_ship_backlog_bytes",
            "gallra_ship_backlog_unknown",
            "gallra_tenant_snapshots",
            "gallra_oldest_snapshot_age_seconds",
            "gallra_last_drill_success",
            "gallra_last_drill_timestamp_seconds",
            "gallra_last_drill_duration_seconds",
            "gallra_errors_total",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}:\n{text}"
            );
        }
        // No two samples of a family have the same labels.
        for (i, (n, l, _)) in all.iter().enumerate() {
            assert!(
                !all[..i].iter().any(|(on, ol, _)| on == n && ol == l),
                "{n} {l:?} twice"
            );
        }
        // An empty status renders the families with only the unlabelled-by-tenant samples.
        let empty = Status {
            targets: vec![],
            tenants: vec![],
            drill: None,
            errors: BTreeMap::new(),
            ..status()
        };
        let none = samples(&render(&empty));
        assert!(values(&none, "gallra_last_drill_success", &[]).is_empty());
        assert_eq!(
            values(&all, "gallra_audit_head_sequence", &[("host", HOST)]),
            vec![7.0]
        );
        assert_eq!(values(&none, "gallra_errors_total", &[]), vec![0.0; 6]);
    }

    #[test]
    fn label_values_with_quotes_and_backslashes_survive() {
        let text = render(&status());
        // As written on the wire.
        assert!(
            text.contains(r#"gallra_target_up{target="off\\site"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gallra_backup_failing{tenant="ac\"me",source="www"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gallra_overdue_deletions{host="host \"1\"\\a"} 3"#),
            "{text}"
        );
        // And read back whole.
        let all = samples(&text);
        assert_eq!(
            values(
                &all,
                "gallra_tenant_snapshots",
                &[("tenant", TENANT), ("target", "local")]
            ),
            vec![5.0]
        );
        assert_eq!(
            values(&all, "gallra_target_up", &[("target", OFFSITE)]),
            vec![0.0]
        );
        assert_eq!(
            values(&all, "gallra_backups_total", &[("host", HOST)]),
            vec![7.0]
        );
        // A newline in a value stays on its line.
        let odd = Status {
            host: "a\nb".into(),
            ..status()
        };
        let all = samples(&render(&odd));
        assert_eq!(
            values(&all, "gallra_overdue_deletions", &[("host", "a\nb")]),
            vec![3.0]
        );
    }

    #[test]
    fn samples_carry_the_status_figures() {
        let s = status();
        let all = samples(&render(&s));
        let one = |name: &str, labels: &[(&str, &str)]| -> f64 {
            match values(&all, name, labels)[..] {
                [v] => v,
                ref vs => panic!("{name} {labels:?}: {vs:?}"),
            }
        };
        let src = [("tenant", TENANT), ("source", "www")];

        assert_eq!(one("gallra_overdue_deletions", &[("host", HOST)]), 3.0);
        assert_eq!(
            one("gallra_last_backup_timestamp_seconds", &src),
            "2026-03-01T02:03:04Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_second() as f64
        );
        assert_eq!(one("gallra_last_backup_duration_seconds", &src), 2.5);
        assert_eq!(one("gallra_backup_failing", &src), 1.0);
        assert_eq!(one("gallra_bytes_read_total", &[]), 1000.0);
        assert_eq!(one("gallra_bytes_added_total", &[]), 600.0);
        assert_eq!(one("gallra_bytes_shipped_total", &[]), 500.0);
        assert_eq!(one("gallra_backups_total", &[]), 7.0);
        assert_eq!(
            one("gallra_oldest_snapshot_age_seconds", &[("tenant", TENANT)]),
            2_455_200.0
        );

        // The target that answered.
        assert_eq!(one("gallra_target_up", &[("target", "local")]), 1.0);
        assert_eq!(one("gallra_target_snapshots", &[("target", "local")]), 5.0);
        assert_eq!(
            one("gallra_target_bytes", &[("target", "local")]),
            123_456.0
        );
        // A primary has no ship backlog.
        assert!(values(&all, "gallra_ship_backlog_objects", &[("target", "local")]).is_empty());
        // The target that did not: down, and no figures it could not read.
        assert_eq!(one("gallra_target_up", &[("target", OFFSITE)]), 0.0);
        // What protects it is its last probe's.
        let at = [("target", OFFSITE)];
        assert_eq!(one("gallra_target_resists_this_server", &at), 1.0);
        assert_eq!(one("gallra_target_this_server_deletes", &at), 0.0);
        assert_eq!(one("gallra_target_lock_days", &at), 30.0);
        for family in [
            "gallra_target_snapshots",
            "gallra_target_bytes",
            "gallra_ship_backlog_objects",
            "gallra_ship_backlog_bytes",
        ] {
            assert!(
                values(&all, family, &[("target", OFFSITE)]).is_empty(),
                "{family} of a target that is down"
            );
        }

        // The failed drill.
        assert_eq!(one("gallra_last_drill_success", &[("host", HOST)]), 0.0);
        assert_eq!(
            one("gallra_last_drill_timestamp_seconds", &[]),
            "2026-03-01T04:30:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_second() as f64
        );
        assert_eq!(one("gallra_last_drill_duration_seconds", &[]), 12.25);

        // Errors by kind; kinds that never failed read 0, not absent.
        assert_eq!(
            one("gallra_errors_total", &[("kind", "ship")]),
            s.errors["ship"] as f64
        );
        assert_eq!(one("gallra_errors_total", &[("kind", "backup")]), 1.0);
        for kind in ["lifecycle", "inbox", "drill", "status"] {
            assert_eq!(one("gallra_errors_total", &[("kind", kind)]), 0.0, "{kind}");
        }
    }

    #[test]
    fn a_secondary_that_answered_reports_its_backlog_and_a_healthy_source_is_not_failing() {
        let mut s = status();
        s.targets[1].ok = true;
        s.targets[1].error = None;
        s.targets[1].missing = 4;
        s.targets[1].missing_bytes = 4096;
        s.tenants[0].sources[0].last_error = None;
        s.tenants[0].sources[0].last_backup = None;
        s.drill.as_mut().unwrap().ok = true;
        let all = samples(&render(&s));
        let at = [("target", OFFSITE)];
        assert_eq!(values(&all, "gallra_target_up", &at), vec![1.0]);
        assert_eq!(values(&all, "gallra_ship_backlog_objects", &at), vec![4.0]);
        assert_eq!(values(&all, "gallra_ship_backlog_bytes", &at), vec![4096.0]);
        assert_eq!(values(&all, "gallra_target_snapshots", &at), vec![9.0]);
        assert_eq!(
            values(&all, "gallra_backup_failing", &[("tenant", TENANT)]),
            vec![0.0]
        );
        assert!(values(&all, "gallra_last_backup_timestamp_seconds", &[]).is_empty());
        assert_eq!(values(&all, "gallra_last_drill_success", &[]), vec![1.0]);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label("x\ny"), "x\\ny");
    }
}
