//! The engine against a real S3 server (SeaweedFS, started by
//! tests/servers/start.sh from .ci/run). Under CI the server must be there;
//! a developer's plain `cargo test` skips with a printed reason.

mod common;

use common::*;
use std::fs;

struct S3 {
    endpoint: String,
    bucket: String,
    access_key: String,
    secret_key: String,
}

fn s3() -> Option<S3> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    match (
        var("GALLRA_TEST_S3_ENDPOINT"),
        var("GALLRA_TEST_S3_BUCKET"),
        var("GALLRA_TEST_S3_ACCESS_KEY"),
        var("GALLRA_TEST_S3_SECRET_KEY"),
    ) {
        (Some(endpoint), Some(bucket), Some(access_key), Some(secret_key)) => Some(S3 {
            endpoint,
            bucket,
            access_key,
            secret_key,
        }),
        _ if std::env::var_os("CI").is_some() => {
            panic!("GALLRA_TEST_S3_* is not set: .ci/run must start tests/servers/start.sh")
        }
        _ => {
            eprintln!("skipped: no S3 server (run tests/servers/start.sh ENV and source ENV)");
            None
        }
    }
}

fn s3_config(env: &Env, s3: &S3, prefix: &str, secret: &str, extra: &str, source: &str) -> String {
    format!(
        "[agent]\nhost = \"testhost\"\nstate_dir = {state}\n\n[key]\nfile = {key}\n\n\
         [[target]]\nname = \"offsite\"\nurl = {url}\n\
         options = {{ endpoint = {endpoint}, region = \"us-east-1\", allow_http = \"true\", \
         aws_access_key_id = {ak}, aws_secret_access_key = {sk}{extra} }}\n\n{source}",
        state = toml_str(s(&env.state)),
        key = toml_str(s(&env.key)),
        url = toml_str(&format!("s3://{}/{prefix}", s3.bucket)),
        endpoint = toml_str(&s3.endpoint),
        ak = toml_str(&s3.access_key),
        sk = toml_str(secret),
    )
}

#[test]
fn backup_restore_and_check_on_s3() {
    let Some(s3) = s3() else { return };
    let env = Env::new();
    let src = env.path("src/acme");
    let mut rng = Rng::new(42);
    write_file(&src.join("index.html"), &rng.text(50_000));
    write_file(&src.join("uploads/photo.jpg"), &rng.bytes(3 << 20));
    write_file(&src.join("empty.txt"), b"");
    std::os::unix::fs::symlink("index.html", src.join("home.html")).unwrap();
    let prefix = format!("test-{}", rng.next_u64());
    let source = tenant_paths_source("www", "site", "acme", &[s(&src)]);
    fs::write(
        &env.config,
        s3_config(&env, &s3, &prefix, &s3.secret_key, "", &source),
    )
    .unwrap();

    env.init();
    let id = backup_snapshot_id(&env.backup(&[]), "acme", "www");
    let again = env.backup(&[]);
    assert!(u64_field(&again, "bytes_added") < 64 << 10, "{again}");
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 2);
    let to = env.path("restore");
    env.restore_verified(&id, &to);
    compare_trees(&src, &restored_path(&to, &src), &[]);
    let check = env.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");

    // Wrong secret: one line naming the target, never the secret.
    let bad = env.path("bad.toml");
    fs::write(
        &bad,
        s3_config(&env, &s3, &prefix, "not-the-secret", "", &source),
    )
    .unwrap();
    let out = env.run_with(&bad, &["snapshots"]);
    let line = assert_error(&out, 1, "snapshots with a wrong secret", &["offsite"]);
    assert!(!line.contains("not-the-secret") && !stderr(&out).contains(&s3.secret_key));

    // A misspelled option: exit 2, naming the target and the key.
    let typo = env.path("typo.toml");
    let extra = ", endpont = \"http://127.0.0.1:1\"";
    fs::write(
        &typo,
        s3_config(&env, &s3, &prefix, &s3.secret_key, extra, &source),
    )
    .unwrap();
    let out = env.run_with(&typo, &["snapshots"]);
    assert_error(&out, 2, "a misspelled option", &["offsite", "endpont"]);
}
