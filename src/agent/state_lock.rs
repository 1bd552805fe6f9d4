//! One agent per state folder: the lock file it holds while it runs.

use crate::error::{Error, Result};

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
pub(super) fn lock_state_dir(state_dir: &std::path::Path) -> Result<std::fs::File> {
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
