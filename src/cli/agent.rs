//! `gallra agent` and `gallra status`.

use clap::Args;
use jiff::Timestamp;

use gallra::config::{Config, LogFormat};
use gallra::lifecycle::rotate::Due;
use gallra::status::Status;
use gallra::text::human_age;

use super::output::{human_bytes, print_json};

#[derive(Args)]
pub struct AgentArgs {}

/// The log format the config asks for; human if it did not load (the
/// error is then reported as the agent's).
pub fn log_format(config: Option<&Config>) -> LogFormat {
    if std::env::var("GALLRA_LOG_FORMAT").as_deref() == Ok("json") {
        return LogFormat::Json;
    }
    config.map_or(LogFormat::Human, |c| c.agent.log_format)
}

pub fn agent(config: Config) -> anyhow::Result<i32> {
    if !config.fleet.is_empty() {
        return Err(gallra::Error::Usage(format!(
            "{} is a lifecycle host's config ([[fleet]]): a lifecycle host runs `gallra lifecycle apply` from gallra-lifecycle-host.timer, not the agent",
            config.path.display()
        ))
        .into());
    }
    gallra::agent::run(config)?;
    Ok(0)
}

/// A time as local wall clock and how far from now it is.
fn when(config: &Config, text: &str, now: Timestamp) -> String {
    match text.parse::<Timestamp>() {
        Ok(t) => {
            let local = t
                .to_zoned(config.policy.time_zone.clone())
                // Every local time carries its zone: status is read beside
                // logs and audit records in UTC.
                .strftime("%Y-%m-%d %H:%M %Z")
                .to_string();
            if t <= now {
                format!("{local} ({} ago)", human_age(now.duration_since(t)))
            } else {
                format!("{local} (in {})", human_age(t.duration_since(now)))
            }
        }
        Err(_) => text.to_string(),
    }
}

pub fn status(config: &Config, json_out: bool) -> anyhow::Result<i32> {
    let now = Timestamp::now();
    let s = gallra::status::collect(config, now)?;
    let failed = s.targets.iter().any(|t| !t.ok) || !s.problems.is_empty();
    if json_out {
        print_json(&serde_json::to_value(&s)?)?;
    } else {
        print_status(config, &s, now);
    }
    Ok(i32::from(failed))
}

/// "target offsite keeps old versions: yes (probed ...), noncurrent_expiry 30 days".
fn old_versions_line(config: &Config, t: &gallra::status::TargetStatus, now: Timestamp) -> String {
    let known = match &t.old_versions {
        None => "unknown (never probed, and the target could not be read)".to_string(),
        Some(v) => match (v.probed, &v.error) {
            (Some(at), _) => format!(
                "{} (probed {})",
                v.old_versions.as_word(),
                when(config, &at.to_string(), now)
            ),
            (None, Some(e)) => format!("unknown (the probe failed: {e})"),
            (None, None) => v.old_versions.as_word().to_string(),
        },
    };
    let expiry = match (&t.noncurrent_expiry, &t.old_versions) {
        (Some(e), _) => format!("noncurrent_expiry {e}"),
        (None, Some(v)) if v.old_versions == gallra::survival::OldVersions::NotKept => {
            "no noncurrent_expiry needed".to_string()
        }
        (None, _) => {
            "no noncurrent_expiry stated: old versions stay until someone deletes them".to_string()
        }
    };
    format!("target {} keeps old versions: {known}; {expiry}", t.target)
}

