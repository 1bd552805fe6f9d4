//! The data lifecycle end to end, on real files and two `file://` targets
//! (primary `local`, secondary `offsite`): retention and contract ends
//! computed from the real clock, legal holds, erasure with crypto-shredding,
//! the event inbox, the audit trail, and `lifecycle apply` killed at each of
//! its store deletes and run again.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::common::*;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Span, Zoned};
use serde_json::{Value, json};

const TARGETS: [&str; 2] = ["local", "offsite"];

const BOOKKEEPING_RULE: &str = "[retention.category.bookkeeping]\n\
     keep = \"7 years\"\n\
     after_contract = \"7 years\"\n\
     legal_basis = \"legal obligation: Bokföringslagen\"\n\
     legal_obligation = true\n";

/// Tenant folders `src/<tenant>` under a `{tenant}` source `www` (category
/// `site`), optionally a `books` source (category `bookkeeping`) of one
/// named tenant, and the secondary `offsite`. Remembers what every snapshot
/// was taken of, so that restores can be compared byte for byte.
struct Lc {
    env: Env,
    src: PathBuf,
    books: PathBuf,
    offsite: PathBuf,
    /// Snapshot id → absolute source file path → its bytes at backup time.
    taken: RefCell<BTreeMap<String, BTreeMap<PathBuf, Vec<u8>>>>,
}

impl Lc {
    fn new(pack_size: &str, books_tenant: Option<&str>) -> Lc {
        let env = Env::new();
        let src = env.path("src");
        let books = env.path("books");
        let offsite = env.path("offsite");
        fs::create_dir_all(&src).unwrap();
        let pattern = format!("{}/{{tenant}}", s(&src));
        let mut sources = paths_source("www", "site", &[&pattern], &[]);
        if let Some(tenant) = books_tenant {
            fs::create_dir_all(&books).unwrap();
            sources.push_str(&tenant_paths_source(
                "books",
                "bookkeeping",
                tenant,
                &[s(&books)],
            ));
        }
        sources.push_str(BOOKKEEPING_RULE);
        env.set_extra_targets(&file_target("offsite", &offsite, ""));
        env.write_config(pack_size, &sources);
        Lc {
            env,
            src,
            books,
            offsite,
            taken: RefCell::new(BTreeMap::new()),
        }
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.src.join(tenant)
    }

    fn target_dir(&self, target: &str) -> &Path {
        match target {
            "local" => &self.env.repo,
            "offsite" => &self.offsite,
            other => panic!("no target {other}"),
        }
    }

    /// `backup --tenant T [--time TIME]`, which must ship to offsite.
    /// Returns the snapshot ids by source name.
    fn backup(&self, tenant: &str, time: Option<&str>) -> BTreeMap<String, String> {
        let mut args = vec!["--tenant", tenant];
        if let Some(t) = time {
            args.extend_from_slice(&["--time", t]);
        }
        let out = self.env.backup(&args);
        assert!(array_field(&out, "ship_failed").is_empty(), "{out}");
        assert_eq!(array_field(&out, "shipped").len(), 1, "shipped: {out}");
        let mut ids = BTreeMap::new();
        for snap in array_field(&out, "snapshots") {
            assert_eq!(str_field(snap, "tenant"), tenant, "{out}");
            let mut files = BTreeMap::new();
            for p in array_field(snap, "paths") {
                for f in files_under(Path::new(p.as_str().expect("paths are strings"))) {
                    let bytes = fs::read(&f).unwrap();
                    files.insert(f, bytes);
                }
            }
            assert!(!files.is_empty(), "a snapshot of nothing: {snap}");
            let id = str_field(snap, "id").to_string();
            self.taken.borrow_mut().insert(id.clone(), files);
            ids.insert(str_field(snap, "source").to_string(), id);
        }
        ids
    }

    /// `restore ID --to DIR --verify [--target T]`, then the restored files
    /// must be exactly those the snapshot was taken of, byte for byte.
    fn assert_restores(&self, id: &str, target: &str, context: &str) {
        let env = &self.env;
        let to = env.path(&format!("restored-{target}-{}", &id[..12]));
        if to.exists() {
            fs::remove_dir_all(&to).unwrap();
        }
        let mut args = vec!["restore", id, "--to", s(&to), "--verify"];
        if target != "local" {
            args.extend_from_slice(&["--target", target]);
        }
        let out = env.run(&args);
        assert_success(&out, &format!("{} ({context})", args.join(" ")));
        let restored: BTreeMap<PathBuf, Vec<u8>> = files_under(&to)
            .into_iter()
            .map(|f| {
                let bytes = fs::read(&f).unwrap();
                (Path::new("/").join(f.strip_prefix(&to).unwrap()), bytes)
            })
            .collect();
        let taken = self.taken.borrow();
        let want = taken
            .get(id)
            .unwrap_or_else(|| panic!("{context}: snapshot {id} was never taken here"));
        assert_eq!(
            restored.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{context}: snapshot {id} from {target} restores the files it was taken of"
        );
        for (path, bytes) in want {
            assert!(
                &restored[path] == bytes,
                "{context}: {} of snapshot {id} restored from {target} differs",
                path.display()
            );
        }
        fs::remove_dir_all(&to).unwrap();
    }

    /// Every object of a tenant on a target but its locks, with its bytes.
    fn tenant_objects(&self, target: &str, tenant: &str) -> BTreeMap<PathBuf, Vec<u8>> {
        self.objects_under(target, &format!("tenants/{tenant}"))
    }

    /// Every object under `folder` of a target but locks, with its bytes,
    /// by path relative to that folder.
    fn objects_under(&self, target: &str, folder: &str) -> BTreeMap<PathBuf, Vec<u8>> {
        let dir = self.target_dir(target).join(folder);
        files_under(&dir)
            .into_iter()
            .map(|f| f.strip_prefix(&dir).unwrap().to_path_buf())
            .filter(|rel| !rel.iter().any(|c| c == "locks"))
            .map(|rel| {
                let bytes = fs::read(dir.join(&rel)).unwrap();
                (rel, bytes)
            })
            .collect()
    }
}

fn stockholm() -> TimeZone {
    TimeZone::get("Europe/Stockholm").expect("the tz database knows Europe/Stockholm")
}

fn now_here() -> Zoned {
    Zoned::now().with_time_zone(stockholm())
}

/// The instant `months` months ago, RFC 3339, for `backup --time`.
fn months_ago(months: i64) -> String {
    now_here()
        .checked_sub(Span::new().months(months))
        .unwrap()
        .timestamp()
        .to_string()
}

/// Today's date in Stockholm, minus `days`.
fn days_ago(days: i64) -> Date {
    now_here()
        .date()
        .checked_sub(Span::new().days(days))
        .unwrap()
}

/// The snapshots of one target, id → its `snapshots --json` row.
fn snapshots_on(env: &Env, target: &str) -> BTreeMap<String, Value> {
    match env.json(&["snapshots", "--target", target]) {
        Value::Array(rows) => rows
            .into_iter()
            .map(|r| (str_field(&r, "id").to_string(), r))
            .collect(),
        other => panic!("snapshots --json must print an array, got {other}"),
    }
}

/// The one line of the human `lifecycle plan` that says `tenant` is held,
/// and the whole plan (for messages).
fn held_line(env: &Env, tenant: &str) -> (String, String) {
    let text = stdout(&env.ok(&["lifecycle", "plan"]));
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("held") && l.contains(&format!("tenant {tenant}:")))
        .collect();
    assert_eq!(lines.len(), 1, "the plan says {tenant} is held:\n{text}");
    (lines[0].to_string(), text)
}

fn ids_on(env: &Env, target: &str) -> BTreeSet<String> {
    snapshots_on(env, target).into_keys().collect()
}

