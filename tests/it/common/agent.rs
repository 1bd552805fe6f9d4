//! `gallra agent` as a real process started by a test, its log in a file,
//! and the loopback HTTP its metrics endpoint answers.

use std::cell::RefCell;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::Env;

/// A free loopback port (there is a small window in which another
/// process could take it; nothing else here binds ports).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The whole answer (status line, headers, body) of `GET /metrics` on
/// `127.0.0.1:port`. The read times out after 20 s, so that an agent that
/// accepts and says nothing fails the test instead of hanging it.
pub fn get_metrics(port: u16) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// `gallra agent` for `env`, logging at level info to `log`, not yet
/// started: for a test that sets more on the process before it starts.
pub fn agent_command(env: &Env, log: &Path) -> Command {
    let mut cmd = env.spawnable(&["agent"]);
    cmd.env("GALLRA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).expect("create the agent's log"));
    cmd
}

/// A running `gallra agent`; killed on drop. The child sits in a `RefCell`
/// so that a test's polling closure may borrow the test's own state while
/// the poll asks whether the agent still runs.
pub struct RunningAgent {
    child: RefCell<Child>,
    pub log: PathBuf,
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        // Both are no-ops on an agent that has exited and been waited for.
        let child = self.child.get_mut();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl RunningAgent {
    /// Starts `gallra agent` for `env` with its log in `log_name` under the
    /// environment's folder (made anew).
    pub fn start(env: &Env, log_name: &str) -> RunningAgent {
        let log = env.path(log_name);
        RunningAgent::spawn(agent_command(env, &log), log)
    }

    /// Starts `cmd` (made by [`agent_command`] with this `log`).
    pub fn spawn(mut cmd: Command, log: PathBuf) -> RunningAgent {
        RunningAgent {
            child: RefCell::new(cmd.spawn().expect("start gallra agent")),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.borrow().id()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sends a signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, sig) }, 0);
    }

    /// The agent's exit status if it has exited, without waiting.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.child
            .borrow_mut()
            .try_wait()
            .expect("try_wait on the agent")
    }

    pub fn alive(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Waits for the agent to exit.
    pub fn wait_exit(&self) -> ExitStatus {
        self.child.borrow_mut().wait().expect("wait for the agent")
    }

    /// Polls `what` every 200 ms until it returns Some, for at most `secs`;
    /// fails if the agent exits first.
    pub fn wait_for<T>(&self, secs: u64, label: &str, mut what: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = what() {
                return v;
            }
            let exited = self.exit_status();
            assert!(
                exited.is_none(),
                "the agent exited ({exited:?}) while waiting for {label}:\n{}",
                self.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "waited {secs}s for {label}; agent log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// [`Self::wait_for`] a condition.
    pub fn wait_until(&self, secs: u64, label: &str, mut holds: impl FnMut() -> bool) {
        self.wait_for(secs, label, || holds().then_some(()))
    }
}
