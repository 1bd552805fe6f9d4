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

pub mod http;

use jiff::Timestamp;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{RwLock, Semaphore};
use tokio::task::JoinSet;

use crate::agent_state::{AgentState, BackupRun, JobRun};
use crate::backup::{self, BackupOptions};
use crate::cancel::Cancel;
use crate::config::{Config, IoClass};
use crate::drill::Selection;
use crate::error::{Error, Result};
use crate::failure::Failure;
use crate::pace::Pacer;
use crate::repo::Repository;
use crate::schedule::{Schedule, splay_cap, splay_delay};
use crate::ship::ShipOptions;
use crate::status::Status;
use crate::store::Store;

/// How long a stopping agent waits for its jobs before it exits anyway.
const STOP_WAIT: Duration = Duration::from_secs(25);
/// The longest wait between retries of a failed ship.
const MAX_SHIP_RETRY: Duration = Duration::from_secs(3600);

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

/// The file in the state folder that the running agent holds an exclusive
/// flock on, with its pid inside: one agent per state folder. The lock goes
/// with the process, however it ends; the file stays.
pub const AGENT_LOCK: &str = "agent.lock";

/// How the agent lock file is opened: by the agent that takes it, or by a
/// command that only asks whether an agent holds it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LockFileUse {
    Take,
    Ask,
}

fn open_agent_lock(state_dir: &std::path::Path, by: LockFileUse) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let take = by == LockFileUse::Take;
    std::fs::OpenOptions::new()
        .read(true)
        .write(take)
        .create(take)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(state_dir.join(AGENT_LOCK))
}

fn pid_in(file: &mut std::fs::File) -> String {
    use std::io::Read;
    let mut text = String::new();
    let _ = file.take(32).read_to_string(&mut text);
    match text.trim() {
        "" => "unknown".to_string(),
        pid => pid.to_string(),
    }
}

/// Takes the state folder's agent lock and writes this process's pid into
/// it; another agent holding it is an error naming its pid.
fn lock_state_dir(state_dir: &std::path::Path) -> Result<std::fs::File> {
    use std::io::Write;
    let path = state_dir.join(AGENT_LOCK);
    let mut file =
        open_agent_lock(state_dir, LockFileUse::Take).map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Error::AgentRunning {
                state_dir: state_dir.to_path_buf(),
                pid: pid_in(&mut file),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|e| Error::io(&path, e))?;
    Ok(file)
}

/// The pid of the agent that runs on this state folder, if one does (it
/// holds the agent lock), for commands that should say so.
pub fn running_agent(state_dir: &std::path::Path) -> Option<String> {
    let mut file = open_agent_lock(state_dir, LockFileUse::Ask).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(std::fs::TryLockError::WouldBlock) => Some(pid_in(&mut file)),
        Err(std::fs::TryLockError::Error(_)) => None,
    }
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

/// CPU niceness and I/O class of every thread started from here on (Linux
/// applies both per thread, and threads inherit them).
fn lower_priority(nice: i32, io_class: IoClass) {
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

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify: {e}");
    }
}

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

