//! Key slots and passphrases, restore's refusal to follow symlinks, special
//! files, and the quickstart's idempotence.

use crate::common::*;
use std::fs;
use std::path::Path;

fn one_tenant_env() -> Env {
    let env = Env::new();
    env.write_acme_site_config();
    env
}

#[test]
fn passphrase_slot_and_key_slot_management() {
    let env = one_tenant_env();
    env.init();
    // Add a passphrase slot, then open the repository with it alone.
    let out = env
        .cmd_with(
            &env.config,
            &[
                "key",
                "add",
                "--passphrase-env",
                "GALLRA_TEST_PASS",
                "--json",
            ],
        )
        .env("GALLRA_TEST_PASS", "correct horse battery staple")
        .env("GALLRA_TEST_ARGON2_KIB", "1024")
        .output()
        .unwrap();
    assert_success(&out, "key add --passphrase-env");
    let added = parse_json(&out)["id"].as_str().unwrap().to_string();
    let slots = env.json(&["key", "list"]);
    let slots = slots.as_array().unwrap();
    assert_eq!(slots.len(), 2);
    assert!(
        slots
            .iter()
            .any(|s| s["id"] == added.as_str() && s["kind"] == "passphrase")
    );
    let file_slot = slots.iter().find(|s| s["kind"] == "file").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let pass_config = env.path("pass.toml");
    let text = fs::read_to_string(&env.config).unwrap().replace(
        &format!("file = {}", toml_str(s(&env.key))),
        "passphrase_env = \"GALLRA_TEST_PASS\"",
    );
    fs::write(&pass_config, text).unwrap();
    let backup = env
        .cmd_with(&pass_config, &["backup", "--json"])
        .env("GALLRA_TEST_PASS", "correct horse battery staple")
        .output()
        .unwrap();
    assert_success(&backup, "backup with the passphrase");
    let wrong = env
        .cmd_with(&pass_config, &["snapshots"])
        .env("GALLRA_TEST_PASS", "wrong horse")
        .output()
        .unwrap();
    assert_error(&wrong, 1, "wrong passphrase", &["passphrase"]);
    let unset = env.run_with(&pass_config, &["snapshots"]);
    assert_error(
        &unset,
        1,
        "passphrase variable unset",
        &["GALLRA_TEST_PASS"],
    );

    // The slot in use and the last slot cannot be removed.
    let in_use = env.run(&["key", "remove", &file_slot]);
    assert_error(&in_use, 2, "removing the slot in use", &[&file_slot]);
    let removed = env
        .cmd_with(&pass_config, &["key", "remove", &file_slot])
        .env("GALLRA_TEST_PASS", "correct horse battery staple")
        .output()
        .unwrap();
    assert_success(&removed, "remove the key-file slot using the passphrase");
    let gone = env.run(&["snapshots"]);
    assert_error(&gone, 1, "key file after its slot was removed", &["key"]);
    let last = env
        .cmd_with(&pass_config, &["key", "remove", &added])
        .env("GALLRA_TEST_PASS", "correct horse battery staple")
        .output()
        .unwrap();
    assert_error(&last, 2, "removing the last slot", &["last"]);
}

#[test]
fn restore_never_writes_through_a_symlink_in_the_target() {
    let env = one_tenant_env();
    env.init();
    let id = backup_snapshot_id(&env.backup(&[]), "acme", "www");
    let to = env.path("restore");
    let outside = env.path("outside");
    fs::create_dir_all(&to).unwrap();
    fs::create_dir_all(&outside).unwrap();
    // The first component of the restored path is a symlink to elsewhere.
    let first = env.root.components().nth(1).unwrap().as_os_str().to_owned();
    std::os::unix::fs::symlink(&outside, to.join(&first)).unwrap();
    let out = env.run(&["restore", &id, "--to", s(&to)]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        files_under(&outside).is_empty(),
        "restore wrote through a symlink: {:?}",
        files_under(&outside)
    );
}

