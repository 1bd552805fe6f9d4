//! `gallra agent`: the daemon. A tokio loop that keeps the schedule, takes
//! signals, polls the inbox and serves metrics; the work itself (backups,
//! ships, the lifecycle, drills) is the same blocking library code the CLI
//! runs, on tokio's blocking threads.
//!
//! Rules it keeps: never two backups of one source at once; at most
//! `max_concurrent_tenants` tenant backups at once; the lifecycle runs alone
//! (it takes exclusive locks that backups and drills would wait on); on
//! SIGTERM every job is told to stop before committing and the agent exits
//! within 30 seconds.

mod finished;
pub mod http;
mod inbox;
mod jobs;
mod scheduler;
mod signals;
mod startup;
mod state_lock;
mod status_refresh;

pub use state_lock::{AGENT_LOCK, running_agent};

use jiff::Timestamp;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{RwLock, Semaphore};
use tokio::task::JoinSet;

use crate::agent_state::{AgentState, BackupRun, JobRun};
use crate::cancel::Cancel;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::failure::Failure;
use crate::pace::Pacer;
use crate::status::Status;
use startup::{check_state_dir, lower_priority, mark_started, self_test, serve_metrics};
use state_lock::lock_state_dir;

/// A job the scheduler starts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Job {
    Backup(String),
    Ship,
    Lifecycle,
    Drill,
}

impl Job {
    /// Its key in the state file's `next` table.
    fn key(&self) -> String {
        match self {
            Job::Backup(source) => format!("backup:{source}"),
            Job::Ship => "ship".into(),
            Job::Lifecycle => "lifecycle".into(),
            Job::Drill => "drill".into(),
        }
    }
}

/// What a finished job reports to the loop.
enum Done {
    Backup {
        source: String,
        tenants: Vec<TenantBackup>,
    },
    Ship {
        /// The targets shipped to in full.
        shipped_to: Vec<String>,
        /// Each target (or tenant on one) that was not.
        failed: Vec<Failure>,
    },
    Lifecycle {
        run: JobRun,
        /// The earliest moment something expires next.
        next_expiry: Option<Timestamp>,
    },
    Drill(JobRun),
    Status(Box<Result<Status>>),
}

/// One tenant's backup of one source, then its ship.
struct TenantBackup {
    tenant: String,
    run: BackupRun,
    shipped_bytes: u64,
    shipped_objects: u64,
    /// Targets shipped to, and those that failed.
    shipped_to: Vec<String>,
    ship_failed: Vec<Failure>,
    /// Stopped by the agent's stop before it committed: the last run on
    /// record (success or failure) stays the last run.
    cancelled: bool,
}

impl TenantBackup {
    fn new(tenant: String, run: BackupRun) -> TenantBackup {
        TenantBackup {
            tenant,
            run,
            shipped_bytes: 0,
            shipped_objects: 0,
            shipped_to: Vec::new(),
            ship_failed: Vec::new(),
            cancelled: false,
        }
    }

    fn failed(tenant: String, source: &str, attempt: Timestamp, error: String) -> TenantBackup {
        let run = BackupRun {
            tenant: tenant.clone(),
            source: source.to_string(),
            last_attempt: Some(attempt.to_string()),
            last_error: Some(error),
            ..Default::default()
        };
        TenantBackup::new(tenant, run)
    }
}

struct Agent {
    config: Arc<Config>,
    state: Arc<Mutex<AgentState>>,
    cancel: Cancel,
    /// Tenant backups at once.
    tenant_slots: Arc<Semaphore>,
    /// Read by backups, ships and drills; written by the lifecycle.
    exclusive: Arc<RwLock<()>>,
    read_rate: Option<Arc<Pacer>>,
    status: Arc<Mutex<Option<Status>>>,
    next: BTreeMap<Job, Timestamp>,
    running: std::collections::BTreeSet<Job>,
    status_running: bool,
    status_wanted: bool,
    tasks: JoinSet<(Option<Job>, Done)>,
    /// What the agent is doing, for STATUS= and the log.
    doing: String,
    /// Inbox files a lifecycle run was started for.
    inbox_tried: std::collections::BTreeSet<PathBuf>,
}

/// Runs the agent until SIGTERM or SIGINT. Returns an error only for what
/// keeps it from starting (another agent on the state folder, no
/// repository, a key that does not open, a metrics address in use).
pub fn run(config: Config) -> Result<()> {
    lower_priority(config.agent.nice, config.agent.io_class);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("gallra-agent")
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    rt.block_on(main_loop(config))
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify: {e}");
    }
}

async fn main_loop(config: Config) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signal_err = |e| Error::io("signal handler", e);
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_err)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_err)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(signal_err)?;

    let state_dir = &config.agent.state_dir;
    check_state_dir(state_dir)?;
    // Held until the agent exits; a second agent stops here, before it
    // touches the state file.
    let _agent_lock = lock_state_dir(state_dir)?;
    let config = Arc::new(config);
    {
        let c = config.clone();
        tokio::task::spawn_blocking(move || self_test(&c))
            .await
            .map_err(|e| Error::io("self test", std::io::Error::other(e)))??;
    }
    let state = mark_started(&config.agent.state_dir)?;
    let status = Arc::new(Mutex::new(None));
    serve_metrics(&config, &status).await?;
    let mut agent = Agent::new(config, state, status);
    agent.start_first_jobs();

    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("running"),
    ]);
    tracing::info!(
        host = %agent.config.agent.host,
        sources = agent.config.sources.len(),
        "agent started"
    );
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut inbox_tick = tokio::time::interval(agent.config.agent.inbox_poll);

    loop {
        let (due_job, due_at) = agent.earliest();
        let sleep = due_at
            .map(|at| {
                let wait = Timestamp::now().duration_until(at);
                wait.try_into().unwrap_or(Duration::ZERO)
            })
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => agent.reload(),
            _ = tokio::time::sleep(sleep) => {
                if let Some(job) = due_job {
                    agent.next.remove(&job);
                    agent.start(job.clone());
                    agent.reschedule(&job);
                }
            }
            Some(joined) = agent.tasks.join_next(), if !agent.tasks.is_empty() => {
                match joined {
                    Ok((job, done)) => agent.finished(job, done),
                    Err(e) => tracing::error!("a job panicked: {e}"),
                }
            }
            _ = inbox_tick.tick() => agent.look_in_inbox(),
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    }

    agent.stop().await;
    Ok(())
}

impl Agent {
    fn new(config: Arc<Config>, state: AgentState, status: Arc<Mutex<Option<Status>>>) -> Agent {
        Agent {
            read_rate: config.agent.max_read.map(|r| Arc::new(Pacer::new(r))),
            tenant_slots: Arc::new(Semaphore::new(config.agent.max_concurrent_tenants)),
            config,
            state: Arc::new(Mutex::new(state)),
            cancel: Cancel::new(),
            exclusive: Arc::new(RwLock::new(())),
            status,
            next: BTreeMap::new(),
            running: Default::default(),
            status_running: false,
            status_wanted: true,
            tasks: JoinSet::new(),
            doing: "starting".into(),
            inbox_tried: Default::default(),
        }
    }

    pub(super) fn set_doing(&mut self) {
        let mut parts: Vec<String> = self.running.iter().map(Job::key).collect();
        if parts.is_empty() {
            parts.push("idle".into());
        }
        let text = parts.join(", ");
        if text != self.doing {
            notify(&[sd_notify::NotifyState::Status(&text)]);
            self.doing = text;
        }
    }
}

/// Runs blocking library code on tokio's blocking threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("agent job", std::io::Error::other(e)))?
}
