//! Issue 17's proof: with a key service (moto's AWS KMS API, started by
//! tests/servers/start.sh), an erased tenant stays unreadable from every
//! copy that survives its erasure, while every other tenant keeps restoring
//! from the live targets and, with the live tenant keys, from the copies.
//!
//! Two kinds of surviving copy: every old version of every object in a
//! versioned S3 bucket (moto's, read back with boto3, which speaks the
//! version API gallra's store does not), and a plain file copy of the local
//! target taken before the erasure (also after a contract end plus a month).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::remote::{Remote, server_env, unique_prefix};
use crate::common::*;

const TENANTS: [&str; 3] = ["a", "b", "c"];

/// moto's endpoint, which serves its KMS API beside S3.
pub(crate) fn kms_endpoint() -> Option<String> {
    server_env("moto", &["GALLRA_TEST_MOTO_ENDPOINT"]).map(|v| v[0].clone())
}

/// The `[key_service]` table on moto, with a 0600 credentials file. Rotations
/// wait one second after the last, so that a test need not wait a day.
pub(crate) fn key_service_table(env: &Env, endpoint: &str) -> String {
    let creds = env.path("kms.credentials");
    write_file(
        &creds,
        b"AWS_ACCESS_KEY_ID=gallratest\nAWS_SECRET_ACCESS_KEY=gallratestsecret\n",
    );
    chmod(&creds, 0o600);
    format!(
        "\n[key_service]\nkind = \"aws-kms\"\nregion = \"us-east-1\"\nendpoint = {}\ncredentials_file = {}\nrotate_after = \"1s\"\n",
        toml_str(endpoint),
        toml_str(s(&creds))
    )
}

/// Three tenants' files under `src/<tenant>`, backed up by one source, and
/// a config with the key service; init, back up, ship. Returns each
/// tenant's snapshot id.
fn three_tenants_shipped(env: &Env, endpoint: &str) -> BTreeMap<&'static str, String> {
    three_tenants_shipped_with(env, Some(endpoint))
}

/// As `three_tenants_shipped`, with a key service only if `endpoint` is given.
fn three_tenants_shipped_with(env: &Env, endpoint: Option<&str>) -> BTreeMap<&'static str, String> {
    let mut rng = Rng::new(17);
    for t in TENANTS {
        write_file(
            &env.path(&format!("src/{t}/site/index.html")),
            &rng.text(3000),
        );
        write_file(
            &env.path(&format!("src/{t}/site/photo.jpg")),
            &rng.bytes(150_000),
        );
        write_file(&env.path(&format!("src/{t}/mail/inbox")), &rng.text(20_000));
    }
    let pattern = env.path("src/{tenant}");
    env.write_config("16 MiB", &paths_source("www", "site", &[s(&pattern)], &[]));
    if let Some(endpoint) = endpoint {
        add_key_service(env, endpoint);
    }
    env.init();
    let backup = env.backup(&[]);
    env.ok(&["ship"]);
    TENANTS
        .iter()
        .map(|t| (*t, backup_snapshot_id(&backup, t, "www")))
        .collect()
}

/// An environment whose secondary `offsite` is the `file://` folder
/// `offsite` in it.
fn env_with_offsite() -> Env {
    let env = Env::new();
    env.set_extra_targets(&file_target("offsite", &env.path("offsite"), ""));
    env
}

/// Adds the `[key_service]` table to the environment's config.
fn add_key_service(env: &Env, endpoint: &str) {
    let mut text = fs::read_to_string(&env.config).unwrap();
    text.push_str(&key_service_table(env, endpoint));
    fs::write(&env.config, text).unwrap();
}

/// The format version byte of a tenant's key object in a repository folder.
fn key_version(repo: &Path, tenant: &str) -> u8 {
    fs::read(repo.join(format!("tenants/{tenant}/key"))).unwrap()[4]
}

