//! Shipping to a secondary (`file://`) target: `backup` ships unless
//! `--no-ship`, `ship` copies only what is missing, a damaged pack is never
//! shipped, a target holding another repository is refused, a ship killed at
//! any moment leaves the secondary restorable, the secondary alone (with the
//! config and the key) rebuilds a lost primary, and `unlock` breaks only stale
//! locks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::*;
use serde_json::Value;

/// Two tenant folders `src/acme` and `src/globex`, and a `{tenant}` source
/// over them; a secondary `offsite` target with `offsite_more` TOML lines.
struct Setup {
    env: Env,
    src: PathBuf,
    offsite: PathBuf,
}

impl Setup {
    fn new(pack_size: &str, offsite_more: &str) -> Setup {
        let env = Env::new();
        let src = env.path("src");
        let offsite = env.path("offsite");
        fs::create_dir_all(src.join("acme")).unwrap();
        fs::create_dir_all(src.join("globex")).unwrap();
        let pattern = format!("{}/{{tenant}}", s(&src));
        env.set_extra_targets(&file_target("offsite", &offsite, offsite_more));
        env.write_config(pack_size, &paths_source("www", "site", &[&pattern], &[]));
        Setup { env, src, offsite }
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.src.join(tenant)
    }
}

/// Some files of both tenants: text and incompressible data.
fn fill_tenants(setup: &Setup, rng: &mut Rng) {
    for tenant in ["acme", "globex"] {
        let dir = setup.tenant_dir(tenant);
        write_file(&dir.join("index.php"), &rng.text(40_000));
        write_file(&dir.join("uploads/photo.jpg"), &rng.bytes(600_000));
        write_file(&dir.join("mail/inbox/1.eml"), &rng.text(5_000));
    }
}

/// The ids of `snapshots --json [--target T]`.
fn snapshot_ids(env: &Env, target: Option<&str>) -> BTreeSet<String> {
    let mut args = vec!["snapshots"];
    if let Some(t) = target {
        args.extend_from_slice(&["--target", t]);
    }
    match env.json(&args) {
        Value::Array(a) => a.iter().map(|s| str_field(s, "id").to_string()).collect(),
        other => panic!("snapshots --json must print an array, got {other}"),
    }
}