/// Checks what would make every job fail: the primary's repository and the
/// key; then whether each target honours conditional creates (its locks
/// depend on it). A secondary that cannot be reached is a warning: the
/// ships retry it.
fn self_test(config: &Config) -> Result<()> {
    let primary = Repository::open_target(config.primary(), &config.key)?;
    drop(primary);
    for t in &config.targets {
        // Not `create`: a missing file:// folder is an unmounted target,
        // and ship refuses it; making it here would hide that.
        let outcome = Store::open(t).and_then(|s| s.honours_conditional_create());
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

async fn main_loop(config: Config) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signal_err = |e| Error::io("signal handler", e);
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_err)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_err)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(signal_err)?;

    let state_dir = &config.agent.state_dir;
    let mode = crate::files::ensure_state_dir(state_dir).map_err(|e| Error::io(state_dir, e))?;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "state folder {} is mode {mode:04o}: other users may read its audit log and agent state; chmod 700 it unless that is meant (gallra creates it 0700 and never changes an existing one)",
            state_dir.display()
        );
    }
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
    let mut state = AgentState::load(&config.agent.state_dir)?;
    state.pid = Some(std::process::id());
    state.started = Some(Timestamp::now().to_string());
    state.next.clear();
    state.save(&config.agent.state_dir)?;

    let status = Arc::new(Mutex::new(None));
    if let Some(addr) = config.agent.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("[agent] metrics {addr}"), e))?;
        tracing::info!("metrics at http://{addr}/metrics");
        tokio::spawn(http::serve(listener, status.clone()));
    }

    let mut agent = Agent {
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
    };
    agent.schedule_all();
    agent.start(Job::Lifecycle);
    if agent
        .state
        .lock()
        .expect("not poisoned")
        .ship
        .values()
        .any(|s| s.failures > 0)
    {
        agent.start(Job::Ship);
    }
    agent.refresh_status();

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
    fn earliest(&self) -> (Option<Job>, Option<Timestamp>) {
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
    fn schedule_all(&mut self) {
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

    fn reschedule(&mut self, job: &Job) {
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

    fn save_next(&self) {
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

    fn set_doing(&mut self) {
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

    /// Starts a job unless one of its kind runs already.
    fn start(&mut self, job: Job) {
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

    /// Recomputes the status (reads every target) for metrics, unless a
    /// refresh runs already; then once more after it.
    fn refresh_status(&mut self) {
        if self.status_running || self.cancel.is_cancelled() {
            self.status_wanted = true;
            return;
        }
        self.status_running = true;
        self.status_wanted = false;
        let config = self.config.clone();
        self.tasks.spawn(async move {
            let status = blocking(move || crate::status::collect(&config, Timestamp::now())).await;
            (None, Done::Status(Box::new(status)))
        });
    }

    fn look_in_inbox(&mut self) {
        if self.running.contains(&Job::Lifecycle) {
            return;
        }
        let inbox = crate::lifecycle::journal::inbox_dir(&self.config.agent.state_dir);
        let pending = crate::lifecycle::journal::pending(&inbox);
        if let Ok(files) = &pending {
            // Forget what left the inbox, so that a later file of the same
            // name is taken in.
            self.inbox_tried.retain(|f| files.contains(f));
        }
        match pending {
            // A file that could not be recorded (a target down) stays in
            // the inbox; it is tried again with the next scheduled run, not
            // at every poll.
            Ok(files) if files.iter().any(|f| !self.inbox_tried.contains(f)) => {
                tracing::info!(files = files.len(), "events in the inbox");
                self.inbox_tried = files.into_iter().collect();
                self.start(Job::Lifecycle);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("inbox {}: {e}", inbox.display()),
        }
    }

    fn finished(&mut self, job: Option<Job>, done: Done) {
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
                        retry_ship |= !t.ship_failed.is_empty();
                        ship_failures(&mut st, t.ship_failed);
                    }
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
        if let Some(at) = lifecycle_at {
            // Deletions are made when they fall due, not at the next
            // daily run: the promise is "exactly when the window passed".
            let current = self.next.get(&Job::Lifecycle).copied();
            if current.is_none_or(|c| at < c) {
                self.next.insert(Job::Lifecycle, at);
                self.save_next();
            }
        }
        if job.is_some() || self.status_wanted {
            self.refresh_status();
        }
    }

    /// The wait before the next ship retry: the first retry wait, doubled
    /// for each failure in a row, at most an hour.
    fn ship_wait(&self) -> Duration {
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

    fn reload(&mut self) {
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
    async fn stop(&mut self) {
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

/// Runs blocking library code on tokio's blocking threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("agent job", std::io::Error::other(e)))?
}

fn ship_failures(st: &mut AgentState, failed: Vec<Failure>) {
    for f in failed {
        let target = f.target.unwrap_or_default();
        tracing::error!(target_name = %target, "ship failed: {}", f.error);
        st.ship_failed(target, f.error);
    }
}

fn write_textfile(file: &std::path::Path, text: &str) {
    // node_exporter runs as another user and must read it.
    if let Err(e) = crate::files::replace_file_with_mode(file, text.as_bytes(), 0o644) {
        tracing::warn!("metrics textfile {}: {e}", file.display());
    }
}

/// Backs one source up for each of its tenants, a few tenants at a time,
/// and ships each tenant's new snapshot to the secondaries.
async fn backup_source(
    config: Arc<Config>,
    source: String,
    slots: Arc<Semaphore>,
    exclusive: Arc<RwLock<()>>,
    cancel: Cancel,
    read_rate: Option<Arc<Pacer>>,
) -> Done {
    let (jobs, failed) = backup::plan_jobs(&config, &[]);
    let mut tenants: Vec<String> = jobs
        .iter()
        .filter(|j| j.source.name == source)
        .map(|j| j.tenant.clone())
        .collect();
    tenants.dedup();
    // A customer whose contract is over, or who asked for erasure, is not
    // backed up again; when that cannot be known, no one is (fail closed).
    let c = config.clone();
    let asked = tenants.clone();
    let refusals = match blocking(move || {
        let repo = Repository::open_target(c.primary(), &c.key)?;
        Ok(crate::lifecycle::gate::backup_refusals(
            &repo,
            &c.policy,
            &asked,
            &[],
            Timestamp::now(),
        ))
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            let why = format!("lifecycle events not read, so no tenant is backed up: {e}");
            tenants
                .iter()
                .map(|t| {
                    let r = crate::lifecycle::gate::Refusal {
                        why: why.clone(),
                        fault: true,
                    };
                    (t.clone(), r)
                })
                .collect()
        }
    };
    let mut results: Vec<TenantBackup> = failed
        .into_iter()
        .filter(|f| f.source.as_ref() == Some(&source))
        .map(|f| {
            let tenant = f.tenant.unwrap_or_default();
            TenantBackup::failed(tenant, &source, Timestamp::now(), f.error)
        })
        .collect();
    tenants.retain(|t| {
        let Some(r) = refusals.get(t) else {
            return true;
        };
        if r.fault {
            tracing::error!(tenant = %t, source = %source, "not backed up: {}", r.why);
            results.push(TenantBackup::failed(
                t.clone(),
                &source,
                Timestamp::now(),
                format!("not backed up: {}", r.why),
            ));
        } else {
            tracing::debug!(tenant = %t, source = %source, "not backed up: {}", r.why);
        }
        false
    });
    let mut set = JoinSet::new();
    for tenant in tenants {
        let (config, source, slots, exclusive, cancel, read_rate) = (
            config.clone(),
            source.clone(),
            slots.clone(),
            exclusive.clone(),
            cancel.clone(),
            read_rate.clone(),
        );
        set.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            let _shared = exclusive.read_owned().await;
            let t = tenant.clone();
            let s = source.clone();
            let attempt = Timestamp::now();
            match blocking(move || backup_tenant(&config, &t, &s, cancel, read_rate)).await {
                Ok(done) => done,
                Err(Error::Cancelled) => {
                    let mut t = TenantBackup::failed(tenant, &source, attempt, String::new());
                    t.cancelled = true;
                    t
                }
                Err(e) => TenantBackup::failed(tenant, &source, attempt, e.to_string()),
            }
        });
    }
    while let Some(r) = set.join_next().await {
        match r {
            Ok(t) => results.push(t),
            Err(e) => tracing::error!("a backup panicked: {e}"),
        }
    }
    Done::Backup {
        source,
        tenants: results,
    }
}

fn backup_tenant(
    config: &Config,
    tenant: &str,
    source: &str,
    cancel: Cancel,
    read_rate: Option<Arc<Pacer>>,
) -> Result<TenantBackup> {
    let attempt = Timestamp::now();
    let started = Instant::now();
    let repo = Repository::open_target(config.primary(), &config.key)?;
    let job = crate::job::backup_audit_ship(
        config,
        &repo,
        &BackupOptions {
            tenants: vec![tenant.to_string()],
            sources: vec![source.to_string()],
            compression: config.repository.compression,
            pack_size: config.repository.pack_size,
            cancel: cancel.clone(),
            read_rate,
            ..Default::default()
        },
        Some(ShipOptions {
            host: config.agent.host.clone(),
            cancel,
            ..Default::default()
        }),
        |report, audit_failed| {
            for (target, e) in audit_failed {
                tracing::warn!(target_name = %target, "audit record not written: {e}");
            }
            if let Some(f) = report.failed.first() {
                tracing::error!(tenant, source, "backup failed: {}", f.error);
            }
            if let Some(s) = report.snapshots.last() {
                tracing::info!(
                    tenant, source, snapshot = %s.id.short(), files = s.snapshot.files,
                    bytes_read = s.snapshot.bytes_read, bytes_added = s.snapshot.bytes_added,
                    seconds = format!("{:.1}", s.seconds), "snapshot taken"
                );
            }
        },
    )?;
    let report = &job.backup;
    let mut run = BackupRun {
        tenant: tenant.to_string(),
        source: source.to_string(),
        last_attempt: Some(attempt.to_string()),
        last_duration_seconds: started.elapsed().as_secs_f64(),
        ..Default::default()
    };
    if let Some(f) = report.failed.first() {
        run.last_error = Some(f.error.clone());
    }
    let mut out = TenantBackup::new(tenant.to_string(), run);
    out.cancelled = report.cancelled && report.snapshots.is_empty() && report.failed.is_empty();
    let Some(s) = report.snapshots.last() else {
        return Ok(out);
    };
    out.run.last_success = Some(attempt.to_string());
    out.run.last_snapshot = Some(s.id.to_hex());
    out.run.bytes_read = s.snapshot.bytes_read;
    out.run.bytes_added = s.snapshot.bytes_added;
    for r in &job.ships {
        out.shipped_bytes += r.copied_bytes;
        out.shipped_objects += r.copied as u64;
        if r.ok() {
            tracing::info!(tenant, target_name = %r.target, objects = r.copied, bytes = r.copied_bytes, "shipped");
            out.shipped_to.push(r.target.clone());
        }
    }
    out.ship_failed = job.ship_failed;
    Ok(out)
}

/// Ships every tenant to every secondary: the retry after a failed ship.
fn ship_all(config: &Config, cancel: Cancel) -> Result<Done> {
    let secondaries: Vec<&crate::config::Target> = config.secondaries().collect();
    let (reports, failed) = crate::ship::ship_to(
        config.primary(),
        &config.key,
        &secondaries,
        &ShipOptions {
            host: config.agent.host.clone(),
            cancel,
            ..Default::default()
        },
    )?;
    let shipped_to = reports
        .iter()
        .filter(|r| r.ok())
        .map(|r| {
            tracing::info!(target_name = %r.target, objects = r.copied, bytes = r.copied_bytes, "shipped");
            r.target.clone()
        })
        .collect();
    Ok(Done::Ship { shipped_to, failed })
}

/// Takes in the inbox's events and applies the lifecycle; returns when
/// something expires next.
fn lifecycle(config: &Config) -> Result<Done> {
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
    let report = lc.apply(now, crate::lifecycle::apply::Mode::Delete, None)?;
    let mut deleted = 0;
    for t in &report.tenants {
        for r in &t.targets {
            deleted += r.snapshots_deleted;
            if r.snapshots_deleted > 0 {
                tracing::info!(tenant = %t.tenant, target_name = %r.target, snapshots = r.snapshots_deleted, bytes = r.bytes_deleted, "deleted by the lifecycle");
            }
        }
        if t.key_destroyed {
            tracing::info!(tenant = %t.tenant, "tenant key destroyed on every target");
        }
    }
    for f in &report.failures {
        tracing::error!(target_name = %f.target_or_empty(), tenant = f.tenant.as_deref().unwrap_or("-"), "lifecycle: {}", f.error);
    }
    let (plan, _) = lc.plan(Timestamp::now())?;
    let next_expiry = plan.upcoming.iter().map(|u| u.expires).min();
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

/// A drill of `[drill] sample` tenants chosen at random, from `[drill] target`.
fn drill(config: &Config) -> Result<JobRun> {
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
