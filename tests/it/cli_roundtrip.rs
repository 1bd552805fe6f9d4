//! Back up trees holding every kind of file, restore them, and check that what
//! comes back is what went in: bytes, types, modes, times, owners, symlinks and
//! hard links. Also `dump`, `ls`, `snapshots`, `backup --time`, command
//! sources, exclude globs and CACHEDIR.TAG.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::Value;

/// Excluded by the source's `exclude` globs or by CACHEDIR.TAG: skipped when
/// comparing trees, and checked to be absent separately.
const SKIPPED: &[&str] = &["cache", "thumbs", "a/session.tmp"];

/// Paths (relative to the tenant folder) that must not be in the snapshot.
const EXCLUDED_FILES: &[&str] = &[
    "cache/big.bin",
    "cache/sub/more.bin",
    "a/session.tmp",
    "thumbs/t1.jpg",
    "thumbs/sub",
    "thumbs/sub/t2.jpg",
];

const UNICODE_DIR: &str = "mapp med mellanslag";
const UNICODE_FILE: &str = "Årsredovisning 2025 — café ünïcode ✓.txt";
const RANDOM_SIZE: usize = 3 * 1024 * 1024 + 123;
const TEXT_SIZE: usize = 1024 * 1024 + 7;

/// Build the full tree of tenant `acme` under `dir`.
fn build_full_tree(dir: &Path, rng: &mut Rng) {
    write_file(&dir.join("random.bin"), &rng.bytes(RANDOM_SIZE));
    write_file(&dir.join("notes/readme.txt"), &rng.text(TEXT_SIZE));
    write_file(&dir.join("empty.txt"), b"");
    fs::create_dir_all(dir.join("empty-dir")).unwrap();
    write_file(&dir.join("a/b/c/d/deep.txt"), b"deep inside\n");
    write_file(&dir.join("a/b/small.txt"), &rng.text(300));

    fs::create_dir_all(dir.join("links")).unwrap();
    symlink("../notes/readme.txt", dir.join("links/rel")).unwrap();
    symlink(dir.join("notes/readme.txt"), dir.join("links/abs")).unwrap();
    symlink("nowhere/missing-file", dir.join("links/dangling")).unwrap();

    write_file(&dir.join("hard/one.txt"), &rng.text(5000));
    fs::hard_link(dir.join("hard/one.txt"), dir.join("a/hard-two.txt")).unwrap();

    write_file(&dir.join("modes/secret"), b"only the owner\n");
    chmod(&dir.join("modes/secret"), 0o600);
    write_file(&dir.join("modes/script.sh"), b"#!/bin/sh\necho hi\n");
    chmod(&dir.join("modes/script.sh"), 0o755);
    write_file(&dir.join("modes/group-read"), b"group may read\n");
    chmod(&dir.join("modes/group-read"), 0o640);
    chmod(&dir.join("modes"), 0o750);
    if is_root() {
        // Only root can give files away; restore as root must give them back.
        std::os::unix::fs::chown(dir.join("modes/group-read"), Some(1234), Some(2345)).unwrap();
    }

    write_file(
        &dir.join(UNICODE_DIR).join(UNICODE_FILE),
        "smörgåsbord ✓\n".as_bytes(),
    );

    // Excluded by the globs `**/cache/**` and `**/*.tmp`.
    write_file(&dir.join("cache/big.bin"), &rng.bytes(100_000));
    write_file(&dir.join("cache/sub/more.bin"), b"cached");
    write_file(&dir.join("a/session.tmp"), b"temporary");
    // Skipped because of its CACHEDIR.TAG.
    write_file(&dir.join("thumbs/CACHEDIR.TAG"), CACHEDIR_TAG.as_bytes());
    write_file(&dir.join("thumbs/t1.jpg"), &rng.bytes(5000));
    write_file(&dir.join("thumbs/sub/t2.jpg"), &rng.bytes(5000));

    write_file(&dir.join("old/ancient.txt"), b"from 2001\n");
}

