//! Attacks by a tenant on the backup and restore of its own tree (issue 15):
//! each test is named after what it proves and plays the attacker's move at
//! the moment that matters, driven deterministically through the debug
//! build's race hook (`GALLRA_TEST_PAUSE`: the backup or restore stops just
//! before it opens the named file, until the test says go).

use crate::common::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A paused gallra run and the folder through which the test releases it.
struct Paused {
    child: Child,
    ctl: PathBuf,
    file: String,
}

impl Paused {
    /// Starts `gallra ARGS` to pause before it opens a file named `file`,
    /// and waits until it has.
    fn start(env: &Env, args: &[&str], file: &str) -> Paused {
        let ctl = env.path("race-ctl");
        fs::create_dir_all(&ctl).unwrap();
        let child = env
            .spawnable(args)
            .env("GALLRA_TEST_PAUSE", file)
            .env("GALLRA_TEST_PAUSE_DIR", &ctl)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut paused = Paused {
            child,
            ctl,
            file: file.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !paused.ctl.join("paused").exists() {
            if let Ok(Some(status)) = paused.child.try_wait() {
                let out = paused.finish();
                panic!(
                    "gallra {} ended ({status}) before it opened {file}: {}",
                    args.join(" "),
                    describe(&out)
                );
            }
            assert!(
                Instant::now() < deadline,
                "gallra {} never paused before opening {file}",
                args.join(" ")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        paused
    }

    /// Lets the run go on and waits for it to end.
    fn finish(self) -> std::process::Output {
        fs::write(self.ctl.join(format!("{}.go", self.file)), b"").unwrap();
        self.child.wait_with_output().unwrap()
    }
}

/// A folder that the tenant may change: owned by another user when the
/// tests run as root (as on the fleet), else group-writable.
fn make_tenant_owned(dir: &Path) {
    if is_root() {
        let c = std::ffi::CString::new(s(dir)).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 4242, 4242) }, 0);
    } else {
        chmod(dir, 0o775);
    }
}

/// Every byte restored from snapshot `id`, file by file.
fn restored_contents(env: &Env, id: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let to = env.path(&format!("restored-{id}"));
    let out = env.run(&["restore", id, "--to", s(&to)]);
    assert_success(&out, "restore");
    files_under(&to)
        .into_iter()
        .map(|f| {
            let data = fs::read(&f).unwrap_or_default();
            (f, data)
        })
        .collect()
}

const SECRET: &[u8] = b"root:$6$only-root-may-read-this\n";

/// Alice's tree `home/alice/docs/{report.txt,notes.txt}`, a root-only file
/// `secret/report.txt` beside the homes, and a `{tenant}` source over
/// `home/`.
fn alice_env() -> (Env, PathBuf, PathBuf) {
    let env = Env::new();
    let home = env.path("home");
    let alice = home.join("alice");
    write_file(
        &alice.join("docs/report.txt"),
        b"alice's quarterly report\n",
    );
    write_file(&alice.join("docs/notes.txt"), b"n\n");
    let secret = env.path("secret");
    write_file(&secret.join("report.txt"), SECRET);
    chmod(&secret.join("report.txt"), 0o600);
    chmod(&secret, 0o700);
    let pattern = format!("{}/{{tenant}}", s(&home));
    env.write_config("16 MiB", &paths_source("www", "site", &[&pattern], &[]));
    env.init();
    (env, alice, secret)
}

/// No restored file holds the root-only file's bytes.
fn assert_no_secret(restored: &[(PathBuf, Vec<u8>)]) {
    for (file, data) in restored {
        assert!(
            !contains_bytes(data, SECRET),
            "{} holds the root-only file",
            file.display()
        );
    }
}

fn alice_snapshot(out: &std::process::Output) -> (String, Vec<String>) {
    let backup = parse_json(out);
    let snap = backup_snapshot(&backup, "alice", "www");
    let warnings = array_field(snap, "warnings")
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    (str_field(snap, "id").to_string(), warnings)
}