/// `check --read-data --json --target T`: exit 0, ok, no errors and nothing
/// left unreferenced.
fn assert_check_clean(env: &Env, target: &str, context: &str) {
    let args = ["check", "--read-data", "--json", "--target", target];
    let out = env.run(&args);
    let report = parse_json(&out);
    assert_eq!(
        report.get("ok"),
        Some(&Value::Bool(true)),
        "{context}: check of {target}\n{}",
        describe(&out)
    );
    assert_exit(&out, 0, &format!("{} ({context})", args.join(" ")));
    assert!(
        array_field(&report, "errors").is_empty(),
        "{context}: {report}"
    );
    assert!(
        array_field(&report, "unreferenced").is_empty(),
        "{context}: check of {target} finds garbage left behind: {report}"
    );
}

fn audit_records(env: &Env) -> Vec<Value> {
    match env.json(&["audit", "list"]) {
        Value::Array(a) => a,
        other => panic!("audit list --json must print an array, got {other}"),
    }
}

/// The audit records of `action` about `tenant`.
fn records_of<'a>(records: &'a [Value], action: &str, tenant: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r.get("action") == Some(&Value::from(action)))
        .filter(|r| r.get("tenant") == Some(&Value::from(tenant)))
        .collect()
}

fn assert_audit_verifies(env: &Env, context: &str) {
    let out = env.run(&["audit", "verify"]);
    assert_exit(&out, 0, &format!("audit verify ({context})"));
    assert!(
        stdout(&out).contains("audit trail intact"),
        "{context}\n{}",
        describe(&out)
    );
}

/// The `(tenant, snapshot, target, reason)` of plan or report entries.
fn entries(v: &[Value]) -> BTreeSet<(String, String, String, String)> {
    v.iter()
        .map(|e| {
            (
                str_field(e, "tenant").to_string(),
                str_field(e, "snapshot").to_string(),
                str_field(e, "target").to_string(),
                str_field(e, "reason").to_string(),
            )
        })
        .collect()
}

fn plan_json(env: &Env) -> Vec<Value> {
    match env.json(&["lifecycle", "plan"]) {
        Value::Array(a) => a,
        other => panic!("lifecycle plan --json must print an array, got {other}"),
    }
}

/// The result of `tenant` in an apply report, if any.
fn tenant_result<'a>(report: &'a Value, tenant: &str) -> Option<&'a Value> {
    array_field(report, "tenants")
        .iter()
        .find(|t| t.get("tenant") == Some(&Value::from(tenant)))
}

/// Sum of a counter over every tenant of an apply report, on one target.
fn report_sum(report: &Value, target: &str, field: &str) -> u64 {
    array_field(report, "tenants")
        .iter()
        .flat_map(|t| array_field(t, "targets"))
        .filter(|r| r.get("target") == Some(&Value::from(target)))
        .map(|r| u64_field(r, field))
        .sum()
}