/// Build the smaller tree of tenant `globex` under `dir`.
fn build_small_tree(dir: &Path, rng: &mut Rng) {
    write_file(&dir.join("index.php"), &rng.text(20_000));
    write_file(&dir.join("uploads/logo.png"), &rng.bytes(200_000));
    fs::create_dir_all(dir.join("tmp")).unwrap();
    symlink("index.php", dir.join("link")).unwrap();
}

/// Give every file and directory under `dir` (and `dir` itself) a distinct
/// mtime in the past, children before parents so that the directories keep
/// theirs. A restore that forgets to set times (or sets a directory's before
/// filling it) cannot match them by accident.
fn set_old_times(dir: &Path, next: &mut i64) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let ft = entry.file_type().unwrap();
        if ft.is_dir() {
            set_old_times(&entry.path(), next);
        } else if ft.is_file() {
            set_mtime(&entry.path(), *next);
            *next += 1;
        }
    }
    set_mtime(dir, *next);
    *next += 1;
}

/// Number of distinct inodes of regular files under `dir`, skipping `skip`.
fn distinct_file_inodes(dir: &Path, skip: &[&str]) -> usize {
    tree_entries(dir, skip)
        .iter()
        .filter(|(_, kind)| **kind == "file")
        .map(|(rel, _)| fs::metadata(dir.join(rel)).unwrap().ino())
        .collect::<BTreeSet<_>>()
        .len()
}

fn ls(env: &Env, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["ls"];
    all.extend_from_slice(args);
    match env.json(&all) {
        Value::Array(a) => a,
        other => panic!("ls --json must print an array, got {other}"),
    }
}

fn ls_paths(entries: &[Value]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|e| str_field(e, "path").to_string())
        .collect()
}

