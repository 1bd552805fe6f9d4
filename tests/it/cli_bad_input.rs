//! Bad keys, bad configs, damaged repositories and bad arguments: each fails
//! with the documented exit status and one `error: ` line that names the
//! culprit, and leaves earlier snapshots restorable.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Output;

use crate::common::*;
use serde_json::Value;

/// A small backed-up tenant: the env, the tenant folder and the snapshot id.
fn backed_up() -> (Env, PathBuf, String) {
    let env = Env::new();
    let dir = env.path("site/acme");
    let mut rng = Rng::new(5);
    write_file(&dir.join("index.php"), &rng.text(30_000));
    write_file(&dir.join("img/photo.jpg"), &rng.bytes(300_000));
    write_file(&dir.join("secret.txt"), b"the owner only\n");
    env.write_config(
        "16 MiB",
        &tenant_paths_source("www", "site", "acme", &[s(&dir)]),
    );
    env.init();
    let backup = env.backup(&[]);
    let id = backup_snapshot_id(&backup, "acme", "www");
    (env, dir, id)
}

/// The earlier snapshot still restores, verified, with the right config.
fn assert_still_restores(env: &Env, dir: &std::path::Path, id: &str, name: &str) {
    let to = env.path(name);
    env.restore_verified(id, &to);
    compare_trees(dir, &restored_path(&to, dir), &[]);
}

/// A refusal: exit 1 or 2 (not a crash), one `error: ` line naming `names`.
fn assert_refused(out: &Output, what: &str, names: &[&str]) -> String {
    assert!(
        matches!(out.status.code(), Some(1) | Some(2)),
        "`{what}` must be refused with exit 1 or 2\n{}",
        describe(out)
    );
    error_naming(out, what, names)
}

#[test]
fn wrong_key_is_refused_and_the_right_one_still_works() {
    let (env, dir, id) = backed_up();
    let other_key = env.path("other-key");
    env.generate_key(&other_key);
    let other_config = env.path("other.toml");
    fs::write(&other_config, env.config_text(&other_key)).unwrap();

    let wrong = env.path("wrong");
    for args in [vec!["snapshots"], vec!["restore", &id, "--to", s(&wrong)]] {
        let out = env.run_with(&other_config, &args);
        let what = format!("{} with a wrong key", args[0]);
        assert_exit(&out, 1, &what);
        let line = error_line(&out);
        assert!(
            line.to_lowercase().contains("key"),
            "the error of `{what}` must say it is about the key, got: {line}"
        );
    }
    assert_still_restores(&env, &dir, &id, "restored");
}

#[test]
fn key_file_readable_by_others_is_refused() {
    let (env, dir, id) = backed_up();
    chmod(&env.key, 0o644);
    let out = env.run(&["backup"]);
    assert_refused(&out, "backup with a 0644 key file", &[s(&env.key)]);
    let out = env.run(&["snapshots"]);
    assert_refused(&out, "snapshots with a 0644 key file", &[s(&env.key)]);

    chmod(&env.key, 0o600);
    assert_eq!(env.snapshots().len(), 1, "the refused backup wrote nothing");
    assert_still_restores(&env, &dir, &id, "restored");
}

#[test]
fn missing_key_file_is_named() {
    let (env, dir, id) = backed_up();
    let missing = env.path("no-such-key");
    let config = env.path("missing-key.toml");
    fs::write(&config, env.config_text(&missing)).unwrap();
    let out = env.run_with(&config, &["snapshots"]);
    assert_refused(&out, "snapshots with a missing key file", &[s(&missing)]);
    assert_still_restores(&env, &dir, &id, "restored");
}

#[test]
fn unknown_config_key_is_named_with_its_line() {
    let (env, dir, id) = backed_up();
    let text =
        env.config_text(&env.key)
            .replacen("[repository]\n", "[repository]\ncompresion = 3\n", 1);
    let line_no = text
        .lines()
        .position(|l| l.starts_with("compresion"))
        .expect("the typo is in the config")
        + 1;
    let config = env.path("typo.toml");
    fs::write(&config, &text).unwrap();

    for args in [vec!["snapshots"], vec!["backup"]] {
        let out = env.run_with(&config, &args);
        let what = format!("{} with an unknown config key", args[0]);
        let line = assert_error(&out, 2, &what, &["compresion"]);
        assert!(
            contains_number(&line, line_no),
            "the error must give the line {line_no} of the unknown key, got: {line}"
        );
    }
    assert_eq!(env.snapshots().len(), 1, "nothing was backed up");
    assert_still_restores(&env, &dir, &id, "restored");
}

