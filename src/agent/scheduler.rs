//! When each job runs next: its schedule with a random splay, and the
//! backing-off retry of a failed ship.

use jiff::Timestamp;
use std::time::Duration;

use super::{Agent, Job};
use crate::config::Config;
use crate::schedule::{Schedule, splay_cap, splay_delay};

/// The longest wait between retries of a failed ship.
const MAX_SHIP_RETRY: Duration = Duration::from_secs(3600);

fn now_zoned(config: &Config) -> jiff::Zoned {
    Timestamp::now().to_zoned(config.policy.time_zone.clone())
}

/// A uniform fraction in [0, 1).
fn random_fraction() -> f64 {
    let bits = u64::from_le_bytes(crate::crypto::random_bytes::<8>());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The next run of a schedule after now, delayed by a random splay.
fn next_run(config: &Config, schedule: &Schedule) -> Timestamp {
    let at = schedule.next_after(&now_zoned(config)).timestamp();
    let splay = splay_delay(
        splay_cap(config.agent.splay, schedule.interval()),
        random_fraction(),
    );
    at.checked_add(jiff::SignedDuration::try_from(splay).unwrap_or_default())
        .unwrap_or(at)
}

impl Agent {
    pub(super) fn earliest(&self) -> (Option<Job>, Option<Timestamp>) {
        match self.next.iter().min_by_key(|(_, at)| **at) {
            Some((job, at)) => (Some(job.clone()), Some(*at)),
            None => (None, None),
        }
    }

    fn schedule_of(&self, job: &Job) -> Option<Schedule> {
        let c = &self.config;
        match job {
            Job::Backup(source) => c
                .sources
                .iter()
                .find(|s| &s.name == source)
                .map(|s| s.schedule.clone()),
            Job::Lifecycle => Some(c.agent.lifecycle.clone()),
            Job::Drill => c.drill.schedule.clone(),
            Job::Ship => None,
        }
    }

    /// Sets the next run of every scheduled job anew (at start and after
    /// a config reload), and forgets jobs no longer configured.
    pub(super) fn schedule_all(&mut self) {
        let mut jobs: Vec<Job> = self
            .config
            .sources
            .iter()
            .map(|s| Job::Backup(s.name.clone()))
            .collect();
        jobs.push(Job::Lifecycle);
        jobs.push(Job::Drill);
        self.next.retain(|j, _| jobs.contains(j) || *j == Job::Ship);
        for job in jobs {
            self.reschedule(&job);
        }
    }

    pub(super) fn reschedule(&mut self, job: &Job) {
        match self.schedule_of(job) {
            Some(s) => {
                let at = next_run(&self.config, &s);
                self.next.insert(job.clone(), at);
            }
            None if *job != Job::Ship => {
                self.next.remove(job);
            }
            None => {}
        }
        self.save_next();
    }

    pub(super) fn save_next(&self) {
        let mut st = self.state.lock().expect("not poisoned");
        st.next = self
            .next
            .iter()
            .map(|(j, at)| (j.key(), at.to_string()))
            .collect();
        if let Err(e) = st.save(&self.config.agent.state_dir) {
            tracing::error!("{e}");
        }
    }

    /// Sets the ship's next run to the retry wait from now, unless it runs
    /// sooner already.
    pub(super) fn schedule_ship_retry(&mut self) {
        let wait = self.ship_wait();
        let at = Timestamp::now()
            .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or_default())
            .unwrap_or(Timestamp::MAX);
        tracing::info!("ship retried in {}s", wait.as_secs());
        let earlier = self.next.get(&Job::Ship).is_none_or(|t| at < *t);
        if earlier {
            self.next.insert(Job::Ship, at);
        }
        self.save_next();
    }

    /// Brings the lifecycle's next run forward to `at`, when something
    /// expires then. Deletions are made when they fall due, not at the next
    /// daily run: the promise is "exactly when the window passed".
    pub(super) fn run_lifecycle_by(&mut self, at: Timestamp) {
        let current = self.next.get(&Job::Lifecycle).copied();
        if current.is_none_or(|c| at < c) {
            self.next.insert(Job::Lifecycle, at);
            self.save_next();
        }
    }

    /// The wait before the next ship retry: the first retry wait, doubled
    /// for each failure in a row, at most an hour.
    pub(super) fn ship_wait(&self) -> Duration {
        let failures = self
            .state
            .lock()
            .expect("not poisoned")
            .ship
            .values()
            .map(|s| s.failures)
            .max()
            .unwrap_or(1);
        let first = self.config.agent.ship_retry;
        first
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(MAX_SHIP_RETRY.max(first))
    }
}
