//! Restore drills on real files and two `file://` targets (primary `local`,
//! secondary `offsite`, which drills read by default): counts that match the
//! source, damage named down to the file, blob and pack, stale tenants,
//! drilling the offsite copy after losing the local one, the scratch folder
//! emptied whatever happens, reports and the audit trail.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use gallra::config::Config;
use gallra::format::Kind;
use gallra::repo::Repository;
use serde_json::Value;
use std::collections::BTreeSet;

const TENANTS: [&str; 3] = ["acme", "bravo", "cirrus"];
const BIG_FILES: usize = 4;
const BIG_FILE_SIZE: usize = 1024 * 1024 + 512 * 1024;

struct Drill {
    env: Env,
    src: PathBuf,
    offsite: PathBuf,
}

/// Tenant folders `src/<tenant>` under a `{tenant}` source `www`, backed up
/// with 1 MiB packs and shipped to `offsite`. acme holds large random files
/// (several data packs), a subfolder with its own mode, an empty file, a
/// symlink, a hard link and an old modification time; the others a few
/// small files.
fn setup() -> Drill {
    let env = Env::new();
    let src = env.path("src");
    let offsite = env.path("offsite");
    let acme = src.join("acme");
    for i in 0..BIG_FILES {
        let data = Rng::new(7 + i as u64).bytes(BIG_FILE_SIZE);
        write_file(&acme.join(format!("uploads/photo-{i}.jpg")), &data);
    }
    write_file(&acme.join("index.php"), b"<?php echo 'Hej';\n");
    write_file(&acme.join("private/secret-ledger.txt"), b"kund 1: 100 kr\n");
    chmod(&acme.join("private/secret-ledger.txt"), 0o640);
    chmod(&acme.join("private"), 0o750);
    write_file(&acme.join("empty"), b"");
    std::os::unix::fs::symlink("index.php", acme.join("home.php")).unwrap();
    fs::hard_link(acme.join("index.php"), acme.join("index-copy.php")).unwrap();
    set_mtime(&acme.join("index.php"), 1_500_000_000);
    for (i, t) in TENANTS.iter().enumerate().skip(1) {
        let dir = src.join(t);
        write_file(
            &dir.join("index.html"),
            format!("<h1>{t}</h1>\n").as_bytes(),
        );
        write_file(&dir.join("css/site.css"), &Rng::new(i as u64).text(20_000));
    }
    let pattern = format!("{}/{{tenant}}", s(&src));
    env.set_extra_targets(&file_target("offsite", &offsite, ""));
    env.write_config("1 MiB", &paths_source("www", "site", &[&pattern], &[]));
    env.init();
    env.backup(&[]);
    Drill { env, src, offsite }
}

/// Regular files (every name of a hard-linked file) under `dir`, and their bytes.
fn file_counts(dir: &Path) -> (u64, u64) {
    let mut counts = (0, 0);
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        if meta.is_dir() {
            let (n, b) = file_counts(&entry.path());
            counts = (counts.0 + n, counts.1 + b);
        } else if meta.is_file() {
            counts = (counts.0 + 1, counts.1 + meta.len());
        }
    }
    counts
}

