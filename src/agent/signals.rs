//! SIGHUP reloads the configuration; SIGTERM and SIGINT stop the agent.

use std::sync::Arc;
use std::time::Duration;

use super::{Agent, Job, notify};
use crate::config::Config;
use crate::pace::Pacer;

/// How long a stopping agent waits for its jobs before it exits anyway.
const STOP_WAIT: Duration = Duration::from_secs(25);

impl Agent {
    pub(super) fn reload(&mut self) {
        let path = self.config.path.clone();
        notify(&[sd_notify::NotifyState::Status(
            "reloading the configuration",
        )]);
        match Config::load(&path) {
            Ok(new) => {
                if new.agent.metrics != self.config.agent.metrics
                    || new.agent.state_dir != self.config.agent.state_dir
                    || new.agent.max_concurrent_tenants != self.config.agent.max_concurrent_tenants
                {
                    tracing::warn!(
                        "[agent] metrics, state_dir and max_concurrent_tenants take effect at the next start"
                    );
                }
                self.read_rate = new.agent.max_read.map(|r| Arc::new(Pacer::new(r)));
                self.config = Arc::new(new);
                self.schedule_all();
                tracing::info!(config = %path.display(), sources = self.config.sources.len(), "configuration reloaded");
            }
            Err(e) => {
                tracing::error!("configuration not reloaded, the old one stays in force: {e}");
            }
        }
        // STATUS= said "reloading": say again what runs.
        self.doing.clear();
        self.set_doing();
    }

    /// Tells every job to stop, waits for them (at most STOP_WAIT), and
    /// marks the agent stopped in its state file.
    pub(super) async fn stop(&mut self) {
        tracing::info!(running = self.running.len(), "stopping");
        notify(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("stopping"),
        ]);
        self.cancel.cancel();
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(Ok((job, done)))) => self.finished(job, done),
                Ok(Some(Err(e))) => tracing::error!("a job panicked: {e}"),
                Ok(None) => break,
                Err(_) => {
                    tracing::error!(
                        jobs = %self.running.iter().map(Job::key).collect::<Vec<_>>().join(", "),
                        "jobs did not stop in {}s; exiting without them (their locks lapse with their lease)",
                        STOP_WAIT.as_secs()
                    );
                    break;
                }
            }
        }
        let mut st = self.state.lock().expect("not poisoned");
        st.pid = None;
        st.next.clear();
        if let Err(e) = st.save(&self.config.agent.state_dir) {
            tracing::error!("{e}");
        }
        tracing::info!("stopped");
    }
}
