//! Command sources (database dumps) as processes of their own: what they
//! inherit from gallra, and what happens to them when gallra stops or dies
//! (issue 15, items 12 and 17).

use crate::common::*;
use std::fs;
use std::time::{Duration, Instant};

fn pid_alive(pid: i32) -> bool {
    // A zombie still answers kill(0): read its state instead.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_for_file(path: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_command_source_sees_none_of_gallras_secrets() {
    let env = Env::new();
    env.write_config(
        "16 MiB",
        &command_source("db", "database", "acme", &["env"], "env.txt"),
    );
    env.init();
    let out = env
        .cmd_with(&env.config, &["backup", "--json"])
        .env("GALLRA_PASSPHRASE", "gallra-passphrase-value")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
        .env("AZURE_STORAGE_ACCOUNT_KEY", "azure-secret-value")
        .env("CREDENTIALS_DIRECTORY", "/run/credentials/gallra.service")
        .env("MYSQL_PWD", "the-dump-tools-own-password")
        .output()
        .unwrap();
    assert_success(&out, "backup of a command source");
    let id = backup_snapshot_id(&parse_json(&out), "acme", "db");
    let dumped = env.ok(&["dump", &id, "/env.txt"]).stdout;
    let dumped = String::from_utf8_lossy(&dumped);
    for secret in [
        "gallra-passphrase-value",
        "aws-secret-value",
        "azure-secret-value",
        "/run/credentials",
    ] {
        assert!(!dumped.contains(secret), "the dump holds {secret}");
    }
    assert!(
        dumped.contains("MYSQL_PWD=the-dump-tools-own-password") && dumped.contains("PATH="),
        "the command keeps the rest of its environment: {dumped}"
    );
}

#[test]
fn a_command_source_dies_with_a_killed_gallra_and_leaves_no_live_lock() {
    let env = Env::new();
    let pidfile = env.path("dump.pid");
    let slow = env.path("slow");
    // Quick the first time; the second run hangs as a dump waiting on a
    // table lock does.
    let script = format!(
        "if [ -e {slow} ]; then echo $$ > {pid}; exec sleep 300; else echo dump; fi",
        slow = s(&slow),
        pid = s(&pidfile)
    );
    env.write_config(
        "16 MiB",
        &command_source("db", "database", "acme", &["sh", "-c", &script], "db.sql"),
    );
    env.init();
    // A snapshot from 2020, long past its six months: the lifecycle below
    // must take the tenant's exclusive lock to delete it.
    env.backup(&["--time", "2020-01-01T00:00:00Z"]);
    fs::write(&slow, b"").unwrap();
    let mut gallra = env.spawnable(&["backup"]).spawn().unwrap();
    let dump: i32 = wait_for_file(&pidfile).trim().parse().unwrap();
    assert!(pid_alive(dump));
    gallra.kill().unwrap();
    gallra.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pid_alive(dump) {
        assert!(
            Instant::now() < deadline,
            "the dump (pid {dump}) outlived the gallra that ran it"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The killed run's shared lock belongs to a process that is gone: the
    // next exclusive user takes the tenant at once, and leaves no lock.
    env.ok(&["lifecycle", "apply"]);
    assert!(
        env.snapshots().is_empty(),
        "the expired snapshot is deleted despite the killed run's lock"
    );
    assert!(
        tenant_objects(&env.repo, "acme", "locks").is_empty(),
        "a lock is left: {:?}",
        tenant_objects(&env.repo, "acme", "locks")
    );
}

#[test]
fn a_stopped_backup_ends_a_silent_command_source_at_once() {
    let env = Env::new();
    let pidfile = env.path("dump.pid");
    // A dump that prints nothing for minutes (a large table's lock wait).
    let script = format!("echo $$ > {}; exec sleep 300", s(&pidfile));
    let source = command_source("db", "database", "acme", &["sh", "-c", &script], "db.sql")
        .replace("[[source]]\n", "[[source]]\nschedule = \"every 2s\"\n");
    env.write_config("16 MiB", &source);
    let text = fs::read_to_string(&env.config)
        .unwrap()
        .replace("host = \"testhost\"", "host = \"testhost\"\nsplay = \"1s\"");
    fs::write(&env.config, text).unwrap();
    env.init();
    let mut agent = env
        .spawnable(&["agent"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let dump: i32 = wait_for_file(&pidfile).trim().parse().unwrap();
    let started = Instant::now();
    // SAFETY: signalling the agent we started.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = agent.wait().unwrap();
    assert!(status.success(), "agent exit: {status}");
    assert!(
        !pid_alive(dump),
        "the dump still runs after the agent stopped"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the stop waited for the dump to end by itself"
    );
}
