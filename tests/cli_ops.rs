//! Operational hardening, driven through the real binary: secrets kept out
//! of messages, closed pipes, key and credentials files that are not what
//! they seem, the state folder under attack, oversized objects, locks with
//! impossible leases, a vanished offsite, the metrics endpoint under a flood
//! of idle connections, two agents on one state folder, and names that
//! would forge lines on a terminal.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

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
    let status = env.run(&["status", "--json"]);
    let check = env.run(&["config", "check", "--json"]);
    let check_human = env.run(&["config", "check"]);
    for (what, out) in [
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
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: mkfifo on a path we own, with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
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

/// Puts an event file into the inbox as a writer should: write, rename in.
fn drop_in_inbox(env: &Env, name: &str, bytes: &[u8]) {
    let inbox = env.state.join("inbox");
    fs::create_dir_all(&inbox).unwrap();
    let tmp = inbox.join(format!(".{name}.tmp"));
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, inbox.join(name)).unwrap();
}