#[test]
fn backup_follows_no_folder_swapped_for_a_symlink_between_walk_and_read() {
    let (env, alice, secret) = alice_env();
    let run = Paused::start(&env, &["backup", "--json"], "report.txt");
    // The attacker's move, with inotify on its own tree: the folder that
    // was walked becomes a link to the root-only folder.
    fs::rename(alice.join("docs"), alice.join("docs.walked")).unwrap();
    symlink(&secret, alice.join("docs")).unwrap();
    let out = run.finish();
    assert_success(&out, "backup");
    let (id, warnings) = alice_snapshot(&out);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("report.txt") && w.contains("symlink")),
        "the skipped file must be named with why: {warnings:?}"
    );
    assert_no_secret(&restored_contents(&env, &id));
}

#[test]
fn backup_skips_a_file_replaced_by_a_link_to_another_between_walk_and_read() {
    let (env, alice, secret) = alice_env();
    let run = Paused::start(&env, &["backup", "--json"], "report.txt");
    // A hard link to a file the tenant cannot read (possible where
    // fs.protected_hardlinks is off) in place of the walked file.
    fs::remove_file(alice.join("docs/report.txt")).unwrap();
    fs::hard_link(secret.join("report.txt"), alice.join("docs/report.txt")).unwrap();
    let out = run.finish();
    assert_success(&out, "backup");
    let (id, warnings) = alice_snapshot(&out);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("report.txt") && w.contains("replaced")),
        "{warnings:?}"
    );
    let restored = restored_contents(&env, &id);
    assert!(
        restored.iter().any(|(f, _)| f.ends_with("docs/notes.txt")),
        "the rest of the tree is backed up: {restored:?}"
    );
    assert_no_secret(&restored);
}

#[test]
fn a_source_pattern_through_a_tenants_symlink_is_refused() {
    let env = Env::new();
    let home = env.path("home");
    write_file(
        &home.join("bob/www/htdocs/wp-config.php"),
        b"bob's db password\n",
    );
    fs::create_dir_all(home.join("alice")).unwrap();
    symlink("../bob/www", home.join("alice/www")).unwrap();
    make_tenant_owned(&home.join("alice"));
    let pattern = format!("{}/{{tenant}}/www/htdocs", s(&home));
    env.write_config("16 MiB", &paths_source("www", "site", &[&pattern], &[]));
    env.init();
    let out = env.run(&["backup", "--json"]);
    assert_exit(&out, 1, "backup with alice's path through a symlink");
    let err = stderr(&out);
    assert!(
        err.contains("alice") && err.contains("symlink") && err.contains("alice/www"),
        "the refusal names the tenant and the link: {err}"
    );
    let snaps = env.snapshots();
    assert!(
        snaps.iter().all(|s| str_field(s, "tenant") != "alice"),
        "no snapshot for alice: {snaps:?}"
    );
    assert!(
        snaps.iter().any(|s| str_field(s, "tenant") == "bob"),
        "bob is backed up: {snaps:?}"
    );
}

/// Backs up acme's files `files` (relative path, content) under `rel` as
/// its `www` source; returns the source folder and the snapshot id.
fn acme_backed_up(env: &Env, rel: &str, files: &[(&str, &[u8])]) -> (PathBuf, String) {
    let src = env.path(rel);
    for (name, data) in files {
        write_file(&src.join(name), data);
    }
    env.write_config(
        "16 MiB",
        &tenant_paths_source("www", "site", "acme", &[s(&src)]),
    );
    env.init();
    let id = backup_snapshot_id(&env.backup(&[]), "acme", "www");
    (src, id)
}