#[test]
fn invalid_toml_is_refused_with_its_line() {
    let (env, dir, id) = backed_up();
    let text =
        env.config_text(&env.key)
            .replacen("pack_size = \"16 MiB\"", "pack_size = \"16 MiB", 1);
    let line_no = text
        .lines()
        .position(|l| l == "pack_size = \"16 MiB")
        .expect("the broken line is in the config")
        + 1;
    let config = env.path("broken.toml");
    fs::write(&config, &text).unwrap();

    let out = env.run_with(&config, &["snapshots"]);
    let line = assert_error(&out, 2, "snapshots with invalid TOML", &[]);
    assert!(
        contains_number(&line, line_no),
        "the error must give the line {line_no} of the broken string, got: {line}"
    );
    assert_still_restores(&env, &dir, &id, "restored");
}

#[test]
fn missing_index_object_is_found_by_check() {
    let (env, _dir, id) = backed_up();
    let index = tenant_objects(&env.repo, "acme", "index");
    assert!(!index.is_empty(), "the backup wrote an index");
    let victim = &index[0];
    let index_id = file_name(victim).to_string();
    fs::remove_file(victim).unwrap();

    let out = env.run(&["check"]);
    assert_exit(&out, 1, "check with a deleted index object");
    let all = format!("{}{}", stdout(&out), stderr(&out));
    let short = |s: &str| s[..s.len().min(8)].to_string();
    assert!(
        all.contains(&short(&index_id)) || all.contains(&short(&id)),
        "check must name the missing index {index_id} (or the snapshot {id} that needs it)\n{}",
        describe(&out)
    );
}

#[test]
fn truncated_pack_is_found_by_check() {
    let (env, _dir, _id) = backed_up();
    let pack = pack_files(&env.repo)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .expect("the backup wrote a pack");
    let pack_id = file_name(&pack).to_string();
    let len = fs::metadata(&pack).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let out = env.run(&["check"]);
    assert_exit(&out, 1, "check with a truncated pack");
    assert!(
        stdout(&out).contains(&pack_id) || stderr(&out).contains(&pack_id),
        "check must name the truncated pack {pack_id}\n{}",
        describe(&out)
    );
}

#[test]
fn unreadable_source_file_is_a_warning_and_the_snapshot_is_written() {
    if is_root() {
        eprintln!("skipped: root reads files of any mode");
        return;
    }
    let (env, dir, _id) = backed_up();
    let secret = dir.join("secret.txt");
    chmod(&secret, 0o000);
    let out = env.run(&["backup", "--json"]);
    chmod(&secret, 0o600);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "backup with an unreadable file must finish\n{}",
        describe(&out)
    );
    assert!(
        stderr(&out).contains("secret.txt"),
        "stderr must warn about the unreadable file\n{}",
        describe(&out)
    );
    let summary = parse_json(&out);
    let snap = backup_snapshot(&summary, "acme", "www");
    let warnings = array_field(snap, "warnings");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("secret.txt"))),
        "the snapshot's warnings must name the unreadable file: {snap}"
    );
    let new_id = str_field(snap, "id").to_string();
    assert_eq!(env.snapshots().len(), 2, "the snapshot was written");
    let to = env.path("restored");
    env.restore_verified(&new_id, &to);
    compare_trees(&dir, &restored_path(&to, &dir), &["secret.txt"]);
}

#[test]
fn key_generate_never_overwrites() {
    let (env, dir, id) = backed_up();
    let before = fs::read(&env.key).unwrap();
    let mode = fs::metadata(&env.key).unwrap().mode();
    let out = env.run_without_config(&["key", "generate", s(&env.key)]);
    assert_refused(&out, "key generate on an existing file", &[s(&env.key)]);
    assert_eq!(
        fs::read(&env.key).unwrap(),
        before,
        "the key file is unchanged"
    );
    assert_eq!(fs::metadata(&env.key).unwrap().mode(), mode);
    assert_still_restores(&env, &dir, &id, "restored");
}

#[test]
fn restore_of_an_unknown_snapshot_fails() {
    let (env, dir, id) = backed_up();
    let unknown = if id.starts_with("deadbeef") {
        "cafebabecafebabe"
    } else {
        "deadbeefdeadbeef"
    };
    let to = env.path("nothing");
    let out = env.run(&["restore", unknown, "--to", s(&to)]);
    assert_error(&out, 1, "restore of an unknown snapshot", &[unknown]);
    assert!(
        fs::read_dir(&to).map_or(true, |mut d| d.next().is_none()),
        "a failed restore writes nothing"
    );
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], Value::from(id.as_str()));
    assert_still_restores(&env, &dir, &id, "restored");
}
