//! The lifecycle job: the inbox, then applying the lifecycle.

use jiff::Timestamp;
use std::time::Instant;

use crate::agent::Done;
use crate::agent_state::JobRun;
use crate::config::Config;
use crate::error::Result;

/// Takes in the inbox's events and applies the lifecycle; returns when
/// something expires next.
pub(super) fn lifecycle(config: &Config) -> Result<Done> {
    let started = Instant::now();
    let opened = config.open_repositories()?;
    for f in &opened.failures {
        tracing::warn!(target_name = %f.target_or_empty(), "target not opened for the lifecycle: {}", f.error);
    }
    let audit = crate::audit::AuditLog::open(&config.agent.state_dir, &config.agent.host)?;
    let lc = config.lifecycle(&opened, &audit);
    let now = Timestamp::now();
    let items = lc.process_inbox(now)?;
    for i in &items {
        let line = format!(
            "inbox {}: {}{}",
            i.file,
            i.outcome,
            i.reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        if i.outcome == "failed" {
            tracing::error!(tenant = i.tenant.as_deref().unwrap_or("-"), "{line}");
        } else {
            tracing::info!(tenant = i.tenant.as_deref().unwrap_or("-"), "{line}");
        }
    }
    // Each deletion's audit record says what survives on its targets.
    let survives = crate::survival::survives(&crate::survival::leftovers(config, now));
    let report = lc.apply(now, crate::lifecycle::apply::Mode::Delete, None, &survives)?;
    let mut deleted = 0;
    for t in &report.tenants {
        for r in &t.targets {
            deleted += r.snapshots_deleted;
            if r.snapshots_deleted > 0 {
                tracing::info!(tenant = %t.tenant, target_name = %r.target, snapshots = r.snapshots_deleted, bytes = r.bytes_deleted, "deleted by the lifecycle");
            }
        }
        if t.key_destroyed {
            tracing::info!(tenant = %t.tenant, "tenant key destroyed on {}", t.key_destroyed_on.join(", "));
            for line in survives
                .iter()
                .filter(|s| t.key_destroyed_on.contains(&s.target))
            {
                tracing::warn!(tenant = %t.tenant, "what survives: {}", line.words);
            }
        }
    }
    for f in &report.failures {
        tracing::error!(target_name = %f.target_or_empty(), tenant = f.tenant.as_deref().unwrap_or("-"), "lifecycle: {}", f.error);
    }
    let (plan, _) = lc.plan(Timestamp::now())?;
    // A copy waiting for its S3 Object Lock goes when the lock ends.
    let next_expiry = plan
        .upcoming
        .iter()
        .map(|u| u.expires)
        .chain(plan.locked.iter().map(|l| l.locked_until))
        .min();
    let inbox_failed = items.iter().filter(|i| i.outcome == "failed").count();
    let run = JobRun {
        time: now.to_string(),
        ok: report.ok() && inbox_failed == 0,
        seconds: started.elapsed().as_secs_f64(),
        error: report
            .failures
            .first()
            .map(|f| format!("target {}: {}", f.target_or_empty(), f.error))
            .or_else(|| (inbox_failed > 0).then(|| format!("{inbox_failed} inbox files refused"))),
        detail: format!(
            "{} events taken in, {deleted} snapshot copies deleted, {} still due",
            items.iter().filter(|i| i.outcome != "failed").count(),
            plan.due.len()
        ),
    };
    Ok(Done::Lifecycle { run, next_expiry })
}