#[test]
fn scenario_with_real_dates() {
    let started = Instant::now();
    let lc = Lc::new("16 MiB", Some("b"));
    let env = &lc.env;
    let mut rng = Rng::new(0x11fe);
    for tenant in ["a", "b", "c", "d"] {
        let dir = lc.tenant_dir(tenant);
        write_file(&dir.join("index.php"), &rng.text(30_000));
        write_file(&dir.join("uploads/photo.jpg"), &rng.bytes(120_000));
    }
    write_file(&lc.books.join("2026/ledger.csv"), &rng.text(20_000));
    env.init();

    // Tenant a: seven months ago, and (with changed files) five months ago.
    let a_old = lc.backup("a", Some(&months_ago(7)))["www"].clone();
    write_file(
        &lc.tenant_dir("a").join("uploads/photo.jpg"),
        &rng.bytes(100_000),
    );
    write_file(&lc.tenant_dir("a").join("news.html"), &rng.text(10_000));
    let a_new = lc.backup("a", Some(&months_ago(5)))["www"].clone();
    let two_months = months_ago(2);
    let b = lc.backup("b", Some(&two_months));
    let (b_site, b_books) = (b["www"].clone(), b["books"].clone());
    let c = lc.backup("c", Some(&two_months))["www"].clone();
    let d = lc.backup("d", Some(&two_months))["www"].clone();
    for target in TARGETS {
        assert_eq!(
            ids_on(env, target),
            BTreeSet::from([&a_old, &a_new, &b_site, &b_books, &c, &d].map(String::clone)),
            "every snapshot is on {target}"
        );
    }

    let forty = days_ago(40).to_string();
    let ten = days_ago(10).to_string();
    env.ok(&["contract", "end", "b", "--effective", &forty]);
    env.ok(&["contract", "end", "c", "--effective", &ten]);
    env.ok(&["contract", "end", "d", "--effective", &forty]);
    env.ok(&["hold", "set", "d", "--reason", "court order"]);

    // What is due: a's old snapshot by retention, b's site by its contract's
    // end; not b's books (a legal obligation), not c (its window runs), not
    // d (held).
    let plan = plan_json(env);
    let mut want = BTreeSet::new();
    for target in TARGETS {
        want.insert(("a", &a_old, target, "retention"));
        want.insert(("b", &b_site, target, "contract-ended"));
    }
    let want: BTreeSet<(String, String, String, String)> = want
        .into_iter()
        .map(|(t, id, target, r)| (t.into(), id.clone(), target.into(), r.into()))
        .collect();
    assert_eq!(entries(&plan), want, "lifecycle plan --json: {plan:?}");
    for e in &plan {
        let expires: jiff::Timestamp = str_field(e, "expires").parse().unwrap();
        assert!(expires <= jiff::Timestamp::now(), "due means expired: {e}");
        if str_field(e, "tenant") == "b" {
            assert_eq!(str_field(e, "rule"), "default", "{e}");
        }
    }

    // The human plan: d is held; c's snapshots go a month after the day
    // after its last day, at 00:00 in Stockholm.
    let (held, text) = held_line(env, "d");
    assert!(held.contains("court order"), "{text}");
    let c_goes = days_ago(10)
        .tomorrow()
        .unwrap()
        .checked_add(Span::new().months(1))
        .unwrap()
        .to_string();
    let c_line: Vec<&str> = text.lines().filter(|l| l.contains("tenant c")).collect();
    assert_eq!(c_line.len(), 1, "the plan names tenant c once:\n{text}");
    assert!(
        c_line[0].contains(&format!("{c_goes} 00:00")),
        "c's snapshots go at {c_goes} 00:00 Stockholm time:\n{text}"
    );
    assert!(
        !text.contains(&b_books[..12]),
        "b's books are not due:\n{text}"
    );

    // Apply.
    let before: BTreeMap<&str, u64> = TARGETS
        .iter()
        .map(|t| (*t, dir_size(&lc.target_dir(t).join("tenants"))))
        .collect();
    let untouched: BTreeMap<(&str, &str), BTreeMap<PathBuf, Vec<u8>>> = TARGETS
        .iter()
        .flat_map(|t| ["c", "d"].map(|tenant| ((*t, tenant), lc.tenant_objects(t, tenant))))
        .collect();
    let out = env.run(&["lifecycle", "apply", "--json"]);
    assert_exit(&out, 0, "lifecycle apply");
    let report = parse_json(&out);
    assert_eq!(report.get("dry_run"), Some(&Value::Bool(false)), "{report}");
    assert!(array_field(&report, "failures").is_empty(), "{report}");
    assert_eq!(entries(array_field(&report, "due")), want, "{report}");
    let held = array_field(&report, "held");
    assert!(!held.is_empty(), "d's expired snapshots are held: {report}");
    for h in held {
        assert_eq!(str_field(h, "tenant"), "d", "{report}");
        assert_eq!(str_field(h, "hold_reason"), "court order", "{report}");
    }
    for tenant in ["a", "b"] {
        let t = tenant_result(&report, tenant).unwrap_or_else(|| panic!("{tenant}: {report}"));
        assert_eq!(t.get("key_destroyed"), Some(&Value::Bool(false)), "{t}");
        let per_target = array_field(t, "targets");
        assert_eq!(per_target.len(), 2, "both targets: {t}");
        for r in per_target {
            assert_eq!(u64_field(r, "snapshots_deleted"), 1, "{t}");
            assert!(u64_field(r, "bytes_deleted") > 0, "{t}");
        }
    }
    for tenant in ["c", "d"] {
        if let Some(t) = tenant_result(&report, tenant) {
            for r in array_field(t, "targets") {
                assert_eq!(u64_field(r, "objects_deleted"), 0, "{t}");
            }
        }
    }

    let survivors = BTreeSet::from([&a_new, &b_books, &c, &d].map(String::clone));
    for target in TARGETS {
        assert_eq!(
            ids_on(env, target),
            survivors,
            "what is left on {target}: a's newer snapshot, b's books, c and d"
        );
        let after = dir_size(&lc.target_dir(target).join("tenants"));
        let deleted = report_sum(&report, target, "bytes_deleted");
        let written = report_sum(&report, target, "bytes_written");
        assert_eq!(
            after as i128,
            before[target] as i128 - deleted as i128 + written as i128,
            "{target}: {} bytes before, {deleted} deleted and {written} written by the report, {after} after",
            before[target]
        );
        assert!(after < before[target], "{target} shrank");
        for tenant in ["c", "d"] {
            assert!(
                lc.tenant_objects(target, tenant) == untouched[&(target, tenant)],
                "nothing of {tenant} on {target} changed"
            );
        }
        assert_check_clean(env, target, "after apply");
        for id in &survivors {
            lc.assert_restores(id, target, "after apply");
        }
    }

    assert_audit_verifies(env, "after apply");
    let records = audit_records(env);
    for (tenant, id, reason) in [("a", &a_old, "retention"), ("b", &b_site, "contract-ended")] {
        let deletes = records_of(&records, "delete", tenant);
        assert_eq!(
            deletes.len(),
            1,
            "one delete record for {tenant}: {deletes:?}"
        );
        let r = deletes[0];
        assert_eq!(array_field(r, "snapshots"), &vec![json!(id)], "{r}");
        assert_eq!(str_field(r, "reason"), reason, "{r}");
        let targets: BTreeSet<&str> = array_field(r, "targets")
            .iter()
            .map(|t| str_field(t, "target"))
            .collect();
        assert_eq!(targets, BTreeSet::from(TARGETS), "{r}");
    }
    assert!(
        records_of(&records, "contract-ended", "b").len() == 1,
        "{records:?}"
    );
    for tenant in ["c", "d"] {
        for action in ["delete", "prune", "erase", "key-destroyed"] {
            assert!(
                records_of(&records, action, tenant).is_empty(),
                "no {action} record for {tenant}: {records:?}"
            );
        }
    }

    // Idempotent: a second apply finds nothing due and changes nothing.
    let objects: BTreeMap<&str, BTreeMap<PathBuf, Vec<u8>>> = TARGETS
        .iter()
        .map(|t| (*t, lc.objects_under(t, "tenants")))
        .collect();
    let again = env.json(&["lifecycle", "apply"]);
    assert!(array_field(&again, "due").is_empty(), "{again}");
    assert!(array_field(&again, "failures").is_empty(), "{again}");
    for target in TARGETS {
        for field in ["snapshots_deleted", "objects_deleted", "objects_written"] {
            assert_eq!(report_sum(&again, target, field), 0, "{field}: {again}");
        }
        let now = lc.objects_under(target, "tenants");
        assert!(now == objects[target], "a second apply changed {target}");
        assert_eq!(ids_on(env, target), survivors);
    }
    let more = audit_records(env);
    assert_eq!(
        more.len(),
        records.len(),
        "a second apply records nothing: {:?}",
        &more[records.len()..]
    );
    eprintln!(
        "scenario_with_real_dates: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Opens the primary through the library and tries every tenant key it
/// holds on `pack`; returns the names of the tenants whose key reads it.
fn keys_that_read(lc: &Lc, pack: &[u8]) -> Vec<String> {
    let url = format!("file://{}", s(&lc.env.repo));
    let store = open_store(&gallra::store::TargetSettings::new("local", &url));
    let repo = gallra::repo::Repository::open(
        store,
        &gallra::crypto::KeySource::File(lc.env.key.clone()).into(),
    )
    .expect("open the repository with the key file");
    let mut readers = Vec::new();
    for name in repo.tenant_names().expect("list tenants") {
        let Ok(tenant) = repo.tenant(&name) else {
            continue;
        };
        if gallra::format::pack::read_header(pack, &tenant.cipher, &tenant.context, "kept").is_ok()
        {
            readers.push(name);
        }
    }
    readers
}

#[test]
fn erase_destroys_the_key_and_a_kept_copy_stays_unreadable() {
    let lc = Lc::new("64 KiB", Some("beta"));
    let env = &lc.env;
    let mut rng = Rng::new(0xe5a5e);
    for tenant in ["acme", "beta"] {
        let dir = lc.tenant_dir(tenant);
        write_file(&dir.join("index.php"), &rng.text(40_000));
        write_file(&dir.join("uploads/photo.jpg"), &rng.bytes(150_000));
    }
    write_file(&lc.books.join("ledger.csv"), &rng.text(30_000));
    env.init();
    let acme = lc.backup("acme", None)["www"].clone();
    let beta = lc.backup("beta", None);
    let (beta_site, beta_books) = (beta["www"].clone(), beta["books"].clone());

    // A copy of one of acme's packs, kept aside (as a stray copy on a tape
    // or in another bucket would be).
    let acme_packs: Vec<PathBuf> = pack_files(&env.repo)
        .into_iter()
        .filter(|p| p.starts_with(env.repo.join("tenants/acme")))
        .collect();
    assert!(!acme_packs.is_empty(), "acme has packs");
    let pack_path = acme_packs[0].clone();
    let kept = env.path("kept.pack");
    fs::copy(&pack_path, &kept).unwrap();
    let kept_bytes = fs::read(&kept).unwrap();
    assert_eq!(
        keys_that_read(&lc, &kept_bytes),
        vec!["acme".to_string()],
        "before the erasure, acme's key (and only it) reads the kept pack"
    );

    let snapshot_of = |target: &str| -> BTreeMap<&str, BTreeMap<PathBuf, Vec<u8>>> {
        ["acme", "beta"]
            .into_iter()
            .map(|t| (t, lc.tenant_objects(target, t)))
            .collect()
    };
    let before: BTreeMap<&str, _> = TARGETS.iter().map(|t| (*t, snapshot_of(t))).collect();
    let unchanged = |context: &str| {
        for target in TARGETS {
            assert!(
                snapshot_of(target) == before[target],
                "{context}: nothing on {target} may change"
            );
        }
    };

    // Without --yes: a usage error, nothing deleted.
    let out = env.run(&["erase", "acme", "--reason", "GDPR art. 17"]);
    let line = assert_error(&out, 2, "erase without --yes", &["--yes"]);
    assert!(line.contains("acme"), "{line}");
    unchanged("erase without --yes");

    // Under a hold: refused, nothing deleted.
    env.ok(&["hold", "set", "acme", "--reason", "x"]);
    let out = env.run(&["erase", "acme", "--reason", "r", "--yes"]);
    assert!(
        !out.status.success(),
        "erase under a hold must fail\n{}",
        describe(&out)
    );
    let line = error_line(&out);
    assert!(line.contains("hold"), "the refusal names the hold: {line}");
    unchanged("erase under a hold");
    assert!(
        records_of(&audit_records(env), "erasure-requested", "acme").is_empty(),
        "a refused erasure is not recorded as requested"
    );
    env.ok(&["hold", "release", "acme"]);

    let out = env.run(&["erase", "acme", "--reason", "GDPR art. 17", "--yes"]);
    assert_exit(&out, 0, "erase acme --yes");
    assert!(stdout(&out).contains("key destroyed"), "{}", describe(&out));
    for target in TARGETS {
        let left = files_under(&lc.target_dir(target).join("tenants/acme"));
        assert!(left.is_empty(), "nothing of acme on {target}: {left:?}");
        assert!(
            snapshot_of(target)["beta"] == before[target]["beta"],
            "beta on {target} is untouched"
        );
        let ids = ids_on(env, target);
        assert!(!ids.contains(&acme), "{target}: {ids:?}");
        assert_eq!(ids, BTreeSet::from([beta_site.clone(), beta_books.clone()]));
        for id in [&beta_site, &beta_books] {
            lc.assert_restores(id, target, "after erasing acme");
        }
        assert_check_clean(env, target, "after erasing acme");
    }

    let records = audit_records(env);
    let requested = records_of(&records, "erasure-requested", "acme");
    assert_eq!(requested.len(), 1, "{requested:?}");
    assert_eq!(str_field(requested[0], "reason"), "GDPR art. 17");
    let deletes = records_of(&records, "delete", "acme");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(str_field(deletes[0], "reason"), "erasure", "{}", deletes[0]);
    assert_eq!(array_field(deletes[0], "snapshots"), &vec![json!(acme)]);
    let destroyed = records_of(&records, "key-destroyed", "acme");
    assert_eq!(destroyed.len(), 1, "{records:?}");
    let on: BTreeSet<&str> = array_field(destroyed[0], "targets")
        .iter()
        .map(|t| str_field(t, "target"))
        .collect();
    assert_eq!(on, BTreeSet::from(TARGETS), "{}", destroyed[0]);
    assert_audit_verifies(env, "after erasing acme");

    let md = stdout(&env.ok(&["audit", "export", "--tenant", "acme"]));
    assert!(md.contains("The tenant key was destroyed at"), "{md}");
    assert!(md.contains("GDPR art. 17"), "{md}");
    let ex = env.json(&["audit", "export", "--tenant", "acme", "--format", "json"]);
    assert!(
        ex.get("key_destroyed").is_some_and(Value::is_string),
        "key_destroyed is set: {ex}"
    );
    let ex = env.json(&["audit", "export", "--tenant", "beta", "--format", "json"]);
    assert_eq!(ex.get("key_destroyed"), Some(&Value::Null), "{ex}");

    // No key the repository still holds reads the kept pack.
    assert_eq!(
        keys_that_read(&lc, &kept_bytes),
        Vec::<String>::new(),
        "after the erasure no tenant key reads the kept pack"
    );

    // Beta, without --include-legal: the books stay (a legal obligation),
    // and with them the key.
    let out = env.run(&["erase", "beta", "--reason", "r", "--yes"]);
    assert_exit(&out, 0, "erase beta");
    let text = stdout(&out);
    assert!(text.contains("legal obligation"), "{}", describe(&out));
    assert!(!text.contains("key destroyed"), "{}", describe(&out));
    for target in TARGETS {
        assert_eq!(
            ids_on(env, target),
            BTreeSet::from([beta_books.clone()]),
            "{target} keeps beta's books only"
        );
        assert!(
            lc.target_dir(target).join("tenants/beta/key").is_file(),
            "beta's key stays on {target}"
        );
        lc.assert_restores(&beta_books, target, "after erasing beta's site");
        assert_check_clean(env, target, "after erasing beta's site");
    }
    let records = audit_records(env);
    let kept_records = records_of(&records, "legal-kept", "beta");
    assert_eq!(kept_records.len(), 1, "{records:?}");
    assert_eq!(
        array_field(kept_records[0], "snapshots"),
        &vec![json!(beta_books)]
    );
    assert!(records_of(&records, "key-destroyed", "beta").is_empty());

    // With --include-legal: everything goes, the key too.
    let out = env.run(&["erase", "beta", "--reason", "r", "--yes", "--include-legal"]);
    assert_exit(&out, 0, "erase beta --include-legal");
    for target in TARGETS {
        let left = files_under(&lc.target_dir(target).join("tenants/beta"));
        assert!(left.is_empty(), "nothing of beta on {target}: {left:?}");
        assert!(ids_on(env, target).is_empty());
    }
    let records = audit_records(env);
    assert_eq!(records_of(&records, "key-destroyed", "beta").len(), 1);
    assert_audit_verifies(env, "after erasing beta");

    // The kept pack put back where it was: it does not bring acme back, and
    // check flags it, naming it.
    fs::create_dir_all(pack_path.parent().unwrap()).unwrap();
    fs::copy(&kept, &pack_path).unwrap();
    assert!(
        ids_on(env, "local").is_empty(),
        "no snapshot of acme is back"
    );
    assert!(!env.repo.join("tenants/acme/key").exists());
    assert_eq!(keys_that_read(&lc, &kept_bytes), Vec::<String>::new());
    let out = env.run(&["check", "--json"]);
    let report = parse_json(&out);
    assert_exit(&out, 1, "check with acme's pack put back");
    assert_eq!(report.get("ok"), Some(&Value::Bool(false)), "{report}");
    let named: Vec<&str> = array_field(&report, "errors")
        .iter()
        .chain(array_field(&report, "unreferenced"))
        .map(|f| str_field(f, "object"))
        .collect();
    assert!(
        named.iter().any(|o| o.starts_with("tenants/acme/")),
        "check flags acme's folder: {report}"
    );
    let rel = pack_path.strip_prefix(&env.repo).unwrap();
    assert!(
        named.contains(&s(rel)),
        "check must name the stray pack {} (an operator has to find what to delete), \
         but reports only: {report}",
        rel.display()
    );
}

/// The names of the files directly in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(d) => d
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn inbox_process(env: &Env) -> Vec<Value> {
    match env.json(&["inbox", "process"]) {
        Value::Array(a) => a,
        other => panic!("inbox process --json must print an array, got {other}"),
    }
}

#[test]
fn inbox_takes_good_duplicate_malformed_and_unknown() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    let mut rng = Rng::new(0x1b0c);
    for tenant in ["acme", "beta", "gamma"] {
        write_file(&lc.tenant_dir(tenant).join("index.php"), &rng.text(20_000));
        write_file(&lc.tenant_dir(tenant).join("img.png"), &rng.bytes(50_000));
    }
    env.init();
    let mut ids = BTreeMap::new();
    for tenant in ["acme", "beta", "gamma"] {
        ids.insert(
            tenant,
            lc.backup(tenant, Some(&months_ago(2)))["www"].clone(),
        );
    }
    assert!(plan_json(env).is_empty(), "nothing is due yet");

    let good = json!({
        "id": "crm-2026-000123",
        "type": "contract_ended",
        "tenant": "acme",
        "effective": days_ago(40).to_string(),
        "ref": "CRM 4711",
        "time": jiff::Timestamp::now().to_string(),
    });
    let good = serde_json::to_vec_pretty(&good).unwrap();
    let unknown = json!({
        "id": "crm-2026-000124",
        "type": "contract_ended",
        "tenant": "nobody",
        "effective": days_ago(40).to_string(),
    });
    lc.env.drop_in_inbox("001-good.json", &good);
    lc.env.drop_in_inbox("002-again.json", &good);
    lc.env
        .drop_in_inbox("003-bad.json", b"this is not JSON {\n");
    lc.env
        .drop_in_inbox("004-unknown.json", &serde_json::to_vec(&unknown).unwrap());
    // A file still being written: not touched.
    let inbox = env.state.join("inbox");
    fs::write(inbox.join(".005-partial.json"), b"{\"id\": \"crm-").unwrap();

    let items = inbox_process(env);
    let outcomes: Vec<(&str, &str)> = items
        .iter()
        .map(|i| (str_field(i, "file"), str_field(i, "outcome")))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("001-good.json", "accepted"),
            ("002-again.json", "duplicate"),
            ("003-bad.json", "rejected"),
            ("004-unknown.json", "rejected"),
        ],
        "{items:?}"
    );
    for i in &items[..2] {
        assert_eq!(str_field(i, "event"), "crm-2026-000123", "{i}");
        assert_eq!(str_field(i, "tenant"), "acme", "{i}");
    }
    let bad_reason = str_field(&items[2], "reason");
    assert!(
        bad_reason.contains("not a lifecycle event") || bad_reason.contains("JSON"),
        "{bad_reason}"
    );
    assert!(
        str_field(&items[3], "reason").contains("nobody"),
        "{items:?}"
    );

    assert_eq!(
        names_in(&inbox),
        vec![".005-partial.json".to_string()],
        "only the file still being written is left in the inbox"
    );
    assert_eq!(
        names_in(&inbox.join("processed")),
        vec!["001-good.json".to_string(), "002-again.json".to_string()]
    );
    assert_eq!(
        names_in(&inbox.join("rejected")),
        [
            "003-bad.json",
            "003-bad.json.reason",
            "004-unknown.json",
            "004-unknown.json.reason"
        ]
        .map(String::from)
        .to_vec()
    );
    let why = fs::read_to_string(inbox.join("rejected/003-bad.json.reason")).unwrap();
    assert!(why.contains("not a lifecycle event"), "{why}");
    let why = fs::read_to_string(inbox.join("rejected/004-unknown.json.reason")).unwrap();
    assert!(why.contains("nobody"), "{why}");
    assert_eq!(
        fs::read(inbox.join("rejected/003-bad.json")).unwrap(),
        b"this is not JSON {\n",
        "a rejected file is kept as it was"
    );

    let records = audit_records(env);
    let ended: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("action") == Some(&json!("contract-ended")))
        .collect();
    assert_eq!(ended.len(), 1, "{records:?}");
    assert_eq!(str_field(ended[0], "event"), "crm-2026-000123");
    assert_eq!(str_field(ended[0], "tenant"), "acme");
    assert!(
        inbox_process(env).is_empty(),
        "a second run finds nothing to do (the dot file waits)"
    );

    // The event counts: acme's contract ended forty days ago, so its site
    // snapshot (one month after the contract) is due on both targets.
    let plan = plan_json(env);
    let want: BTreeSet<(String, String, String, String)> = TARGETS
        .iter()
        .map(|t| {
            (
                "acme".into(),
                ids["acme"].clone(),
                t.to_string(),
                "contract-ended".into(),
            )
        })
        .collect();
    assert_eq!(entries(&plan), want, "{plan:?}");

    // An erasure for a tenant under a hold: accepted, but deferred.
    env.ok(&["hold", "set", "beta", "--reason", "court order"]);
    let erasure = json!({
        "id": "dpo-7",
        "type": "erasure_requested",
        "tenant": "beta",
        "reason": "GDPR art. 17",
    });
    lc.env
        .drop_in_inbox("010-erase.json", &serde_json::to_vec(&erasure).unwrap());
    let items = inbox_process(env);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(str_field(&items[0], "outcome"), "accepted", "{items:?}");
    assert_eq!(str_field(&items[0], "tenant"), "beta");

    let (beta_line, text) = held_line(env, "beta");
    assert!(beta_line.contains("deferred"), "{text}");
    assert!(beta_line.contains("court order"), "{text}");

    let beta_before: Vec<_> = TARGETS
        .iter()
        .map(|t| lc.tenant_objects(t, "beta"))
        .collect();
    let gamma_before: Vec<_> = TARGETS
        .iter()
        .map(|t| lc.tenant_objects(t, "gamma"))
        .collect();
    let report = env.json(&["lifecycle", "apply"]);
    assert!(array_field(&report, "failures").is_empty(), "{report}");
    let held = array_field(&report, "held");
    assert_eq!(held.len(), 2, "beta's snapshot on both targets: {report}");
    for h in held {
        assert_eq!(str_field(h, "tenant"), "beta", "{h}");
        assert_eq!(str_field(h, "reason"), "erasure", "{h}");
    }
    if let Some(t) = tenant_result(&report, "beta") {
        panic!("nothing of beta is touched under its hold: {t}");
    }
    let acme = tenant_result(&report, "acme").expect("acme's snapshots went");
    assert_eq!(
        acme.get("key_destroyed"),
        Some(&Value::Bool(true)),
        "{acme}"
    );
    for (i, target) in TARGETS.iter().enumerate() {
        assert!(
            lc.tenant_objects(target, "beta") == beta_before[i],
            "{target}"
        );
        assert!(
            lc.tenant_objects(target, "gamma") == gamma_before[i],
            "{target}"
        );
        assert!(lc.tenant_objects(target, "acme").is_empty(), "{target}");
        assert_eq!(
            ids_on(env, target),
            BTreeSet::from([ids["beta"].clone(), ids["gamma"].clone()])
        );
    }

    env.ok(&["hold", "release", "beta"]);
    let report = env.json(&["lifecycle", "apply"]);
    assert!(array_field(&report, "failures").is_empty(), "{report}");
    let beta = tenant_result(&report, "beta").expect("beta is erased now");
    assert_eq!(
        beta.get("key_destroyed"),
        Some(&Value::Bool(true)),
        "{beta}"
    );
    for r in array_field(&report, "due") {
        assert_eq!(str_field(r, "tenant"), "beta", "{report}");
        assert_eq!(str_field(r, "reason"), "erasure", "{report}");
    }
    for (i, target) in TARGETS.iter().enumerate() {
        assert!(lc.tenant_objects(target, "beta").is_empty(), "{target}");
        assert!(
            lc.tenant_objects(target, "gamma") == gamma_before[i],
            "{target}"
        );
        assert_eq!(ids_on(env, target), BTreeSet::from([ids["gamma"].clone()]));
        assert_check_clean(env, target, "after the erasures");
        lc.assert_restores(&ids["gamma"], target, "after the erasures");
    }
    let records = audit_records(env);
    assert_eq!(
        records_of(&records, "erasure-requested", "beta")
            .iter()
            .map(|r| str_field(r, "event"))
            .collect::<Vec<_>>(),
        vec!["dpo-7"]
    );
    assert_eq!(records_of(&records, "key-destroyed", "beta").len(), 1);
    assert_audit_verifies(env, "after the inbox's events");
}

