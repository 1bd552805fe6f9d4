//! Two `gallra backup` processes at once on one `file://` repository, of two
//! tenants and of the same tenant; and a live exclusive lock of another host
//! that blocks a backup until it is gone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

/// Longest one of the concurrent backups may take.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Size of the random file of each tenant.
const RANDOM_SIZE: usize = 3 * 1024 * 1024 + 1001;

/// A `gallra --config CONFIG ARGS...` process started in the background,
/// its stdout and stderr going to files (so that neither pipe can fill).
struct Running {
    what: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

fn spawn(env: &Env, label: &str, args: &[&str]) -> Running {
    let stdout = env.path(&format!("{label}.stdout"));
    let stderr = env.path(&format!("{label}.stderr"));
    let child = env
        .spawnable(args)
        .stdout(fs::File::create(&stdout).expect("create stdout file"))
        .stderr(fs::File::create(&stderr).expect("create stderr file"))
        .spawn()
        .expect("start gallra");
    Running {
        what: format!("gallra {}", args.join(" ")),
        child,
        stdout,
        stderr,
    }
}

impl Running {
    /// Waits for the process (killing it after `TIMEOUT`) and returns its output.
    fn wait(mut self) -> Output {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for gallra") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("`{}` did not finish within {TIMEOUT:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: fs::read(&self.stdout).expect("read stdout file"),
            stderr: fs::read(&self.stderr).expect("read stderr file"),
        }
    }
}

/// Starts every command at once and waits for all of them.
fn run_at_once(env: &Env, commands: &[(&str, Vec<&str>)]) -> Vec<(String, Output)> {
    let running: Vec<Running> = commands
        .iter()
        .map(|(label, args)| spawn(env, label, args))
        .collect();
    running
        .into_iter()
        .map(|r| (r.what.clone(), r.wait()))
        .collect()
}

/// A tenant's tree: a few MiB of random data, some text, a nested file.
fn build_tree(dir: &Path, rng: &mut Rng) {
    write_file(&dir.join("data/random.bin"), &rng.bytes(RANDOM_SIZE));
    write_file(&dir.join("data/more.bin"), &rng.bytes(700_000));
    write_file(&dir.join("notes.txt"), &rng.text(300_000));
    write_file(&dir.join("a/b/c/deep.txt"), b"deep\n");
    write_file(&dir.join("empty"), b"");
}

/// An environment whose sources are `<tenant>-www` over `src/<tenant>` for
/// each of `tenants`, initialised.
fn env_with_tenants(tenants: &[&str]) -> Env {
    let env = Env::new();
    let mut sources = String::new();
    let mut rng = Rng::new(7);
    for tenant in tenants {
        let dir = env.path(&format!("src/{tenant}"));
        build_tree(&dir, &mut rng);
        sources.push_str(&tenant_paths_source(
            &format!("{tenant}-www"),
            "site",
            tenant,
            &[s(&dir)],
        ));
    }
    env.write_config("1 MiB", &sources);
    env.init();
    env
}

/// Parses a backup's `--json` summary after asserting exit 0 and no failures.
fn backup_summary(what: &str, out: &Output) -> Value {
    assert_success(out, what);
    let v = parse_json(out);
    assert!(
        array_field(&v, "failed").is_empty(),
        "`{what}` reported failures: {v}"
    );
    v
}

/// Restores `id` with `--verify` and compares it with the tenant's folder.
fn assert_restores(env: &Env, id: &str, tenant: &str, label: &str) {
    let to = env.path(&format!("restore-{label}"));
    env.restore_verified(id, &to);
    let original = env.path(&format!("src/{tenant}"));
    compare_trees(&original, &restored_path(&to, &original), &[]);
}

/// `check --read-data --json`: ok, no errors, `snapshots` snapshots.
fn assert_check_ok(env: &Env, snapshots: u64) {
    let out = env.run(&["check", "--read-data", "--json"]);
    let v = parse_json(&out);
    assert_eq!(v.get("ok"), Some(&Value::Bool(true)), "{}", describe(&out));
    assert!(array_field(&v, "errors").is_empty(), "{v}");
    assert_eq!(u64_field(&v, "snapshots"), snapshots, "{v}");
    assert!(u64_field(&v, "blobs_read") > 0, "{v}");
    assert_success(&out, "check --read-data --json");
}

fn lock_files(env: &Env, tenant: &str) -> Vec<PathBuf> {
    files_under(&env.repo.join("tenants").join(tenant).join("locks"))
}

fn snapshots_of(env: &Env, tenant: &str) -> Vec<Value> {
    env.snapshots()
        .into_iter()
        .filter(|s| str_field(s, "tenant") == tenant)
        .collect()
}

#[test]
fn two_backups_of_two_tenants_at_once() {
    let env = env_with_tenants(&["acme", "beta"]);
    let outs = run_at_once(
        &env,
        &[
            ("acme", vec!["backup", "--tenant", "acme", "--json"]),
            ("beta", vec!["backup", "--tenant", "beta", "--json"]),
        ],
    );
    let mut ids = Vec::new();
    for ((what, out), tenant) in outs.iter().zip(["acme", "beta"]) {
        let v = backup_summary(what, out);
        assert_eq!(array_field(&v, "snapshots").len(), 1, "{v}");
        ids.push(backup_snapshot_id(&v, tenant, &format!("{tenant}-www")));
    }

    let all = env.snapshots();
    assert_eq!(all.len(), 2, "one snapshot per tenant: {all:?}");
    for (tenant, id) in ["acme", "beta"].iter().zip(&ids) {
        let mine = snapshots_of(&env, tenant);
        assert_eq!(mine.len(), 1, "{all:?}");
        assert_eq!(str_field(&mine[0], "id"), id);
        assert_restores(&env, id, tenant, tenant);
        assert!(lock_files(&env, tenant).is_empty(), "{tenant}: locks left");
    }
    assert_check_ok(&env, 2);
}

#[test]
fn two_backups_of_the_same_tenant_at_once() {
    let env = env_with_tenants(&["acme"]);
    let outs = run_at_once(
        &env,
        &[
            (
                "first",
                vec!["backup", "--tenant", "acme", "--tag", "run=first", "--json"],
            ),
            (
                "second",
                vec![
                    "backup",
                    "--tenant",
                    "acme",
                    "--tag",
                    "run=second",
                    "--json",
                ],
            ),
        ],
    );
    let mut ids = Vec::new();
    for ((what, out), run) in outs.iter().zip(["first", "second"]) {
        let v = backup_summary(what, out);
        assert_eq!(array_field(&v, "snapshots").len(), 1, "{v}");
        let snap = backup_snapshot(&v, "acme", "acme-www");
        assert_eq!(snap.get("tags"), Some(&json!({ "run": run })), "{v}");
        ids.push(str_field(snap, "id").to_string());
    }
    assert_ne!(ids[0], ids[1], "two backups make two snapshots");

    let mine = snapshots_of(&env, "acme");
    assert_eq!(mine.len(), 2, "{mine:?}");
    let mut listed: Vec<String> = mine.iter().map(|s| str_field(s, "id").into()).collect();
    listed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(listed, expected);
    for (id, run) in ids.iter().zip(["first", "second"]) {
        assert_restores(&env, id, "acme", run);
    }
    assert_check_ok(&env, 2);
    assert!(
        lock_files(&env, "acme").is_empty(),
        "lock objects left: {:?}",
        lock_files(&env, "acme")
    );
}

#[test]
fn a_live_exclusive_lock_blocks_backup_and_is_released() {
    let env = env_with_tenants(&["acme"]);
    // A first backup, so that the tenant exists in the repository.
    let first = env.backup(&["--tenant", "acme"]);
    let first_id = backup_snapshot_id(&first, "acme", "acme-www");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let lock = env.repo.join("tenants/acme/locks/exclusive");
    let record = json!({
        "kind": "exclusive",
        "tenant": "acme",
        "host": "otherhost",
        "pid": 1,
        "command": "lifecycle apply",
        "created": now,
        "expires": now + 600,
    });
    write_file(&lock, record.to_string().as_bytes());

    let out = env.run(&["backup", "--tenant", "acme", "--json"]);
    // One `error:` line, naming the tenant and the holder's host.
    assert_error(
        &out,
        1,
        "backup --tenant acme with a live exclusive lock",
        &["acme", "locked", "otherhost", "lifecycle apply"],
    );
    let v = parse_json(&out);
    assert!(array_field(&v, "snapshots").is_empty(), "{v}");
    assert_eq!(array_field(&v, "failed").len(), 1, "{v}");
    assert_eq!(
        snapshots_of(&env, "acme").len(),
        1,
        "no snapshot was written"
    );
    assert!(lock.exists(), "another host's live lock must stay");
    assert_eq!(lock_files(&env, "acme"), vec![lock.clone()]);

    fs::remove_file(&lock).expect("remove the planted lock");
    let second = env.backup(&["--tenant", "acme"]);
    let second_id = backup_snapshot_id(&second, "acme", "acme-www");
    assert_ne!(first_id, second_id);
    assert_eq!(snapshots_of(&env, "acme").len(), 2);
    assert!(
        lock_files(&env, "acme").is_empty(),
        "lock objects left: {:?}",
        lock_files(&env, "acme")
    );
    assert_restores(&env, &second_id, "acme", "after-lock");
}