#[test]
fn special_files_are_skipped_with_a_warning() {
    let env = one_tenant_env();
    let fifo = env.path("src/acme/queue.fifo");
    mkfifo(&fifo, 0o644);
    env.init();
    let backup = env.backup(&[]);
    let snap = backup_snapshot(&backup, "acme", "www");
    let warnings = array_field(snap, "warnings");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("queue.fifo")),
        "{warnings:?}"
    );
    let id = str_field(snap, "id");
    let listed = env.json(&["ls", id]);
    assert!(!listed.to_string().contains("queue.fifo"));
    assert!(listed.to_string().contains("index.html"));
}

#[test]
fn quickstart_runs_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("qs");
    for round in 1..=2 {
        let out = assert_cmd::Command::cargo_bin("gallra")
            .unwrap()
            .args(["quickstart", "--dir", s(&dir)])
            .env_remove("GALLRA_CONFIG")
            .output()
            .unwrap();
        assert_success(&out, &format!("quickstart round {round}"));
        let restored = dir.join(format!("restore-{round}"));
        let index = restored
            .join(dir.strip_prefix("/").unwrap_or(Path::new("")))
            .join("demo/www/acme/index.php");
        assert!(
            index.is_file(),
            "round {round}: {} missing",
            index.display()
        );
    }
    let key_mode = {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(dir.join("key")).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(key_mode, 0o600);
}

/// An empty directory's tree encodes to the single byte 0x00; a file holding
/// that byte once had the same blob id, so one of them could not be restored.
#[test]
fn regression_an_empty_dir_and_a_file_holding_one_zero_byte_do_not_collide() {
    let env = Env::new();
    let src = env.path("src/acme");
    fs::create_dir_all(src.join("empty")).unwrap();
    write_file(&src.join("zero.bin"), &[0u8]);
    env.write_config(
        "16 MiB",
        &tenant_paths_source("www", "site", "acme", &[s(&src)]),
    );
    env.init();
    let id = backup_snapshot_id(&env.backup(&[]), "acme", "www");
    let to = env.path("restore");
    env.restore_verified(&id, &to);
    let restored = restored_path(&to, &src);
    assert!(restored.join("empty").is_dir());
    assert_eq!(fs::read(restored.join("zero.bin")).unwrap(), [0u8]);
    let check = env.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
}

/// An environment with a `file://` secondary `offsite`, initialised (init
/// ships the repository there); returns it and the offsite's folder.
fn env_with_offsite() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let offsite = env.path("offsite");
    env.set_extra_targets(&file_target("offsite", &offsite, ""));
    env.write_acme_site_config();
    env.init();
    assert!(
        offsite.join("config").exists(),
        "init shipped the repository"
    );
    (env, offsite)
}

/// A config like `env`'s that opens the repository with `key` instead.
fn config_with_key(env: &Env, key: &Path, name: &str) -> std::path::PathBuf {
    let path = env.path(name);
    fs::write(&path, env.config_text(key)).unwrap();
    path
}

fn slot_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(dir.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    ids.sort();
    ids
}

