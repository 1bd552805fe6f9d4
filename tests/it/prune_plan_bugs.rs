//! Regressions of the prune plan, each named after the bug it pins, driven
//! through the command line on two `file://` targets (primary `local`,
//! secondary `offsite`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use jiff::{Span, Zoned};
use serde_json::Value;

/// The instant `months` months ago, RFC 3339, for `backup --time`: seven
/// is past the built-in six months' keep, five is within it.
fn months_ago(months: i64) -> String {
    Zoned::now()
        .checked_sub(Span::new().months(months))
        .unwrap()
        .timestamp()
        .to_string()
}

/// The packs and index objects of tenant acme on a target, with their bytes,
/// by path relative to the target's folder.
fn packs_and_index(target: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    ["packs", "index"]
        .iter()
        .flat_map(|kind| tenant_objects(target, "acme", kind))
        .map(|f| {
            let bytes = fs::read(&f).unwrap();
            (f.strip_prefix(target).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

/// What an apply that did not finish everywhere leaves in the state folder,
/// so that the next `lifecycle apply` prunes acme again with nothing due.
fn mark_prune_pending(env: &Env) {
    let dir = env.state.join("prune-pending");
    fs::create_dir_all(&dir).unwrap();
    chmod(&dir, 0o700);
    fs::write(dir.join("acme"), b"").unwrap();
}

/// `lifecycle apply --json`, which must succeed with no failure.
fn apply_cleanly(env: &Env, context: &str) -> Value {
    let out = env.run(&["lifecycle", "apply", "--json"]);
    let report = parse_json(&out);
    assert_exit(&out, 0, &format!("lifecycle apply ({context})"));
    assert!(
        array_field(&report, "failures").is_empty(),
        "{context}: {report}"
    );
    report
}

/// The bug: when the primary's index object on a secondary named a pack the
/// secondary lacked, a live blob of that pack was counted as indexed even
/// where the secondary held it in a pack of its own, so the secondary's
/// prune wrote its own index without it, and its next prune refused
/// ("names data blob ... that no index holds") until the pack came.
#[test]
fn a_secondary_missing_a_pack_of_the_primarys_index_keeps_its_own_copy_indexed() {
    let env = Env::new();
    let offsite = env.path("offsite");
    let src = env.path("src/acme");
    let mut rng = Rng::new(0x0b1);
    let kept_file = rng.bytes(2_000);
    write_file(&src.join("keep.bin"), &kept_file);
    write_file(&src.join("gone.bin"), &rng.bytes(200_000));
    env.set_extra_targets(&file_target("offsite", &offsite, ""));
    env.write_config(
        "16 MiB",
        &tenant_paths_source("www", "site", "acme", &[s(&src)]),
    );
    env.init();
    env.backup(&["--time", &months_ago(7)]);
    fs::remove_file(src.join("gone.bin")).unwrap();
    let kept = backup_snapshot_id(&env.backup(&["--time", &months_ago(5)]), "acme", "www");
    let shipped = packs_and_index(&offsite);

    // The old snapshot expires: the primary repacks keep.bin, alone live in
    // its pack, into a new pack, which ship brings offsite before its prune.
    apply_cleanly(&env, "the old snapshot expires");
    let before: Vec<PathBuf> = pack_files(&env.repo);
    let repacked: Vec<&PathBuf> = before
        .iter()
        .filter(|p| !shipped.contains_key(p.strip_prefix(&env.repo).unwrap()))
        .collect();
    assert_eq!(repacked.len(), 1, "one new pack on the primary: {before:?}");
    let repacked_rel = repacked[0].strip_prefix(&env.repo).unwrap().to_path_buf();
    let repacked_bytes = fs::read(repacked[0]).unwrap();
    assert!(offsite.join(&repacked_rel).exists(), "shipped offsite");

    // Then offsite loses the new pack, and holds its old pack (with
    // keep.bin) and the index objects naming it again: its own now, as the
    // primary deleted them. The primary's copy of the new pack is damaged,
    // so ship refuses to bring it back.
    fs::remove_file(offsite.join(&repacked_rel)).unwrap();
    for (rel, bytes) in &shipped {
        if !offsite.join(rel).exists() {
            write_file(&offsite.join(rel), bytes);
        }
    }
    let mut damaged = repacked_bytes.clone();
    damaged[0] ^= 0x40;
    fs::write(env.repo.join(&repacked_rel), &damaged).unwrap();

    // A prune left pending starts a prune of both targets (a backup to make
    // a snapshot due would write trees anew, as atimes change, and so a new
    // primary index): the ship before offsite's fails, and offsite prunes
    // regardless.
    mark_prune_pending(&env);
    apply_cleanly(&env, "offsite lacks the primary's new pack");

    // What check says of offsite is the truth: that pack is missing.
    let out = env.run(&["check", "--read-data", "--json", "--target", "offsite"]);
    let report = parse_json(&out);
    let missing = s(&repacked_rel).to_string();
    let errors = array_field(&report, "errors");
    assert!(!errors.is_empty(), "{report}");
    for e in errors {
        assert!(
            e.to_string().contains(file_name(&repacked_rel)),
            "only the missing pack {missing} is damage: {report}"
        );
    }

    // Offsite's own index still names keep.bin in offsite's own pack, so its
    // next prune finds every live blob (the bug made it refuse here).
    mark_prune_pending(&env);
    apply_cleanly(&env, "offsite's next prune");

    // Offsite loses its own copy too: keep.bin is held nowhere there, and
    // its prune refuses, naming the pack it lacks, rather than prune on.
    let own_copy: Vec<PathBuf> = pack_files(&offsite)
        .into_iter()
        .filter(|p| !env.repo.join(p.strip_prefix(&offsite).unwrap()).exists())
        .collect();
    assert_eq!(own_copy.len(), 1, "offsite's own pack: {own_copy:?}");
    fs::remove_file(&own_copy[0]).unwrap();
    mark_prune_pending(&env);
    let out = env.run(&["lifecycle", "apply", "--json"]);
    let report = parse_json(&out);
    assert_exit(
        &out,
        1,
        "lifecycle apply with keep.bin held nowhere offsite",
    );
    let failures = array_field(&report, "failures");
    assert_eq!(failures.len(), 1, "{report}");
    assert_eq!(str_field(&failures[0], "target"), "offsite", "{report}");
    let error = str_field(&failures[0], "error");
    assert!(
        error.starts_with("prune not done: ")
            && error.contains(&missing)
            && error.contains("which this target lacks"),
        "{report}"
    );

    // Once the primary's pack is whole again, ship brings it, offsite's
    // next prune drops the place in the pack it lost, and offsite restores
    // the kept snapshot byte for byte.
    fs::write(env.repo.join(&repacked_rel), &repacked_bytes).unwrap();
    env.ok(&["ship"]);
    apply_cleanly(&env, "offsite holds the primary's new pack again");
    let out = env.run(&["check", "--read-data", "--json", "--target", "offsite"]);
    let report = parse_json(&out);
    assert!(array_field(&report, "errors").is_empty(), "{report}");
    let to = env.path("restored");
    env.ok(&[
        "restore",
        &kept,
        "--to",
        s(&to),
        "--verify",
        "--target",
        "offsite",
    ]);
    assert_eq!(
        fs::read(restored_path(&to, &src.join("keep.bin"))).unwrap(),
        kept_file
    );
    assert!(!restored_path(&to, &src.join("gone.bin")).exists());
}
