//! Prometheus text exposition (format 0.0.4) of a [`Status`]: what an
//! operator alerts on. Pure: the agent serves it and writes it as a
//! node_exporter textfile.

use std::fmt::Write;

use crate::status::Status;

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
        "gallra_overdue_deletions",
        "gauge",
        "Snapshot copies past their expiry that still exist (not held). Must be 0.",
    );
    o.sample(
        "gallra_overdue_deletions",
        &[("host", host)],
        s.overdue_deletions,
    );

    o.family(
        "gallra_last_backup_timestamp_seconds",
        "gauge",
        "Time of the newest snapshot of each tenant's source on any target.",
    );
    for t in &s.tenants {
        for src in &t.sources {
            if let Some(at) = src.last_backup.as_deref().and_then(seconds_of) {
                o.sample(
                    "gallra_last_backup_timestamp_seconds",
                    &[("tenant", &t.tenant), ("source", &src.source)],
                    at,
                );
            }
        }
    }
    o.family(
        "gallra_last_backup_duration_seconds",
        "gauge",
        "How long the agent's last backup of each tenant's source took.",
    );
    for t in &s.tenants {
        for src in &t.sources {
            if let Some(d) = src.last_duration_seconds {
                o.sample(
                    "gallra_last_backup_duration_seconds",
                    &[("tenant", &t.tenant), ("source", &src.source)],
                    d,
                );
            }
        }
    }
    o.family(
        "gallra_backup_failing",
        "gauge",
        "1 if the agent's last backup of the tenant's source failed.",
    );
    for t in &s.tenants {
        for src in &t.sources {
            o.sample(
                "gallra_backup_failing",
                &[("tenant", &t.tenant), ("source", &src.source)],
                u8::from(src.last_error.is_some()),
            );
        }
    }

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

    o.family(
        "gallra_last_drill_success",
        "gauge",
        "1 if the agent's last restore drill passed, 0 if it failed.",
    );
    o.family(
        "gallra_last_drill_timestamp_seconds",
        "gauge",
        "When the agent's last restore drill ran.",
    );
    o.family(
        "gallra_last_drill_duration_seconds",
        "gauge",
        "How long the agent's last restore drill took.",
    );
    if let Some(d) = &s.drill {
        o.sample(
            "gallra_last_drill_success",
            &[("host", host)],
            u8::from(d.ok),
        );
        if let Some(at) = seconds_of(&d.time) {
            o.sample("gallra_last_drill_timestamp_seconds", &[("host", host)], at);
        }
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

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label("x\ny"), "x\\ny");
    }
}