/// `drill ARGS... --json`: the exit status and the parsed array.
fn drill_json(env: &Env, args: &[&str]) -> (i32, Vec<Value>, std::process::Output) {
    let mut all = vec!["drill"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = env.run(&all);
    let code = out.status.code().expect("exited");
    match parse_json(&out) {
        Value::Array(a) => (code, a, out),
        other => panic!("drill --json must print an array, got {other}"),
    }
}

/// What the scratch folder holds (names), or `None` if it is absent.
fn contents(dir: &Path) -> Option<Vec<String>> {
    let entries = fs::read_dir(dir).ok()?;
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Some(names)
}

/// The largest pack of acme's on `offsite` that holds file data and no
/// tree (a lost tree fails the restore of its whole directory, which is
/// named instead of a file): found through the index, as `check` would.
fn largest_offsite_data_pack(d: &Drill) -> (PathBuf, String) {
    offsite_packs(d, false)
}

/// acme's largest pack on `offsite` holding a tree (`trees`) or none.
fn offsite_packs(d: &Drill, trees: bool) -> (PathBuf, String) {
    let config = Config::load(&d.env.config).unwrap();
    let store = open_store(config.target("offsite").unwrap());
    let repo = Repository::open(store, &config.key).unwrap();
    let tenant = repo.tenant("acme").unwrap();
    let index = repo.load_index(&tenant).unwrap();
    let with_trees: BTreeSet<String> = index
        .blobs()
        .filter(|(_, loc)| loc.kind == Kind::TreeBlob)
        .map(|(_, loc)| index.pack_id(loc).to_hex())
        .collect();
    let pack = pack_files(&d.offsite)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/tenants/acme/"))
        .filter(|p| with_trees.contains(file_name(p)) == trees)
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .expect("acme has such a pack on offsite");
    let rel = pack.strip_prefix(&d.offsite).unwrap();
    (pack.clone(), rel.to_string_lossy().into_owned())
}

#[test]
fn a_drill_passes_on_a_good_repository_with_the_right_counts() {
    let d = setup();
    let env = &d.env;
    let scratch = env.path("scratch");
    write_file(&scratch.join("keep.txt"), b"not the drill's");
    let report_md = env.path("drill.md");
    let report_html = env.path("drill.html");

    let (code, results, out) = drill_json(
        env,
        &[
            "--tenant",
            "acme",
            "--scratch",
            s(&scratch),
            "--report",
            s(&report_md),
        ],
    );
    assert_eq!(code, 0, "drill of a good repository\n{}", describe(&out));
    assert_eq!(results.len(), 1, "acme has one source: {results:?}");
    let r = &results[0];
    let (files, bytes) = file_counts(&d.src.join("acme"));
    assert!(files >= 8 && bytes > (BIG_FILES * BIG_FILE_SIZE) as u64);
    assert_eq!(r["ok"], Value::Bool(true), "{r}");
    assert_eq!(str_field(r, "tenant"), "acme");
    assert_eq!(
        str_field(r, "target"),
        "offsite",
        "drills read the offsite copy by default"
    );
    assert_eq!(u64_field(r, "files"), files, "{r}");
    assert_eq!(u64_field(r, "bytes"), bytes, "{r}");
    assert!(r["seconds"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["first_byte_seconds"].as_f64().unwrap() <= r["seconds"].as_f64().unwrap());
    assert!(r.get("error").is_none_or(Value::is_null), "{r}");
    let snapshot = str_field(r, "snapshot").to_string();
    let acme_www = env
        .snapshots()
        .into_iter()
        .find(|s| s["tenant"] == "acme")
        .unwrap();
    assert_eq!(snapshot, str_field(&acme_www, "id"));

    // What the drill restored is gone; what was there before stays.
    assert_eq!(contents(&scratch), Some(vec!["keep.txt".to_string()]));

    let md = fs::read_to_string(&report_md).unwrap();
    assert!(md.starts_with("# Restore drill report\n"), "{md}");
    for want in [
        "All 1 drills passed.".to_string(),
        "**Restored from target:** offsite".to_string(),
        format!("| acme | www | {} |", &snapshot[..12]),
        format!("| {files} of {files} | {bytes} of {bytes} |"),
    ] {
        assert!(md.contains(&want), "the report must say {want:?}:\n{md}");
    }

    // A second drill, to an HTML report and the default scratch folder.
    let out = env.ok(&[
        "drill",
        "--tenant",
        "acme",
        "--tenant",
        "bravo",
        "--report",
        s(&report_html),
    ]);
    let text = stdout(&out);
    assert!(text.contains("all 2 drills passed"), "{text}");
    let html = fs::read_to_string(&report_html).unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.contains("<td>bravo</td>"),
        "{html}"
    );
    assert!(
        contents(&env.state.join("drill")).is_none(),
        "the default scratch folder is removed"
    );

    // The audit trail holds every drill, without file names, and verifies.
    let history = env.json(&["drill", "history"]);
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
    assert!(history.iter().all(|h| h["ok"] == Value::Bool(true)));
    let first = &history[0];
    assert_eq!(
        (str_field(first, "tenant"), str_field(first, "snapshot")),
        ("acme", snapshot.as_str())
    );
    assert_eq!(
        (u64_field(first, "files"), u64_field(first, "bytes")),
        (files, bytes)
    );
    let only_bravo = env.json(&["drill", "history", "--tenant", "bravo"]);
    assert_eq!(only_bravo.as_array().unwrap().len(), 1, "{only_bravo}");
    let log = fs::read_to_string(env.state.join("audit.jsonl")).unwrap();
    assert!(
        !log.contains("secret-ledger") && !log.contains("photo-"),
        "{log}"
    );
    env.ok(&["audit", "verify"]);
}

/// Runs a drill that must fail, and returns its one result and output.
fn failing_drill(d: &Drill, scratch: &Path) -> (Value, std::process::Output) {
    let (code, results, out) = drill_json(&d.env, &["--tenant", "acme", "--scratch", s(scratch)]);
    assert_eq!(code, 1, "the drill must fail\n{}", describe(&out));
    assert_eq!(results.len(), 1);
    let r = results[0].clone();
    assert_eq!(r["ok"], Value::Bool(false), "{r}");
    assert!(
        contents(scratch).is_none(),
        "the scratch folder the drill created is gone after a failure: {:?}",
        contents(scratch)
    );
    (r, out)
}

/// The drill's problems name a file of acme's, a blob and the pack.
fn assert_names_file_blob_pack(r: &Value, out: &std::process::Output, pack: &str, src: &Path) {
    let problems = array_field(r, "problems");
    let p = problems
        .iter()
        .find(|p| p["object"] == pack)
        .unwrap_or_else(|| panic!("a problem must name the pack {pack}: {r}"));
    let file = str_field(p, "file");
    assert!(
        Path::new(file).starts_with(src.join("acme")) && Path::new(file).is_file(),
        "the problem names a file of the snapshot by its path: {p}"
    );
    let blob = str_field(p, "blob");
    assert!(
        blob.len() == 64 && blob.bytes().all(|b| b.is_ascii_hexdigit()),
        "{p}"
    );
    let err = stderr(out);
    for name in [file, pack, &blob[..16]] {
        assert!(err.contains(name), "stderr must name {name}\n{err}");
    }
    assert!(str_field(r, "error").contains(pack), "{r}");
}

#[test]
fn a_corrupted_pack_fails_the_drill_naming_file_blob_and_pack() {
    let d = setup();
    let (pack, rel) = largest_offsite_data_pack(&d);
    let mut data = fs::read(&pack).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    fs::write(&pack, &data).unwrap();

    let scratch = d.env.path("scratch");
    let (r, out) = failing_drill(&d, &scratch);
    assert_names_file_blob_pack(&r, &out, &rel, &d.src);
    assert!(
        str_field(&r, "error").contains("failed authentication"),
        "{r}"
    );

    // The local copy is intact, and a drill of it passes.
    d.env
        .ok(&["drill", "--tenant", "acme", "--target", "local"]);
    let history = d.env.json(&["drill", "history", "--tenant", "acme"]);
    let oks: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["ok"])
        .collect();
    assert_eq!(oks, [&Value::Bool(false), &Value::Bool(true)]);
    let failed = &history[0];
    assert!(str_field(failed, "error").contains(&rel), "{failed}");
}

