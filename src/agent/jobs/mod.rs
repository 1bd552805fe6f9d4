//! Starting a job: each kind on tokio's blocking threads, under the lock
//! that keeps the lifecycle alone.

mod backup;
mod drill;
mod lifecycle;
mod ship;

use std::time::Instant;

use super::{Agent, Done, Job, blocking};
use crate::agent_state::JobRun;
use crate::failure::Failure;
use backup::backup_source;
use drill::drill;
use lifecycle::lifecycle;
use ship::ship_all;

impl Agent {
    /// Starts a job unless one of its kind runs already.
    pub(super) fn start(&mut self, job: Job) {
        if self.cancel.is_cancelled() {
            return;
        }
        if self.running.contains(&job) {
            tracing::warn!(job = %job.key(), "still running from its last start; this run is skipped");
            return;
        }
        tracing::info!(job = %job.key(), "starting");
        self.running.insert(job.clone());
        self.set_doing();
        let config = self.config.clone();
        let cancel = self.cancel.clone();
        let exclusive = self.exclusive.clone();
        match job.clone() {
            Job::Backup(source) => {
                let slots = self.tenant_slots.clone();
                let read_rate = self.read_rate.clone();
                self.tasks.spawn(async move {
                    let done =
                        backup_source(config, source, slots, exclusive, cancel, read_rate).await;
                    (Some(job), done)
                });
            }
            Job::Ship => {
                self.tasks.spawn(async move {
                    let _shared = exclusive.read_owned().await;
                    let done = blocking(move || ship_all(&config, cancel)).await;
                    (
                        Some(job),
                        done.unwrap_or_else(|e| Done::Ship {
                            shipped_to: Vec::new(),
                            failed: vec![Failure::on_target("*", e.to_string())],
                        }),
                    )
                });
            }
            Job::Lifecycle => {
                self.tasks.spawn(async move {
                    let _alone = exclusive.write_owned().await;
                    let started = Instant::now();
                    let done = blocking(move || lifecycle(&config)).await;
                    (
                        Some(job),
                        done.unwrap_or_else(|e| Done::Lifecycle {
                            run: JobRun::failed(started, &e),
                            next_expiry: None,
                        }),
                    )
                });
            }
            Job::Drill => {
                self.tasks.spawn(async move {
                    let _shared = exclusive.read_owned().await;
                    let started = Instant::now();
                    let done = blocking(move || drill(&config)).await;
                    let run = done.unwrap_or_else(|e| JobRun::failed(started, &e));
                    (Some(job), Done::Drill(run))
                });
            }
        }
    }
}