/// The row of `target` in `status --json`.
fn status_of(env: &Env, target: &str) -> Value {
    let status = env.json(&["status"]);
    let rows = status["targets"]
        .as_array()
        .expect("status --json holds an array of targets");
    let found: Vec<&Value> = rows
        .iter()
        .filter(|r| r.get("target") == Some(&Value::from(target)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "status --json must have one row for {target}: {rows:?}"
    );
    assert_eq!(
        found[0].get("ok"),
        Some(&Value::Bool(true)),
        "status of {target}: {}",
        found[0]
    );
    found[0].clone()
}

/// The ids in a `backup --json` summary.
fn backup_ids(backup: &Value) -> BTreeSet<String> {
    array_field(backup, "snapshots")
        .iter()
        .map(|s| str_field(s, "id").to_string())
        .collect()
}

/// Every file under `dir`, relative path → bytes.
fn file_contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .map(|f| {
            let bytes = fs::read(&f).unwrap();
            (f.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

/// The relative paths of the packs, index and snapshot objects under a
/// `file://` target (not locks, keys or config).
fn content_objects(dir: &Path) -> BTreeSet<PathBuf> {
    files_under(&dir.join("tenants"))
        .into_iter()
        .map(|f| f.strip_prefix(dir).unwrap().to_path_buf())
        .filter(|rel| {
            let kind = rel.iter().nth(2).and_then(|c| c.to_str()).unwrap_or("");
            matches!(kind, "packs" | "index" | "snapshots")
        })
        .collect()
}

/// The relative paths of every regular file under `dir`.
fn relative_files(dir: &Path) -> BTreeSet<PathBuf> {
    files_under(dir)
        .into_iter()
        .map(|f| f.strip_prefix(dir).unwrap().to_path_buf())
        .collect()
}

/// `check --json [--target T] [EXTRA]`, which must say ok.
fn assert_check_ok(env: &Env, target: Option<&str>, extra: &[&str], context: &str) -> Value {
    let mut args = vec!["check", "--json"];
    args.extend_from_slice(extra);
    if let Some(t) = target {
        args.extend_from_slice(&["--target", t]);
    }
    let out = env.run(&args);
    let report = parse_json(&out);
    assert_eq!(
        report.get("ok"),
        Some(&Value::Bool(true)),
        "{context}: `{}` must report ok\n{}",
        args.join(" "),
        describe(&out)
    );
    assert_exit(&out, 0, &args.join(" "));
    report
}

#[test]
fn backup_ships_to_the_secondary_and_ship_is_idempotent() {
    let setup = Setup::new("16 MiB", "");
    let env = &setup.env;
    let mut rng = Rng::new(101);
    fill_tenants(&setup, &mut rng);
    env.init();
    assert!(
        setup.offsite.join("config").is_file(),
        "init must create the repository on the secondary too"
    );

    let backup = env.backup(&[]);
    assert_eq!(array_field(&backup, "snapshots").len(), 2, "{backup}");
    let shipped = array_field(&backup, "shipped");
    assert_eq!(shipped.len(), 1, "one ship report, for offsite: {backup}");
    assert_eq!(str_field(&shipped[0], "target"), "offsite", "{backup}");
    assert_eq!(str_field(&shipped[0], "from"), "local", "{backup}");
    assert!(
        u64_field(&shipped[0], "copied") > 0,
        "the backup's new objects were copied: {backup}"
    );
    assert!(
        array_field(&backup, "ship_failed").is_empty(),
        "no ship failed: {backup}"
    );

    let primary = snapshot_ids(env, None);
    assert_eq!(primary, backup_ids(&backup));
    assert_eq!(
        snapshot_ids(env, Some("offsite")),
        primary,
        "offsite lists the same snapshots as the primary"
    );
    let offsite = status_of(env, "offsite");
    assert_eq!(u64_field(&offsite, "missing"), 0, "{offsite}");
    assert_eq!(u64_field(&offsite, "snapshots"), 2, "{offsite}");
    assert_eq!(
        content_objects(&setup.offsite),
        content_objects(&env.repo),
        "offsite holds every pack, index and snapshot of the primary"
    );

    // A second ship has nothing to do, and changes nothing.
    let before = file_contents(&setup.offsite);
    let reports = env.json(&["ship"]);
    let reports = reports.as_array().expect("ship --json prints an array");
    assert_eq!(reports.len(), 1, "{reports:?}");
    for r in reports {
        assert_eq!(str_field(r, "target"), "offsite", "{r}");
        assert_eq!(u64_field(r, "copied"), 0, "nothing left to copy: {r}");
        assert_eq!(u64_field(r, "repository_objects"), 0, "{r}");
        for t in array_field(r, "tenants") {
            assert_eq!(u64_field(t, "copied"), 0, "{r}");
        }
    }
    let after = file_contents(&setup.offsite);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "an idempotent ship leaves the same files on offsite"
    );
    assert!(before == after, "an idempotent ship rewrites nothing");

    // A backup without shipping leaves offsite behind ...
    add_upload(&setup, &mut rng, "acme");
    let second = env.backup(&["--no-ship"]);
    assert!(
        array_field(&second, "shipped").is_empty(),
        "--no-ship ships nothing: {second}"
    );
    let offsite = status_of(env, "offsite");
    let local = status_of(env, "local");
    assert!(u64_field(&offsite, "missing") > 0, "{offsite}");
    assert!(u64_field(&offsite, "missing_bytes") >= 300_000, "{offsite}");
    assert_eq!(u64_field(&local, "snapshots"), 4, "{local}");
    assert_eq!(u64_field(&offsite, "snapshots"), 2, "{offsite}");
    assert_eq!(snapshot_ids(env, Some("offsite")), primary);

    // ... until the next ship.
    let reports = env.json(&["ship"]);
    let copied: u64 = reports
        .as_array()
        .expect("array")
        .iter()
        .map(|r| u64_field(r, "copied"))
        .sum();
    assert!(copied > 0, "{reports}");
    let offsite = status_of(env, "offsite");
    assert_eq!(u64_field(&offsite, "missing"), 0, "{offsite}");
    assert_eq!(u64_field(&offsite, "snapshots"), 4, "{offsite}");
    let all = snapshot_ids(env, None);
    assert_eq!(all.len(), 4);
    assert_eq!(snapshot_ids(env, Some("offsite")), all);
    assert_check_ok(env, Some("offsite"), &["--read-data"], "after ship");
}

/// `gallra --config <config> ARGS` with `HOME` set to `home`.
fn run_home(env: &Env, home: &Path, args: &[&str]) -> Output {
    env.cmd_with(&env.config, args)
        .env("HOME", home)
        .output()
        .expect("run gallra")
}

fn ok_home(env: &Env, home: &Path, args: &[&str]) -> Output {
    let out = run_home(env, home, args);
    assert_success(&out, &args.join(" "));
    out
}

fn ids_home(env: &Env, home: &Path, target: Option<&str>) -> BTreeSet<String> {
    let mut args = vec!["snapshots", "--json"];
    if let Some(t) = target {
        args.extend_from_slice(&["--target", t]);
    }
    match parse_json(&ok_home(env, home, &args)) {
        Value::Array(a) => a.iter().map(|s| str_field(s, "id").to_string()).collect(),
        other => panic!("snapshots --json must print an array, got {other}"),
    }
}

#[test]
fn disaster_recovery_from_offsite_with_only_config_and_key() {
    let setup = Setup::new("1 MiB", "");
    let env = &setup.env;
    let mut rng = Rng::new(202);
    fill_tenants(&setup, &mut rng);
    env.init();
    let first = env.backup(&[]);
    write_file(
        &setup.tenant_dir("globex").join("uploads/more.bin"),
        &rng.bytes(1_500_000),
    );
    write_file(
        &setup.tenant_dir("acme").join("index.php"),
        &rng.text(50_000),
    );
    let second = env.backup(&[]);
    assert!(array_field(&second, "ship_failed").is_empty(), "{second}");
    let all = snapshot_ids(env, None);
    assert_eq!(all.len(), 4);
    let latest: Vec<(&str, String)> = ["acme", "globex"]
        .into_iter()
        .map(|t| (t, backup_snapshot_id(&second, t, "www")))
        .collect();
    let older = backup_snapshot_id(&first, "globex", "www");

    // The server is lost: its repository folder and its state with it. Only
    // the config and the key file remain, and a fresh, empty home.
    fs::remove_dir_all(&env.repo).unwrap();
    if env.state.exists() {
        fs::remove_dir_all(&env.state).unwrap();
    }
    let home = env.path("fresh-home");
    fs::create_dir_all(&home).unwrap();

    let out = run_home(env, &home, &["snapshots"]);
    assert_error(&out, 1, "snapshots with the primary gone", &["local"]);

    assert_eq!(
        ids_home(env, &home, Some("offsite")),
        all,
        "offsite lists every snapshot"
    );
    for (tenant, id) in &latest {
        let to = env.path(&format!("dr-{tenant}"));
        ok_home(
            env,
            &home,
            &[
                "restore",
                id,
                "--target",
                "offsite",
                "--to",
                s(&to),
                "--verify",
            ],
        );
        let dir = setup.tenant_dir(tenant);
        compare_trees(&dir, &restored_path(&to, &dir), &[]);
    }
    // An older snapshot restores too (it lacks the file added since).
    let to = env.path("dr-older");
    ok_home(
        env,
        &home,
        &[
            "restore",
            &older,
            "--target",
            "offsite",
            "--to",
            s(&to),
            "--verify",
        ],
    );
    let restored = restored_path(&to, &setup.tenant_dir("globex"));
    assert!(restored.join("uploads/photo.jpg").is_file());
    assert!(!restored.join("uploads/more.bin").exists());

    // Rebuild the primary from offsite.
    let out = ok_home(env, &home, &["repair-target", "local", "--json"]);
    let report = parse_json(&out);
    assert_eq!(str_field(&report, "target"), "local", "{report}");
    assert_eq!(str_field(&report, "from"), "offsite", "{report}");
    assert!(u64_field(&report, "copied") > 0, "{report}");
    assert!(
        env.repo.join("config").is_file(),
        "the primary has a config again"
    );

    let check = parse_json(&ok_home(env, &home, &["check", "--read-data", "--json"]));
    assert_eq!(check.get("ok"), Some(&Value::Bool(true)), "{check}");
    assert_eq!(u64_field(&check, "snapshots"), 4, "{check}");
    assert!(u64_field(&check, "blobs_read") > 0, "{check}");
    assert_eq!(
        ids_home(env, &home, None),
        all,
        "the primary lists every snapshot"
    );
    for (tenant, id) in &latest {
        let to = env.path(&format!("local-{tenant}"));
        ok_home(env, &home, &["restore", id, "--to", s(&to), "--verify"]);
        let dir = setup.tenant_dir(tenant);
        compare_trees(&dir, &restored_path(&to, &dir), &[]);
    }

    // The rebuilt primary is in service again: status shows nothing missing,
    // and a new backup ships.
    for target in ["local", "offsite"] {
        let row = status_of(env, target);
        assert_eq!(u64_field(&row, "missing"), 0, "{row}");
        assert_eq!(u64_field(&row, "snapshots"), 4, "{row}");
    }
    write_file(
        &setup.tenant_dir("acme").join("after.txt"),
        b"written after the rebuild\n",
    );
    let third = env.backup(&[]);
    assert!(array_field(&third, "ship_failed").is_empty(), "{third}");
    assert_eq!(array_field(&third, "shipped").len(), 1, "{third}");
    assert_eq!(snapshot_ids(env, Some("offsite")), snapshot_ids(env, None));
}

#[test]
fn a_damaged_source_pack_is_never_shipped() {
    let setup = Setup::new("1 MiB", "");
    let env = &setup.env;
    let mut rng = Rng::new(303);
    fill_tenants(&setup, &mut rng);
    env.init();
    env.backup(&[]);
    let shipped = snapshot_ids(env, None);
    assert_eq!(snapshot_ids(env, Some("offsite")), shipped);

    write_file(
        &setup.tenant_dir("acme").join("uploads/new.bin"),
        &rng.bytes(2_000_000),
    );
    let backup = env.backup(&["--no-ship"]);
    let new_id = backup_snapshot_id(&backup, "acme", "www");
    let other_id = backup_snapshot_id(&backup, "globex", "www");

    // Damage one of acme's packs that offsite does not have yet.
    let on_offsite = relative_files(&setup.offsite);
    let new_packs: Vec<PathBuf> = pack_files(&env.repo)
        .into_iter()
        .filter(|p| p.starts_with(env.repo.join("tenants/acme")))
        .filter(|p| !on_offsite.contains(p.strip_prefix(&env.repo).unwrap()))
        .collect();
    assert!(!new_packs.is_empty(), "the backup wrote new packs");
    let pack = &new_packs[0];
    let mut bytes = fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(pack, &bytes).unwrap();
    let rel = pack.strip_prefix(&env.repo).unwrap().to_path_buf();

    let out = env.run(&["ship"]);
    let line = assert_error(
        &out,
        1,
        "ship with a damaged pack",
        &[file_name(pack), "offsite"],
    );
    assert!(
        line.contains("local"),
        "the error names the source target: {line}"
    );
    assert!(
        !setup.offsite.join(&rel).exists(),
        "the damaged pack {} must not be on offsite",
        rel.display()
    );

    let out = env.run(&["ship", "--json"]);
    assert_exit(&out, 1, "ship --json with a damaged pack");
    let reports = parse_json(&out);
    let failed: Vec<&Value> = reports
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    assert_eq!(failed.len(), 1, "{reports}");
    assert_eq!(str_field(failed[0], "target"), "offsite");
    let error = str_field(failed[0], "error");
    assert!(
        error.contains(file_name(pack)) && error.contains("acme"),
        "{reports}"
    );

    let on_offsite = snapshot_ids(env, Some("offsite"));
    assert!(
        !on_offsite.contains(&new_id),
        "the snapshot that needs the damaged pack is not on offsite"
    );
    assert!(
        on_offsite.is_superset(&shipped),
        "what was shipped before stays on offsite"
    );
    // The other tenant is not held back by acme's damage.
    let mut expected = shipped.clone();
    expected.insert(other_id);
    assert_eq!(on_offsite, expected);
    assert!(
        !setup.offsite.join(&rel).exists(),
        "the damaged pack is still not on offsite"
    );
    assert_check_ok(
        env,
        Some("offsite"),
        &["--read-data"],
        "after a refused ship",
    );
    let row = status_of(env, "offsite");
    assert!(u64_field(&row, "missing") > 0, "{row}");
}

/// One text file of tenant acme under `dir`, a source `source` over it, the
/// repository initialised and one backup taken; returns the folder.
fn backed_up_acme(env: &Env, dir: &str, source: &str, seed: u64) -> PathBuf {
    let src = env.path(dir);
    write_file(&src.join("index.php"), &Rng::new(seed).text(20_000));
    env.write_config(
        "16 MiB",
        &tenant_paths_source(source, "site", "acme", &[s(&src)]),
    );
    env.init();
    env.backup(&[]);
    src
}

#[test]
fn ship_refuses_a_target_holding_another_repository() {
    // Another repository, with its own key, in the folder that this agent's
    // config names as its offsite target.
    let other = Env::new();
    backed_up_acme(&other, "src/bravo", "files", 404);
    let other_ids = snapshot_ids(&other, None);
    let foreign = file_contents(&other.repo);

    let env = Env::new();
    let src = env.path("src/acme");
    write_file(&src.join("index.php"), &Rng::new(405).text(30_000));
    env.set_extra_targets(&file_target("offsite", &other.repo, ""));
    env.write_config(
        "16 MiB",
        &tenant_paths_source("files", "site", "acme", &[s(&src)]),
    );

    let out = env.run(&["init"]);
    assert_error(&out, 2, "init with a foreign offsite", &["offsite"]);
    assert!(
        file_contents(&other.repo) == foreign,
        "init must leave the foreign repository alone"
    );
    assert!(!env.repo.exists(), "init refused before writing anything");

    // The primary was initialised before the offsite target was (wrongly)
    // added to the config.
    let source = tenant_paths_source("files", "site", "acme", &[s(&src)]);
    env.set_extra_targets("");
    env.write_config("16 MiB", &source);
    env.init();
    env.set_extra_targets(&file_target("offsite", &other.repo, ""));
    env.write_config("16 MiB", &source);

    // The backup itself is kept; only its ship fails.
    let out = env.run(&["backup", "--json"]);
    assert_exit(&out, 1, "backup whose ship is refused");
    let line = error_line(&out);
    assert!(line.contains("offsite"), "{line}");
    let backup = parse_json(&out);
    assert_eq!(array_field(&backup, "snapshots").len(), 1, "{backup}");
    let failed = array_field(&backup, "ship_failed");
    assert_eq!(failed.len(), 1, "{backup}");
    assert_eq!(str_field(&failed[0], "target"), "offsite");
    assert_eq!(snapshot_ids(&env, None).len(), 1);

    let out = env.run(&["ship"]);
    assert!(!out.status.success(), "ship must fail\n{}", describe(&out));
    let line = error_line(&out);
    assert!(
        line.contains("offsite") && line.contains("repository"),
        "the error names the target and says it holds another repository: {line}"
    );
    let out = env.run(&["ship", "--target", "offsite"]);
    assert!(
        !out.status.success(),
        "ship --target must fail\n{}",
        describe(&out)
    );
    error_naming(&out, "ship --target offsite", &["offsite"]);

    assert!(
        file_contents(&other.repo) == foreign,
        "the foreign repository's files must be untouched"
    );
    assert_eq!(snapshot_ids(&other, None), other_ids);
    assert_check_ok(&other, None, &["--read-data"], "the foreign repository");
}

/// What the kill test knows about its data: the bytes of every file ever
/// written (each name is written once, never changed), and for each snapshot
/// its tenant and the files it was taken with.
#[derive(Default)]
struct Written {
    contents: BTreeMap<(String, PathBuf), Vec<u8>>,
    snapshots: BTreeMap<String, (String, BTreeSet<PathBuf>)>,
}

impl Written {
    fn write(&mut self, setup: &Setup, tenant: &str, rel: &str, data: Vec<u8>) {
        write_file(&setup.tenant_dir(tenant).join(rel), &data);
        let key = (tenant.to_string(), PathBuf::from(rel));
        assert!(self.contents.insert(key, data).is_none(), "{rel} is new");
    }

    /// Records the files of each snapshot of a `backup --json` summary.
    fn record_backup(&mut self, setup: &Setup, backup: &Value) {
        for snap in array_field(backup, "snapshots") {
            let tenant = str_field(snap, "tenant").to_string();
            let files = relative_files(&setup.tenant_dir(&tenant));
            self.snapshots
                .insert(str_field(snap, "id").to_string(), (tenant, files));
        }
    }

    /// Restores each of `ids` from offsite with `--verify` and compares it,
    /// file by file, with what the snapshot was taken from.
    fn restore_from_offsite(&self, setup: &Setup, ids: &BTreeSet<String>, context: &str) {
        let env = &setup.env;
        for id in ids {
            let (tenant, files) = self
                .snapshots
                .get(id)
                .unwrap_or_else(|| panic!("{context}: offsite lists unknown snapshot {id}"));
            let to = env.path(&format!("restore-{}", &id[..16]));
            let out = env.run(&[
                "restore",
                id,
                "--target",
                "offsite",
                "--to",
                s(&to),
                "--verify",
            ]);
            assert_success(
                &out,
                &format!("restore {id} --target offsite --verify ({context})"),
            );
            let restored = restored_path(&to, &setup.tenant_dir(tenant));
            assert_eq!(
                &relative_files(&restored),
                files,
                "{context}: snapshot {id} restores the files it was taken with"
            );
            for rel in files {
                let want = &self.contents[&(tenant.clone(), rel.clone())];
                assert!(
                    &fs::read(restored.join(rel)).unwrap() == want,
                    "{context}: {} of snapshot {id} differs",
                    rel.display()
                );
            }
            fs::remove_dir_all(&to).unwrap();
        }
    }
}

/// The packs, index and snapshot objects of a `file://` target with their
/// bytes.
fn content_bytes(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    content_objects(dir)
        .into_iter()
        .map(|rel| {
            let bytes = fs::read(dir.join(&rel)).unwrap();
            (rel, bytes)
        })
        .collect()
}

#[test]
fn ship_killed_at_random_points_then_resumed() {
    let started = Instant::now();
    let seed = std::env::var("GALLRA_SHIP_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!(
        "ship_killed_at_random_points_then_resumed: seed {seed} (GALLRA_SHIP_KILL_SEED={seed} repeats it)"
    );
    let mut rng = Rng::new(seed);

    // 1.2 s to 2.5 s of shipping at 2 MiB/s to begin with, then about 1 s
    // more each round; the tenants' trees stay small (each round's new file
    // replaces the last round's) so that restoring every snapshot stays quick.
    let setup = Setup::new("256 KiB", "max_upload = \"2 MiB/s\"");
    let env = &setup.env;
    let mut data = Written::default();
    for tenant in ["acme", "globex"] {
        for i in 0..2 {
            let size = 500_000 + rng.below(200_000) as usize;
            data.write(&setup, tenant, &format!("data/f{i}.bin"), rng.bytes(size));
        }
        let size = 800_000 + rng.below(400_000) as usize;
        data.write(&setup, tenant, "data/new-0.bin", rng.bytes(size));
    }
    env.init();
    let backup = env.backup(&["--no-ship"]);
    data.record_backup(&setup, &backup);

    let iterations = 6;
    let mut interrupted = 0;
    let mut kept = 0;
    let mut shipped_before: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    for round in 1..=iterations {
        let context = format!("seed {seed}, round {round}");
        let before = content_objects(&setup.offsite).len();
        // The first ship lasts over a second whatever the sizes drawn, so a
        // first kill within 800 ms surely lands mid-ship.
        let window = if round == 1 { 750 } else { 1950 };
        let delay = Duration::from_millis(50 + rng.below(window));
        let stderr_file = env.path(&format!("ship-{round}.stderr"));
        let mut child = env
            .spawnable(&["ship"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr_file).unwrap())
            .spawn()
            .expect("spawn gallra ship");
        std::thread::sleep(delay);
        let finished = child.try_wait().expect("try_wait");
        if finished.is_none() {
            interrupted += 1;
        }
        child.kill().expect("kill gallra ship");
        child.wait().expect("wait for gallra ship");
        if let Some(status) = finished {
            assert!(
                status.success(),
                "{context}: ship ended on its own but failed: {status:?}\n{}",
                fs::read_to_string(&stderr_file).unwrap_or_default()
            );
        }
        let now_there = content_bytes(&setup.offsite);
        if finished.is_none() {
            kept += now_there.len().saturating_sub(before);
        }
        eprintln!(
            "round {round}: killed after {delay:?} ({}), offsite objects {before} -> {}",
            if finished.is_none() {
                "mid-ship"
            } else {
                "the ship had finished"
            },
            now_there.len()
        );

        // Nothing shipped earlier was removed or rewritten ...
        for (rel, bytes) in &shipped_before {
            assert!(
                now_there.get(rel) == Some(bytes),
                "{context}: {} changed or vanished on offsite",
                rel.display()
            );
        }
        shipped_before = now_there;
        // ... no snapshot there lacks an object, and every one restores.
        assert_check_ok(env, Some("offsite"), &[], &context);
        let listed = snapshot_ids(env, Some("offsite"));
        data.restore_from_offsite(&setup, &listed, &context);

        // Something new to ship next round.
        for tenant in ["acme", "globex"] {
            let dir = setup.tenant_dir(tenant);
            fs::remove_file(dir.join(format!("data/new-{}.bin", round - 1))).unwrap();
            let size = 800_000 + rng.below(400_000) as usize;
            data.write(
                &setup,
                tenant,
                &format!("data/new-{round}.bin"),
                rng.bytes(size),
            );
        }
        let backup = env.backup(&["--no-ship"]);
        data.record_backup(&setup, &backup);
    }
    assert!(
        interrupted > 0,
        "seed {seed}: at least one ship must have been killed while it ran"
    );

    // Resumed to completion.
    let listed_before = snapshot_ids(env, Some("offsite"));
    let missing_before = u64_field(&status_of(env, "offsite"), "missing");
    let reports = env.json(&["ship"]);
    let copied: u64 = reports
        .as_array()
        .expect("array")
        .iter()
        .map(|r| u64_field(r, "copied"))
        .sum();
    assert_eq!(
        copied, missing_before,
        "seed {seed}: the final ship copies exactly what status said was missing: {reports}"
    );
    let all = snapshot_ids(env, None);
    assert_eq!(all.len(), 2 * (iterations + 1), "seed {seed}");
    let listed = snapshot_ids(env, Some("offsite"));
    assert_eq!(
        listed, all,
        "seed {seed}: offsite lists every snapshot of the primary"
    );
    let row = status_of(env, "offsite");
    assert_eq!(u64_field(&row, "missing"), 0, "seed {seed}: {row}");
    assert_check_ok(
        env,
        Some("offsite"),
        &["--read-data"],
        &format!("seed {seed}: final"),
    );
    let new: BTreeSet<String> = listed.difference(&listed_before).cloned().collect();
    data.restore_from_offsite(&setup, &new, &format!("seed {seed}: final"));
    eprintln!(
        "ship_killed_at_random_points_then_resumed: {interrupted} of {iterations} ships killed mid-way, \
         leaving {kept} objects on offsite; {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Write a lock object into the `file://` primary.
fn plant_lock(env: &Env, name: &str, kind: &str, host: &str, command: &str, expires_in: i64) {
    let now = now_secs();
    let record = serde_json::json!({
        "kind": kind,
        "tenant": "acme",
        "host": host,
        "pid": 1,
        "command": command,
        "created": now - 3600,
        "expires": now + expires_in,
    });
    write_file(
        &env.repo.join("tenants/acme/locks").join(name),
        serde_json::to_string(&record).unwrap().as_bytes(),
    );
}

#[test]
fn unlock_breaks_only_stale_locks() {
    let env = Env::new();
    backed_up_acme(&env, "src/acme", "www", 606);
    let locks = env.repo.join("tenants/acme/locks");
    assert!(
        files_under(&locks).is_empty(),
        "a finished backup leaves no lock: {:?}",
        files_under(&locks)
    );

    // A stale exclusive lock of another host blocks, with the way out.
    plant_lock(&env, "exclusive", "exclusive", "web09", "lifecycle", -600);
    let out = env.run(&["backup"]);
    let line = assert_error(
        &out,
        1,
        "backup under a stale exclusive lock",
        &["web09", "acme", "gallra unlock --tenant acme"],
    );
    assert!(line.contains("stale"), "{line}");
    assert_eq!(snapshot_ids(&env, None).len(), 1, "no snapshot was taken");

    // A live shared lock of another host: kept by unlock.
    // (A live lease is at most the protocol's 10 minutes ahead.)
    plant_lock(&env, "shared-x", "shared", "web08", "backup", 300);
    let reports = env.json(&["unlock", "--tenant", "acme"]);
    let reports = reports.as_array().expect("unlock --json prints an array");
    assert_eq!(reports.len(), 1, "one target: {reports:?}");
    let r = &reports[0];
    assert_eq!(str_field(r, "target"), "local");
    assert_eq!(str_field(r, "tenant"), "acme");
    let removed = array_field(r, "removed");
    assert_eq!(removed.len(), 1, "{r}");
    assert!(removed[0].as_str().unwrap().contains("web09"), "{r}");
    let live = array_field(r, "live");
    assert_eq!(live.len(), 1, "{r}");
    assert!(live[0].as_str().unwrap().contains("web08"), "{r}");
    assert!(!locks.join("exclusive").exists(), "the stale lock is gone");
    assert!(locks.join("shared-x").exists(), "the live lock stays");

    // Shared locks coexist: the backup goes ahead beside web08's.
    let backup = env.backup(&[]);
    assert_eq!(array_field(&backup, "snapshots").len(), 1, "{backup}");
    assert_eq!(snapshot_ids(&env, None).len(), 2);
    assert!(
        locks.join("shared-x").exists(),
        "backup leaves others' locks"
    );

    // A live exclusive lock of another host blocks, and unlock keeps it.
    plant_lock(&env, "exclusive", "exclusive", "web07", "prune", 300);
    let out = env.run(&["backup"]);
    let line = assert_error(
        &out,
        1,
        "backup under a live exclusive lock",
        &["web07", "acme"],
    );
    assert!(
        !line.contains("gallra unlock"),
        "a live lock is not to be broken: {line}"
    );
    let reports = env.json(&["unlock", "--tenant", "acme"]);
    let r = &reports.as_array().expect("array")[0];
    assert!(array_field(r, "removed").is_empty(), "{r}");
    assert_eq!(array_field(r, "live").len(), 2, "{r}");
    assert!(
        locks.join("exclusive").exists(),
        "the live exclusive lock stays"
    );
    let out = env.run(&["backup"]);
    assert_error(&out, 1, "backup after unlock of a live lock", &["web07"]);
    assert_eq!(snapshot_ids(&env, None).len(), 2, "no snapshot was taken");
}

#[test]
fn repair_target_replaces_a_damaged_object_and_init_will_not_fork_the_repository() {
    let setup = Setup::new("16 MiB", "");
    let env = &setup.env;
    fill_tenants(&setup, &mut Rng::new(909));
    env.init();
    env.backup(&[]);

    // Bit rot in a local pack that offsite also holds: same name, same size.
    let pack = pack_files(&env.repo)[0].clone();
    let mut bytes = fs::read(&pack).unwrap();
    bytes[100] ^= 0x01;
    fs::write(&pack, &bytes).unwrap();
    let out = env.run(&["check", "--read-data"]);
    assert_error(&out, 1, "check of the rotten pack", &[file_name(&pack)]);
    let repair = env.json(&["repair-target", "local"]);
    assert_eq!(str_field(&repair, "from"), "offsite", "{repair}");
    assert_eq!(u64_field(&repair, "copied"), 1, "{repair}");
    assert_check_ok(env, None, &["--read-data"], "after the repair");

    // The local target is lost. `init` would start a second repository that
    // could never ship to offsite: it refuses and points to repair-target.
    fs::remove_dir_all(&env.repo).unwrap();
    let out = env.run(&["snapshots"]);
    let line = assert_error(&out, 1, "snapshots without the primary", &["local"]);
    assert!(line.contains("repair-target local"), "{line}");
    let out = env.run(&["init"]);
    let line = assert_error(&out, 2, "init while offsite holds it", &["offsite"]);
    assert!(line.contains("gallra repair-target local"), "{line}");
    assert!(!env.repo.exists(), "init wrote nothing");
    env.ok(&["repair-target", "local"]);
    assert_eq!(snapshot_ids(env, None), snapshot_ids(env, Some("offsite")));
}

/// Hex SHA-256: the name a content-named object must have.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Files of the primary that offsite lacks, leaving out locks (taken and
/// released by each run) and `planted`.
fn not_on_offsite(setup: &Setup, planted: &[&str]) -> BTreeSet<PathBuf> {
    let there = relative_files(&setup.offsite);
    relative_files(&setup.env.repo)
        .into_iter()
        .filter(|p| !there.contains(p))
        .filter(|p| !p.iter().any(|c| c == "locks"))
        .filter(|p| !planted.iter().any(|x| p == Path::new(x)))
        .collect()
}

/// A setup whose tenants are backed up and shipped once, with the Rng
/// that made them for what the test adds.
fn shipped_setup(seed: u64) -> (Setup, Rng) {
    let setup = Setup::new("1 MiB", "");
    let mut rng = Rng::new(seed);
    fill_tenants(&setup, &mut rng);
    setup.env.init();
    setup.env.backup(&[]);
    (setup, rng)
}

/// A new file in `tenant`'s tree, so that its next backup has new objects.
fn add_upload(setup: &Setup, rng: &mut Rng, tenant: &str) {
    write_file(
        &setup.tenant_dir(tenant).join("uploads/new.bin"),
        &rng.bytes(300_000),
    );
}

/// Ship's stderr names `name`, the target and that it is not shipped, and
/// the offsite does not have it.
fn assert_not_shipped(setup: &Setup, err: &str, name: &str) {
    assert!(
        err.lines()
            .any(|l| l.contains(name) && l.contains("offsite") && l.contains("not shipped")),
        "ship must name {name}, the target and that it is not shipped: {err}"
    );
    assert!(
        !setup.offsite.join(name).exists(),
        "{name} must not be on offsite"
    );
}

#[test]
fn a_bad_event_object_is_not_shipped() {
    let (setup, mut rng) = shipped_setup(311);
    let env = &setup.env;
    env.ok(&["hold", "set", "acme", "--reason", "court order"]);
    let events = files_under(&env.repo.join("lifecycle/events"));
    assert_eq!(events.len(), 1, "hold set wrote one event: {events:?}");
    let real = events[0].strip_prefix(&env.repo).unwrap().to_path_buf();
    // Offsite lacks the real event (it was down), and the primary holds a
    // garbage event and an authentic one moved under another name.
    fs::remove_file(setup.offsite.join(&real)).unwrap();
    add_upload(&setup, &mut rng, "globex");
    env.backup(&["--no-ship"]);
    let garbage = "lifecycle/events/garbage-1";
    let moved = "lifecycle/events/moved-1";
    // Larger than an event may be: refused like the others, not a reason
    // to ship nothing at all.
    let huge = "lifecycle/events/huge-1";
    write_file(&env.repo.join(garbage), &rng.bytes(400));
    fs::copy(&events[0], env.repo.join(moved)).unwrap();
    write_file(&env.repo.join(huge), &rng.bytes(300 << 10));

    let out = env.run(&["ship"]);
    assert_exit(&out, 1, "ship with bad event objects");
    let err = stderr(&out);
    for name in [garbage, moved, huge] {
        assert_not_shipped(&setup, &err, name);
    }
    assert!(setup.offsite.join(&real).exists(), "the real event ships");
    let missing = not_on_offsite(&setup, &[garbage, moved, huge]);
    assert!(missing.is_empty(), "every other object ships: {missing:?}");
    assert_eq!(content_objects(&setup.offsite), content_objects(&env.repo));

    let out = env.run(&["ship", "--json"]);
    assert_exit(&out, 1, "ship --json with bad event objects");
    let reports = parse_json(&out);
    let errors: Vec<&str> = reports
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r.get("error").and_then(Value::as_str))
        .collect();
    assert_eq!(errors.len(), 3, "{reports}");
    assert!(errors.iter().any(|e| e.contains(garbage)), "{reports}");

    for name in [garbage, moved, huge] {
        fs::remove_file(env.repo.join(name)).unwrap();
    }
    env.ok(&["ship"]);
}

#[test]
fn a_snapshot_whose_index_does_not_authenticate_is_held_back() {
    let (setup, mut rng) = shipped_setup(313);
    let env = &setup.env;
    let shipped = snapshot_ids(env, None);
    for tenant in ["acme", "globex"] {
        add_upload(&setup, &mut rng, tenant);
    }
    let backup = env.backup(&["--no-ship"]);
    let acme_new = backup_snapshot_id(&backup, "acme", "www");
    let globex_new = backup_snapshot_id(&backup, "globex", "www");
    // Named by its own hash, so that only opening it tells it is no index.
    let forged = rng.bytes(2_000);
    let planted = format!("tenants/acme/index/{}", sha256_hex(&forged));
    write_file(&env.repo.join(&planted), &forged);

    let out = env.run(&["ship"]);
    assert_exit(&out, 1, "ship with a forged index");
    let err = stderr(&out);
    assert_not_shipped(&setup, &err, &planted);
    let on_offsite = snapshot_ids(env, Some("offsite"));
    assert!(
        !on_offsite.contains(&acme_new),
        "acme's new snapshot waits for its index to authenticate"
    );
    let mut expected = shipped.clone();
    expected.insert(globex_new);
    assert_eq!(on_offsite, expected, "globex is not held back");
    // acme's real packs and index are there; only its snapshot waits.
    let missing = not_on_offsite(&setup, &[&planted]);
    assert!(
        missing
            .iter()
            .all(|p| p.starts_with("tenants/acme/snapshots"))
            && missing.len() == 1,
        "{missing:?}"
    );
    assert_check_ok(
        env,
        Some("offsite"),
        &["--read-data"],
        "after a held-back snapshot",
    );

    fs::remove_file(env.repo.join(&planted)).unwrap();
    env.ok(&["ship"]);
    assert!(snapshot_ids(env, Some("offsite")).contains(&acme_new));
}

#[test]
fn an_audit_record_or_head_that_does_not_authenticate_is_not_shipped() {
    let (setup, mut rng) = shipped_setup(317);
    let env = &setup.env;
    // Offsite is away while the next backup appends its audit record.
    let away = env.path("offsite-away");
    fs::rename(&setup.offsite, &away).unwrap();
    add_upload(&setup, &mut rng, "acme");
    env.backup(&["--no-ship"]);
    fs::rename(&away, &setup.offsite).unwrap();
    let record = "audit/testhost/000000000999-0123456789abcdef";
    let head = "audit-heads/intruder";
    write_file(&env.repo.join(record), &rng.bytes(500));
    write_file(&env.repo.join(head), &rng.bytes(200));

    let out = env.run(&["ship"]);
    assert_exit(&out, 1, "ship with a forged audit record and head");
    let err = stderr(&out);
    for name in [record, head] {
        assert_not_shipped(&setup, &err, name);
    }
    let missing = not_on_offsite(&setup, &[record, head]);
    assert!(missing.is_empty(), "every other object ships: {missing:?}");
    // The head of the record offsite missed: offsite catches up.
    let own_head = "audit-heads/testhost";
    assert_eq!(
        fs::read(setup.offsite.join(own_head)).unwrap(),
        fs::read(env.repo.join(own_head)).unwrap(),
        "offsite gets the primary's latest head"
    );

    fs::remove_file(env.repo.join(record)).unwrap();
    fs::remove_file(env.repo.join(head)).unwrap();
    env.ok(&["ship"]);
    let verify = env.run(&["audit", "verify"]);
    assert_success(&verify, "audit verify after the ship");
}

#[test]
fn a_tenant_key_or_key_slot_that_does_not_open_is_not_shipped() {
    let (setup, mut rng) = shipped_setup(319);
    let env = &setup.env;
    // acme's key moved to another tenant's folder (it is bound to acme's
    // name), with a pack named by its hash; and a slot that is no key slot.
    let key = "tenants/intruder/key";
    fs::create_dir_all(env.repo.join("tenants/intruder")).unwrap();
    fs::copy(env.repo.join("tenants/acme/key"), env.repo.join(key)).unwrap();
    let pack = rng.bytes(5_000);
    let hash = sha256_hex(&pack);
    let pack_path = format!("tenants/intruder/packs/{}/{hash}", &hash[..2]);
    write_file(&env.repo.join(&pack_path), &pack);
    let slot = "keys/0123456789abcdef";
    write_file(&env.repo.join(slot), &rng.bytes(300));
    add_upload(&setup, &mut rng, "acme");
    env.backup(&["--no-ship"]);

    let out = env.run(&["ship"]);
    assert_exit(&out, 1, "ship with a moved tenant key and a bad slot");
    let err = stderr(&out);
    for name in [key, slot] {
        assert_not_shipped(&setup, &err, name);
    }
    assert!(
        !setup.offsite.join("tenants/intruder").exists(),
        "nothing of a tenant whose key does not open ships"
    );
    let missing = not_on_offsite(&setup, &[key, slot, &pack_path]);
    assert!(missing.is_empty(), "every other object ships: {missing:?}");
    // The slot in use still opens offsite, and every snapshot is there.
    let snapshots = files_under(&env.repo.join("tenants/acme/snapshots")).len()
        + files_under(&env.repo.join("tenants/globex/snapshots")).len();
    assert_eq!(snapshot_ids(env, Some("offsite")).len(), snapshots);
}

/// Backups append their audit record to the primary only and leave the
/// rest to ship; so does every append while a target is down. Ship copied
/// the records but never `audit-heads/`, so offsites had no head of the
/// backups' records, and nothing there told a removed tail from the end.
#[test]
fn ship_brings_each_target_the_latest_audit_head() {
    let (setup, mut rng) = shipped_setup(323);
    let env = &setup.env;
    let head = "audit-heads/testhost";
    let stale = fs::read(env.repo.join(head)).unwrap();
    let away = env.path("offsite-away");
    fs::rename(&setup.offsite, &away).unwrap();
    add_upload(&setup, &mut rng, "acme");
    env.backup(&["--no-ship"]);
    fs::rename(&away, &setup.offsite).unwrap();
    assert_ne!(stale, fs::read(env.repo.join(head)).unwrap());

    env.ok(&["ship"]);
    assert_eq!(
        fs::read(setup.offsite.join(head)).ok(),
        fs::read(env.repo.join(head)).ok(),
        "offsite's head names the record it missed"
    );
    // A head ahead of the primary's (written while the primary was away)
    // is not turned back: here the primary's is put back to its older one.
    fs::write(env.repo.join(head), &stale).unwrap();
    env.ok(&["ship"]);
    assert_ne!(fs::read(setup.offsite.join(head)).unwrap(), stale);
    fs::write(
        env.repo.join(head),
        fs::read(setup.offsite.join(head)).unwrap(),
    )
    .unwrap();
    assert_success(
        &env.run(&["audit", "verify"]),
        "audit verify after the ships",
    );
}