#[test]
fn a_missing_pack_fails_the_drill_naming_file_blob_and_pack() {
    let d = setup();
    let (pack, rel) = largest_offsite_data_pack(&d);
    fs::remove_file(&pack).unwrap();
    let (r, out) = failing_drill(&d, &d.env.state.join("drill"));
    assert_names_file_blob_pack(&r, &out, &rel, &d.src);
    assert!(str_field(&r, "error").contains("not found"), "{r}");
    // Fewer files verified than the snapshot holds.
    assert!(
        u64_field(&r, "files") < u64_field(&r, "expected_files"),
        "{r}"
    );
}

#[test]
fn a_stale_tenant_fails_the_drill_unless_its_contract_has_ended() {
    let d = setup();
    let env = &d.env;
    let old = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(72);
    let dir = d.src.join("dormant");
    write_file(&dir.join("index.html"), b"<h1>dormant</h1>\n");
    env.backup(&["--tenant", "dormant", "--time", &old.to_string()]);

    let (code, results, out) = drill_json(env, &["--tenant", "dormant"]);
    assert_eq!(code, 1, "{}", describe(&out));
    let r = &results[0];
    assert_eq!(
        (r["ok"].clone(), r["fresh"].clone()),
        (Value::Bool(false), Value::Bool(false))
    );
    assert_eq!(u64_field(r, "files"), 1, "the restore itself worked: {r}");
    let err = str_field(r, "error");
    assert!(
        err.contains("stale") && err.contains("dormant/www") && err.contains("26h"),
        "{err}"
    );

    let (code, results, _) = drill_json(env, &["--tenant", "dormant", "--max-age", "4 days"]);
    assert_eq!((code, results[0]["fresh"].clone()), (0, Value::Bool(true)));

    // A tenant whose contract has ended is not backed up any more: its
    // freshness is not expected, the restore still is.
    let yesterday = jiff::Zoned::now().date().yesterday().unwrap().to_string();
    env.ok(&["contract", "end", "dormant", "--effective", &yesterday]);
    let (code, results, out) = drill_json(env, &["--tenant", "dormant"]);
    assert_eq!(code, 0, "{}", describe(&out));
    assert!(
        str_field(&results[0], "freshness").contains("contract ended"),
        "{}",
        results[0]
    );
}