/// `cp -a FROM TO` (TO must not exist).
fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

#[test]
fn killed_apply_then_apply_again_leaves_nothing_expired_and_nothing_damaged() {
    let started = Instant::now();
    let lc = Lc::new("64 KiB", None);
    let env = &lc.env;
    let mut rng = Rng::new(0xdead);
    // Tenant a: twelve files seven months ago; five months ago only the
    // first of them is left, beside a new one. With 64 KiB packs (six of
    // these files to a pack), the file that stays shares its pack with five
    // that go: prune deletes packs and also rewrites the one that stays.
    let a = lc.tenant_dir("a");
    for i in 0..12 {
        write_file(&a.join(format!("f{i:02}.bin")), &rng.bytes(10_000));
    }
    env.init();
    let a_old = lc.backup("a", Some(&months_ago(7)))["www"].clone();
    for i in 1..12 {
        fs::remove_file(a.join(format!("f{i:02}.bin"))).unwrap();
    }
    write_file(&a.join("new.bin"), &rng.bytes(40_000));
    let a_new = lc.backup("a", Some(&months_ago(5)))["www"].clone();
    // Tenant b: its contract ended forty days ago; everything goes.
    let b = lc.tenant_dir("b");
    write_file(&b.join("index.php"), &rng.text(30_000));
    write_file(&b.join("data.bin"), &rng.bytes(70_000));
    let b_old = lc.backup("b", Some(&months_ago(3)))["www"].clone();
    write_file(&b.join("more.bin"), &rng.bytes(20_000));
    let b_new = lc.backup("b", Some(&months_ago(2)))["www"].clone();
    // Tenant c: nothing due.
    write_file(&lc.tenant_dir("c").join("page.html"), &rng.text(15_000));
    let c = lc.backup("c", Some(&months_ago(1)))["www"].clone();
    env.ok(&[
        "contract",
        "end",
        "b",
        "--effective",
        &days_ago(40).to_string(),
    ]);

    let expired = BTreeSet::from([a_old.clone(), b_old.clone(), b_new.clone()]);
    let survivors = BTreeSet::from([a_new.clone(), c.clone()]);
    let plan = plan_json(env);
    let due: BTreeSet<String> = plan
        .iter()
        .map(|e| str_field(e, "snapshot").to_string())
        .collect();
    assert_eq!(due, expired, "{plan:?}");
    assert_eq!(plan.len(), 6, "three snapshots on two targets: {plan:?}");

    // The state before apply, restored before each run.
    let template = env.path("template");
    fs::create_dir_all(&template).unwrap();
    let live = [env.repo.clone(), lc.offsite.clone(), env.state.clone()];
    for dir in &live {
        copy_tree(dir, &template.join(file_name(dir)));
    }

    let mut killed = 0;
    for n in 1..=200u32 {
        let context = format!("killed at delete {n}");
        for dir in &live {
            fs::remove_dir_all(dir).unwrap();
            copy_tree(&template.join(file_name(dir)), dir);
        }
        let out = env
            .spawnable(&["lifecycle", "apply", "--json"])
            .env("GALLRA_TEST_KILL_AT_DELETE", n.to_string())
            .output()
            .expect("run gallra lifecycle apply");
        let finished = match out.status.code() {
            Some(0) => true,
            None if out.status.signal() == Some(9) => false,
            _ => panic!(
                "{context}: apply neither finished nor was killed\n{}",
                describe(&out)
            ),
        };
        if !finished {
            killed += 1;
            // Run again, as the next timer would: no unlock needed.
            let out = env.run(&["lifecycle", "apply", "--json"]);
            assert_exit(
                &out,
                0,
                &format!("lifecycle apply after a kill ({context})"),
            );
            let report = parse_json(&out);
            assert!(
                array_field(&report, "failures").is_empty(),
                "{context}: {report}"
            );
        }

        assert!(
            plan_json(env).is_empty(),
            "{context}: nothing is due any more"
        );
        for target in TARGETS {
            assert_eq!(
                ids_on(env, target),
                survivors,
                "{context}: on {target}, the expired snapshots are gone and the others stay"
            );
            let left = lc.tenant_objects(target, "b");
            assert!(
                left.is_empty(),
                "{context}: b is gone from {target}: {:?}",
                left.keys().collect::<Vec<_>>()
            );
            // Not even the lock of a run killed just before releasing it:
            // the next apply removes a dead process's lock from the folder
            // of a tenant whose key is gone.
            let b_dir = lc.target_dir(target).join("tenants/b");
            let locks = files_under(&b_dir.join("locks"));
            assert!(locks.is_empty(), "{context}: on {target}: {locks:?}");
            assert_check_clean(env, target, &context);
            let left = files_under(&b_dir);
            assert!(
                left.is_empty(),
                "{context}: nothing at all of b is left on {target}: {left:?}"
            );
            for id in &survivors {
                lc.assert_restores(id, target, &context);
            }
        }
        assert_audit_verifies(env, &context);
        if finished {
            // The run that was not killed did the whole work: prune both
            // deleted and rewrote data of a on the primary, and b's key went.
            let report = parse_json(&out);
            let a = tenant_result(&report, "a").expect("a was pruned");
            let on_local = array_field(a, "targets")
                .iter()
                .find(|r| r.get("target") == Some(&json!("local")))
                .expect("a on local");
            assert!(u64_field(on_local, "objects_deleted") > 1, "{report}");
            assert!(
                u64_field(on_local, "objects_written") > 1,
                "repacked: {report}"
            );
            let b = tenant_result(&report, "b").expect("b went");
            assert_eq!(b.get("key_destroyed"), Some(&json!(true)), "{report}");
            eprintln!(
                "killed_apply_then_apply_again: an apply does {} deletes; {killed} kill points; {:.1}s",
                n - 1,
                started.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(n < 200, "an apply never ran to its end");
    }
    assert!(
        killed >= 5,
        "at least five kill points were exercised, got {killed}"
    );
}

/// A tenant per name with a few files, one snapshot each taken `months`
/// months ago (so older than six months is already due by retention).
fn tenants_backed_up(lc: &Lc, tenants: &[&str], months: i64) -> BTreeMap<String, String> {
    let mut rng = Rng::new(0x15);
    for t in tenants {
        write_file(&lc.tenant_dir(t).join("index.php"), &rng.text(8_000));
    }
    lc.env.init();
    tenants
        .iter()
        .map(|t| {
            let id = lc.backup(t, Some(&months_ago(months)))["www"].clone();
            (t.to_string(), id)
        })
        .collect()
}

fn on_both(env: &Env, id: &str) -> bool {
    TARGETS.iter().all(|t| ids_on(env, t).contains(id))
}

fn on_neither(env: &Env, id: &str) -> bool {
    TARGETS.iter().all(|t| !ids_on(env, t).contains(id))
}

/// The id of the event `hold set` recorded.
fn hold_set(env: &Env, tenant: &str, reason: &str) -> String {
    let v = env.json(&["hold", "set", tenant, "--reason", reason]);
    str_field(&v["event"], "id").to_string()
}

#[test]
fn a_future_dated_hold_release_does_not_outrank_a_later_hold() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    let ids = tenants_backed_up(&lc, &["acme", "beta"], 7);
    // acme: a release dated a month ahead, then a hold.
    let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30)).to_string();
    let release =
        json!({"id": "crm-rel-1", "type": "hold_released", "tenant": "acme", "time": future});
    lc.env
        .drop_in_inbox("001-release.json", &serde_json::to_vec(&release).unwrap());
    let items = inbox_process(env);
    assert_eq!(str_field(&items[0], "outcome"), "rejected", "{items:?}");
    assert!(
        str_field(&items[0], "reason").contains("future"),
        "the rejection says why: {items:?}"
    );
    hold_set(env, "acme", "court order");
    // beta: a hold, its release, then a hold dated a year back: the
    // back-dated hold came last and holds.
    let first = hold_set(env, "beta", "tax audit");
    env.ok(&["hold", "release", "beta", "--hold", &first]);
    let year_ago =
        (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 365)).to_string();
    let late = json!({"id": "crm-hold-2", "type": "hold_set", "tenant": "beta", "reason": "police", "time": year_ago});
    lc.env
        .drop_in_inbox("002-hold.json", &serde_json::to_vec(&late).unwrap());
    let items = inbox_process(env);
    assert_eq!(str_field(&items[0], "outcome"), "accepted", "{items:?}");

    let out = env.run(&["lifecycle", "apply", "--json"]);
    assert_exit(&out, 0, "lifecycle apply");
    for tenant in ["acme", "beta"] {
        assert!(
            on_both(env, &ids[tenant]),
            "{tenant} is held: its snapshot stays on both targets\n{}",
            describe(&out)
        );
    }
}

