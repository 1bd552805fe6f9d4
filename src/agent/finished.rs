//! What a finished job leaves: its run in the state file, and the next
//! ship retry or lifecycle run it calls for.

use super::status_refresh::write_textfile;
use super::{Agent, Done, Job, TenantBackup};
use crate::agent_state::AgentState;
use crate::failure::Failure;

impl Agent {
    pub(super) fn finished(&mut self, job: Option<Job>, done: Done) {
        if let Some(job) = &job {
            self.running.remove(job);
            self.set_doing();
        }
        let state_dir = self.config.agent.state_dir.clone();
        let mut retry_ship = false;
        let mut lifecycle_at = None;
        {
            let mut st = self.state.lock().expect("not poisoned");
            match done {
                Done::Backup { source, tenants } => {
                    retry_ship = record_backups(&mut st, &source, tenants);
                }
                Done::Ship { shipped_to, failed } => {
                    for target in shipped_to {
                        st.ship_succeeded(target);
                    }
                    retry_ship = !failed.is_empty();
                    ship_failures(&mut st, failed);
                }
                Done::Lifecycle { run, next_expiry } => {
                    if !run.ok {
                        st.count_error("lifecycle");
                    }
                    st.totals.lifecycle_runs += 1;
                    lifecycle_at = next_expiry;
                    st.lifecycle = Some(run);
                }
                Done::Drill(run) => {
                    if !run.ok {
                        st.count_error("drill");
                    }
                    st.totals.drills += 1;
                    st.drill = Some(run);
                }
                Done::Status(status) => {
                    self.status_running = false;
                    match *status {
                        Ok(s) => {
                            if let Some(file) = &self.config.agent.metrics_textfile {
                                write_textfile(file, &crate::metrics::render(&s));
                            }
                            *self.status.lock().expect("not poisoned") = Some(s);
                        }
                        Err(e) => {
                            st.count_error("status");
                            tracing::warn!("status not refreshed: {e}");
                        }
                    }
                }
            }
            if let Err(e) = st.save(&state_dir) {
                tracing::error!("{e}");
            }
        }
        if retry_ship {
            self.schedule_ship_retry();
        }
        if let Some(at) = lifecycle_at {
            self.run_lifecycle_by(at);
        }
        if job.is_some() || self.status_wanted {
            self.refresh_status();
        }
    }
}

/// Records each tenant's backup of `source`, and its ship; says whether a
/// ship failed (and is to be retried).
fn record_backups(st: &mut AgentState, source: &str, tenants: Vec<TenantBackup>) -> bool {
    let mut ship_failed = false;
    for t in tenants {
        if t.cancelled {
            continue;
        }
        if t.run.last_error.is_some() {
            st.count_error("backup");
        } else {
            st.totals.backups += 1;
            st.totals.bytes_read += t.run.bytes_read;
            st.totals.bytes_added += t.run.bytes_added;
        }
        st.totals.bytes_shipped += t.shipped_bytes;
        st.totals.objects_shipped += t.shipped_objects;
        let key = format!("{}/{source}", t.tenant);
        let mut run = t.run;
        if run.last_error.is_some()
            && let Some(old) = st.backups.get(&key)
        {
            // A failure does not erase the last success.
            run.last_success = old.last_success.clone();
            run.last_snapshot = old.last_snapshot.clone();
        }
        st.backups.insert(key, run);
        for target in t.shipped_to {
            st.ship_succeeded(target);
        }
        ship_failed |= !t.ship_failed.is_empty();
        ship_failures(st, t.ship_failed);
    }
    ship_failed
}

fn ship_failures(st: &mut AgentState, failed: Vec<Failure>) {
    for f in failed {
        let target = f.target.unwrap_or_default();
        tracing::error!(target_name = %target, "ship failed: {}", f.error);
        st.ship_failed(target, f.error);
    }
}