#[test]
fn every_file_kind_round_trips_per_tenant() {
    let env = Env::new();
    let src = env.path("src");
    let acme = src.join("acme");
    let globex = src.join("globex");
    let mut rng = Rng::new(1);
    build_full_tree(&acme, &mut rng);
    build_small_tree(&globex, &mut rng);
    let mut t = 1_500_000_000;
    set_old_times(&acme, &mut t);
    set_old_times(&globex, &mut t);
    // A specific mtime, set after the walk above so that it stays.
    set_mtime(&acme.join("old/ancient.txt"), 1_000_000_000);

    let pattern = format!("{}/{{tenant}}", s(&src));
    env.write_config(
        "16 MiB",
        &paths_source("www", "site", &[&pattern], &["**/cache/**", "**/*.tmp"]),
    );
    env.init();
    let backup = env.backup(&[]);

    assert_eq!(
        array_field(&backup, "snapshots").len(),
        2,
        "one snapshot per tenant folder: {backup}"
    );
    assert!(
        array_field(&backup, "failed").is_empty(),
        "nothing failed: {backup}"
    );
    let acme_id = backup_snapshot_id(&backup, "acme", "www");
    let globex_id = backup_snapshot_id(&backup, "globex", "www");
    assert_ne!(acme_id, globex_id);
    for snap in array_field(&backup, "snapshots") {
        assert_eq!(str_field(snap, "category"), "site");
        assert_eq!(str_field(snap, "host"), "testhost");
        assert!(snap.get("warnings").is_some_and(Value::is_array), "{snap}");
    }
    assert!(
        u64_field(&backup, "bytes_read") >= (RANDOM_SIZE + TEXT_SIZE) as u64,
        "bytes_read counts what was read: {backup}"
    );

    // Restore each snapshot, verified, and compare with the original.
    for (tenant, id, dir, symlinks) in [
        ("acme", &acme_id, &acme, 3),
        ("globex", &globex_id, &globex, 1),
    ] {
        let to = env.path(&format!("restore-{tenant}"));
        let out = env.run(&["restore", id, "--to", s(&to), "--verify", "--json"]);
        assert_success(&out, &format!("restore {id} --verify"));
        let summary = parse_json(&out);
        assert_eq!(
            u64_field(&summary, "symlinks"),
            symlinks,
            "restore --json counts symlinks: {summary}"
        );
        let restored = restored_path(&to, dir);
        compare_trees(dir, &restored, SKIPPED);
        let other = if tenant == "acme" { "globex" } else { "acme" };
        assert!(
            !restored.parent().unwrap().join(other).exists(),
            "the restore of {tenant} must not hold {other}'s data"
        );
        if tenant == "acme" {
            for rel in EXCLUDED_FILES {
                assert!(
                    fs::symlink_metadata(restored.join(rel)).is_err(),
                    "{rel} is excluded and must not be restored"
                );
            }
        }
    }

    // dump writes one file's bytes to stdout.
    for rel in [
        "notes/readme.txt".to_string(),
        "random.bin".to_string(),
        format!("{UNICODE_DIR}/{UNICODE_FILE}"),
        "empty.txt".to_string(),
    ] {
        let path = acme.join(&rel);
        let out = env.ok(&["dump", &acme_id, s(&path)]);
        assert!(
            out.stdout == fs::read(&path).unwrap(),
            "dump of {rel} must print exactly its bytes ({} bytes printed)",
            out.stdout.len()
        );
    }

    // ls lists every entry at its full path, with its type, and nothing excluded.
    let entries = ls(&env, &[&acme_id]);
    let listed = ls_paths(&entries);
    for (rel, kind) in tree_entries(&acme, SKIPPED) {
        let full = format!("{}/{rel}", s(&acme));
        let entry = entries
            .iter()
            .find(|e| str_field(e, "path") == full)
            .unwrap_or_else(|| panic!("ls --json must list {full}; it listed {listed:#?}"));
        assert_eq!(str_field(entry, "type"), kind, "type of {full}: {entry}");
        if kind == "file" {
            let len = fs::metadata(acme.join(&rel)).unwrap().len();
            assert_eq!(u64_field(entry, "size"), len, "size of {full}: {entry}");
        }
        assert!(
            entry.get("mode").is_some() && entry.get("mtime").is_some(),
            "{entry}"
        );
    }
    for rel in EXCLUDED_FILES {
        let full = format!("{}/{rel}", s(&acme));
        assert!(!listed.contains(&full), "ls must not list excluded {full}");
    }
    assert!(
        !listed
            .iter()
            .any(|p| p.starts_with(&format!("{}/", s(&globex)))),
        "ls of acme's snapshot must not list globex's files"
    );

    // ls PATH lists only what is under PATH, recursively.
    let under = acme.join("a");
    let sub = ls_paths(&ls(&env, &[&acme_id, s(&under)]));
    assert!(
        sub.contains(&format!("{}/b/c/d/deep.txt", s(&under))),
        "ls SNAPSHOT PATH is recursive: {sub:#?}"
    );
    assert!(
        sub.iter().all(|p| p.starts_with(s(&under))),
        "ls SNAPSHOT PATH lists only entries under PATH: {sub:#?}"
    );

    // snapshots --json: one entry per tenant, with the documented fields.
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 2, "one snapshot per tenant: {snaps:?}");
    let tenants: BTreeSet<&str> = snaps.iter().map(|s| str_field(s, "tenant")).collect();
    assert_eq!(tenants, BTreeSet::from(["acme", "globex"]));
    for snap in &snaps {
        let tenant = str_field(snap, "tenant");
        let (id, dir) = if tenant == "acme" {
            (&acme_id, &acme)
        } else {
            (&globex_id, &globex)
        };
        assert_eq!(str_field(snap, "id"), id.as_str());
        assert_eq!(str_field(snap, "source"), "www");
        assert_eq!(str_field(snap, "category"), "site");
        assert_eq!(str_field(snap, "host"), "testhost");
        let time = str_field(snap, "time");
        time.parse::<jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("time {time:?} must be RFC 3339: {e}"));
        let files = u64_field(snap, "files");
        let min_files = distinct_file_inodes(dir, SKIPPED) as u64;
        assert!(files >= min_files, "{tenant}: files {files} < {min_files}");
        let bytes = u64_field(snap, "bytes");
        if tenant == "acme" {
            assert!(
                bytes >= (RANDOM_SIZE + TEXT_SIZE) as u64 && bytes < 6 * 1024 * 1024,
                "acme: bytes {bytes} must be the size of its files (without the excluded ones)"
            );
        }
        let paths = array_field(snap, "paths");
        assert!(
            paths.contains(&Value::from(s(dir))),
            "paths of {tenant}'s snapshot must hold {}: {snap}",
            dir.display()
        );
    }
}