#[test]
fn a_hold_event_missing_from_the_primary_blocks_deletion() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    let ids = tenants_backed_up(&lc, &["acme"], 7);
    let hold = hold_set(env, "acme", "court order");
    let event = format!("lifecycle/events/{hold}");
    fs::remove_file(lc.target_dir("local").join(&event)).unwrap();

    let out = env.run(&["lifecycle", "apply"]);
    assert_exit(&out, 1, "apply while the targets' events differ");
    assert!(
        stderr(&out).contains(&hold) && stderr(&out).contains("differ"),
        "the operator is told which event differs\n{}",
        describe(&out)
    );
    assert!(
        on_both(env, &ids["acme"]),
        "nothing deleted\n{}",
        describe(&out)
    );

    // Gone from every target: the audit trail still records the hold.
    fs::remove_file(lc.target_dir("offsite").join(&event)).unwrap();
    let out = env.run(&["lifecycle", "apply"]);
    assert_exit(
        &out,
        1,
        "apply while the audit trail records a hold no event carries",
    );
    assert!(
        stderr(&out).contains("audit trail records hold"),
        "{}",
        describe(&out)
    );
    assert!(
        on_both(env, &ids["acme"]),
        "nothing deleted\n{}",
        describe(&out)
    );
}

/// The hold's only copy is on the offsite, and the offsite cannot be read
/// at the lifecycle run (and this host's audit trail, rebuilt, no longer
/// records the hold): deleting from the primary would break the hold.
#[test]
fn a_hold_recorded_only_on_an_unreadable_offsite_blocks_deletion() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    let ids = tenants_backed_up(&lc, &["acme"], 7);
    let hold = hold_set(env, "acme", "court order");
    fs::remove_file(
        lc.target_dir("local")
            .join(format!("lifecycle/events/{hold}")),
    )
    .unwrap();
    fs::remove_file(env.state.join("audit.jsonl")).unwrap();
    let offsite = lc.target_dir("offsite").to_path_buf();
    let away = offsite.with_file_name("offsite-unmounted");
    fs::rename(&offsite, &away).unwrap();

    let out = env.run(&["lifecycle", "apply"]);
    assert_exit(&out, 1, "apply with the offsite's events unknown");
    assert!(
        stderr(&out).contains("offsite") && stderr(&out).contains("could not be read"),
        "the operator is told why nothing is deleted\n{}",
        describe(&out)
    );
    assert!(
        ids_on(env, "local").contains(&ids["acme"]),
        "the held snapshot stays on the primary\n{}",
        describe(&out)
    );
    fs::rename(&away, &offsite).unwrap();
    assert!(on_both(env, &ids["acme"]));
}

