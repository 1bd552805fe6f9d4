//! What the agent remembers between runs and shows to `gallra status`:
//! `<state_dir>/agent-state.json`, rewritten whole (temp file + rename)
//! after each job, so a reader never sees half a file.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const STATE_FILE: &str = "agent-state.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AgentState {
    /// The running agent's process id, cleared when it stops.
    pub pid: Option<u32>,
    pub started: Option<String>,
    /// Backups by "tenant/source".
    pub backups: BTreeMap<String, BackupRun>,
    /// When each job next runs: "backup:<source>", "lifecycle", "drill".
    pub next: BTreeMap<String, String>,
    /// Shipping by target.
    pub ship: BTreeMap<String, ShipState>,
    pub lifecycle: Option<JobRun>,
    pub drill: Option<JobRun>,
    pub totals: Totals,
    /// Failures by kind: backup, ship, lifecycle, inbox, drill, status.
    pub errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BackupRun {
    pub tenant: String,
    pub source: String,
    pub last_attempt: Option<String>,
    pub last_success: Option<String>,
    pub last_snapshot: Option<String>,
    pub last_duration_seconds: f64,
    pub last_error: Option<String>,
    pub bytes_read: u64,
    pub bytes_added: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ShipState {
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    /// Failed attempts since the last success; the retry wait doubles with
    /// each (the retry's time is `next["ship"]`).
    pub failures: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct JobRun {
    pub time: String,
    pub ok: bool,
    pub seconds: f64,
    pub error: Option<String>,
    /// What it did, in a few words.
    pub detail: String,
}

impl JobRun {
    /// A job that could not run at all (a target that does not open, say).
    pub fn failed(started: std::time::Instant, e: &Error) -> JobRun {
        JobRun {
            time: jiff::Timestamp::now().to_string(),
            ok: false,
            seconds: started.elapsed().as_secs_f64(),
            error: Some(e.to_string()),
            detail: String::new(),
        }
    }
}

/// Counters since the state file was made; they only grow.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Totals {
    pub backups: u64,
    pub bytes_read: u64,
    pub bytes_added: u64,
    pub bytes_shipped: u64,
    pub objects_shipped: u64,
    pub drills: u64,
    pub lifecycle_runs: u64,
}

impl AgentState {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(STATE_FILE)
    }

    /// The state file, or an empty state if there is none yet.
    pub fn load(state_dir: &Path) -> Result<AgentState> {
        let path = AgentState::path(state_dir);
        let limit = crate::limits::ReadLimit::AgentState;
        let read = std::fs::File::open(&path)
            .and_then(|mut f| crate::files::read_capped(&mut f, limit.bytes()));
        match read {
            Ok(None) => Err(Error::TooLarge {
                object: path.display().to_string(),
                limit,
            }),
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                object: path.display().to_string(),
                message: format!("agent state does not parse: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    pub fn save(&self, state_dir: &Path) -> Result<()> {
        let path = AgentState::path(state_dir);
        let bytes = serde_json::to_vec_pretty(self).expect("serialisable");
        crate::files::replace_file(&path, &bytes).map_err(|e| Error::io(&path, e))
    }

    pub fn ship_succeeded(&mut self, target: String) {
        let s = self.ship.entry(target).or_default();
        s.last_success = Some(jiff::Timestamp::now().to_string());
        s.last_error = None;
        s.failures = 0;
    }

    pub fn ship_failed(&mut self, target: String, error: String) {
        self.count_error("ship");
        let s = self.ship.entry(target).or_default();
        s.failures += 1;
        s.last_error = Some(error);
    }

    pub fn count_error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    /// Whether the process that wrote this state still runs.
    pub fn agent_running(&self) -> bool {
        self.pid.is_some_and(|pid| {
            // SAFETY: signal 0 only asks whether the process exists.
            unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some_state(pid: u32) -> AgentState {
        let mut s = AgentState {
            pid: Some(pid),
            started: Some("2026-03-01T00:00:00Z".into()),
            ..Default::default()
        };
        s.next
            .insert("backup:www".into(), "2026-03-02T02:00:00Z".into());
        s.totals.backups = u64::from(pid);
        s
    }

    #[test]
    fn the_state_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        some_state(1).save(dir.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&AgentState::path(dir.path())), 0o600);
        // Still so after it is rewritten.
        some_state(2).save(dir.path()).unwrap();
        assert_eq!(mode(&AgentState::path(dir.path())), 0o600);
    }

    #[test]
    fn save_replaces_the_file_whole_and_leaves_no_temp_file() {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = AgentState::path(dir.path());
        let first = some_state(1);
        first.save(dir.path()).unwrap();
        let before = std::fs::read(&path).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();

        // A reader that opened the file before a save reads the old state
        // whole: the save writes a new file and renames it over the old one
        // rather than truncating and rewriting in place.
        let mut reader = std::fs::File::open(&path).unwrap();
        let second = some_state(2);
        second.save(dir.path()).unwrap();
        let mut seen = Vec::new();
        reader.read_to_end(&mut seen).unwrap();
        assert_eq!(seen, before, "the open reader saw the file change under it");
        assert_eq!(serde_json::from_slice::<AgentState>(&seen).unwrap(), first);
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), inode, "a new file");
        assert_eq!(AgentState::load(dir.path()).unwrap(), second);

        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [STATE_FILE], "no temp file left behind");
    }

    #[test]
    fn a_failed_save_keeps_the_previous_state() {
        let dir = tempfile::tempdir().unwrap();
        let first = some_state(1);
        first.save(dir.path()).unwrap();
        // The temp file cannot be written: a directory stands in its way.
        let tmp = dir.path().join(format!(".{STATE_FILE}.tmp"));
        std::fs::create_dir(&tmp).unwrap();
        let e = some_state(2).save(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!(".{STATE_FILE}.tmp")), "{e}");
        assert_eq!(AgentState::load(dir.path()).unwrap(), first);
        std::fs::remove_dir(&tmp).unwrap();

        // A temp file left by a crash is overwritten, not appended to.
        std::fs::write(&tmp, "x".repeat(100_000)).unwrap();
        let third = some_state(3);
        third.save(dir.path()).unwrap();
        assert_eq!(AgentState::load(dir.path()).unwrap(), third);
        assert!(!tmp.exists());

        // No state directory: the error names the path, nothing is created.
        let gone = dir.path().join("missing");
        let e = third.save(&gone).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
        assert!(!gone.exists());
    }

    #[test]
    fn older_and_newer_state_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = AgentState::path(dir.path());
        // Written by an older agent: fields missing take their defaults.
        std::fs::write(&path, r#"{"pid": 7, "totals": {"backups": 3}}"#).unwrap();
        let s = AgentState::load(dir.path()).unwrap();
        assert_eq!((s.pid, s.totals.backups, s.totals.drills), (Some(7), 3, 0));
        assert!(s.errors.is_empty() && s.backups.is_empty());
        // Written by a newer agent: fields it does not know are ignored.
        std::fs::write(
            &path,
            r#"{"pid": null, "errors": {"ship": 2}, "future": [1]}"#,
        )
        .unwrap();
        let s = AgentState::load(dir.path()).unwrap();
        assert_eq!(s.errors["ship"], 2);
        assert!(!s.agent_running(), "no pid, no agent");
    }

    #[test]
    fn an_exited_process_is_not_running() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let s = AgentState {
            pid: Some(pid),
            ..Default::default()
        };
        assert!(!s.agent_running(), "pid {pid} was reaped");
    }

    #[test]
    fn saves_and_loads_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(AgentState::load(dir.path()).unwrap(), AgentState::default());
        let mut s = AgentState {
            pid: Some(std::process::id()),
            ..Default::default()
        };
        s.count_error("ship");
        s.count_error("ship");
        s.backups.insert(
            "acme/www".into(),
            BackupRun {
                tenant: "acme".into(),
                source: "www".into(),
                bytes_read: 7,
                ..Default::default()
            },
        );
        s.save(dir.path()).unwrap();
        let back = AgentState::load(dir.path()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.errors["ship"], 2);
        assert!(back.agent_running(), "this test process runs");
        std::fs::write(AgentState::path(dir.path()), "{").unwrap();
        let e = AgentState::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(STATE_FILE), "{e}");
    }
}
