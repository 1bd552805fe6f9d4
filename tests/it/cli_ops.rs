//! Operational hardening, driven through the real binary: secrets kept out
//! of messages, closed pipes, key and credentials files that are not what
//! they seem, the state folder under attack, oversized objects, locks with
//! impossible leases, a vanished offsite, the metrics endpoint under a flood
//! of idle connections, two agents on one state folder, and names that
//! would forge lines on a terminal.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::agent::{RunningAgent, agent_command, free_port, get_metrics};
use crate::common::*;

/// One tenant, acme, with a `www` source, initialised on `local`.
fn acme_env(extra_targets: &str) -> Env {
    let env = Env::new();
    setup_acme(&env, extra_targets);
    env
}

fn setup_acme(env: &Env, extra_targets: &str) {
    write_file(&env.path("src/acme/index.html"), b"<h1>acme</h1>\n");
    let pattern = format!("{}/{{tenant}}", s(&env.path("src")));
    env.set_extra_targets(extra_targets);
    env.write_config("1 MiB", &paths_source("www", "site", &[&pattern], &[]));
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Waits for a child for at most `secs`; kills it and fails if it is still
/// running then (a hang is the bug some of these tests pin).
fn wait_bounded(mut child: Child, secs: u64, what: &str) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still ran after {secs}s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

const SECRET: &str = "wJalrXUtnFEMIK7MDENGbPxRfiCYzEXAMPLEKEY=";

#[test]
fn regression_a_credentials_line_without_equals_echoed_the_secret() {
    let env = Env::new();
    let creds = env.path("offsite.env");
    // A space instead of '=', and a base64 secret that ends in '='.
    write_file(
        &creds,
        format!("AWS_ACCESS_KEY_ID=AKIDEXAMPLE\nAWS_SECRET_ACCESS_KEY {SECRET}\n").as_bytes(),
    );
    chmod(&creds, 0o600);
    env.set_extra_targets(&format!(
        "[[target]]\nname = \"offsite\"\nurl = \"s3://bucket/web01\"\noptions = {{ endpoint = \"http://127.0.0.1:1\", region = \"eu-north-1\", allow_http = \"true\" }}\ncredentials_file = {}\n",
        toml_str(s(&creds))
    ));
    env.write_config("1 MiB", "");
    // The primary is made; the offsite cannot be, for its credentials.
    let init = env.run(&["init"]);
    assert_exit(&init, 1, "init with a broken credentials file");
    let status = env.run(&["status", "--json"]);
    let check = env.run(&["config", "check", "--json"]);
    let check_human = env.run(&["config", "check"]);
    for (what, out) in [
        ("init", &init),
        ("status --json", &status),
        ("config check --json", &check),
        ("config check", &check_human),
    ] {
        let all = format!("{}{}", stdout(out), stderr(out));
        assert!(
            !all.contains("wJalr") && !all.contains("EXAMPLEKEY"),
            "{what} echoed the secret:\n{all}"
        );
    }
    let v = parse_json(&status);
    let offsite = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "offsite")
        .unwrap()
        .clone();
    let error = offsite["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("offsite.env") && error.contains("line 2"),
        "{offsite}"
    );
    let warnings = parse_json(&check)["warnings"].to_string();
    assert!(
        warnings.contains("offsite.env") && warnings.contains("line 2"),
        "config check must name the file and line: {warnings}"
    );
}

#[test]
fn regression_a_closed_pipe_made_snapshots_status_and_config_check_panic() {
    let env = acme_env("");
    env.init();
    env.backup(&[]);
    for args in [
        &["snapshots"][..],
        &["snapshots", "--json"],
        &["status"],
        &["config", "check"],
    ] {
        let mut child = env
            .spawnable(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before the first line is written, as with
        // `| head -0`, or `| head -1` on a long listing.
        drop(child.stdout.take());
        let out = wait_bounded(child, 120, &args.join(" "));
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        use std::os::unix::process::ExitStatusExt;
        assert!(
            out.status.code() == Some(0) || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?} must end quietly on a closed pipe: {:?}\n{err}",
            out.status
        );
    }
}

