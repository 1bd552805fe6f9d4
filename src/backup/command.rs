//! Command sources: a program's stdout stored as one file, the program run
//! without gallra's secrets in its environment and never left running.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::pipeline::{Pipeline, SinkError};
use crate::cancel::Cancel;
use crate::format::tree::{Node, NodeKind};

/// Whether a variable of gallra's environment is one a command source must
/// not see: gallra's own settings and secrets, the cloud SDKs' credentials
/// (which object_store reads from the environment), and systemd's
/// credentials folder, which holds the key. A dump tool's own secrets
/// (`MYSQL_PWD`, `PGPASSWORD`) pass through.
fn is_withheld_from_commands(name: &str, key: &crate::crypto::KeySource) -> bool {
    const PREFIXES: &[&str] = &["GALLRA_", "AWS_", "AZURE_", "GOOGLE_", "GCS_", "GCP_"];
    PREFIXES.iter().any(|p| name.starts_with(p))
        || name == "CREDENTIALS_DIRECTORY"
        || matches!(key, crate::crypto::KeySource::PassphraseEnv(v) if v == name)
}

/// How long a command source is given to exit after SIGTERM before its
/// process group is killed.
const COMMAND_TERM_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends the process group `pgid`: SIGTERM, then SIGKILL to whatever is left
/// after the grace period.
fn end_process_group(pgid: i32, child: &mut std::process::Child) {
    // SAFETY: kill(2) with a negative pid signals that process group; it has
    // no memory effects.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let deadline = Instant::now() + COMMAND_TERM_GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: as above; the group may be gone already (ESRCH is fine).
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Runs a command source, streaming its stdout into the repository; returns
/// the node of the file it becomes.
///
/// The command runs in a process group of its own, so that a stop of gallra
/// ends the whole pipeline a `sh -c` may start (a watcher ends the group
/// when the backup is cancelled, even while the command is silent), and
/// with `PR_SET_PDEATHSIG`, so that a gallra killed with SIGKILL takes the
/// command with it instead of leaving a dump running without an owner.
pub(super) fn run_command(
    pipe: &Pipeline<'_>,
    argv: &[String],
    stdout_file: &str,
    time: jiff::Timestamp,
    key: &crate::crypto::KeySource,
) -> std::result::Result<Node, String> {
    let mut child = command(argv, key)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", argv[0]))?;
    let pgid = child.id() as i32;
    let mut stderr = child.stderr.take().expect("piped");
    let stderr_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let watcher = CancelWatcher::start(pgid, pipe.cancel.clone());
    let stdout = child.stdout.take().expect("piped");
    let stored = pipe.store_stream(stdout);
    if stored.is_err() {
        // Whatever stopped the read (a cancel, a full packer queue), the
        // command must not run on without a reader.
        end_process_group(pgid, &mut child);
    }
    let status = child.wait().map_err(|e| e.to_string());
    watcher.stop();
    // Children of the command that outlive it (a backgrounded helper) are
    // not left behind holding its pipes.
    // SAFETY: as in end_process_group; ESRCH when the group is empty.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let status = status?;
    let err_text = stderr_thread.join().unwrap_or_default();
    let (content, sha256, size) = match stored {
        Ok(v) => v,
        Err(SinkError::Io(e)) => return Err(format!("reading the command's output: {e}")),
        Err(SinkError::PackerGone) => return Err("packer stopped".into()),
        Err(SinkError::Cancelled) => return Err("stopped: the agent is shutting down".into()),
    };
    if !status.success() {
        return Err(failure_message(&argv[0], status, &err_text));
    }
    // SAFETY: geteuid and getegid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    Ok(Node {
        name: stdout_file.as_bytes().to_vec(),
        kind: NodeKind::File,
        mode: 0o600,
        uid,
        gid,
        mtime_secs: time.as_second(),
        mtime_nanos: time.subsec_nanosecond() as u32,
        ctime_secs: time.as_second(),
        ctime_nanos: time.subsec_nanosecond() as u32,
        dev: 0,
        ino: 0,
        nlink: 1,
        size,
        content,
        sha256: Some(sha256),
        subtree: None,
        link_target: vec![],
        changed_while_read: false,
    })
}

/// The command of `argv`, not yet started: stdin empty, stdout and stderr
/// piped, a process group of its own, gallra's secrets taken out of its
/// environment, and killed when gallra dies.
fn command(argv: &[String], key: &crate::crypto::KeySource) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| is_withheld_from_commands(n, key))
        {
            cmd.env_remove(&name);
        }
    }
    // SAFETY: the closure runs in the forked child before exec and calls
    // only prctl and getppid, which are async-signal-safe.
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                return Err(io::Error::other("gallra ended while starting the command"));
            }
            Ok(())
        });
    }
    cmd
}

/// A cancelled backup must not wait for a silent command: this watcher
/// ends the command's process group when the backup is cancelled, which
/// closes stdout and so ends the read.
struct CancelWatcher {
    /// Set once the command has exited.
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl CancelWatcher {
    fn start(pgid: i32, cancel: Cancel) -> CancelWatcher {
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let done = done.clone();
            std::thread::spawn(move || {
                let step = std::time::Duration::from_millis(100);
                while !done.load(Ordering::Relaxed) {
                    if cancel.is_cancelled() {
                        // SAFETY: as in end_process_group.
                        unsafe { libc::kill(-pgid, libc::SIGTERM) };
                        // A command that ignores SIGTERM (`trap '' TERM`) gets
                        // SIGKILL after the grace period (the group id stays the
                        // command's while it or any member of its group lives).
                        let deadline = Instant::now() + COMMAND_TERM_GRACE;
                        while Instant::now() < deadline {
                            if done.load(Ordering::Relaxed) {
                                return;
                            }
                            std::thread::sleep(step);
                        }
                        // SAFETY: as above.
                        unsafe { libc::kill(-pgid, libc::SIGKILL) };
                        return;
                    }
                    std::thread::sleep(step);
                }
            })
        };
        CancelWatcher { done, thread }
    }

    /// Called once the command has exited.
    fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Why a command that exited with `status` failed, with the last line of
/// its stderr (cut to 300 characters).
fn failure_message(program: &str, status: std::process::ExitStatus, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let tail: String = text
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect();
    format!(
        "command {:?} failed ({status}){}; no snapshot written",
        program,
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        }
    )
}
