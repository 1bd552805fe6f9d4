//! A local primary shipping to an offsite target on a real server (S3 on
//! SeaweedFS, Azure Blob on Azurite, both started by tests/servers/start.sh):
//! shipping with multipart uploads, locks on the server, recovery from
//! offsite on a fresh machine, the errors an operator meets (wrong
//! credentials, unreachable endpoint, missing bucket), and an S3 server that
//! stops in the middle of a ship.

use crate::common::remote::{Remote, unique_prefix};
use crate::common::*;
use bytes::Bytes;
use serde_json::Value;
use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn ids(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|s| str_field(s, "id").to_string())
        .collect();
    v.sort();
    v
}

/// `restore ID --target offsite --to DIR --verify`.
fn restore_from_offsite<'a>(id: &'a str, to: &'a std::path::Path) -> [&'a str; 7] {
    [
        "restore",
        id,
        "--target",
        "offsite",
        "--to",
        s(to),
        "--verify",
    ]
}

/// A live exclusive lock of another host, as an agent running `lifecycle
/// apply` elsewhere would hold it.
fn live_lock(tenant: &str, host: &str) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Bytes::from(
        serde_json::json!({
            "kind": "exclusive", "tenant": tenant, "host": host, "pid": 1,
            "command": "lifecycle apply", "created": now, "expires": now + 600,
        })
        .to_string(),
    )
}

