//! Deduplication within a tenant, and none across tenants.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;

const MIB: u64 = 1024 * 1024;

/// An env with one `{tenant}` source over `<root>/src`, initialised.
fn tenant_env() -> (Env, PathBuf) {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let pattern = format!("{}/{{tenant}}", s(&src));
    env.write_config("16 MiB", &paths_source("www", "site", &[&pattern], &[]));
    env.init();
    (env, src)
}

/// About 20 MiB of mixed data under `dir`: random files, text files, many
/// small files, and one file twice. Returns (total size, size of the copy).
fn mixed_tree(dir: &Path, rng: &mut Rng) -> (u64, u64) {
    let mut total = 0u64;
    for i in 0..6 {
        let len = (MIB + rng.below(2 * MIB)) as usize;
        let data = rng.bytes(len);
        total += data.len() as u64;
        write_file(&dir.join(format!("media/file-{i}.bin")), &data);
    }
    for i in 0..4 {
        let len = (MIB + rng.below(MIB)) as usize;
        let data = rng.text(len);
        total += data.len() as u64;
        write_file(&dir.join(format!("logs/app-{i}.log")), &data);
    }
    for i in 0..200 {
        let len = 1000 + rng.below(9000) as usize;
        let data = if i % 2 == 0 {
            rng.text(len)
        } else {
            rng.bytes(len)
        };
        total += data.len() as u64;
        write_file(&dir.join(format!("small/{}/f{i}.dat", i % 10)), &data);
    }
    let dup = rng.bytes(2 * MIB as usize);
    write_file(&dir.join("dup/one.bin"), &dup);
    write_file(&dir.join("dup/deeper/two.bin"), &dup);
    total += 2 * dup.len() as u64;
    (total, dup.len() as u64)
}

#[test]
fn unchanged_tree_adds_almost_nothing() {
    let (env, src) = tenant_env();
    let (total, dup) = mixed_tree(&src.join("acme"), &mut Rng::new(20));
    assert!(total >= 18 * MIB, "the tree is about 20 MiB ({total})");

    let first = env.backup(&[]);
    let read = u64_field(&first, "bytes_read");
    let added = u64_field(&first, "bytes_added");
    assert!(
        read >= total,
        "first backup must read the whole tree ({total} bytes): {first}"
    );
    assert!(
        added + dup / 2 <= read,
        "a file present twice is stored once, even in one backup: {first}"
    );
    let repo_after_first = dir_size(&env.repo);

    let second = env.backup(&[]);
    let added2 = u64_field(&second, "bytes_added");
    assert!(
        added2 * 100 < read,
        "second backup of an unchanged tree must add < 1% of {read}: {second}"
    );
    let snap = backup_snapshot(&second, "acme", "www");
    assert!(
        u64_field(snap, "bytes_added") * 100 < read,
        "per-snapshot bytes_added of an unchanged tree: {snap}"
    );
    let repo_after_second = dir_size(&env.repo);
    let growth = repo_after_second.saturating_sub(repo_after_first);
    assert!(
        growth < read / 100 + 64 * 1024,
        "repository grew by {growth} bytes ({repo_after_first} -> {repo_after_second}) \
         for an unchanged tree of {read} bytes"
    );
    assert_eq!(env.snapshots().len(), 2);
}

#[test]
fn copy_of_a_large_file_in_another_directory_is_stored_once() {
    let (env, src) = tenant_env();
    let acme = src.join("acme");
    let big = Rng::new(64).bytes(64 * MIB as usize);
    write_file(&acme.join("a/big.bin"), &big);
    write_file(&acme.join("a/readme.txt"), b"a big file\n");
    drop(big);

    env.backup(&[]);
    let before = dir_size(&env.repo);
    assert!(
        before >= 64 * MIB,
        "64 MiB of random data cannot be stored in {before} bytes"
    );

    fs::create_dir_all(acme.join("b/c")).unwrap();
    fs::copy(acme.join("a/big.bin"), acme.join("b/c/copy-of-big.bin")).unwrap();
    let second = env.backup(&[]);
    let after = dir_size(&env.repo);
    let growth = after.saturating_sub(before);
    assert!(
        growth < MIB,
        "a copy of a 64 MiB file grew the repository by {growth} bytes: {second}"
    );
    assert!(
        u64_field(&second, "bytes_added") < MIB,
        "a copy adds no new data: {second}"
    );

    // The copy is really in the new snapshot, at its full size. (Its bytes
    // are compared by the round-trip tests; a 64 MiB dump would only be slow.)
    let id = backup_snapshot_id(&second, "acme", "www");
    let copy = acme.join("b/c/copy-of-big.bin");
    let listed = env.json(&["ls", &id, s(&copy)]);
    let entry = listed
        .as_array()
        .expect("ls --json prints an array")
        .iter()
        .find(|e| e["path"] == s(&copy))
        .unwrap_or_else(|| panic!("ls must list {}: {listed}", copy.display()));
    assert_eq!(u64_field(entry, "size"), 64 * MIB, "{entry}");
}

#[test]
fn the_same_file_in_two_tenants_is_stored_twice() {
    let (env, src) = tenant_env();
    let data = Rng::new(8).bytes(8 * MIB as usize);
    write_file(&src.join("acme/shared.bin"), &data);
    write_file(&src.join("globex/shared.bin"), &data);

    let backup = env.backup(&[]);
    for tenant in ["acme", "globex"] {
        let snap = backup_snapshot(&backup, tenant, "www");
        assert!(
            u64_field(snap, "bytes_added") >= 8 * MIB,
            "{tenant}: dedup never crosses tenants: {snap}"
        );
        let size = dir_size(&env.repo.join("tenants").join(tenant));
        assert!(
            size >= 8 * MIB,
            "tenants/{tenant} holds {size} bytes; each tenant stores its own 8 MiB"
        );
    }
}