#[test]
fn an_unreadable_event_object_stops_backups_not_erasures() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    tenants_backed_up(&lc, &["acme", "beta"], 1);
    env.ok(&["erase", "acme", "--reason", "GDPR art. 17", "--yes"]);
    let key = lc.target_dir("local").join("tenants/acme/key");
    assert!(!key.exists(), "erased");
    let snapshot_files = || {
        files_under(&lc.target_dir("local").join("tenants"))
            .into_iter()
            .filter(|f| f.to_string_lossy().contains("/snapshots/"))
            .count()
    };
    let before = snapshot_files();
    let events = lc.target_dir("local").join("lifecycle/events");
    for e in fs::read_dir(&events).unwrap() {
        fs::write(e.unwrap().path(), b"damaged").unwrap();
    }

    let out = env.run(&["backup"]);
    assert_exit(&out, 1, "backup while the events cannot be read");
    assert!(
        stderr(&out).contains("lifecycle events could not be read"),
        "the run says why\n{}",
        describe(&out)
    );
    assert!(!key.exists(), "no new key for the erased tenant");
    assert_eq!(snapshot_files(), before, "no tenant was backed up");
}

#[test]
fn plain_backup_skips_an_erased_tenant() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    let ids = tenants_backed_up(&lc, &["acme", "beta", "gamma"], 1);
    env.ok(&["erase", "acme", "--reason", "GDPR art. 17", "--yes"]);
    let forty = days_ago(40).to_string();
    env.ok(&["contract", "end", "gamma", "--effective", &forty]);
    let key = lc.target_dir("local").join("tenants/acme/key");
    let count = |tenant: &str| {
        snapshots_on(env, "local")
            .values()
            .filter(|s| str_field(s, "tenant") == tenant)
            .count()
    };

    let out = env.run(&["backup"]);
    assert_exit(&out, 0, "plain backup");
    assert!(!key.exists(), "the erased tenant got no new key");
    assert_eq!(count("acme"), 0, "{}", describe(&out));
    assert_eq!(count("gamma"), 1, "the ended tenant is not backed up");
    assert_eq!(count("beta"), 2, "beta is");
    assert!(
        stderr(&out).contains("skipped: tenant acme"),
        "{}",
        describe(&out)
    );

    // Named and confirmed: the ended tenant is backed up; the erased one
    // only after a reinstatement, since its key is gone.
    let out = env.run(&["backup", "--tenant", "gamma", "--include-ended"]);
    assert_exit(&out, 2, "--include-ended without --yes");
    env.ok(&["backup", "--tenant", "gamma", "--include-ended", "--yes"]);
    assert_eq!(count("gamma"), 2);
    let out = env.run(&["backup", "--tenant", "acme", "--include-ended", "--yes"]);
    assert_exit(&out, 1, "backup of an erased tenant");
    assert!(stderr(&out).contains("reinstate"), "{}", describe(&out));
    assert!(!key.exists(), "no new key without a reinstatement");
    env.ok(&["contract", "reinstate", "acme"]);
    let again = lc.backup("acme", None)["www"].clone();
    assert!(key.exists());
    env.ok(&["lifecycle", "apply"]);
    assert!(
        on_both(env, &again),
        "a reinstated tenant's new backup is not erased"
    );
    assert!(on_both(env, &ids["beta"]));
}