/// Backup to a local primary that ships to `remote`, then everything an
/// operator does with the offsite copy.
fn ship_and_recover(remote: Remote) {
    let env = Env::new();
    let prefix = unique_prefix("ship");
    let src = env.path("src/acme");
    let mut rng = Rng::new(7);
    // 48 MiB of noise in 40 MiB packs: one pack above the multipart threshold.
    write_file(&src.join("db/dump.sql"), &rng.bytes(48 << 20));
    write_file(&src.join("index.html"), &rng.text(40_000));
    write_file(&src.join("empty"), b"");
    env.set_extra_targets(&remote.target_table("offsite", &prefix, ""));
    env.write_config(
        "40 MiB",
        &tenant_paths_source("www", "site", "acme", &[s(&src)]),
    );

    let init = env.json(&["init"]);
    for t in init.as_array().unwrap() {
        assert_eq!(t["conditional_create"], true, "self-test on {t}");
    }
    let backup = env.backup(&[]);
    assert!(array_field(&backup, "ship_failed").is_empty(), "{backup}");
    let shipped = &array_field(&backup, "shipped")[0];
    assert_eq!(str_field(shipped, "target"), "offsite");
    assert!(u64_field(shipped, "copied_bytes") > 48 << 20, "{shipped}");
    assert!(
        shipped["store"]["multipart_uploads"].as_u64().unwrap() >= 1,
        "the 40 MiB pack goes up in parts: {shipped}"
    );
    let first = backup_snapshot_id(&backup, "acme", "www");
    assert_eq!(
        ids(&env.json(&["snapshots", "--target", "offsite"])),
        vec![first.clone()]
    );
    let status = env.json(&["status"]);
    let offsite = &status["targets"].as_array().unwrap()[1];
    assert_eq!(offsite["missing"], 0, "{status}");
    assert_eq!(offsite["snapshots"], 1, "{status}");
    let check = env.json(&["check", "--target", "offsite", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");

    // Another agent holds the tenant's exclusive lock on the offsite store:
    // the ship of new data waits for it, names it, and unlock keeps it.
    write_file(&src.join("index.html"), &rng.text(40_000));
    let second = backup_snapshot_id(&env.backup(&["--no-ship"]), "acme", "www");
    let store = remote.store(&prefix);
    let lock_path = "tenants/acme/locks/exclusive";
    store.put(lock_path, live_lock("acme", "web07")).unwrap();
    let out = env.run(&["ship"]);
    assert_error(
        &out,
        1,
        "ship under another host's lock",
        &["offsite", "web07"],
    );
    let unlock = env.json(&["unlock", "--tenant", "acme", "--target", "offsite"]);
    assert_eq!(unlock[0]["live"].as_array().unwrap().len(), 1, "{unlock}");
    assert!(store.get(lock_path).is_ok(), "a live lock survives unlock");
    store.delete(lock_path).unwrap();
    let ship = env.json(&["ship", "--verify"]);
    assert_eq!(ship[0]["verified"], ship[0]["copied"], "{ship}");
    assert!(u64_field(&ship[0], "copied") >= 2, "{ship}");
    assert!(
        store.list("tenants/acme/locks").unwrap().is_empty(),
        "ship released its locks"
    );

    // Disaster: the server is gone with its disk. A fresh machine has the
    // config and the key, nothing else.
    fs::remove_dir_all(&env.repo).unwrap();
    let _ = fs::remove_dir_all(&env.state);
    let home = env.path("fresh-home");
    fs::create_dir_all(&home).unwrap();
    let fresh = |args: &[&str]| {
        let out = env
            .cmd_with(&env.config, args)
            .env("HOME", &home)
            .output()
            .unwrap();
        assert_success(&out, &args.join(" "));
        out
    };
    let listed = parse_json(&fresh(&["snapshots", "--target", "offsite", "--json"]));
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    assert_eq!(ids(&listed), expected);
    let to = env.path("recovered");
    fresh(&restore_from_offsite(&second, &to));
    compare_trees(&src, &restored_path(&to, &src), &[]);
    assert!(
        !env.repo.exists(),
        "restore from offsite made no local target"
    );

    // Then the local target is rebuilt from offsite and serves again.
    let repaired = parse_json(&fresh(&["repair-target", "local", "--json"]));
    assert_eq!(str_field(&repaired, "from"), "offsite", "{repaired}");
    let check = env.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(ids(&env.json(&["snapshots"])), expected);
    let status = env.json(&["status"]);
    for t in status["targets"].as_array().unwrap() {
        assert_eq!(t["missing"], 0, "{status}");
    }
}

#[test]
fn s3_ship_lock_and_recover_from_offsite() {
    if let Some(remote) = Remote::s3() {
        ship_and_recover(remote);
    }
}

#[test]
fn azure_ship_lock_and_recover_from_offsite() {
    if let Some(remote) = Remote::azure() {
        ship_and_recover(remote);
    }
}

/// `init` against a broken offsite-only config: a nonzero exit and one line
/// naming the target, no secret; returns that line.
fn init_fails(env: &Env, name: &str, target_table: &str, extra_env: &[(&str, &str)]) -> String {
    let config = env.path(&format!("{name}.toml"));
    fs::write(
        &config,
        format!(
            "[agent]\nhost = \"testhost\"\nstate_dir = {}\n\n[key]\nfile = {}\n\n{target_table}",
            toml_str(s(&env.state)),
            toml_str(s(&env.key))
        ),
    )
    .unwrap();
    let mut cmd = env.cmd_with(&config, &["init"]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{name}: {}", describe(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line: {err}");
    assert!(err.contains("offsite"), "{name}: names the target: {err}");
    eprintln!("{name}: {err}");
    err
}

/// `unreachable`: a target table and environment that point at a closed port.
fn errors_name_the_target_and_write_nothing(
    remote: Remote,
    unreachable: (String, Vec<(&str, &str)>),
) {
    let env = Env::new();
    let prefix = unique_prefix("errors");
    let good_store = remote.store(&prefix);

    let wrong = remote.options("d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==");
    let table = format!(
        "[[target]]\nname = \"offsite\"\nurl = {}\noptions = {{ {wrong} }}\n",
        toml_str(&format!("{}/{prefix}", remote.url_base))
    );
    let line = init_fails(&env, "wrong-credentials", &table, &[]);
    assert!(!line.contains(&remote.secret), "{line}");
    assert!(good_store.list("").unwrap().is_empty(), "nothing written");

    let table = remote.target_table("offsite", &prefix, "").replace(
        &remote.url_base,
        &format!("{}-{}", remote.url_base, unique_prefix("missing")),
    );
    init_fails(&env, "missing-bucket", &table, &[]);
    assert!(good_store.list("").unwrap().is_empty(), "nothing written");

    // Port 1 on loopback: connection refused, retried, then given up.
    let started = Instant::now();
    let line = init_fails(&env, "unreachable", &unreachable.0, &unreachable.1);
    eprintln!(
        "unreachable endpoint: gave up after {:?}: {line}",
        started.elapsed()
    );
    assert!(good_store.list("").unwrap().is_empty(), "nothing written");
}

#[test]
fn s3_errors_name_the_target_and_write_nothing() {
    if let Some(remote) = Remote::s3() {
        let v = |n: &str| std::env::var(n).unwrap();
        let closed = Remote::s3_at(
            "http://127.0.0.1:1",
            &v("GALLRA_TEST_S3_BUCKET"),
            &v("GALLRA_TEST_S3_ACCESS_KEY"),
            &remote.secret,
        );
        let table = closed.target_table("offsite", "unreachable", "");
        errors_name_the_target_and_write_nothing(remote, (table, Vec::new()));
    }
}

#[test]
fn azure_errors_name_the_target_and_write_nothing() {
    if let Some(remote) = Remote::azure() {
        // With use_emulator, object_store takes Azurite's address from here.
        let table = remote.target_table("offsite", "unreachable", "");
        errors_name_the_target_and_write_nothing(
            remote,
            (
                table,
                vec![("AZURITE_BLOB_STORAGE_URL", "http://127.0.0.1:1")],
            ),
        );
    }
}

/// A SeaweedFS of this test's own, which it can stop and start again on the
/// same ports and data.
struct PrivateSeaweed {
    script: String,
    weed: String,
    dir: std::path::PathBuf,
    base: u16,
    child: Option<Child>,
}

impl PrivateSeaweed {
    fn start(&mut self) {
        fs::create_dir_all(&self.dir).unwrap();
        let log = fs::File::create(self.dir.join("weed.log")).unwrap();
        let child = Command::new("bash")
            .arg(&self.script)
            .arg(&self.weed)
            .arg(&self.dir)
            .arg(self.base.to_string())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start SeaweedFS");
        self.child = Some(child);
        // Up when a signed listing of the bucket answers.
        let remote = self.remote();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if remote.store("probe").list("").is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private SeaweedFS did not come up"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn remote(&self) -> Remote {
        Remote::s3_at(
            &format!("http://127.0.0.1:{}", self.base + 6),
            "gallra",
            "gallratest",
            "gallratestsecret",
        )
    }
}

impl Drop for PrivateSeaweed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Eleven consecutive free loopback ports.
fn free_port_block() -> u16 {
    let mut seed = std::process::id() as u64;
    for _ in 0..200 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let base = 20000 + (seed >> 33) as u16 % 30000;
        let free = (base..base + 11).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no block of free ports");
}

#[test]
fn s3_server_stopped_mid_ship_then_a_retried_ship_completes() {
    let Some(v) = crate::common::remote::server_env(
        "SeaweedFS binary",
        &["GALLRA_TEST_WEED", "GALLRA_TEST_SEAWEEDFS_SCRIPT"],
    ) else {
        return;
    };
    let env = Env::new();
    let mut server = PrivateSeaweed {
        weed: v[0].clone(),
        script: v[1].clone(),
        dir: env.path("seaweedfs"),
        base: free_port_block(),
        child: None,
    };
    server.start();
    let remote = server.remote();
    let src = env.path("src/acme");
    let mut rng = Rng::new(11);
    for i in 0..6 {
        write_file(&src.join(format!("f{i}")), &rng.bytes(2 << 20));
    }
    // A capped upload makes the ship last long enough to be cut.
    env.set_extra_targets(&remote.target_table("offsite", "outage", "max_upload = \"3 MiB/s\""));
    env.write_config(
        "1 MiB",
        &tenant_paths_source("www", "site", "acme", &[s(&src)]),
    );
    env.init();
    let id = backup_snapshot_id(&env.backup(&["--no-ship"]), "acme", "www");

    let bin = assert_cmd::cargo::cargo_bin("gallra");
    let ship = Command::new(&bin)
        .args(["--config", s(&env.config), "ship", "--json"])
        .env("GALLRA_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    server.stop();
    std::thread::sleep(Duration::from_secs(2));
    server.start();
    let first = ship.wait_with_output().unwrap();
    let first_err = String::from_utf8_lossy(&first.stderr).to_string();
    assert!(
        first_err.contains("retrying"),
        "the outage was met with retries: {first_err}"
    );
    if !first.status.success() {
        assert!(first_err.contains("offsite"), "{first_err}");
    }
    // Whatever the first ship managed, the offsite copy is consistent...
    let check = env.json(&["check", "--target", "offsite"]);
    assert_eq!(check["ok"], true, "{check}");
    // ...and a retried ship completes it.
    let again = env.json(&["ship"]);
    assert!(again[0]["error"].is_null(), "{again}");
    let status = env.json(&["status"]);
    assert_eq!(status["targets"][1]["missing"], 0, "{status}");
    let to = env.path("restored");
    env.ok(&restore_from_offsite(&id, &to));
    compare_trees(&src, &restored_path(&to, &src), &[]);
}

/// A restore from a remote target reads the blobs of many small files in one
/// request; a damaged pack must still be named, and every file whose blobs
/// live elsewhere must still be restored.
#[test]
fn s3_restore_names_a_damaged_pack_and_restores_the_rest() {
    let Some(remote) = Remote::s3() else {
        return;
    };
    let env = Env::new();
    let prefix = unique_prefix("damaged");
    let src = env.path("src/acme");
    let mut rng = Rng::new(21);
    for i in 0..40 {
        write_file(&src.join(format!("f{i:02}")), &rng.bytes(30_000));
    }
    env.set_extra_targets(&remote.target_table("offsite", &prefix, ""));
    env.write_config(
        "128 KiB",
        &tenant_paths_source("www", "site", "acme", &[s(&src)]),
    );
    env.init();
    let id = backup_snapshot_id(&env.backup(&[]), "acme", "www");
    let store = remote.store(&prefix);
    let packs: Vec<_> = store
        .list("tenants/acme/packs")
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    assert!(packs.len() > 3, "{packs:?}");
    let victim = &packs[packs.len() / 2];
    let mut bytes = store.get(victim).unwrap().to_vec();
    bytes[40] ^= 0x80;
    store.put(victim, Bytes::from(bytes)).unwrap();

    let to = env.path("restored");
    let out = env.run(&[
        "restore",
        &id,
        "--target",
        "offsite",
        "--to",
        s(&to),
        "--verify",
    ]);
    assert_exit(&out, 1, "restore over a damaged pack");
    let pack_id = victim.rsplit('/').next().unwrap();
    assert!(stderr(&out).contains(pack_id), "{}", describe(&out));
    let restored = restored_path(&to, &src);
    let mut good = 0;
    for i in 0..40 {
        let name = format!("f{i:02}");
        if let Ok(data) = fs::read(restored.join(&name)) {
            assert_eq!(data, fs::read(src.join(&name)).unwrap(), "{name}");
            good += 1;
        }
    }
    assert!((20..40).contains(&good), "{good} of 40 files restored");
}

/// The lifecycle on a real offsite server: an expired snapshot and a tenant
/// whose contract ended go from the local target and from the server, the
/// server's listing proves it, the survivors restore from there, and the
/// audit trail on the server verifies.
fn lifecycle_deletes_on_the_server(remote: Remote) {
    let env = Env::new();
    let prefix = unique_prefix("lifecycle");
    let mut rng = Rng::new(11);
    for tenant in ["acme", "beta"] {
        write_file(
            &env.path(&format!("src/{tenant}/data.bin")),
            &rng.bytes(300_000),
        );
    }
    env.set_extra_targets(&remote.target_table("offsite", &prefix, ""));
    env.write_config(
        "1 MiB",
        &paths_source(
            "www",
            "site",
            &[&format!("{}/{{tenant}}", s(&env.path("src")))],
            &[],
        ),
    );
    env.init();
    let now = jiff::Zoned::now();
    let ago = |span: jiff::Span| now.checked_sub(span).unwrap().timestamp().to_string();
    let old = env.backup(&[
        "--tenant",
        "acme",
        "--time",
        &ago(jiff::Span::new().months(7)),
    ]);
    let old_id = backup_snapshot_id(&old, "acme", "www");
    write_file(&env.path("src/acme/more.bin"), &rng.bytes(200_000));
    let fresh = env.backup(&[]);
    let kept_id = backup_snapshot_id(&fresh, "acme", "www");
    let last_day = now.date().checked_sub(jiff::Span::new().days(40)).unwrap();
    env.ok(&[
        "contract",
        "end",
        "beta",
        "--effective",
        &last_day.to_string(),
    ]);

    let store = remote.store(&prefix);
    let beta_before = store.list("tenants/beta").unwrap();
    assert!(!beta_before.is_empty());
    let report = env.json(&["lifecycle", "apply"]);
    assert!(array_field(&report, "failures").is_empty(), "{report}");
    let offsite = array_field(&report, "tenants")
        .iter()
        .flat_map(|t| array_field(t, "targets"))
        .filter(|t| t["target"] == "offsite")
        .map(|t| u64_field(t, "snapshots_deleted"))
        .sum::<u64>();
    assert_eq!(
        offsite, 2,
        "acme's old and beta's snapshot on the server: {report}"
    );

    let left: Vec<String> = store
        .list("tenants")
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    assert!(
        !left.iter().any(|p| p.starts_with("tenants/beta/")),
        "beta is gone from the server, key included: {left:?}"
    );
    assert!(!left.iter().any(|p| p.ends_with(&old_id)), "{left:?}");
    assert!(left.iter().any(|p| p.ends_with(&kept_id)), "{left:?}");
    env.ok(&["check", "--target", "offsite", "--read-data"]);
    let to = env.path("restored");
    env.ok(&restore_from_offsite(&kept_id, &to));
    assert_eq!(
        fs::read(restored_path(&to, &env.path("src/acme/more.bin"))).unwrap(),
        fs::read(env.path("src/acme/more.bin")).unwrap()
    );
    env.ok(&["audit", "verify"]);
    assert!(!store.list("audit").unwrap().is_empty());
}

#[test]
fn s3_lifecycle_deletes_on_the_server() {
    if let Some(remote) = Remote::s3() {
        lifecycle_deletes_on_the_server(remote);
    }
}

#[test]
fn azure_lifecycle_deletes_on_the_server() {
    if let Some(remote) = Remote::azure() {
        lifecycle_deletes_on_the_server(remote);
    }
}