#[test]
fn regression_a_fifo_key_file_hung_and_a_foreign_owned_key_was_accepted() {
    let env = acme_env("");
    env.init();
    let fifo = env.path("key.fifo");
    mkfifo(&fifo, 0o600);
    let text = fs::read_to_string(&env.config).unwrap().replace(
        &format!("file = {}", toml_str(s(&env.key))),
        &format!("file = {}", toml_str(s(&fifo))),
    );
    let fifo_config = env.path("fifo.toml");
    fs::write(&fifo_config, text).unwrap();
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("gallra"))
        .arg("--config")
        .arg(&fifo_config)
        .args(["key", "list"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, 60, "key list with a FIFO key file");
    assert_error(
        &out,
        1,
        "a FIFO key file",
        &["key.fifo", "not a regular file"],
    );

    if !is_root() {
        eprintln!("not root: a key file owned by another user cannot be made here");
        return;
    }
    let foreign = env.path("foreign.key");
    fs::copy(&env.key, &foreign).unwrap();
    chmod(&foreign, 0o600);
    let c = std::ffi::CString::new(s(&foreign)).unwrap();
    // SAFETY: chown of a file we created, to the conventional nobody user.
    assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
    let text = fs::read_to_string(&env.config).unwrap().replace(
        &format!("file = {}", toml_str(s(&env.key))),
        &format!("file = {}", toml_str(s(&foreign))),
    );
    let foreign_config = env.path("foreign.toml");
    fs::write(&foreign_config, text).unwrap();
    let out = env.run_with(&foreign_config, &["key", "list"]);
    assert_error(
        &out,
        1,
        "a key file owned by another user",
        &["foreign.key", "owned by uid 65534"],
    );
}

#[test]
fn regression_a_planted_symlink_made_the_rejected_reason_overwrite_its_target() {
    let env = acme_env("");
    env.init();
    env.backup(&[]);
    let victim = env.path("victim.txt");
    write_file(&victim, b"precious\n");
    let rejected = env.state.join("inbox/rejected");
    fs::create_dir_all(&rejected).unwrap();
    std::os::unix::fs::symlink(&victim, rejected.join("bad.json.reason")).unwrap();
    env.drop_in_inbox("bad.json", b"{ not json");
    let items = env.json(&["inbox", "process"]);
    assert_eq!(items[0]["outcome"], "rejected", "{items}");
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"precious\n",
        "written through the link"
    );
    let reason = rejected.join("bad.json.reason");
    assert!(
        !fs::symlink_metadata(&reason).unwrap().is_symlink(),
        "the link was replaced by the reason file"
    );
    let why = fs::read_to_string(&reason).unwrap();
    assert_eq!(why.trim(), items[0]["reason"].as_str().unwrap(), "{why}");
}

/// Rewrites the env's config with agent settings for a test: metrics on
/// `port` (if any), the default daily backup, no drills.
fn agent_config(env: &Env, port: Option<u16>) {
    let metrics = port.map_or(String::new(), |p| format!("metrics = \"127.0.0.1:{p}\"\n"));
    let text = fs::read_to_string(&env.config).unwrap().replace(
        "host = \"testhost\"\n",
        &format!("host = \"testhost\"\n{metrics}splay = \"1s\"\ninbox_poll = \"1s\"\n"),
    ) + "\n[drill]\nschedule = \"off\"\n";
    fs::write(&env.config, text).unwrap();
}

#[test]
fn regression_the_agent_started_by_hand_made_its_state_folder_0755() {
    let env = acme_env("");
    env.init();
    let _ = fs::remove_dir_all(&env.state);
    agent_config(&env, None);
    let agent = RunningAgent::start(&env, "agent.log");
    let state_file = env.state.join("agent-state.json");
    agent.wait_until(60, "the state file", || state_file.exists());
    let mode = fs::metadata(&env.state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "state folder mode {mode:04o}");
}