#[test]
fn restore_over_a_tree_whose_folder_becomes_a_symlink_writes_nothing_outside() {
    let env = Env::new();
    let (src, id) = acme_backed_up(
        &env,
        "site/acme",
        &[
            ("docs/passwd", b"acme's own file\n"),
            ("docs/a.txt", b"a\n"),
        ],
    );
    // The restore goes over the existing tree, whose folders the tenant owns.
    let to = env.path("over");
    let docs = restored_path(&to, &src).join("docs");
    write_file(&docs.join("a.txt"), b"old\n");
    make_tenant_owned(&docs);
    let outside = env.path("etc");
    write_file(&outside.join("passwd"), b"root:x:0:0::/root:/bin/sh\n");
    let run = Paused::start(&env, &["restore", &id, "--to", s(&to)], "passwd");
    fs::rename(&docs, docs.with_file_name("docs.old")).unwrap();
    symlink(&outside, &docs).unwrap();
    let out = run.finish();
    assert_exit(&out, 1, "restore with a folder swapped for a symlink");
    assert!(
        stderr(&out).contains("passwd") && stderr(&out).contains("symlink"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        fs::read(outside.join("passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n",
        "the file outside the target is untouched"
    );
    if is_root() {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(outside.join("passwd")).unwrap().uid(), 0);
    }
    assert_eq!(files_under(&outside).len(), 1, "nothing new outside");
}

#[test]
fn restore_to_the_root_leaves_the_folders_above_the_source_as_they_are() {
    let env = Env::new();
    let (src, id) = acme_backed_up(&env, "srv/www/acme", &[("index.html", b"<h1>acme</h1>\n")]);
    // Restoring into a copy of "/" (the folders above the source exist):
    // their times and modes are the system's, not the snapshot's.
    let to = env.path("fakeroot");
    let above = restored_path(&to, &env.path("srv/www"));
    fs::create_dir_all(restored_path(&to, &src)).unwrap();
    chmod(&above, 0o751);
    set_mtime(&above, 1_000_000_000);
    env.ok(&["restore", &id, "--to", s(&to)]);
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(&above).unwrap();
    assert_eq!(
        m.mtime(),
        1_000_000_000,
        "the mtime above the source is kept"
    );
    assert_eq!(
        m.mode() & 0o7777,
        0o751,
        "the mode above the source is kept"
    );
    assert_eq!(
        fs::read(restored_path(&to, &src).join("index.html")).unwrap(),
        b"<h1>acme</h1>\n"
    );
}

#[test]
fn a_tree_nested_deeper_than_the_walk_goes_is_backed_up_to_that_depth() {
    let env = Env::new();
    let src = env.path("home/alice");
    // 300 levels: past the walk's 256, far below anything real.
    let mut deep = src.clone();
    for _ in 0..300 {
        deep.push("d");
    }
    write_file(&deep.join("bottom.txt"), b"too deep\n");
    write_file(&src.join("index.html"), b"<h1>alice</h1>\n");
    env.write_config(
        "16 MiB",
        &tenant_paths_source("www", "site", "alice", &[s(&src)]),
    );
    env.init();
    let backup = env.backup(&[]);
    let snap = backup_snapshot(&backup, "alice", "www");
    let warnings = array_field(snap, "warnings");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("nested more than 256")),
        "{warnings:?}"
    );
    let restored = restored_contents(&env, str_field(snap, "id"));
    assert!(restored.iter().any(|(f, _)| f.ends_with("index.html")));
    assert!(!restored.iter().any(|(f, _)| f.ends_with("bottom.txt")));
}

#[test]
fn a_restore_to_never_follows_a_tenants_link_on_the_way_to_it() {
    let env = Env::new();
    let (_, id) = acme_backed_up(&env, "site/acme", &[("index.html", b"<h1>acme</h1>\n")]);
    // Support restores into the customer's home; the customer made the
    // folder on the way a link to a system folder.
    let home = env.path("home/alice");
    fs::create_dir_all(&home).unwrap();
    let system = env.path("etc-nginx");
    fs::create_dir_all(&system).unwrap();
    symlink(&system, home.join("restores")).unwrap();
    make_tenant_owned(&home);
    let to = home.join("restores/today");
    let out = env.run(&["restore", &id, "--to", s(&to)]);
    let err = assert_error(&out, 1, "restore through a tenant's link", &["restores"]);
    assert!(err.contains("symlink"), "{err}");
    assert!(
        fs::read_dir(&system).unwrap().next().is_none(),
        "nothing was created in the system folder"
    );
}