/// Restores `id` from the target the config `config` names (`target`:
/// `--target`, or the primary) and checks every file against `src/<tenant>`.
fn restores_byte_for_byte(env: &Env, config: &Path, tenant: &str, id: &str, target: Option<&str>) {
    static RESTORES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RESTORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let to = env.path(&format!(
        "restored/{n}-{tenant}-{}-{}",
        target.unwrap_or("primary"),
        config.file_stem().unwrap().to_str().unwrap()
    ));
    let mut args = vec!["restore", id, "--to", s(&to), "--verify"];
    if let Some(t) = target {
        args.extend(["--target", t]);
    }
    let out = env.run_with(config, &args);
    assert_success(&out, &format!("restore {tenant} from {target:?}"));
    let src = env.path(&format!("src/{tenant}"));
    let files = files_under(&src);
    assert_eq!(files.len(), 3, "{files:?}");
    for f in files {
        let back = restored_path(&to, &f);
        assert_eq!(
            fs::read(&back).unwrap_or_default(),
            fs::read(&f).unwrap(),
            "{} restored byte for byte from {target:?}",
            f.display()
        );
    }
}

/// A config whose one target is the `file://` folder `dir` (a copy of a
/// target), with the environment's key file and key service.
fn copy_config(env: &Env, dir: &Path, name: &str, endpoint: &str) -> PathBuf {
    let path = env.path(&format!("{name}.toml"));
    let text = format!(
        "{head}[[target]]\nname = \"copy\"\nurl = {url}\nprimary = true\n\n{sources}{service}",
        head = config_head(&env.path(&format!("state-{name}")), &env.key, "16 MiB"),
        url = toml_str(&format!("file://{}", s(dir))),
        sources = paths_source("www", "site", &[s(&env.path("src/{tenant}"))], &[]),
        service = key_service_table(env, endpoint),
    );
    fs::write(&path, text).unwrap();
    path
}

/// What a command on tenant `b`'s copy says: it fails, and why.
fn b_does_not_open(env: &Env, config: &Path, id: &str, what: &str) {
    let to = env.path("restored/b-must-not");
    let out = env.run_with(config, &["restore", id, "--to", s(&to)]);
    assert!(
        !out.status.success(),
        "{what}: tenant b restored: {}",
        describe(&out)
    );
    assert!(
        !to.exists() || files_under(&to).is_empty(),
        "{what}: nothing of tenant b may be written"
    );
    let text = stderr(&out);
    assert!(
        text.contains("key epoch")
            && (text.contains("pending deletion") || text.contains("not in the repository")),
        "{what}: the refusal names the destroyed key epoch: {text}"
    );
}

/// The live tenant keys and key epochs of `live` (a repository folder),
/// written into the copy `dir`: what the disaster-recovery procedure does
/// to make a copy from before a rotation readable for the tenants kept.
fn refresh_keys(live: &Path, dir: &Path) {
    let epochs = dir.join("key-epochs");
    fs::create_dir_all(&epochs).unwrap();
    for e in fs::read_dir(live.join("key-epochs")).unwrap() {
        let e = e.unwrap().path();
        fs::copy(&e, epochs.join(e.file_name().unwrap())).unwrap();
    }
    for t in ["a", "c"] {
        fs::copy(
            live.join(format!("tenants/{t}/key")),
            dir.join(format!("tenants/{t}/key")),
        )
        .unwrap();
    }
}

