//! Damage to a pack is found and named; what is intact still restores;
//! leftovers that nothing references are information, not damage.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::Value;

const FILES: usize = 8;
const FILE_SIZE: usize = 1024 * 1024 + 512 * 1024;

struct Setup {
    env: Env,
    dir: PathBuf,
    files: Vec<(PathBuf, Vec<u8>)>,
    id: String,
}

/// One tenant with several 1.5 MiB random files, backed up with 1 MiB packs.
fn setup() -> Setup {
    let env = Env::new();
    let dir = env.path("site/acme");
    let mut files = Vec::new();
    for i in 0..FILES {
        let data = Rng::new(100 + i as u64).bytes(FILE_SIZE);
        let path = dir.join(format!("file-{i}.bin"));
        write_file(&path, &data);
        files.push((path, data));
    }
    env.write_config(
        "1 MiB",
        &tenant_paths_source("www", "site", "acme", &[s(&dir)]),
    );
    env.init();
    let backup = env.backup(&[]);
    let id = backup_snapshot_id(&backup, "acme", "www");
    let packs = pack_files(&env.repo);
    assert!(
        packs.len() >= 4,
        "12 MiB with 1 MiB packs must make several packs, found {packs:?}"
    );
    env.ok(&["check", "--read-data"]);
    Setup {
        env,
        dir,
        files,
        id,
    }
}

/// The largest pack: one that surely holds file data.
fn largest_pack(repo: &Path) -> PathBuf {
    pack_files(repo)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .expect("a pack")
}

/// Whether the command's stdout or stderr mentions `what`.
fn mentions(out: &std::process::Output, what: &str) -> bool {
    stdout(out).contains(what) || stderr(out).contains(what)
}

#[test]
fn a_flipped_byte_is_found_and_named_and_the_rest_still_restores() {
    let Setup {
        env,
        dir,
        files,
        id,
    } = setup();
    let pack = largest_pack(&env.repo);
    let pack_id = file_name(&pack).to_string();
    let mut data = fs::read(&pack).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&pack, &data).unwrap();

    // The structure is intact: every object is where it should be.
    let out = env.run(&["check"]);
    assert_exit(&out, 0, "check (structure only) after a flipped byte");

    let out = env.run(&["check", "--read-data", "--json"]);
    assert_exit(&out, 1, "check --read-data after a flipped byte");
    assert!(
        mentions(&out, &pack_id),
        "check --read-data must name the damaged pack {pack_id}\n{}",
        describe(&out)
    );
    let report = parse_json(&out);
    assert_eq!(report["ok"], Value::Bool(false), "{report}");
    let errors = array_field(&report, "errors");
    assert!(
        errors.iter().any(|e| e.to_string().contains(&pack_id)),
        "check --json `errors` must name the pack {pack_id}: {report}"
    );

    let to = env.path("restored");
    let out = env.run(&["restore", &id, "--to", s(&to), "--verify"]);
    assert_exit(&out, 1, "restore --verify from a damaged pack");
    assert!(
        stderr(&out).contains(&pack_id),
        "restore must name the damaged pack {pack_id}\n{}",
        describe(&out)
    );
    let restored = restored_path(&to, &dir);
    let correct = files
        .iter()
        .filter(|(path, data)| {
            let r = restored.join(path.file_name().unwrap());
            fs::read(r).is_ok_and(|got| &got == data)
        })
        .count();
    assert!(
        correct >= 1,
        "files whose data is in intact packs must still be restored byte-identical"
    );
    assert!(
        correct < files.len(),
        "every file restored intact although a pack holding file data is damaged"
    );
}

#[test]
fn a_deleted_pack_is_found_by_check_and_named() {
    let Setup { env, .. } = setup();
    let pack = largest_pack(&env.repo);
    let pack_id = file_name(&pack).to_string();
    fs::remove_file(&pack).unwrap();

    let out = env.run(&["check"]);
    assert_exit(&out, 1, "check with a missing pack");
    assert!(
        mentions(&out, &pack_id),
        "check must name the missing pack {pack_id}\n{}",
        describe(&out)
    );

    let out = env.run(&["check", "--json"]);
    assert_exit(&out, 1, "check --json with a missing pack");
    let report = parse_json(&out);
    assert_eq!(report["ok"], Value::Bool(false), "{report}");
    assert!(
        array_field(&report, "errors")
            .iter()
            .any(|e| e.to_string().contains(&pack_id)),
        "check --json `errors` must name the missing pack {pack_id}: {report}"
    );
}

#[test]
fn an_unreferenced_pack_is_information_not_damage() {
    let Setup { env, .. } = setup();
    let pack = largest_pack(&env.repo);
    let folder = pack.parent().unwrap();
    let prefix = file_name(folder).to_string();
    let mut rng = Rng::new(7);
    let mut new_name = prefix.clone();
    while new_name.len() < 64 {
        new_name.push_str(&format!("{:016x}", rng.next_u64()));
    }
    new_name.truncate(64);
    assert!(is_hex64(&new_name));
    fs::copy(&pack, folder.join(&new_name)).unwrap();

    let out = env.run(&["check"]);
    assert_exit(&out, 0, "check with an extra unreferenced pack");

    let report = env.json(&["check"]);
    assert_eq!(report["ok"], Value::Bool(true), "{report}");
    assert!(
        array_field(&report, "errors").is_empty(),
        "an unreferenced pack is no error: {report}"
    );
    assert!(
        array_field(&report, "unreferenced")
            .iter()
            .any(|u| u.to_string().contains(&new_name)),
        "check --json `unreferenced` must name {new_name}: {report}"
    );
}
