//! Tenant names beyond plain ASCII (issue 15, item 3; item 26): `kundå`,
//! `åkeri.se`, `a?b` and `c#d` beside a plain tenant, through the real
//! binary on `file://`, SeaweedFS S3 and Azurite targets, and through the
//! library on `memory://` ones. Every command that finds a tenant by
//! listing the store (snapshots, restore, check, ship, erase, lifecycle)
//! must find these under exactly their names, and a folder that cannot be a
//! tenant is refused before anything is written.

use crate::common::remote::{Remote, unique_prefix};
use crate::common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

const PLAIN: &str = "plain";
/// Names that object_store percent-encodes in a path component.
const UNUSUAL: [&str; 4] = ["kundå", "åkeri.se", "a?b", "c#d"];

fn all_tenants() -> Vec<&'static str> {
    let mut v = vec![PLAIN];
    v.extend(UNUSUAL);
    v
}

fn build_tenants(src: &Path) {
    let mut rng = Rng::new(15);
    for (i, t) in all_tenants().iter().enumerate() {
        let dir = src.join(t);
        write_file(&dir.join("index.html"), &rng.text(20_000 + i));
        write_file(&dir.join("uploads/logo.bin"), &rng.bytes(300_000 + i));
    }
}

/// `snapshots --json [--target T]`: tenant name -> snapshot ids.
fn snapshots_by_tenant(env: &Env, target: Option<&str>) -> BTreeMap<String, BTreeSet<String>> {
    let mut args = vec!["snapshots"];
    if let Some(t) = target {
        args.extend(["--target", t]);
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    match env.json(&args) {
        Value::Array(a) => {
            for s in &a {
                out.entry(str_field(s, "tenant").to_string())
                    .or_default()
                    .insert(str_field(s, "id").to_string());
            }
        }
        other => panic!("snapshots --json must print an array: {other}"),
    }
    out
}

fn names(m: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    m.keys().cloned().collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The whole life of five tenants on a primary (whose `[[target]]` table
/// is `primary`) with a `file://` offsite: two backups (one dated in 2020),
/// snapshots, restore, check, ship, erase of `kundå`, and a lifecycle run
/// that deletes the 2020 snapshots of the others.
/// `store`, when given, is the library's view of the primary, to see its
/// folder names as the server lists them.
fn names_round_trip(env: &Env, primary: &str, store: Option<gallra::store::Store>) {
    let src = env.path("src");
    build_tenants(&src);
    let offsite = env.path("offsite");
    let source = paths_source("www", "site", &[&format!("{}/{{tenant}}", s(&src))], &[]);
    fs::write(
        &env.config,
        format!(
            "[agent]\nhost = \"testhost\"\nstate_dir = {state}\n\n[key]\nfile = {key}\n\n\
             {primary}\n{offsite}\n{source}",
            state = toml_str(s(&env.state)),
            key = toml_str(s(&env.key)),
            offsite = file_target("offsite", &offsite, ""),
        ),
    )
    .unwrap();
    env.init();
    let everyone = set(&all_tenants());

    // The first backup, dated in 2020, ships to the offsite.
    let first = env.backup(&["--time", "2020-01-15T10:00:00Z"]);
    assert!(array_field(&first, "failed").is_empty(), "{first}");
    assert!(array_field(&first, "ship_failed").is_empty(), "{first}");
    let old: BTreeMap<&str, String> = all_tenants()
        .into_iter()
        .map(|t| (t, backup_snapshot_id(&first, t, "www")))
        .collect();
    // The next backup of the same tenants succeeds, and dedups.
    let second = env.backup(&[]);
    assert!(array_field(&second, "failed").is_empty(), "{second}");
    assert!(array_field(&second, "ship_failed").is_empty(), "{second}");
    let new: BTreeMap<&str, String> = all_tenants()
        .into_iter()
        .map(|t| (t, backup_snapshot_id(&second, t, "www")))
        .collect();
    // Only tree blobs are new (the folders' times changed): the data dedups
    // against the first backup, which was found again under each name.
    assert!(u64_field(&second, "bytes_added") < 16 << 10, "{second}");

    for target in [None, Some("offsite")] {
        let listed = snapshots_by_tenant(env, target);
        assert_eq!(names(&listed), everyone, "{target:?}");
        for t in all_tenants() {
            assert_eq!(listed[t], set(&[&old[t], &new[t]]), "{t} on {target:?}");
        }
        let mut args = vec!["check", "--read-data"];
        if let Some(t) = target {
            args.extend(["--target", t]);
        }
        let check = env.json(&args);
        assert_eq!(check["ok"], true, "{target:?}: {check}");
    }
    // The offsite is a file:// folder: its tenant folders are the
    // documented components (FORMAT.md section 12), byte for byte.
    let on_disk: BTreeSet<String> = fs::read_dir(offsite.join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let components = set(&["plain", "kund%C3%A5", "%C3%A5keri.se", "a%3Fb", "c%23d"]);
    assert_eq!(on_disk, components);
    if let Some(store) = &store {
        let listed: BTreeSet<String> = store.list_dirs("tenants").unwrap().into_iter().collect();
        assert_eq!(listed, components, "as the primary's server lists them");
    }

    for t in all_tenants() {
        let to = env.path(&format!("restore-{}", new[t]));
        env.restore_verified(&new[t], &to);
        let original = src.join(t);
        compare_trees(&original, &restored_path(&to, &original), &[]);
    }

    // A ship with nothing to do names every tenant and copies nothing.
    let shipped = env.json(&["ship"]);
    let report = &shipped.as_array().expect("an array")[0];
    let shipped_names: BTreeSet<String> = array_field(report, "tenants")
        .iter()
        .map(|t| str_field(t, "tenant").to_string())
        .collect();
    assert_eq!(shipped_names, everyone, "{shipped}");
    assert_eq!(u64_field(report, "copied"), 0, "{shipped}");

    // Erasure finds kundå on both targets and leaves nothing of it.
    env.ok(&["erase", "kundå", "--reason", "GDPR art. 17", "--yes"]);
    for target in [None, Some("offsite")] {
        let listed = snapshots_by_tenant(env, target);
        let mut rest = everyone.clone();
        rest.remove("kundå");
        assert_eq!(names(&listed), rest, "{target:?}");
    }
    assert!(!offsite.join("tenants/kund%C3%A5").exists());

    // The lifecycle deletes the 2020 snapshots (six months by default)
    // of the others on both targets, and keeps today's.
    let report = env.json(&["lifecycle", "apply"]);
    assert!(array_field(&report, "failures").is_empty(), "{report}");
    for target in [None, Some("offsite")] {
        let listed = snapshots_by_tenant(env, target);
        for t in all_tenants().into_iter().filter(|t| *t != "kundå") {
            assert_eq!(listed[t], set(&[&new[t]]), "{t} on {target:?}");
        }
    }
    let check = env.json(&["check"]);
    assert_eq!(check["ok"], true, "{check}");
}

#[test]
fn a_tenant_named_kunda_ring_round_trips_on_file_targets() {
    let env = Env::new();
    let primary = file_target("local", &env.repo, "primary = true");
    names_round_trip(&env, &primary, None);
    // The primary's folders too are the documented components.
    assert!(env.repo.join("tenants/a%3Fb/key").is_file());
    assert!(env.repo.join("tenants/plain/key").is_file());
}

#[test]
fn a_tenant_named_kunda_ring_round_trips_on_s3_seaweedfs() {
    let Some(remote) = Remote::s3() else { return };
    let env = Env::new();
    let prefix = unique_prefix("names");
    let primary = remote.target_table("local", &prefix, "primary = true");
    names_round_trip(&env, &primary, Some(remote.store(&prefix)));
}

#[test]
fn a_tenant_named_kunda_ring_round_trips_on_azurite() {
    let Some(remote) = Remote::azure() else {
        return;
    };
    let env = Env::new();
    let prefix = unique_prefix("names");
    let primary = remote.target_table("local", &prefix, "primary = true");
    names_round_trip(&env, &primary, Some(remote.store(&prefix)));
}

/// `kundå` written in NFD (a, then U+030A COMBINING RING ABOVE), as a Mac
/// copies folder names, is the tenant `kundå` (NFC), not a second one; its
/// files are restored under the folder's own bytes.
#[test]
fn a_folder_named_kunda_ring_in_nfd_is_the_same_tenant_as_in_nfc() {
    let env = Env::new();
    let src = env.path("src");
    let nfd = "kunda\u{30A}";
    write_file(&src.join("kundå/index.html"), b"nfc\n");
    write_file(&src.join(nfd).join("other.html"), b"nfd\n");
    env.write_config(
        "16 MiB",
        &paths_source("www", "site", &[&format!("{}/{{tenant}}", s(&src))], &[]),
    );
    env.init();
    let backup = env.backup(&[]);
    assert!(array_field(&backup, "failed").is_empty(), "{backup}");
    let id = backup_snapshot_id(&backup, "kundå", "www");
    assert_eq!(array_field(&backup, "snapshots").len(), 1, "{backup}");
    let listed = snapshots_by_tenant(&env, None);
    assert_eq!(names(&listed), set(&["kundå"]));
    let to = env.path("restore");
    env.restore_verified(&id, &to);
    for dir in ["kundå", nfd] {
        compare_trees(&src.join(dir), &restored_path(&to, &src.join(dir)), &[]);
    }
}

/// A folder whose name cannot be a tenant fails the backup with its reason
/// and leaves nothing on the store, while the others are backed up; a
/// file system's `lost+found` and hidden folders are not tenants at all.
#[test]
fn a_folder_that_cannot_be_a_tenant_is_refused_before_anything_is_written() {
    let env = Env::new();
    let src = env.path("src");
    for t in [
        "plain",
        "kundå",
        "bad*name",
        "spoof\u{202E}lmth.exe",
        "lost+found",
        ".well-known",
    ] {
        write_file(&src.join(t).join("f.txt"), t.as_bytes());
    }
    env.write_config(
        "16 MiB",
        &paths_source("www", "site", &[&format!("{}/{{tenant}}", s(&src))], &[]),
    );
    env.init();
    let out = env.run(&["backup", "--json"]);
    assert_exit(&out, 1, "backup with folders that cannot be tenants");
    let report = parse_json(&out);
    let snapped: BTreeSet<String> = array_field(&report, "snapshots")
        .iter()
        .map(|s| str_field(s, "tenant").to_string())
        .collect();
    assert_eq!(snapped, set(&["plain", "kundå"]), "{report}");
    let failed: BTreeMap<String, String> = array_field(&report, "failed")
        .iter()
        .map(|f| {
            (
                str_field(f, "tenant").to_string(),
                str_field(f, "error").to_string(),
            )
        })
        .collect();
    assert_eq!(
        failed.keys().cloned().collect::<BTreeSet<_>>(),
        set(&["bad*name", "spoof\u{202E}lmth.exe"]),
        "lost+found and .well-known are skipped, not failed: {report}"
    );
    assert!(failed["bad*name"].contains("'*'"), "{failed:?}");
    assert!(
        failed["spoof\u{202E}lmth.exe"].contains("U+202E"),
        "{failed:?}"
    );
    for e in failed.values() {
        assert!(e.contains("tenant name"), "{e}");
    }
    let on_disk: BTreeSet<String> = fs::read_dir(env.repo.join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(on_disk, set(&["plain", "kund%C3%A5"]));
}

/// A tenant a ship is asked for and cannot ship (here: none of its backups
/// is on the primary) is that tenant's failure; the others are shipped.
#[test]
fn one_tenant_that_cannot_be_shipped_does_not_stop_the_others() {
    let env = Env::new();
    let src = env.path("src");
    build_tenants(&src);
    let offsite = env.path("offsite");
    env.set_extra_targets(&file_target("offsite", &offsite, ""));
    env.write_config(
        "16 MiB",
        &paths_source("www", "site", &[&format!("{}/{{tenant}}", s(&src))], &[]),
    );
    env.init();
    let backup = env.backup(&["--no-ship"]);
    assert!(array_field(&backup, "failed").is_empty(), "{backup}");
    let out = env.run(&[
        "ship", "--tenant", "ghost", "--tenant", "kundå", "--tenant", PLAIN, "--json",
    ]);
    assert_exit(&out, 1, "ship naming a tenant with no backups");
    assert!(stderr(&out).contains("ghost"), "{}", describe(&out));
    let listed = snapshots_by_tenant(&env, Some("offsite"));
    assert_eq!(names(&listed), set(&["kundå", PLAIN]));
}