/// The ids of the key epochs in a repository folder.
fn epochs_in(repo: &Path) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(repo.join("key-epochs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Erases tenant b and lets the lifecycle rotate (its epoch is a second
/// old by then); returns the epoch the copies were wrapped by.
fn erase_b_and_rotate(env: &Env) -> String {
    let before = epochs_in(&env.repo);
    assert_eq!(before.len(), 1, "init made one key epoch: {before:?}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.ok(&["erase", "b", "--reason", "customer request", "--yes"]);
    let after = epochs_in(&env.repo);
    assert_eq!(
        after.len(),
        1,
        "the rotation retired the old epoch: {after:?}"
    );
    assert_ne!(after, before, "a new epoch wraps the kept tenants");
    let epochs = env.json(&["key", "epochs"]);
    for e in epochs.as_array().unwrap() {
        assert_eq!(str_field(e, "state"), "enabled", "{e}");
        assert_eq!(str_field(e, "epoch"), after[0], "{e}");
    }
    let records = env.json(&["audit", "list"]).to_string();
    assert!(
        records.contains("key-rotated")
            && records.contains("of b wrapped by a key epoch open no more"),
        "the audit trail names the rotation and whom it shredded: {records}"
    );
    env.ok(&["audit", "verify"]);
    let export = stdout(&env.ok(&["audit", "export", "--tenant", "b"]));
    assert!(
        export.contains("a key rotation destroyed, in the key service, the key epoch that wrapped the tenant's key")
            && export.contains(&format!("its key epoch {}", &before[0][..8]))
            && !export.contains("still opens with the repository's master key"),
        "the export says when b's surviving copies stopped opening: {export}"
    );
    let status = env.json(&["status"]);
    assert_eq!(
        status["key_epochs"]["current"],
        Value::from(&after[0][..8]),
        "status names the epoch in use: {status}"
    );
    assert_eq!(status["key_epochs"]["rotation"]["due"], "no", "{status}");
    before[0].clone()
}

/// Every version of every object under `prefix` in moto's versioned
/// bucket, saved under `out/<n>/<key>`: (key, file, last modified, latest).
fn every_version(bucket: &str, prefix: &str, out: &Path) -> Vec<(String, PathBuf, f64, bool)> {
    let v = server_env(
        "moto",
        &["GALLRA_TEST_MOTO_PYTHON", "GALLRA_TEST_MOTO_ENDPOINT"],
    )
    .expect("moto is up");
    const SCRIPT: &str = r#"
import sys, os, json, boto3
endpoint, bucket, prefix, out = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="gallratest", aws_secret_access_key="gallratestsecret")
found = []
for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix + "/"):
    for v in page.get("Versions", []):
        key = v["Key"][len(prefix) + 1:]
        path = os.path.join(out, str(len(found)), key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        body = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
        open(path, "wb").write(body)
        found.append({"key": key, "file": path, "modified": v["LastModified"].timestamp(),
                      "latest": v["IsLatest"]})
json.dump(found, sys.stdout)
"#;
    let found = crate::common::remote::boto3(&v[0], SCRIPT, &[&v[1], bucket, prefix, s(out)]);
    found
        .as_array()
        .expect("boto3 prints an array")
        .iter()
        .map(|f| {
            (
                str_field(f, "key").to_string(),
                PathBuf::from(str_field(f, "file")),
                f["modified"].as_f64().unwrap(),
                f["latest"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn an_erased_tenant_stays_unreadable_in_every_old_version_of_a_versioned_bucket() {
    let (Some(endpoint), Some(remote)) = (
        kms_endpoint(),
        Remote::moto("GALLRA_TEST_MOTO_VERSIONED_BUCKET"),
    ) else {
        return;
    };
    let bucket = std::env::var("GALLRA_TEST_MOTO_VERSIONED_BUCKET").unwrap();
    let env = Env::new();
    let prefix = unique_prefix("erasure");
    env.set_extra_targets(&remote.target_table("offsite", &prefix, ""));
    let ids = three_tenants_shipped(&env, &endpoint);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let erased_at = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    let old_epoch = erase_b_and_rotate(&env);

    // The bucket kept the old versions: b's key among them.
    let versions = every_version(&bucket, &prefix, &env.path("versions"));
    let b_keys: Vec<&PathBuf> = versions
        .iter()
        .filter(|(k, ..)| k == "tenants/b/key")
        .map(|(_, f, ..)| f)
        .collect();
    assert!(
        !b_keys.is_empty(),
        "the versioned bucket kept b's key: {versions:?}"
    );
    assert!(
        versions
            .iter()
            .all(|(k, _, _, latest)| k != "tenants/b/key" || !latest),
        "b's key is no longer current"
    );

    // The bucket as it was just before the erasure, rebuilt from the
    // versions: for each object, its newest version written before then.
    let mut newest: BTreeMap<&str, (&PathBuf, f64)> = BTreeMap::new();
    for (key, file, modified, _) in &versions {
        if *modified < erased_at && newest.get(key.as_str()).is_none_or(|(_, m)| *m < *modified) {
            newest.insert(key, (file, *modified));
        }
    }
    let copy = env.path("copy-of-bucket");
    for (key, (file, _)) in &newest {
        let to = copy.join(key);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(file, to).unwrap();
    }
    assert!(
        copy.join("tenants/b/key").exists(),
        "the copy holds b's old key"
    );
    let config = copy_config(&env, &copy, "bucket-copy", &endpoint);
    b_does_not_open(&env, &config, &ids["b"], "the bucket as it was");
    // Every version of b's key ever stored, in turn.
    for (n, file) in b_keys.iter().enumerate() {
        fs::copy(file, copy.join("tenants/b/key")).unwrap();
        b_does_not_open(&env, &config, &ids["b"], &format!("version {n} of b's key"));
        let bytes = fs::read(file).unwrap();
        let wrap = gallra::format::tenant_key::wrapped_by(&bytes, "b's key").unwrap();
        assert_eq!(
            wrap,
            gallra::format::tenant_key::Wrap::Epoch(
                hex::decode(&old_epoch).unwrap().try_into().unwrap()
            ),
            "b's key was only ever wrapped by the epoch the rotation destroyed"
        );
    }
    nothing_gallra_holds_opens(&env, &config, &copy, &b_keys);

    kept_tenants_restore(&env, &config, &copy, &ids);
}

/// The kept tenants a and c restore byte for byte from both live targets,
/// and from the copy (of config `config`, in folder `copy`) once the live
/// tenant keys are written into it; b still does not open there.
fn kept_tenants_restore(
    env: &Env,
    config: &Path,
    copy: &Path,
    ids: &BTreeMap<&'static str, String>,
) {
    for t in ["a", "c"] {
        restores_byte_for_byte(env, &env.config, t, &ids[t], None);
        restores_byte_for_byte(env, &env.config, t, &ids[t], Some("offsite"));
    }
    refresh_keys(&env.repo, copy);
    for t in ["a", "c"] {
        restores_byte_for_byte(env, config, t, &ids[t], None);
    }
    b_does_not_open(env, config, &ids["b"], "the copy with the live keys");
}

/// With the live epoch's key (which the copy now has) and the kept tenants'
/// root keys, in the library: none opens any saved version of b's key.
fn nothing_gallra_holds_opens(env: &Env, config: &Path, copy: &Path, b_keys: &[&PathBuf]) {
    let saved_b = fs::read(copy.join("tenants/b/key")).unwrap();
    refresh_keys(&env.repo, copy);
    let config = gallra::config::Config::load(config).unwrap();
    let repo = gallra::repo::Repository::open_target(config.primary(), &config.key).unwrap();
    let live = repo.current_epoch().unwrap().expect("the live epoch");
    let live_key = repo.epoch_key(&live.id).unwrap();
    let mut keys = vec![live_key];
    for t in ["a", "c"] {
        let bytes = fs::read(copy.join(format!("tenants/{t}/key"))).unwrap();
        let root = repo.open_tenant_key_body(t, &bytes).unwrap().key;
        keys.push(std::sync::Arc::new(gallra::crypto::SecretKey::from_bytes(
            root,
        )));
    }
    for file in b_keys {
        let bytes = fs::read(file).unwrap();
        for k in &keys {
            assert!(
                gallra::format::tenant_key::open_under_epoch(&bytes, k, &repo.repo_id, "b", "b")
                    .is_err(),
                "a key gallra holds opened b's old key"
            );
        }
        assert!(repo.open_tenant_key_body("b", &bytes).is_err());
    }
    fs::write(copy.join("tenants/b/key"), saved_b).unwrap();
}

#[test]
fn an_erased_tenant_stays_unreadable_in_a_file_copy_of_the_local_target() {
    let Some(endpoint) = kms_endpoint() else {
        return;
    };
    let env = env_with_offsite();
    let ids = three_tenants_shipped(&env, &endpoint);
    let copy = env.path("copy-of-local");
    copy_tree(&env.repo, &copy);
    erase_b_and_rotate(&env);
    let config = copy_config(&env, &copy, "local-copy", &endpoint);
    b_does_not_open(&env, &config, &ids["b"], "the file copy");
    kept_tenants_restore(&env, &config, &copy, &ids);
}

#[test]
fn a_tenant_deleted_a_month_after_its_contract_stays_unreadable_in_a_copy() {
    let Some(endpoint) = kms_endpoint() else {
        return;
    };
    let env = env_with_offsite();
    let ids = three_tenants_shipped(&env, &endpoint);
    let copy = env.path("copy-of-local");
    copy_tree(&env.repo, &copy);
    let ended = (jiff::Zoned::now().date() - jiff::Span::new().days(40)).to_string();
    env.ok(&["contract", "end", "b", "--effective", &ended]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = epochs_in(&env.repo);
    let applied = env.json(&["lifecycle", "apply"]);
    assert!(
        applied.to_string().contains("\"key_destroyed\":true"),
        "b's key goes a month after its contract: {applied}"
    );
    assert_eq!(
        applied["rotation"]["shredded"],
        serde_json::json!(["b"]),
        "the apply rotated and shredded b: {applied}"
    );
    assert_ne!(epochs_in(&env.repo), before);
    let config = copy_config(&env, &copy, "local-copy", &endpoint);
    b_does_not_open(
        &env,
        &config,
        &ids["b"],
        "the copy after the contract's end",
    );
    kept_tenants_restore(&env, &config, &copy, &ids);
    env.ok(&["audit", "verify"]);
}

fn copy_tree(from: &Path, to: &Path) {
    let out = std::process::Command::new("cp")
        .args(["-a", s(from), s(to)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cp -a: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_repository_made_without_a_key_service_moves_to_epochs_and_says_what_stays_readable() {
    let Some(endpoint) = kms_endpoint() else {
        return;
    };
    let env = env_with_offsite();
    let offsite = env.path("offsite");
    let ids = three_tenants_shipped_with(&env, None);
    for t in TENANTS {
        assert_eq!(key_version(&env.repo, t), 1, "wrapped by the master key");
    }
    let copy = env.path("copy-before-the-key-service");
    copy_tree(&env.repo, &copy);

    add_key_service(&env, &endpoint);
    let out = stdout(&env.ok(&["key", "rotate"]));
    for t in TENANTS {
        assert!(
            out.contains(&format!(
                "tenant {t}: its key was wrapped by the master key until now; copies of it made before this rotation still open with the key file"
            )),
            "the first rotation names every tenant whose old copies stay readable: {out}"
        );
        assert_eq!(key_version(&env.repo, t), 2, "{t} on local: {out}");
        assert_eq!(key_version(&offsite, t), 2, "{t} on offsite: {out}");
    }
    for t in TENANTS {
        restores_byte_for_byte(&env, &env.config, t, &ids[t], None);
        restores_byte_for_byte(&env, &env.config, t, &ids[t], Some("offsite"));
    }

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let erased = stdout(&env.ok(&["erase", "b", "--reason", "customer request", "--yes"]));
    assert!(
        erased.contains("tenant b: every surviving copy of its key wrapped by a key epoch opens no more; copies made before the repository had key epochs were wrapped by the master key and still open with the key file"),
        "erase does not claim more than holds: {erased}"
    );
    // The truth about the copy from before the key service: b's key there
    // is wrapped by the master key, which lives on. gallra said so above.
    let before = copy_config(&env, &copy, "v1-copy", &endpoint);
    let listed = env.run_with(&before, &["snapshots", "--tenant", "b", "--json"]);
    assert_success(&listed, "a copy from before the key service opens b");
    let erased = stdout(&env.ok(&["audit", "list"]));
    assert!(erased.contains("key-rotated"), "{erased}");
}

#[test]
fn a_rotation_stopped_by_a_busy_tenant_keeps_every_epoch_valid_and_finishes_next_time() {
    let Some(endpoint) = kms_endpoint() else {
        return;
    };
    let env = env_with_offsite();
    let offsite = env.path("offsite");
    let ids = three_tenants_shipped(&env, &endpoint);
    let first = epochs_in(&env.repo);

    // Another host's backup of tenant a holds its lock on the offsite.
    let lock = busy(&offsite, "a");
    let out = env.run(&["key", "rotate", "--force"]);
    assert_exit(&out, 1, "a rotation that could not rewrap tenant a");
    let text = stdout(&out);
    assert!(
        text.contains("is not complete") && text.contains("tenant a"),
        "it says what is left: {text}"
    );
    let both = epochs_in(&env.repo);
    assert_eq!(
        both.len(),
        2,
        "the old epoch stays until every key is rewrapped"
    );
    assert!(both.contains(&first[0]));
    for t in TENANTS {
        restores_byte_for_byte(&env, &env.config, t, &ids[t], Some("offsite"));
    }

    drop(lock);
    let out = stdout(&env.ok(&["key", "rotate"]));
    let after = epochs_in(&env.repo);
    assert_eq!(after.len(), 1, "{out}");
    assert!(
        both.contains(&after[0]) && after != first,
        "the unfinished epoch is finished, not replaced: {out}"
    );
    assert_eq!(epochs_in(&offsite), after);
    for t in TENANTS {
        restores_byte_for_byte(&env, &env.config, t, &ids[t], None);
        restores_byte_for_byte(&env, &env.config, t, &ids[t], Some("offsite"));
    }
    env.ok(&["audit", "verify"]);
}

/// A live lock of tenant `tenant` on the `file://` target `dir`, held by
/// another host until dropped.
fn busy(dir: &Path, tenant: &str) -> gallra::lock::TenantLock {
    let store = open_store(&gallra::store::TargetSettings::new(
        "offsite",
        &format!("file://{}", s(dir)),
    ));
    gallra::lock::acquire(
        &store,
        tenant,
        gallra::lock::LockKind::Shared,
        &gallra::lock::Holder {
            host: "web02".into(),
            command: "backup".into(),
        },
    )
    .unwrap()
}

#[test]
fn regression_an_erasure_during_an_unfinished_rotation_did_not_hold() {
    let Some(endpoint) = kms_endpoint() else {
        return;
    };
    let env = env_with_offsite();
    let offsite = env.path("offsite");
    let ids = three_tenants_shipped(&env, &endpoint);
    let lock = busy(&offsite, "a");
    assert_exit(
        &env.run(&["key", "rotate", "--force"]),
        1,
        "a rotation a busy tenant stops",
    );
    drop(lock);
    // b's key in this copy is wrapped by the unfinished rotation's epoch.
    let copy = env.path("copy-of-local");
    copy_tree(&env.repo, &copy);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.ok(&["erase", "b", "--reason", "customer request", "--yes"]);
    assert_eq!(
        epochs_in(&env.repo).len(),
        1,
        "the rotation after the erasure completed"
    );
    let config = copy_config(&env, &copy, "local-copy", &endpoint);
    b_does_not_open(
        &env,
        &config,
        &ids["b"],
        "a copy made during the unfinished rotation",
    );
    for t in ["a", "c"] {
        restores_byte_for_byte(&env, &env.config, t, &ids[t], Some("offsite"));
    }
}

#[test]
fn regression_a_kept_tenant_whose_snapshots_could_not_be_listed_lost_its_key() {
    let Some(endpoint) = kms_endpoint() else {
        return;
    };
    let env = env_with_offsite();
    let offsite = env.path("offsite");
    let mut rng = Rng::new(17);
    for t in TENANTS {
        write_file(&env.path(&format!("src/{t}/books/ledger")), &rng.text(3000));
    }
    let mut sources = paths_source("books", "bookkeeping", &[s(&env.path("src/{tenant}"))], &[]);
    sources.push_str("[retention.category.bookkeeping]\nkeep = \"7 years\"\nafter_contract = \"7 years\"\nlegal_basis = \"legal obligation: Bokföringslagen\"\nlegal_obligation = true\n\n");
    env.write_config("16 MiB", &sources);
    add_key_service(&env, &endpoint);
    env.init();
    let backup = env.backup(&[]);
    env.ok(&["ship"]);
    let c = backup_snapshot_id(&backup, "c", "books");
    let forty = (jiff::Zoned::now().date() - jiff::Span::new().days(40)).to_string();
    env.ok(&["contract", "end", "c", "--effective", &forty]);
    // c's snapshots cannot be listed on either target for a moment.
    for repo in [&env.repo, &offsite] {
        std::os::unix::fs::symlink(".", repo.join("tenants/c/snapshots/loop")).unwrap();
    }
    env.run(&["key", "rotate", "--force"]);
    for repo in [&env.repo, &offsite] {
        fs::remove_file(repo.join("tenants/c/snapshots/loop")).unwrap();
    }
    let to = env.path("restored/c");
    let out = env.run(&["restore", &c, "--to", s(&to)]);
    assert_success(&out, "c's books, kept seven years by law, still restore");
}

#[test]
fn regression_an_epoch_whose_service_key_was_deleted_blocked_every_rotation() {
    let Some(endpoint) = kms_endpoint() else {
        return;
    };
    let env = env_with_offsite();
    let ids = three_tenants_shipped(&env, &endpoint);
    // An older epoch whose service key the service no longer knows, as
    // after its waiting period (a copy's old epoch objects put back).
    let config = gallra::config::Config::load(&env.config).unwrap();
    let repo = gallra::repo::Repository::open_target(config.primary(), &config.key).unwrap();
    let mut gone = repo.current_epoch().unwrap().unwrap();
    gone.id = [9; 16];
    gone.body.created -= 100;
    gone.body.key_id = "11111111-2222-3333-4444-555555555555".into();
    repo.write_epoch(&gone).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.ok(&["erase", "b", "--reason", "customer request", "--yes"]);
    assert_eq!(
        epochs_in(&env.repo).len(),
        1,
        "the gone epoch is retired too"
    );
    for t in ["a", "c"] {
        restores_byte_for_byte(&env, &env.config, t, &ids[t], None);
    }
}

#[test]
fn regression_an_init_whose_key_service_failed_left_tenant_keys_to_the_master_key() {
    let Some(endpoint) = kms_endpoint() else {
        return;
    };
    let env = Env::new();
    let src = env.path("src/acme");
    write_file(&src.join("index.html"), b"<h1>acme</h1>\n");
    env.write_config(
        "16 MiB",
        &tenant_paths_source("www", "site", "acme", &[s(&src)]),
    );
    let plain = fs::read_to_string(&env.config).unwrap();
    add_key_service(&env, "http://127.0.0.1:9");
    let out = env.run(&["init"]);
    assert_exit(&out, 1, "init whose key service does not answer");
    assert!(
        stderr(&out).contains("no key epoch made"),
        "{}",
        describe(&out)
    );
    fs::write(&env.config, plain).unwrap();
    add_key_service(&env, &endpoint);
    env.backup(&[]);
    assert_eq!(
        key_version(&env.repo, "acme"),
        2,
        "wrapped by an epoch the backup made"
    );
    assert_eq!(epochs_in(&env.repo).len(), 1);
}

#[test]
fn disaster_recovery_with_a_key_service_needs_only_the_config_key_file_and_credentials() {
    let Some(endpoint) = kms_endpoint() else {
        return;
    };
    let env = env_with_offsite();
    let ids = three_tenants_shipped(&env, &endpoint);
    erase_b_and_rotate(&env);
    // The server is gone: its local target and state folder with it.
    fs::remove_dir_all(&env.repo).unwrap();
    fs::remove_dir_all(&env.state).unwrap();
    let listed = env.json(&["snapshots", "--target", "offsite"]);
    let tenants: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| str_field(s, "tenant"))
        .collect();
    assert_eq!(tenants, ["a", "c"], "{listed}");
    for t in ["a", "c"] {
        restores_byte_for_byte(&env, &env.config, t, &ids[t], Some("offsite"));
    }
    env.ok(&["repair-target", "local"]);
    assert_eq!(epochs_in(&env.repo), epochs_in(&env.path("offsite")));
    for t in ["a", "c"] {
        restores_byte_for_byte(&env, &env.config, t, &ids[t], None);
    }
    env.ok(&["check", "--read-data"]);
}
