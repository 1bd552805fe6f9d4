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
    /// Failed attempts since the last success; the retry wait doubles with each.
    pub failures: u32,
    pub next_retry: Option<String>,
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
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                object: path.display().to_string(),
                message: format!("agent state does not parse: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    pub fn save(&self, state_dir: &Path) -> Result<()> {
        let path = AgentState::path(state_dir);
        let tmp = state_dir.join(format!(".{STATE_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).expect("serialisable");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)
        };
        write().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
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