#[test]
fn an_erasure_dated_in_the_past_covers_every_snapshot() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    let ids = tenants_backed_up(&lc, &["acme"], 0);
    // Within the clock tolerance, ahead of the request's receipt.
    let ahead = (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(3)).to_string();
    fs::write(lc.tenant_dir("acme").join("more.txt"), b"more").unwrap();
    let later = lc.backup("acme", Some(&ahead))["www"].clone();
    let month_ago =
        (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 30)).to_string();
    let erasure = json!({"id": "crm-erase-1", "type": "erasure_requested", "tenant": "acme",
        "reason": "GDPR art. 17", "time": month_ago});
    lc.env
        .drop_in_inbox("001-erase.json", &serde_json::to_vec(&erasure).unwrap());
    let items = inbox_process(env);
    assert_eq!(str_field(&items[0], "outcome"), "accepted", "{items:?}");
    let out = env.run(&["lifecycle", "apply"]);
    assert_exit(&out, 0, "lifecycle apply");
    for id in [&ids["acme"], &later] {
        assert!(on_neither(env, id), "{id} is erased\n{}", describe(&out));
    }
    for t in TARGETS {
        assert!(!lc.target_dir(t).join("tenants/acme/key").exists(), "{t}");
    }
}

#[test]
fn a_backup_dated_in_the_future_is_refused() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    let ids = tenants_backed_up(&lc, &["acme"], 0);
    let tomorrow = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let out = env.run(&["backup", "--tenant", "acme", "--time", &tomorrow]);
    let line = assert_error(&out, 2, "backup --time tomorrow", &["future"]);
    assert!(!line.contains('\n'), "{line}");
    assert_eq!(
        ids_on(env, "local"),
        BTreeSet::from([ids["acme"].clone()]),
        "no snapshot was written"
    );
}

#[test]
fn erase_says_what_it_checked_per_target() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    tenants_backed_up(&lc, &["acme"], 1);
    let out = env.ok(&["erase", "acme", "--reason", "GDPR art. 17", "--yes"]);
    let text = stdout(&out);
    for claim in [
        &text,
        &stdout(&env.ok(&["audit", "export", "--tenant", "acme"])),
    ] {
        assert!(
            !claim.contains("unreadable"),
            "no claim beyond what was checked:\n{claim}"
        );
        assert!(
            claim.contains("local") && claim.contains("offsite"),
            "{claim}"
        );
        assert!(
            claim.contains("not checked") || claim.contains("did not check"),
            "{claim}"
        );
    }
    env.ok(&["contract", "reinstate", "acme"]);
    lc.backup("acme", None);
    let export = stdout(&env.ok(&["audit", "export", "--tenant", "acme"]));
    assert!(export.contains("backed up again"), "{export}");
}

#[test]
fn two_holds_are_released_separately() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    let ids = tenants_backed_up(&lc, &["acme"], 7);
    let court = hold_set(env, "acme", "court order");
    let tax = hold_set(env, "acme", "tax audit");
    let (held, text) = held_line(env, "acme");
    assert!(
        held.contains("court order") && held.contains("tax audit"),
        "{text}"
    );
    let records = audit_records(env).len();

    let out = env.run(&["hold", "release", "acme"]);
    assert_exit(&out, 1, "release without naming one of two holds");
    assert!(
        stderr(&out).contains(&court) && stderr(&out).contains(&tax),
        "{}",
        describe(&out)
    );
    let out = env.ok(&["hold", "release", "acme", "--hold", &court]);
    assert!(
        stdout(&out).contains(&format!("hold {court} is lifted")),
        "{}",
        describe(&out)
    );
    env.ok(&["lifecycle", "apply"]);
    assert!(on_both(env, &ids["acme"]), "the tax audit still holds it");
    let (held, text) = held_line(env, "acme");
    assert!(
        held.contains("tax audit") && !held.contains("court order"),
        "{text}"
    );
    env.ok(&["hold", "release", "acme", "--hold", &tax]);
    env.ok(&["lifecycle", "apply"]);
    assert!(on_neither(env, &ids["acme"]), "no hold left: deleted");

    let records_now = audit_records(env).len();
    assert!(records_now > records);
    let out = env.run(&["hold", "release", "acme"]);
    assert_exit(&out, 1, "release of a tenant with no hold");
    assert!(stderr(&out).contains("no legal hold"), "{}", describe(&out));
    assert_eq!(audit_records(env).len(), records_now, "no audit record");
}