#[test]
fn backup_time_option_sets_the_snapshot_time() {
    let env = Env::new();
    let dir = env.path("site/acme");
    write_file(&dir.join("index.html"), b"<h1>hello</h1>\n");
    env.write_config(
        "16 MiB",
        &tenant_paths_source("www", "site", "acme", &[s(&dir)]),
    );
    env.init();
    let when: jiff::Timestamp = "2026-05-31T12:00:00Z".parse().unwrap();
    let backup = env.backup(&["--time", "2026-05-31T12:00:00Z"]);
    let snap = backup_snapshot(&backup, "acme", "www");
    let t: jiff::Timestamp = str_field(snap, "time").parse().expect("RFC 3339 time");
    assert_eq!(t, when, "backup --json time: {snap}");

    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let t: jiff::Timestamp = str_field(&snaps[0], "time").parse().expect("RFC 3339");
    assert_eq!(t, when, "snapshots --json time: {}", snaps[0]);
}

#[test]
fn command_source_is_stored_as_one_file_and_a_failing_command_fails_only_itself() {
    let env = Env::new();
    let dir = env.path("site/acme");
    write_file(&dir.join("index.html"), b"<h1>acme</h1>\n");
    let mut sources = tenant_paths_source("www", "site", "acme", &[s(&dir)]);
    sources.push_str(&command_source(
        "db",
        "database",
        "acme",
        &["sh", "-c", "printf 'dump-of-acme\\n'; seq 1 100000"],
        "acme.sql",
    ));
    sources.push_str(&command_source(
        "broken",
        "database",
        "acme",
        &["sh", "-c", "echo partial output; exit 3"],
        "broken.sql",
    ));
    env.write_config("16 MiB", &sources);
    env.init();

    let out = env.run(&["backup", "--json"]);
    assert_exit(&out, 1, "backup with a failing command source");
    assert!(
        stderr(&out).contains("broken"),
        "stderr must name the failing source `broken`\n{}",
        describe(&out)
    );
    let summary = parse_json(&out);
    let failed = array_field(&summary, "failed");
    assert!(
        failed
            .iter()
            .any(|f| f.get("source") == Some(&Value::from("broken"))
                && f.get("tenant") == Some(&Value::from("acme"))),
        "backup --json `failed` must list acme/broken: {summary}"
    );
    let db_id = backup_snapshot_id(&summary, "acme", "db");
    backup_snapshot_id(&summary, "acme", "www");

    let snaps = env.snapshots();
    let sources: BTreeSet<&str> = snaps.iter().map(|s| str_field(s, "source")).collect();
    assert_eq!(
        sources,
        BTreeSet::from(["db", "www"]),
        "the failed command writes no snapshot; the others are written: {snaps:?}"
    );

    let mut expected = b"dump-of-acme\n".to_vec();
    for i in 1..=100_000 {
        expected.extend_from_slice(format!("{i}\n").as_bytes());
    }
    let to = env.path("restore-db");
    env.restore_verified(&db_id, &to);
    let restored: PathBuf = to.join("acme.sql");
    let got = fs::read(&restored).expect("the command's output is restored as DIR/acme.sql");
    assert!(got == expected, "acme.sql must hold the command's stdout");

    let out = env.ok(&["dump", &db_id, "/acme.sql"]);
    assert!(out.stdout == expected, "dump /acme.sql prints the stdout");

    let listed = ls_paths(&ls(&env, &[&db_id]));
    assert!(
        listed.contains("/acme.sql"),
        "ls lists /acme.sql: {listed:?}"
    );
}