fn print_status(config: &Config, s: &Status, now: Timestamp) {
    let when = |t: &str| when(config, t, now);
    if s.agent.running {
        println!(
            "agent: running (pid {}), since {}",
            s.agent.pid.unwrap_or_default(),
            s.agent.started.as_deref().map_or("-".into(), when)
        );
    } else {
        println!("agent: not running");
    }
    println!(
        "{:<12} {:<8} {:>9} {:>9} {:>10} {:>9} {:>10}",
        "target", "role", "snapshots", "objects", "size", "lacks", "lacks size"
    );
    for t in &s.targets {
        let role = if t.primary { "primary" } else { "ship" };
        match &t.error {
            None => println!(
                "{:<12} {:<8} {:>9} {:>9} {:>10} {:>9} {:>10}",
                t.target,
                role,
                t.snapshots,
                t.objects,
                human_bytes(t.bytes),
                t.missing,
                human_bytes(t.missing_bytes),
            ),
            Some(e) => println!("{:<12} {:<8} unreachable: {e}", t.target, role),
        }
        if !t.key_slots_lacking.is_empty() {
            println!(
                "  target {} lacks key slot(s) {} (`gallra ship` copies them)",
                t.target,
                t.key_slots_lacking.join(", ")
            );
        }
        if !t.key_slots_extra.is_empty() {
            println!(
                "  target {} still has removed key slot(s) {}: their keys still open it (`gallra ship` removes them)",
                t.target,
                t.key_slots_extra.join(", ")
            );
        }
        println!("  {}", old_versions_line(config, t, now));
        if let Some(p) = &t.protection {
            println!("  target {} protection: {}", t.target, p.line());
            for problem in &p.problems {
                println!("  target {}: {problem}", t.target);
            }
        }
    }
    if let Some(k) = &s.key_epochs {
        let rotation = match &k.rotation {
            Due::No { because } => format!("not due ({because})"),
            Due::Yes { because } => format!("due now ({because})"),
            Due::Later { at, because } => {
                format!("due at {} ({because})", when(&at.to_string()))
            }
        };
        println!(
            "key epochs: {} ({} in the repository); rotation {rotation}",
            k.current.as_deref().unwrap_or("none yet"),
            k.count
        );
    }
    for p in &s.problems {
        let tenant = p
            .tenant
            .as_deref()
            .map(|t| format!("tenant {t}: "))
            .unwrap_or_default();
        let line = format!(
            "problem: target {}: {tenant}{}",
            p.target_or_empty(),
            p.error
        );
        println!("{}", gallra::text::escape_control(&line));
    }
    println!();
    for t in &s.tenants {
        let mut notes = Vec::new();
        if let Some(day) = &t.contract_end {
            notes.push(format!("contract ended {day}"));
        }
        if let Some(reason) = &t.hold {
            notes.push(format!("legal hold: {reason}"));
        }
        if t.erasure_requested {
            notes.push("erasure requested".into());
        }
        println!(
            "tenant {}{}",
            t.tenant,
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            }
        );
        for src in &t.sources {
            println!(
                "  {:<10} last backup {:<32} next {:<28} snapshots {}{}",
                src.source,
                src.last_backup.as_deref().map_or("never".into(), when),
                src.next_run.as_deref().map_or("-".into(), when),
                src.snapshots
                    .iter()
                    .map(|(t, n)| format!("{t} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                src.last_error
                    .as_deref()
                    .map(|e| format!("; last run FAILED: {e}"))
                    .unwrap_or_default()
            );
        }
        let holding = t
            .targets
            .iter()
            .map(|(name, h)| format!("{name} {} snapshots/{}", h.snapshots, human_bytes(h.bytes)))
            .collect::<Vec<_>>()
            .join(", ");
        // What the targets store, not to be read as a legal hold.
        println!(
            "  stored: {}",
            if holding.is_empty() { "-" } else { &holding }
        );
        for h in &t.holds {
            println!("  held: hold {}: {}", h.id, h.reason);
        }
        if let Some(o) = &t.oldest_snapshot {
            println!(
                "  oldest snapshot {}, expires {}",
                when(o),
                t.oldest_expires.as_deref().map_or("never".into(), when)
            );
        }
        if t.ship_backlog_objects > 0 {
            println!(
                "  ship backlog: {} objects / {}",
                t.ship_backlog_objects,
                human_bytes(t.ship_backlog_bytes)
            );
        }
        if let Some(d) = &t.last_drill {
            println!(
                "  last drill {} from {}: {}",
                when(&d.time),
                d.target,
                if d.ok {
                    "ok".to_string()
                } else {
                    format!("FAILED: {}", d.error.as_deref().unwrap_or("-"))
                }
            );
        }
        if t.due_now > 0 {
            println!(
                "  {} snapshot copies are past their expiry: `gallra lifecycle apply` deletes them",
                t.due_now
            );
        }
        if let Some(n) = &t.next_deletion {
            println!(
                "  next deletion {}: {} copies ({})",
                when(&n.time),
                n.copies,
                n.reason
            );
        }
    }
    if let Some(l) = &s.lifecycle {
        println!(
            "lifecycle: last run {}: {}{}",
            when(&l.time),
            if l.ok { "ok" } else { "FAILED" },
            l.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_else(|| format!(", {}", l.detail))
        );
    }
    if let Some(d) = &s.drill {
        println!(
            "drill: last run {}: {}, {}",
            when(&d.time),
            if d.ok { "ok" } else { "FAILED" },
            d.error.as_deref().unwrap_or(&d.detail)
        );
    }
    if s.targets.iter().any(|t| t.primary && !t.ok) {
        println!("overdue deletions: unknown (the primary could not be read)");
    } else {
        println!("overdue deletions: {}", s.overdue_deletions);
    }
}
