//! The drill job: a sample of tenants restored from the drill target.

use std::time::Instant;

use crate::agent_state::JobRun;
use crate::config::Config;
use crate::drill::Selection;
use crate::error::Result;

/// A drill of `[drill] sample` tenants chosen at random, from `[drill] target`.
pub(super) fn drill(config: &Config) -> Result<JobRun> {
    let started = Instant::now();
    let target = config.target(&config.drill.target)?;
    let seed = u64::from_le_bytes(crate::crypto::random_bytes::<8>());
    let run = crate::drill::drill_and_record(
        config,
        target,
        &Selection::Sample {
            count: config.drill.sample,
            seed,
        },
        config.drill.scratch.clone(),
        config.drill.max_age,
    )?;
    for w in &run.warnings {
        tracing::warn!("drill: {w}");
    }
    let failed: Vec<&crate::drill::DrillResult> = run.results.iter().filter(|r| !r.ok).collect();
    for r in &run.results {
        if r.ok {
            tracing::info!(tenant = %r.tenant, source = %r.source, files = r.files, bytes = r.bytes, seconds = format!("{:.2}", r.seconds), "drill passed");
        } else {
            tracing::error!(tenant = %r.tenant, source = %r.source, "drill FAILED: {}", r.error.as_deref().unwrap_or("-"));
        }
    }
    let ok = !run.results.is_empty() && failed.is_empty();
    Ok(JobRun {
        time: run.now.to_string(),
        ok,
        seconds: started.elapsed().as_secs_f64(),
        error: if run.results.is_empty() {
            Some(format!("nothing to drill on target {}", target.name))
        } else {
            failed.first().map(|r| {
                format!(
                    "tenant {}: {}",
                    r.tenant,
                    r.error.as_deref().unwrap_or("failed")
                )
            })
        },
        detail: format!(
            "{} snapshots of {} tenants from {} (seed {seed}), {} failed",
            run.results.len(),
            run.tenants,
            target.name,
            failed.len()
        ),
    })
}