/// Overwrites a stored object with bytes that open with no key.
fn damage(path: &Path) {
    assert!(
        path.exists(),
        "{} exists before it is damaged",
        path.display()
    );
    fs::write(path, b"damaged").unwrap();
}

#[test]
fn one_unreadable_snapshot_does_not_stop_the_other_tenants() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    let mut rng = Rng::new(0x9);
    for t in ["acme", "beta", "gamma"] {
        write_file(&lc.tenant_dir(t).join("index.php"), &rng.text(8_000));
    }
    env.init();
    // acme: two expired snapshots, one of which becomes unreadable; beta
    // expired; gamma recent.
    let acme_bad = lc.backup("acme", Some(&months_ago(8)))["www"].clone();
    let acme_good = lc.backup("acme", Some(&months_ago(7)))["www"].clone();
    let beta = lc.backup("beta", Some(&months_ago(7)))["www"].clone();
    let gamma = lc.backup("gamma", Some(&months_ago(1)))["www"].clone();
    let bad_object = format!("tenants/acme/snapshots/{acme_bad}");
    for t in TARGETS {
        damage(&lc.target_dir(t).join(&bad_object));
    }

    let out = env.run(&["snapshots", "--json"]);
    assert_exit(&out, 1, "snapshots with one unreadable snapshot");
    let rows = parse_json(&out);
    let listed: BTreeSet<&str> = rows
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| str_field(r, "id"))
        .collect();
    for id in [&acme_good, &beta, &gamma] {
        assert!(
            listed.contains(id.as_str()),
            "{id} listed\n{}",
            describe(&out)
        );
    }
    assert!(!listed.contains(acme_bad.as_str()), "{}", describe(&out));
    assert!(
        stderr(&out).contains(&bad_object),
        "snapshots names the bad object\n{}",
        describe(&out)
    );

    let out = env.run(&["status", "--json"]);
    assert_exit(&out, 1, "status with one unreadable snapshot");
    let status = parse_json(&out);
    let tenants: BTreeSet<&str> = array_field(&status, "tenants")
        .iter()
        .map(|t| str_field(t, "tenant"))
        .collect();
    assert!(
        ["acme", "beta", "gamma"]
            .iter()
            .all(|t| tenants.contains(t)),
        "status lists every tenant\n{}",
        describe(&out)
    );
    assert!(
        stdout(&out).contains(&bad_object),
        "status names the bad object\n{}",
        describe(&out)
    );

    let out = env.run(&["lifecycle", "apply", "--json"]);
    assert_exit(&out, 1, "apply with one unreadable snapshot");
    assert!(
        stdout(&out).contains(&bad_object),
        "apply names the bad object\n{}",
        describe(&out)
    );
    // `snapshots` exits 1 while the bad object is there: look at the files.
    let on = |t: &str, tenant: &str, id: &str| {
        lc.target_dir(t)
            .join(format!("tenants/{tenant}/snapshots/{id}"))
            .exists()
    };
    for t in TARGETS {
        assert!(
            !on(t, "beta", &beta),
            "beta deleted on time from {t}\n{}",
            describe(&out)
        );
        assert!(
            !on(t, "acme", &acme_good),
            "acme's readable expired snapshot deleted from {t}\n{}",
            describe(&out)
        );
        assert!(on(t, "gamma", &gamma), "gamma kept on {t}");
    }
    for t in TARGETS {
        assert!(
            lc.target_dir(t).join(&bad_object).exists(),
            "no deletion decided on a snapshot gallra cannot read ({t})"
        );
    }
    let deleted: Vec<String> = records_of(&audit_records(env), "delete", "acme")
        .iter()
        .flat_map(|r| array_field(r, "snapshots").clone())
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!(
        deleted.contains(&acme_good),
        "acme's deletion is audited although its prune waits: {deleted:?}"
    );
}

#[test]
fn an_unreadable_event_object_does_not_hide_the_other_tenants() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    let ids = tenants_backed_up(&lc, &["acme", "beta"], 1);
    let hold = hold_set(env, "acme", "court order");
    let bad_object = format!("lifecycle/events/{hold}");
    for t in TARGETS {
        damage(&lc.target_dir(t).join(&bad_object));
    }

    let out = env.run(&["snapshots", "--json"]);
    assert_exit(&out, 1, "snapshots with an unreadable event");
    let listed: BTreeSet<String> = parse_json(&out)
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| str_field(r, "id").to_string())
        .collect();
    assert!(
        ids.values().all(|id| listed.contains(id.as_str())),
        "every tenant's snapshots listed\n{}",
        describe(&out)
    );
    assert!(stderr(&out).contains(&bad_object), "{}", describe(&out));

    let out = env.run(&["status", "--json"]);
    assert_exit(&out, 1, "status with an unreadable event");
    let status = parse_json(&out);
    let tenants: BTreeSet<&str> = array_field(&status, "tenants")
        .iter()
        .map(|t| str_field(t, "tenant"))
        .collect();
    assert!(
        tenants.contains("acme") && tenants.contains("beta"),
        "{status}"
    );
    assert!(stdout(&out).contains(&bad_object), "{}", describe(&out));
}

#[test]
fn a_truncated_audit_tail_is_found_by_verify() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    tenants_backed_up(&lc, &["acme", "beta"], 1);
    hold_set(env, "acme", "court order");
    hold_set(env, "beta", "tax audit");
    assert_audit_verifies(env, "before the tail is removed");
    let records = audit_records(env);
    let last = u64_field(records.last().unwrap(), "seq");
    assert!(last >= 3, "{records:?}");

    // The last two records go from the local file and from both targets.
    let file = env.path("state/audit.jsonl");
    let file = if file.exists() {
        file
    } else {
        files_under(env.tempdir().path())
            .into_iter()
            .find(|f| file_name(f) == "audit.jsonl")
            .expect("the local audit file")
    };
    let text = fs::read_to_string(&file).unwrap();
    let kept: Vec<&str> = text.lines().take(text.lines().count() - 2).collect();
    fs::write(&file, kept.join("\n") + "\n").unwrap();
    for t in TARGETS {
        let mut objects: Vec<PathBuf> = files_under(&lc.target_dir(t).join("audit"));
        objects.sort();
        for o in &objects[objects.len() - 2..] {
            fs::remove_file(o).unwrap();
        }
    }

    let out = env.run(&["audit", "verify"]);
    assert_exit(&out, 1, "audit verify after the tail was removed");
    let text = stdout(&out);
    assert!(
        text.contains("truncated tail")
            && text.contains(&format!("records seq {} to {last} are removed", last - 1)),
        "verify names the removed tail\n{}",
        describe(&out)
    );
    for place in ["audit.jsonl", "target local", "target offsite"] {
        assert!(
            text.lines()
                .any(|l| l.contains("truncated tail") && l.contains(place)),
            "the truncation is found in {place}\n{}",
            describe(&out)
        );
    }
}

#[test]
fn a_repository_without_audit_heads_verifies_and_says_so() {
    let lc = Lc::new("16 MiB", None);
    let env = &lc.env;
    tenants_backed_up(&lc, &["acme"], 1);
    for f in files_under(env.tempdir().path()) {
        if file_name(&f) == "audit.head" || f.to_string_lossy().contains("/audit-heads/") {
            fs::remove_file(f).unwrap();
        }
    }
    let out = env.run(&["audit", "verify"]);
    assert_exit(&out, 0, "audit verify of a chain written before heads");
    assert!(
        stdout(&out).contains("no head recorded yet"),
        "{}",
        describe(&out)
    );
}