#[test]
fn a_drill_from_offsite_works_with_the_local_target_deleted() {
    let d = setup();
    let env = &d.env;
    fs::remove_dir_all(&env.repo).unwrap();
    let (code, results, out) = drill_json(env, &["--tenant", "acme", "--tenant", "cirrus"]);
    assert_eq!(code, 0, "{}", describe(&out));
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|r| r["ok"] == Value::Bool(true) && r["target"] == "offsite")
    );
    assert!(
        stderr(&out).contains("target local"),
        "the lost target is reported: {}",
        describe(&out)
    );
    // The evidence is on the offsite target and in the local log.
    let records = files_under(&d.offsite.join("audit"));
    assert!(records.len() >= 2, "{records:?}");
    assert_eq!(env.json(&["drill", "history"]).as_array().unwrap().len(), 2);

    let out = env.run(&["drill", "--tenant", "acme", "--target", "local"]);
    assert_exit(&out, 1, "drill from the deleted target");
    assert!(stderr(&out).contains("local"), "{}", describe(&out));
}

#[test]
fn a_random_sample_is_repeatable_by_its_seed_and_a_named_snapshot_is_drilled() {
    let d = setup();
    let env = &d.env;
    let tenants = |args: &[&str]| -> Vec<String> {
        let (code, results, out) = drill_json(env, args);
        assert_eq!(code, 0, "{}", describe(&out));
        assert!(
            stderr(&out).contains("seed"),
            "the seed is printed: {}",
            describe(&out)
        );
        results
            .iter()
            .map(|r| str_field(r, "tenant").to_string())
            .collect()
    };
    let first = tenants(&["--sample", "2", "--seed", "42"]);
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|t| TENANTS.contains(&t.as_str())));
    assert_eq!(tenants(&["--sample", "2", "--seed", "42"]), first);
    assert_eq!(
        tenants(&["--sample", "9", "--seed", "1"]).len(),
        3,
        "at most every tenant"
    );
    let out = env.ok(&["drill", "--sample", "1"]);
    assert!(
        stdout(&out).contains("repeat with --seed"),
        "{}",
        describe(&out)
    );

    // An older snapshot by id; freshness is judged by the newest.
    let old = env
        .snapshots()
        .into_iter()
        .find(|s| s["tenant"] == "bravo")
        .unwrap();
    let old = str_field(&old, "id").to_string();
    write_file(&d.src.join("bravo/new.html"), b"new\n");
    env.backup(&["--tenant", "bravo"]);
    let (code, results, _) = drill_json(env, &["--snapshot", &old[..10]]);
    assert_eq!(code, 0);
    assert_eq!(results.len(), 1);
    assert_eq!(str_field(&results[0], "snapshot"), old);
    assert_eq!(
        u64_field(&results[0], "files"),
        2,
        "the old snapshot had two files"
    );
    assert_eq!(results[0]["fresh"], Value::Bool(true));

    let out = env.run(&["drill", "--tenant", "nobody"]);
    assert_exit(&out, 1, "drill of a tenant without snapshots");
    assert!(stderr(&out).contains("tenant nobody has no snapshot on target offsite"));
    let out = env.run(&["drill", "--tenant", "acme", "--sample", "2"]);
    assert_exit(&out, 2, "--tenant with --sample");
    let out = env.run(&["drill", "--max-age", "soon"]);
    assert_exit(&out, 2, "a bad --max-age");
}

#[test]
fn what_a_killed_drill_left_in_scratch_is_removed_by_the_next() {
    let d = setup();
    let env = &d.env;
    let scratch = env.path("scratch");
    // A folder as a killed drill leaves it: a process id that no longer
    // runs, restored content, a read-only directory inside.
    let dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();
    let left = scratch.join(format!("drill-{pid}-0"));
    write_file(&left.join("var/www/acme/index.php"), b"customer data");
    chmod(&left.join("var/www"), 0o555);
    write_file(&scratch.join("drill-notes.txt"), b"an operator's file");
    env.ok(&["drill", "--tenant", "bravo", "--scratch", s(&scratch)]);
    assert_eq!(
        contents(&scratch),
        Some(vec!["drill-notes.txt".to_string()])
    );
}
