//! What the agent does once before its loop: lowering its priority and
//! checking that the jobs can run at all.

use jiff::Timestamp;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{Agent, Job, http};
use crate::agent_state::AgentState;
use crate::config::{Config, IoClass, Target};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::status::Status;
use crate::store::Store;
use crate::survival::OldVersions;

/// CPU niceness and I/O class of every thread started from here on (Linux
/// applies both per thread, and threads inherit them).
pub(super) fn lower_priority(nice: i32, io_class: IoClass) {
    // SAFETY: plain system calls on this thread, with valid arguments.
    unsafe {
        if libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
            tracing::warn!(
                "could not set CPU niceness {nice}: {}",
                std::io::Error::last_os_error()
            );
        }
        const IOPRIO_CLASS_SHIFT: i32 = 13;
        const IOPRIO_WHO_PROCESS: i32 = 1;
        let prio = match io_class {
            IoClass::Idle => 3 << IOPRIO_CLASS_SHIFT,
            IoClass::BestEffort(level) => (2 << IOPRIO_CLASS_SHIFT) | i32::from(level),
        };
        if libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) != 0 {
            tracing::warn!(
                "could not set I/O priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Probes (and records) whether `t` keeps old versions of what gallra
/// deletes, and says what that means for an erasure there.
fn log_old_versions(config: &Config, t: &Target, store: &Store) {
    let versioning = crate::survival::probe_store(&config.agent.state_dir, t, store);
    let protection = crate::protection::recorded(&config.agent.state_dir, t);
    tracing::info!(target_name = %t.name, "protection: {}", protection.words);
    for problem in &protection.problems {
        tracing::error!(target_name = %t.name, "{problem}");
    }
    let key_service = config.key.service.is_some();
    match (versioning.old_versions, t.noncurrent_expiry) {
        (OldVersions::NotKept, _) => {
            tracing::info!(target_name = %t.name, "the store keeps no old versions of what gallra deletes")
        }
        (OldVersions::Kept, Some(e)) => tracing::info!(
            target_name = %t.name,
            "the store keeps old versions of what gallra deletes until its bucket rule removes them (noncurrent_expiry = {e})"
        ),
        (OldVersions::Kept, None) if !key_service => tracing::warn!(
            target_name = %t.name,
            "the store keeps old versions of what gallra deletes and no noncurrent_expiry is stated: an erasure does not hold against them (they open with the key file or a passphrase until someone deletes them)"
        ),
        (OldVersions::Kept, None) => tracing::info!(
            target_name = %t.name,
            "the store keeps old versions of what gallra deletes; no noncurrent_expiry is stated"
        ),
        (OldVersions::Unknown, _) => tracing::warn!(
            target_name = %t.name,
            "whether the store keeps old versions is unknown: the probe failed: {}",
            versioning.error.as_deref().unwrap_or("no answer")
        ),
    }
}

/// Checks what would make every job fail: the primary's repository and the
/// key; then whether each target honours conditional creates (its locks
/// depend on it) and keeps old versions (what an erasure leaves there). A secondary that cannot be reached is a warning: the
/// ships retry it.
pub(super) fn self_test(config: &Config) -> Result<()> {
    let primary = Repository::open_target(config.primary(), &config.key)?;
    drop(primary);
    for t in &config.targets {
        // Not `create`: a missing file:// folder is an unmounted target,
        // and ship refuses it; making it here would hide that.
        let outcome = Store::open(t).and_then(|s| {
            log_old_versions(config, t, &s);
            s.honours_conditional_create()
        });
        match outcome {
            Ok(true) => tracing::info!(target_name = %t.name, "conditional create honoured"),
            Ok(false) if t.locking == crate::store::Locking::Lease => tracing::error!(
                target_name = %t.name,
                "target does not honour conditional create: its locks cannot be trusted and lifecycle deletes there are refused; set locking = \"none\" only if one agent at a time uses each tenant"
            ),
            Ok(false) => {
                tracing::warn!(target_name = %t.name, "conditional create not honoured (locking = \"none\")")
            }
            Err(e) if t.primary => return Err(e),
            Err(e) => tracing::warn!(target_name = %t.name, "target unreachable at start: {e}"),
        }
    }
    Ok(())
}

/// Makes the state folder if it is missing, and warns when other users
/// may read it.
pub(super) fn check_state_dir(state_dir: &Path) -> Result<()> {
    let mode = crate::files::ensure_state_dir(state_dir).map_err(|e| Error::io(state_dir, e))?;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "state folder {} is mode {mode:04o}: other users may read its audit log and agent state; chmod 700 it unless that is meant (gallra creates it 0700 and never changes an existing one)",
            state_dir.display()
        );
    }
    Ok(())
}

/// The state file, marked as this process's from now on, with no next
/// runs yet.
pub(super) fn mark_started(state_dir: &Path) -> Result<AgentState> {
    let mut state = AgentState::load(state_dir)?;
    state.pid = Some(std::process::id());
    state.started = Some(Timestamp::now().to_string());
    state.next.clear();
    state.save(state_dir)?;
    Ok(state)
}

/// Serves `[agent] metrics`, if set, from `status`; an address in use
/// keeps the agent from starting.
pub(super) async fn serve_metrics(
    config: &Config,
    status: &Arc<Mutex<Option<Status>>>,
) -> Result<()> {
    if let Some(addr) = config.agent.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("[agent] metrics {addr}"), e))?;
        tracing::info!("metrics at http://{addr}/metrics");
        tokio::spawn(http::serve(listener, status.clone()));
    }
    Ok(())
}

impl Agent {
    /// Every job scheduled, the lifecycle started at once (and the ship,
    /// when the last run left one failed), the status read.
    pub(super) fn start_first_jobs(&mut self) {
        self.schedule_all();
        self.start(Job::Lifecycle);
        if self
            .state
            .lock()
            .expect("not poisoned")
            .ship
            .values()
            .any(|s| s.failures > 0)
        {
            self.start(Job::Ship);
        }
        self.refresh_status();
    }
}