#[test]
fn regression_oversized_inbox_files_and_lock_objects_were_read_whole() {
    let env = acme_env("");
    env.init();
    env.backup(&[]);
    // 64 MiB of nothing: sparse, so the test costs no disk.
    let inbox = env.state.join("inbox");
    fs::create_dir_all(&inbox).unwrap();
    let tmp = inbox.join(".huge.json.tmp");
    fs::File::create(&tmp).unwrap().set_len(64 << 20).unwrap();
    fs::rename(&tmp, inbox.join("huge.json")).unwrap();
    let items = env.json(&["inbox", "process"]);
    let reason = items[0]["reason"].as_str().unwrap_or_default();
    assert_eq!(items[0]["outcome"], "rejected", "{items}");
    assert!(
        reason.contains("larger than") && reason.contains("KiB"),
        "the reason must give the limit: {reason}"
    );

    let lock = env.repo.join("tenants/acme/locks/exclusive");
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    fs::File::create(&lock).unwrap().set_len(200 << 20).unwrap();
    let out = env.run(&["backup", "--tenant", "acme"]);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        err.contains("tenants/acme/locks/exclusive") && err.contains("larger than"),
        "the error must name the lock object and the limit:\n{err}"
    );
}

#[test]
fn regression_a_lock_with_a_lease_far_in_the_future_blocked_forever() {
    let env = acme_env("");
    env.init();
    env.backup(&[]);
    let now = now_secs();
    let record = serde_json::json!({
        "kind": "exclusive", "tenant": "acme", "host": "web09", "pid": 4242,
        "command": "prune", "created": now - 60, "expires": now + 10 * 365 * 86_400,
    });
    let lock = env.repo.join("tenants/acme/locks/exclusive");
    write_file(&lock, serde_json::to_string(&record).unwrap().as_bytes());
    let out = env.run(&["backup", "--tenant", "acme"]);
    assert_error(
        &out,
        1,
        "backup beside a lock with an impossible lease",
        &["acme", "web09", "invalid", "gallra unlock --tenant acme"],
    );
    let out = env.ok(&["unlock", "--tenant", "acme"]);
    let text = stdout(&out);
    assert!(
        text.contains("removed") && text.contains("invalid"),
        "unlock must remove it and say why:\n{text}"
    );
    assert!(!lock.exists());
    env.backup(&["--tenant", "acme"]);
}

