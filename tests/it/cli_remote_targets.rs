//! The engine against real object-store servers started by
//! tests/servers/start.sh from .ci/run: S3 (SeaweedFS) and Azure Blob
//! (Azurite). Under CI the servers must be there; a developer's plain
//! `cargo test` skips with a printed reason.

use crate::common::remote::{Remote, unique_prefix};
use crate::common::*;
use std::fs;

fn config(env: &Env, remote: &Remote, prefix: &str, options: &str, source: &str) -> String {
    format!(
        "[agent]\nhost = \"testhost\"\nstate_dir = {state}\n\n[key]\nfile = {key}\n\n\
         [[target]]\nname = \"offsite\"\nurl = {url}\noptions = {{ {options} }}\n\n{source}",
        state = toml_str(s(&env.state)),
        key = toml_str(s(&env.key)),
        url = toml_str(&format!("{}/{prefix}", remote.url_base)),
    )
}

/// init, two backups, snapshots, restore --verify, check --read-data, a
/// wrong secret and a misspelled option, all against the server.
fn round_trip(remote: Remote) {
    let env = Env::new();
    let src = env.path("src/acme");
    let mut rng = Rng::new(42);
    write_file(&src.join("index.html"), &rng.text(50_000));
    write_file(&src.join("uploads/photo.jpg"), &rng.bytes(3 << 20));
    write_file(&src.join("empty.txt"), b"");
    std::os::unix::fs::symlink("index.html", src.join("home.html")).unwrap();
    let prefix = unique_prefix("test");
    let source = tenant_paths_source("www", "site", "acme", &[s(&src)]);
    let good = remote.options(&remote.secret);
    fs::write(&env.config, config(&env, &remote, &prefix, &good, &source)).unwrap();

    env.init();
    let id = backup_snapshot_id(&env.backup(&[]), "acme", "www");
    let again = env.backup(&[]);
    assert!(u64_field(&again, "bytes_added") < 64 << 10, "{again}");
    assert_eq!(env.snapshots().len(), 2);
    let to = env.path("restore");
    env.restore_verified(&id, &to);
    compare_trees(&src, &restored_path(&to, &src), &[]);
    let check = env.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");

    // A wrong secret: one line naming the target, never a secret.
    let wrong = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==";
    let bad = env.path("bad.toml");
    fs::write(
        &bad,
        config(&env, &remote, &prefix, &remote.options(wrong), &source),
    )
    .unwrap();
    let out = env.run_with(&bad, &["snapshots"]);
    let line = assert_error(&out, 1, "snapshots with a wrong secret", &["offsite"]);
    assert!(
        !line.contains(wrong) && !stderr(&out).contains(&remote.secret),
        "{line}"
    );

    // A misspelled option: exit 2, naming the target and the key.
    let typo = env.path("typo.toml");
    let options = format!("{good}, endpont = \"http://127.0.0.1:1\"");
    fs::write(&typo, config(&env, &remote, &prefix, &options, &source)).unwrap();
    let out = env.run_with(&typo, &["snapshots"]);
    assert_error(&out, 2, "a misspelled option", &["offsite", "endpont"]);
}

#[test]
fn s3_seaweedfs_round_trip() {
    if let Some(remote) = Remote::s3() {
        round_trip(remote);
    }
}

#[test]
fn azure_azurite_round_trip() {
    if let Some(remote) = Remote::azure() {
        round_trip(remote);
    }
}