fn offsite_row(env: &Env) -> serde_json::Value {
    let out = env.run(&["status", "--json"]);
    parse_json(&out)["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "offsite")
        .unwrap()
        .clone()
}

/// Before: `key add` wrote the slot on the primary only; after losing the
/// primary, the new key did not open the offsite copy until a ship had run.
#[test]
fn key_add_reaches_the_offsite_at_once() {
    let (env, offsite) = env_with_offsite();
    let key2 = env.path("key2");
    env.generate_key(&key2);
    let added = env.json(&["key", "add", "--file", s(&key2)]);
    let id = added["id"].as_str().unwrap().to_string();
    assert_eq!(slot_ids(&offsite), slot_ids(&env.repo));
    assert_eq!(added["targets"][0]["target"], "offsite", "{added}");
    assert_eq!(added["targets"][0]["ok"], true, "{added}");
    assert_eq!(
        fs::read(offsite.join("keys").join(&id)).unwrap(),
        fs::read(env.repo.join("keys").join(&id)).unwrap()
    );
    // The new key alone opens the offsite copy, no ship in between.
    let cfg = config_with_key(&env, &key2, "key2.toml");
    let out = env.run_with(&cfg, &["snapshots", "--target", "offsite", "--json"]);
    assert_success(&out, "snapshots --target offsite with the new key");
    assert_eq!(offsite_row(&env)["missing"], 0);
}

/// Before: `key remove` deleted the slot on the primary only: the revoked
/// key went on opening the offsite copy until the next ship.
#[test]
fn key_remove_reaches_the_offsite_at_once() {
    let (env, offsite) = env_with_offsite();
    let key2 = env.path("key2");
    env.generate_key(&key2);
    let id = env.json(&["key", "add", "--file", s(&key2)])["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Shipped, so that only the removal is under test here.
    env.ok(&["ship"]);
    let cfg = config_with_key(&env, &key2, "key2.toml");
    assert_success(
        &env.run_with(&cfg, &["snapshots", "--target", "offsite", "--json"]),
        "the new key opens the offsite",
    );
    let removed = env.json(&["key", "remove", &id]);
    assert!(
        !offsite.join("keys").join(&id).exists(),
        "gone from the offsite"
    );
    assert_eq!(removed["targets"][0]["ok"], true, "{removed}");
    let out = env.run_with(&cfg, &["snapshots", "--target", "offsite", "--json"]);
    assert!(
        !out.status.success(),
        "the removed key must not open the offsite\n{}",
        describe(&out)
    );
    assert_eq!(offsite_row(&env)["missing"], 0);
}

/// A slot change that cannot reach a secondary says so and exits 1, keeps
/// the change on the primary, and `status` counts the difference as missing
/// on that target until a ship (which removes as well as copies) repairs it.
#[test]
fn a_key_slot_change_that_misses_a_down_offsite_fails_and_status_shows_it_until_a_ship() {
    let (env, offsite) = env_with_offsite();
    let away = env.path("offsite-away");
    let key2 = env.path("key2");
    env.generate_key(&key2);

    fs::rename(&offsite, &away).unwrap();
    let out = env.run(&["key", "add", "--file", s(&key2), "--json"]);
    assert_exit(&out, 1, "key add with the offsite down");
    assert!(
        stderr(&out).contains("target offsite"),
        "{}",
        describe(&out)
    );
    let id = parse_json(&out)["id"].as_str().unwrap().to_string();
    assert!(
        env.repo.join("keys").join(&id).exists(),
        "kept on the primary"
    );
    fs::rename(&away, &offsite).unwrap();
    let row = offsite_row(&env);
    assert_eq!(row["key_slots_lacking"], serde_json::json!([id]), "{row}");
    assert_eq!(row["missing"], 1, "{row}");
    let text = stdout(&env.run(&["status"]));
    assert!(text.contains(&format!("lacks key slot(s) {id}")), "{text}");
    env.ok(&["ship"]);
    assert!(
        offsite.join("keys").join(&id).exists(),
        "the ship copied it"
    );
    assert_eq!(offsite_row(&env)["missing"], 0);

    fs::rename(&offsite, &away).unwrap();
    let out = env.run(&["key", "remove", &id]);
    assert_exit(&out, 1, "key remove with the offsite down");
    assert!(stderr(&out).contains("still opens"), "{}", describe(&out));
    assert!(
        !env.repo.join("keys").join(&id).exists(),
        "removed on the primary"
    );
    fs::rename(&away, &offsite).unwrap();
    let row = offsite_row(&env);
    assert_eq!(row["key_slots_extra"], serde_json::json!([id]), "{row}");
    assert_eq!(row["missing"], 1, "{row}");
    env.ok(&["ship"]);
    assert!(
        !offsite.join("keys").join(&id).exists(),
        "the ship removed it"
    );
    assert_eq!(offsite_row(&env)["missing"], 0);
    let cfg = config_with_key(&env, &key2, "key2.toml");
    assert!(
        !env.run_with(&cfg, &["snapshots", "--target", "offsite"])
            .status
            .success()
    );
}