#[test]
fn regression_ship_refilled_a_vanished_offsite_mount() {
    let env = Env::new();
    let offsite = env.path("offsite");
    setup_acme(&env, &file_target("offsite", &offsite, ""));
    env.init();
    env.backup(&[]);
    assert!(offsite.join("config").exists());

    // The mount point is there but empty: the NFS share is not mounted.
    fs::remove_dir_all(&offsite).unwrap();
    fs::create_dir(&offsite).unwrap();
    let out = env.run(&["ship"]);
    assert_error(&out, 1, "ship to an empty offsite", &["offsite"]);
    assert!(stderr(&out).contains("repair-target"), "{}", describe(&out));
    assert_eq!(
        fs::read_dir(&offsite).unwrap().count(),
        0,
        "ship wrote into it"
    );

    // The mount point itself is gone.
    fs::remove_dir(&offsite).unwrap();
    let out = env.run(&["ship"]);
    assert_error(&out, 1, "ship to a missing offsite", &["offsite"]);
    assert!(!offsite.exists(), "ship recreated the mount point");
    let out = env.run(&["backup", "--tenant", "acme"]);
    assert_exit(&out, 1, "backup with its offsite gone");
    assert!(!offsite.exists(), "backup recreated the mount point");

    // Only repair-target rebuilds it.
    env.ok(&["repair-target", "offsite"]);
    assert!(offsite.join("config").exists());
    env.ok(&["ship"]);
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn regression_idle_metrics_connections_exhausted_the_agents_file_descriptors() {
    let env = acme_env("");
    env.init();
    let port = free_port();
    agent_config(&env, Some(port));
    let log = env.path("agent.log");
    let mut cmd = agent_command(&env, &log);
    let limit = 128;
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let agent = RunningAgent::spawn(cmd, log);
    let scrape = || -> Option<String> {
        let text = get_metrics(port).ok()?;
        text.starts_with("HTTP/1.1 200").then_some(text)
    };
    agent.wait_until(60, "the first scrape", || scrape().is_some());
    let pid = agent.pid();
    // More idle connections than the agent has descriptors; they say
    // nothing. The agent's descriptors are counted all along.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut idle = Vec::new();
    let mut most = 0;
    // 140: above the agent's 128 descriptors, and within what the agent
    // serves plus its listen queue (128), so that no connect waits for
    // its timeout.
    for _ in 0..140 {
        if let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            idle.push(c);
        }
        most = most.max(open_fds(pid));
    }
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        most = most.max(open_fds(pid));
    }
    assert!(
        most < 100,
        "the agent held {most} descriptors (of 128) with {} idle connections open",
        idle.len()
    );
    assert!(
        !agent.log_text().contains("Too many open files"),
        "{}",
        agent.log_text()
    );
    drop(idle);
    // Once the idle ones are gone (closed, or timed out by the agent), a
    // scrape is answered again.
    agent.wait_until(60, "a scrape after the flood", || scrape().is_some());
}

#[test]
fn regression_two_agents_ran_on_one_state_folder() {
    let env = acme_env("");
    env.init();
    agent_config(&env, None);
    let first = RunningAgent::start(&env, "first.log");
    let state_file = env.state.join("agent-state.json");
    first.wait_until(60, "the first agent's state file", || {
        fs::read_to_string(&state_file).is_ok_and(|t| t.contains("\"pid\": "))
            && first_started(&state_file)
    });
    let second = env
        .spawnable(&["agent"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(second, 60, "a second agent on the same state folder");
    assert_error(
        &out,
        1,
        "a second agent",
        &[&first.pid().to_string(), s(&env.state)],
    );
    // The first agent still runs and its state still says so.
    first.wait_until(5, "the first agent to keep running", || true);
    let st: serde_json::Value = serde_json::from_slice(&fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(st["pid"], first.pid(), "{st}");

    // A backup by hand beside the agent is told so.
    let out = env.run(&["backup", "--tenant", "acme"]);
    assert_success(&out, "backup beside the agent");
    let err = stderr(&out);
    assert!(
        err.contains("warning") && err.contains(&first.pid().to_string()),
        "the backup must say an agent runs:\n{err}"
    );
}

fn first_started(state_file: &Path) -> bool {
    fs::read_to_string(state_file)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["pid"].is_u64())
}

#[test]
fn regression_ls_printed_raw_names_that_forged_lines_and_reached_the_terminal() {
    let env = acme_env("");
    let dir = env.path("src/acme");
    write_file(
        &dir.join("evil\n-0644        999  2020-01-01T00:00:00Z  forged"),
        b"x",
    );
    write_file(&dir.join("bell\x07\x1b[2Jclear"), b"y");
    env.init();
    let backup = env.backup(&[]);
    let id = backup_snapshot_id(&backup, "acme", "www");
    let out = env.ok(&["ls", &id]);
    let text = stdout(&out);
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    assert!(
        !text
            .lines()
            .any(|l| l.ends_with("  forged") && !l.contains("evil")),
        "a name forged a line:\n{text}"
    );
    assert!(text.contains("evil\\n-0644"), "{text}");
    let json = env.json(&["ls", &id]);
    let paths: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("bell\x07\x1b[2Jclear")),
        "the JSON keeps names exact: {paths:?}"
    );
}
