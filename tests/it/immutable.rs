//! Issue 18's proof on a server that enforces it: moto's S3 started with
//! its IAM enforcement on (tests/servers/start.sh), a bucket with Object
//! Lock, and users whose policies are the ones gallra ships in
//! packaging/policies/ (placeholders filled in). A fleet server's config
//! and credentials do every job of the fleet, and cannot destroy what they
//! wrote: neither through gallra (`erase`, a forged contract end and
//! `lifecycle apply`) nor by raw requests (boto3) that delete or overwrite.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::common::remote::{Remote, server_env, unique_prefix};
use crate::common::*;

/// The IAM-enforcing moto: endpoint, bucket, and the fleet-web01 and
/// deletion users' keys.
struct Enforcing {
    endpoint: String,
    bucket: String,
    fleet: (String, String),
    deletion: (String, String),
    python: String,
}

fn enforcing() -> Option<Enforcing> {
    let v = server_env(
        "moto (IAM)",
        &[
            "GALLRA_TEST_MOTO_IAM_ENDPOINT",
            "GALLRA_TEST_MOTO_IAM_BUCKET",
            "GALLRA_TEST_MOTO_IAM_FLEET1_KEY",
            "GALLRA_TEST_MOTO_IAM_FLEET1_SECRET",
            "GALLRA_TEST_MOTO_IAM_DELETION_KEY",
            "GALLRA_TEST_MOTO_IAM_DELETION_SECRET",
            "GALLRA_TEST_MOTO_PYTHON",
        ],
    )?;
    Some(Enforcing {
        endpoint: v[0].clone(),
        bucket: v[1].clone(),
        fleet: (v[2].clone(), v[3].clone()),
        deletion: (v[4].clone(), v[5].clone()),
        python: v[6].clone(),
    })
}

impl Enforcing {
    fn remote(&self, keys: &(String, String)) -> Remote {
        Remote::s3_at(&self.endpoint, &self.bucket, &keys.0, &keys.1)
    }

    /// Runs `script` with boto3 as the user with `keys`: argv is the
    /// endpoint, the bucket, then `args`; it prints JSON.
    fn boto3(&self, keys: &(String, String), script: &str, args: &[&str]) -> Value {
        let argv = [&self.endpoint, &self.bucket, &keys.0, &keys.1].map(String::as_str);
        crate::common::remote::boto3(
            &self.python,
            &format!("{BOTO3_HEAD}{script}"),
            &[&argv[..], args].concat(),
        )
    }
}

const BOTO3_HEAD: &str = r#"
import sys, json, hashlib, boto3, botocore
endpoint, bucket, key_id, secret = sys.argv[1:5]
args = sys.argv[5:]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key_id, aws_secret_access_key=secret,
                  config=botocore.config.Config(retries={"max_attempts": 1}))
def versions(prefix):
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix + "/"):
        out += page.get("Versions", [])
    return out
def refused(call):
    try:
        call()
        return False
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"] in ("AccessDenied", "403")
"#;

/// Every version under `prefix`: key (under the prefix), version id, the
/// SHA-256 of its bytes, whether it is current, and its lock.
const LIST_VERSIONS: &str = r#"
prefix = args[0]
found = []
for v in versions(prefix):
    got = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    found.append({"key": v["Key"][len(prefix) + 1:], "version": v["VersionId"],
                  "sha256": hashlib.sha256(got["Body"].read()).hexdigest(),
                  "latest": v["IsLatest"], "lock_mode": got.get("ObjectLockMode"),
                  "locked_until": str(got.get("ObjectLockRetainUntilDate", ""))})
json.dump(found, sys.stdout)
"#;

/// The attack of a root intruder holding the fleet server's credentials:
/// delete every object, overwrite every object with garbage, delete every
/// version by its id, and shorten every lock. Prints what the store did.
const ATTACK: &str = r#"
prefix = args[0]
originals = versions(prefix)
# The policy lets the server delete its locks (docs/IMMUTABLE.md): those
# are counted apart.
def is_lock(key):
    return "/locks/" in key or "/locks-selftest/" in key
out = {"objects": len(originals), "delete_refused": 0, "delete_done": [],
       "lock_deletes_done": 0, "overwritten": 0, "version_delete_refused": 0,
       "version_delete_done": []}
for v in originals:
    key = v["Key"]
    if refused(lambda: s3.delete_object(Bucket=bucket, Key=key)):
        out["delete_refused"] += 1
    elif is_lock(key):
        out["lock_deletes_done"] += 1
    else:
        out["delete_done"].append(key)
    s3.put_object(Bucket=bucket, Key=key, Body=b"garbage from an intruder")
    out["overwritten"] += 1
for v in originals:
    key, vid = v["Key"], v["VersionId"]
    if refused(lambda: s3.delete_object(Bucket=bucket, Key=key, VersionId=vid)):
        out["version_delete_refused"] += 1
    else:
        out["version_delete_done"].append(key)
json.dump(out, sys.stdout)
"#;

/// A local primary and an offsite on the enforcing moto under
/// `web01/<tag>-<unique>` with the user `keys` and the target lines
/// `more`, and two tenants' sites (an index page and a photo each) under
/// `src/<tenant>`, backed up by one source.
fn one_server(
    moto: &Enforcing,
    keys: &(String, String),
    tag: &str,
    more: &str,
    tenants: [&str; 2],
) -> (Env, String) {
    let env = Env::new();
    let prefix = format!("web01/{}", unique_prefix(tag));
    env.set_extra_targets(&moto.remote(keys).target_table("offsite", &prefix, more));
    let mut rng = Rng::new(18 + tag.len() as u64);
    for t in tenants {
        write_file(&env.path(&format!("src/{t}/index.html")), &rng.text(4000));
        write_file(&env.path(&format!("src/{t}/photo.jpg")), &rng.bytes(60_000));
    }
    let pattern = env.path("src/{tenant}");
    env.write_config("16 MiB", &paths_source("www", "site", &[s(&pattern)], &[]));
    (env, prefix)
}

/// `restore ID --to <a fresh folder> --verify` with `args` (a target, a
/// time), which must succeed and bring back every file of `src/<tenant>`
/// byte for byte.
fn restores_byte_for_byte(env: &Env, tenant: &str, id: &str, args: &[&str], what: &str) {
    static RESTORES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RESTORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let to = env.path(&format!("restored-{n}/{tenant}"));
    let out = env.run(&[&["restore", id, "--to", s(&to), "--verify"][..], args].concat());
    assert_success(&out, what);
    for f in files_under(&env.path(&format!("src/{tenant}"))) {
        assert_eq!(
            std::fs::read(restored_path(&to, &f)).unwrap(),
            std::fs::read(&f).unwrap(),
            "{what}: {}",
            f.display()
        );
    }
}

/// SHA-256 of every object file under the primary's folder, by its path.
fn primary_objects(repo: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    files_under(repo)
        .into_iter()
        .map(|f| {
            let key = f.strip_prefix(repo).unwrap().to_str().unwrap().to_string();
            (
                key,
                hex::encode(sha2::Sha256::digest(std::fs::read(&f).unwrap())),
            )
        })
        .collect()
}

#[test]
fn a_fleet_server_does_every_job_and_cannot_destroy_its_offsite_copies() {
    let Some(moto) = enforcing() else { return };
    let (env, prefix) = one_server(
        &moto,
        &moto.fleet,
        "fleet",
        "lock = \"1 day\"",
        ["a", "café"],
    );
    env.init();
    let backup = env.backup(&[]);
    env.ok(&["ship"]);
    let ids: BTreeMap<&str, String> = ["a", "café"]
        .into_iter()
        .map(|t| (t, backup_snapshot_id(&backup, t, "www")))
        .collect();

    // What protects the offsite is asked of the bucket, and said.
    let status = env.json(&["status"]);
    let offsite = array_field(&status, "targets")
        .iter()
        .find(|t| t["target"] == "offsite")
        .expect("offsite in status")
        .clone();
    let p = &offsite["protection"];
    assert_eq!(p["versioning"], "enabled", "{p}");
    assert_eq!(p["this_server_deletes"], false, "{p}");
    assert_eq!(p["resists_this_server"], true, "{p}");
    assert_eq!(p["lock"]["days"], 1, "{p}");
    let text = stdout(&env.ok(&["status"]));
    assert!(
        text.contains("target offsite protection: versioning and Object Lock on; gallra locks every version it writes for 1 day in compliance mode")
            && text.contains("cannot delete here"),
        "{text}"
    );

    // Every job of the fleet works with credentials that cannot delete.
    env.ok(&["check", "--target", "offsite", "--read-data"]);
    env.ok(&["drill", "--target", "offsite"]);
    for (tenant, id) in &ids {
        let what = format!("restore {tenant} from the offsite");
        restores_byte_for_byte(&env, tenant, id, &["--target", "offsite"], &what);
    }

    // Each version gallra wrote is locked in compliance mode, for a day;
    // the locks themselves are not (every job deletes its own).
    let before = moto.boto3(&moto.fleet, LIST_VERSIONS, &[&prefix]);
    let before = before.as_array().unwrap();
    let primary = primary_objects(&env.path("repo"));
    let mut content = 0;
    for v in before {
        let key = str_field(v, "key");
        if key.contains("/locks/") || key.starts_with("locks-selftest/") {
            // Deleted when done: what is left is an old version, unlocked.
            assert!(v["lock_mode"].is_null() && v["latest"] == false, "{v}");
            continue;
        }
        assert_eq!(v["lock_mode"], "COMPLIANCE", "{v}");
        if let Some(sha) = primary.get(key)
            && key.starts_with("tenants/")
            && !key.ends_with("/key")
        {
            assert_eq!(
                str_field(v, "sha256"),
                sha,
                "{key}: the offsite has the primary's bytes"
            );
            content += 1;
        }
    }
    assert!(
        content >= 6,
        "packs, indexes and snapshots of both tenants: {before:?}"
    );

    // The moment to recover to: before the attack, which starts a second
    // later (the store's times are whole seconds).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before_attack = jiff::Timestamp::now().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // The intruder runs gallra with the server's own config.
    let out = env.run(&["erase", "a", "--reason", "forged", "--yes"]);
    assert!(
        !out.status.success(),
        "an erasure that cannot delete offsite fails: {}",
        describe(&out)
    );
    let said = stderr(&out) + &stdout(&out);
    assert!(
        said.contains("offsite") && said.contains("AccessDenied"),
        "{said}"
    );
    let end = env.run(&["contract", "end", "café", "--effective", "2020-01-31"]);
    assert_success(&end, "the forged contract end is recorded");
    let out = env.run(&["lifecycle", "apply"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let said = stderr(&out) + &stdout(&out);
    assert!(
        said.contains("offsite") && said.contains("AccessDenied"),
        "{said}"
    );

    // Then raw requests with the same credentials.
    let attack = moto.boto3(&moto.fleet, ATTACK, &[&prefix]);
    assert_eq!(array_field(&attack, "delete_done").len(), 0, "{attack}");
    assert_eq!(
        array_field(&attack, "version_delete_done").len(),
        0,
        "{attack}"
    );
    let objects = u64_field(&attack, "objects");
    assert!(objects as usize >= before.len(), "{attack}");
    assert_eq!(u64_field(&attack, "overwritten"), objects, "{attack}");
    assert_eq!(
        u64_field(&attack, "version_delete_refused"),
        objects,
        "{attack}"
    );

    // Every version that was there before is there still, byte for byte.
    let after = moto.boto3(&moto.deletion, LIST_VERSIONS, &[&prefix]);
    let after: BTreeMap<&str, &str> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (str_field(v, "version"), str_field(v, "sha256")))
        .collect();
    for v in before {
        assert_eq!(
            after.get(str_field(v, "version")).copied(),
            Some(str_field(v, "sha256")),
            "version {} of {} survives the attack",
            v["version"],
            v["key"]
        );
    }
    // And the overwrite is noticed: the current versions are garbage.
    let out = env.run(&["check", "--target", "offsite"]);
    assert!(
        !out.status.success(),
        "check sees the garbage: {}",
        describe(&out)
    );

    // The operator's recovery: the offsite as it was before the attack
    // lists every snapshot, and each restores byte for byte.
    let as_of = ["--target", "offsite", "--as-of", before_attack.as_str()];
    // Seven versions a page: the listing walks many pages.
    let out = env
        .cmd_with(
            &env.config,
            &[&["snapshots", "--json"][..], &as_of].concat(),
        )
        .env("GALLRA_TEST_LIST_VERSIONS_PAGE", "7")
        .output()
        .unwrap();
    assert_success(&out, "snapshots as of, seven versions a page");
    let paged = parse_json(&out);
    let listed = env.json(&[&["snapshots"][..], &as_of].concat());
    assert_eq!(paged, listed, "the same past, read a page at a time");
    let mut listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| str_field(s, "id"))
        .collect();
    listed.sort();
    let mut expected: Vec<&str> = ids.values().map(String::as_str).collect();
    expected.sort();
    assert_eq!(listed, expected, "every snapshot there before the attack");
    env.ok(&[&["check", "--read-data"][..], &as_of].concat());
    for (tenant, id) in &ids {
        let what = format!("restore {tenant} as of before the attack");
        restores_byte_for_byte(&env, tenant, id, &as_of, &what);
    }
    // The local target, whose tenant a the forged erasure deleted, is
    // rebuilt from the offsite as it was, and holds everything again.
    std::fs::remove_dir_all(env.path("repo")).unwrap();
    env.ok(&[
        "repair-target",
        "local",
        "--from",
        "offsite",
        "--as-of",
        &before_attack,
        "--verify",
    ]);
    env.ok(&["check", "--read-data"]);
    let mut rebuilt: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| str_field(s, "id").to_string())
        .collect();
    rebuilt.sort();
    assert_eq!(
        rebuilt, expected,
        "the rebuilt local target holds every snapshot"
    );
    for (tenant, id) in &ids {
        let to = env.path(&format!("rebuilt/{tenant}"));
        assert_success(
            &env.restore_verified(id, &to),
            &format!("restore {tenant} from the rebuilt local"),
        );
    }
    // The attacked offsite's current objects are garbage: the server reads
    // nothing there, and deletes nothing anywhere while it cannot read the
    // events kept there (every tenant is held); status fails on it.
    let out = env.run(&["status", "--json"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let status = parse_json(&out);
    assert!(
        array_field(&status, "tenants").iter().all(|t| t["hold"]
            .as_str()
            .is_some_and(|h| h.contains("could not be read"))),
        "{status}"
    );
    // A fresh offsite copy under a new prefix, from the rebuilt local
    // (the attacked prefix stays, locked, as evidence, until its locks end
    // and the deletion role or the bucket rule removes it).
    let fresh = format!("web01/{}", unique_prefix("rebuilt"));
    env.set_extra_targets(&moto.remote(&moto.fleet).target_table(
        "offsite",
        &fresh,
        "lock = \"1 day\"",
    ));
    env.write_config(
        "16 MiB",
        &paths_source("www", "site", &[s(&env.path("src/{tenant}"))], &[]),
    );
    env.ok(&["repair-target", "offsite", "--from", "local", "--verify"]);
    env.ok(&["check", "--target", "offsite", "--read-data"]);
    let status = env.json(&["status"]);
    assert!(
        array_field(&status, "tenants")
            .iter()
            .all(|t| t["hold"].is_null()),
        "the events read again: {status}"
    );
    // Nothing is written through the past, not even by the library.
    let at: jiff::Timestamp = before_attack.parse().unwrap();
    let past = moto.remote(&moto.fleet).store(&prefix).as_of(at).unwrap();
    let e = past
        .put("tenants/a/key", bytes::Bytes::from_static(b"x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing is written"), "{e}");
    assert!(
        past.delete("config")
            .unwrap_err()
            .to_string()
            .contains("nothing is written")
    );
}

/// One fleet server of the lifecycle host test: a local primary and the
/// offsite on the enforcing moto under `<server>/<unique>`, with its own
/// fleet user's keys and `deletions = "lifecycle-host"` (and, from
/// `lock_offsite`, a lock).
struct FleetServer {
    env: Env,
    prefix: String,
    /// Its offsite `[[target]]` table, its `[[source]]` tables, and its
    /// `[key_service]` table.
    offsite: String,
    sources: String,
    key_service: String,
}

impl FleetServer {
    fn new(
        moto: &Enforcing,
        kms: &str,
        server: &str,
        keys: &(String, String),
        tenants: &[&str],
    ) -> FleetServer {
        let env = Env::new();
        let prefix = format!("{server}/{}", unique_prefix("fleet"));
        let offsite =
            moto.remote(keys)
                .target_table("offsite", &prefix, "deletions = \"lifecycle-host\"");
        env.set_extra_targets(&offsite);
        let mut rng = Rng::new(server.len() as u64 + 180);
        for t in tenants {
            write_file(&env.path(&format!("src/{t}/index.html")), &rng.text(3000));
            write_file(&env.path(&format!("src/{t}/photo.jpg")), &rng.bytes(60_000));
        }
        let pattern = env.path("src/{tenant}");
        let sources = paths_source("www", "site", &[s(&pattern)], &[]);
        let key_service = crate::erasure_holds::key_service_table(&env, kms);
        let server = FleetServer {
            env,
            prefix,
            offsite,
            sources,
            key_service,
        };
        server.write_config();
        server
    }

    fn write_config(&self) {
        self.env.write_config("16 MiB", &self.sources);
        let mut text = std::fs::read_to_string(&self.env.config).unwrap();
        text.push_str(&self.key_service);
        std::fs::write(&self.env.config, text).unwrap();
    }

    /// From now on, every version written offsite is locked for a day.
    fn lock_offsite(&self) {
        self.env
            .set_extra_targets(&format!("{}lock = \"1 day\"\n", self.offsite));
        self.write_config();
    }

    /// The objects under `folder` of its offsite repository, as the
    /// deletion role lists them.
    fn offsite_objects(&self, moto: &Enforcing, folder: &str) -> Vec<String> {
        moto.remote(&moto.deletion)
            .store(&self.prefix)
            .list(folder)
            .unwrap()
            .into_iter()
            .map(|o| o.path)
            .collect()
    }

    /// Snapshot ids on `target` by tenant.
    fn ids_on(&self, target: &str) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in self
            .env
            .json(&["snapshots", "--target", target])
            .as_array()
            .unwrap()
        {
            out.entry(str_field(s, "tenant").to_string())
                .or_default()
                .push(str_field(s, "id").to_string());
        }
        for ids in out.values_mut() {
            ids.sort();
        }
        out
    }

    fn offsite_row(&self) -> Value {
        let status = self.env.json(&["status"]);
        array_field(&status, "targets")
            .iter()
            .find(|t| t["target"] == "offsite")
            .expect("offsite in status")
            .clone()
    }
}

/// The lifecycle host's config in `host`: the deletion user's keys on the
/// bucket (locking for a day what it writes), one `[[fleet]]` per server,
/// and the key service.
fn lifecycle_host(
    host: &Env,
    moto: &Enforcing,
    kms: &str,
    fleets: &[(&str, &FleetServer)],
) -> std::path::PathBuf {
    let remote = moto.remote(&moto.deletion);
    let mut text = format!(
        "[agent]\nhost = \"lifecycle01\"\nstate_dir = {state}\n\n{target}\n",
        state = toml_str(s(&host.path("state"))),
        target = remote
            .target_table("offsite", "", "lock = \"1 day\"")
            .replace(
                &format!("{}/\"", remote.url_base),
                &format!("{}\"", remote.url_base)
            ),
    );
    for (name, server) in fleets {
        text += &format!(
            "[[fleet]]\nname = \"{name}\"\nprefix = {}\nkey_file = {}\n\n",
            toml_str(&server.prefix),
            toml_str(s(&server.env.key)),
        );
    }
    text += &crate::erasure_holds::key_service_table(host, kms);
    let path = host.path("lifecycle-host.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Seven months ago, for a backup the six-month rule has let go.
fn seven_months_ago() -> String {
    jiff::Zoned::now()
        .checked_sub(jiff::Span::new().months(7))
        .unwrap()
        .timestamp()
        .to_string()
}

fn days_ago(days: i64) -> String {
    jiff::Zoned::now()
        .date()
        .checked_sub(jiff::Span::new().days(days))
        .unwrap()
        .to_string()
}

#[test]
fn a_lifecycle_host_applies_two_fleet_servers_lifecycles_in_one_bucket() {
    let (Some(moto), Some(kms)) = (enforcing(), crate::erasure_holds::kms_endpoint()) else {
        return;
    };
    let fleet2 = server_env(
        "moto (IAM)",
        &[
            "GALLRA_TEST_MOTO_IAM_FLEET2_KEY",
            "GALLRA_TEST_MOTO_IAM_FLEET2_SECRET",
        ],
    )
    .expect("set with the others");
    let web01 = FleetServer::new(&moto, &kms, "web01", &moto.fleet, &["a", "b"]);
    let web02 = FleetServer::new(
        &moto,
        &kms,
        "web02",
        &(fleet2[0].clone(), fleet2[1].clone()),
        &["c", "d"],
    );
    let old = seven_months_ago();
    let mut kept: BTreeMap<&str, String> = BTreeMap::new();
    for (server, tenants) in [(&web01, ["a", "b"]), (&web02, ["c", "d"])] {
        server.env.init();
        // The old snapshots reached the offsite before it was locked (their
        // retention is due and nothing locks them); today's are locked.
        for t in tenants {
            server.env.backup(&["--tenant", t, "--time", &old]);
        }
        server.lock_offsite();
        for t in tenants {
            let fresh = server.env.backup(&["--tenant", t]);
            kept.insert(t, backup_snapshot_id(&fresh, t, "www"));
        }
        server.env.ok(&["ship"]);
    }
    // Web01's tenant b ended its contract forty days ago; web02's tenant c
    // asks to be erased.
    web01
        .env
        .ok(&["contract", "end", "b", "--effective", &days_ago(40)]);
    let out = web02
        .env
        .run(&["erase", "c", "--reason", "GDPR art. 17", "--yes"]);
    assert_success(
        &out,
        "erase c on web02 (its local copies; offsite is the host's)",
    );
    assert!(
        stdout(&out).contains("left to its lifecycle host"),
        "{}",
        describe(&out)
    );

    // Each fleet server deletes on its local target and leaves the offsite
    // to the lifecycle host, whose lag it exports as overdue there.
    for server in [&web01, &web02] {
        let out = server.env.run(&["lifecycle", "apply"]);
        assert_success(&out, "a fleet server's lifecycle apply");
        let row = server.offsite_row();
        assert_eq!(row["deletions"], "lifecycle-host", "{row}");
        assert!(u64_field(&row, "overdue_deletions") >= 2, "{row}");
        assert_eq!(row["protection"]["this_server_deletes"], false, "{row}");
    }
    assert_eq!(
        web01.ids_on("local"),
        BTreeMap::from([("a".to_string(), vec![kept["a"].clone()])]),
        "web01's local target: a's old snapshot and all of b are gone"
    );
    assert_eq!(web02.ids_on("local").keys().collect::<Vec<_>>(), vec!["d"]);
    assert_eq!(
        web01.ids_on("offsite")["a"].len(),
        2,
        "nothing deleted offsite yet"
    );

    // The lifecycle host: the deletion user's keys, both repositories.
    let host = Env::new();
    let host_config = lifecycle_host(&host, &moto, &kms, &[("web01", &web01), ("web02", &web02)]);
    let remote = moto.remote(&moto.deletion);
    let plan = host.run_with(&host_config, &["lifecycle", "plan"]);
    assert_success(&plan, "the host's plan of both repositories");
    let text = stdout(&plan);
    assert!(
        text.contains("== fleet repository web01") && text.contains("== fleet repository web02"),
        "{text}"
    );
    let out = host.run_with(&host_config, &["lifecycle", "apply"]);
    assert_success(&out, "the host's apply of both repositories");

    // Exactly the expected survivors offsite: each kept tenant's fresh
    // snapshot; nothing of the ended and the erased tenant.
    assert_eq!(
        web01.ids_on("offsite"),
        BTreeMap::from([("a".to_string(), vec![kept["a"].clone()])])
    );
    assert_eq!(
        web02.ids_on("offsite"),
        BTreeMap::from([("d".to_string(), vec![kept["d"].clone()])])
    );
    for (server, gone) in [(&web01, "b"), (&web02, "c")] {
        let left: Vec<gallra::store::Listed> = remote
            .store(&server.prefix)
            .list(&format!("tenants/{gone}"))
            .unwrap()
            .into_iter()
            .filter(|o| !o.path.contains("/locks/"))
            .collect();
        assert!(
            left.is_empty(),
            "{gone}'s key and objects are gone offsite: {left:?}"
        );
    }
    // The fleet servers' next run finds nothing overdue, destroys the gone
    // tenants' keys on their local targets, and rotates the key epoch:
    // the kept tenants' keys are rewrapped offsite too, where the retired
    // epoch's object stays (this server does not delete there).
    for (server, tenant) in [(&web01, "a"), (&web02, "d")] {
        assert_eq!(server.offsite_objects(&moto, "key-epochs").len(), 1);
        let report = server.env.json(&["lifecycle", "apply"]);
        assert_eq!(
            report["rotation"]["retired"].as_array().map(Vec::len),
            Some(1),
            "{report}"
        );
        assert_eq!(u64_field(&server.offsite_row(), "overdue_deletions"), 0);
        assert_eq!(server.offsite_objects(&moto, "key-epochs").len(), 2);
        let what = format!("restore {tenant} from the offsite");
        restores_byte_for_byte(
            &server.env,
            tenant,
            &kept[tenant],
            &["--target", "offsite"],
            &what,
        );
    }
    // The host's next run removes the retired epochs' objects; it never
    // rotates one itself.
    let out = host.run_with(&host_config, &["lifecycle", "apply"]);
    assert_success(&out, "the host's second apply");
    assert!(
        stdout(&out).contains("removed the objects of key epoch(s)"),
        "{}",
        describe(&out)
    );
    for (server, tenant) in [(&web01, "a"), (&web02, "d")] {
        assert_eq!(server.offsite_objects(&moto, "key-epochs").len(), 1);
        let what = format!("restore {tenant} after the rotation");
        restores_byte_for_byte(
            &server.env,
            tenant,
            &kept[tenant],
            &["--target", "offsite"],
            &what,
        );
    }
    let out = host.run_with(
        &host_config,
        &["--fleet", "web01", "key", "rotate", "--force"],
    );
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("never rotates"), "{}", describe(&out));

    // A key slot removed on a fleet server stays offsite, where the host
    // removes it.
    let second = web01.env.path("second.key");
    web01.env.generate_key(&second);
    let slot = web01.env.json(&["key", "add", "--file", s(&second)])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = web01.env.run(&["key", "remove", &slot]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("lifecycle host"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        web01.offsite_row()["key_slots_extra"],
        serde_json::json!([slot.clone()]),
        "status shows the revoked slot still opening the offsite"
    );
    let out = host.run_with(&host_config, &["--fleet", "web01", "key", "remove", &slot]);
    assert_success(&out, "the host removes the revoked slot offsite");
    assert_eq!(
        web01.offsite_row()["key_slots_extra"],
        serde_json::json!([])
    );

    // Every audit chain verifies: each server's own, and the host's in
    // each repository.
    for server in [&web01, &web02] {
        server.env.ok(&["audit", "verify"]);
    }
    for fleet in ["web01", "web02"] {
        let out = host.run_with(&host_config, &["--fleet", fleet, "audit", "verify"]);
        assert_success(
            &out,
            &format!("the host's audit chain in {fleet}'s repository"),
        );
    }
    let records = host.run_with(
        &host_config,
        &["--fleet", "web02", "--json", "audit", "list"],
    );
    let records = parse_json(&records);
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "key-destroyed" && r["tenant"] == "c"),
        "the host records c's key destruction in web02's repository: {records}"
    );
}

#[test]
fn a_due_copy_waits_for_its_lock_and_an_erasure_does_not() {
    let Some(moto) = enforcing() else { return };
    // A single server whose offsite credentials may delete (the deletion
    // role), so that only the lock keeps anything.
    let (env, prefix) = one_server(
        &moto,
        &moto.deletion,
        "locked",
        "lock = \"1 day\"",
        ["a", "b"],
    );
    env.init();
    let check = env.json(&["config", "check"]);
    assert!(
        array_field(&check, "warnings").iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("target offsite: lock without a [key_service]"))),
        "{check}"
    );
    // Taken seven months ago (so due under the six-month rule), shipped
    // now: its offsite copy is locked until tomorrow.
    let old = env.backup(&["--tenant", "a", "--time", &seven_months_ago()]);
    let old_id = backup_snapshot_id(&old, "a", "www");
    let kept = env.backup(&["--tenant", "a"]);
    let kept_id = backup_snapshot_id(&kept, "a", "www");
    env.backup(&["--tenant", "b"]);
    let shipped_at = jiff::Timestamp::now();

    let plan = stdout(&env.ok(&["lifecycle", "plan"]));
    assert!(
        plan.contains(&format!(
            "locked: tenant a snapshot {} on offsite",
            &old_id[..12]
        )) && plan.contains("deleted when its S3 Object Lock ends at"),
        "{plan}"
    );
    let report = env.json(&["lifecycle", "apply"]);
    let locked = array_field(&report, "locked");
    assert_eq!(locked.len(), 1, "{report}");
    assert_eq!(locked[0]["target"], "offsite");
    assert_eq!(locked[0]["snapshot"], old_id.as_str());
    let until: jiff::Timestamp = str_field(&locked[0], "locked_until").parse().unwrap();
    let day = jiff::SignedDuration::from_hours(24);
    assert!(
        until > shipped_at + day - jiff::SignedDuration::from_mins(5)
            && until < shipped_at + day + jiff::SignedDuration::from_mins(5),
        "locked for a day from the ship: {until}"
    );
    // Deleted where nothing locks it, kept (and not overdue) where it is.
    let ids = |target: &str| -> Vec<String> {
        env.json(&["snapshots", "--target", target])
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["tenant"] == "a")
            .map(|s| str_field(s, "id").to_string())
            .collect()
    };
    assert_eq!(ids("local"), vec![kept_id.clone()]);
    let mut offsite = ids("offsite");
    offsite.sort();
    let mut both = vec![old_id.clone(), kept_id.clone()];
    both.sort();
    assert_eq!(offsite, both);
    let status = env.json(&["status"]);
    assert_eq!(status["overdue_deletions"], 0, "{status}");
    // What a fresh snapshot brought is locked until its retention ends
    // (six months), not only for the day.
    let versions = moto.boto3(&moto.deletion, LIST_VERSIONS, &[&prefix]);
    let snapshot = versions
        .as_array()
        .unwrap()
        .iter()
        .find(|v| str_field(v, "key") == format!("tenants/a/snapshots/{kept_id}"))
        .expect("the kept snapshot offsite");
    let until: jiff::Timestamp = str_field(snapshot, "locked_until")
        .replace(' ', "T")
        .parse()
        .unwrap();
    let days = (until - jiff::Timestamp::now()).get_seconds() / 86_400;
    assert!(
        (178..=186).contains(&days),
        "locked for its six months: {snapshot}"
    );

    // An erasure does not wait: it hides every copy at once and destroys
    // the key, and says that the locked versions stay until their lock ends.
    let out = env.run(&["erase", "b", "--reason", "GDPR art. 17", "--yes"]);
    assert_success(&out, "erase b under a lock");
    let said = stdout(&out);
    assert!(said.contains("tenant b: key destroyed"), "{said}");
    assert!(
        said.contains(
            "not before its S3 Object Lock ends (compliance mode: at least 1 day after it was written, and what a snapshot brought not before that snapshot's retention ends)"
        ),
        "{said}"
    );
    assert!(
        !env.json(&["snapshots", "--target", "offsite"])
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["tenant"] == "b"),
        "b is gone from the offsite's listing"
    );
    // Nor does a tenant that goes wait for the lock of a copy whose
    // retention ran out first: a's old snapshot (locked until tomorrow)
    // goes with its erasure, and so does its key.
    let out = env.run(&["erase", "a", "--reason", "GDPR art. 17", "--yes"]);
    assert_success(&out, "erase a, whose old copy is locked");
    assert!(
        stdout(&out).contains("tenant a: key destroyed"),
        "{}",
        describe(&out)
    );
    assert!(
        !env.json(&["snapshots", "--target", "offsite"])
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["tenant"] == "a"),
        "a is gone from the offsite's listing"
    );
}

#[test]
fn each_snapshot_shipped_is_locked_until_its_own_retention_ends() {
    let Some(moto) = enforcing() else { return };
    let env = Env::new();
    let prefix = format!("web01/{}", unique_prefix("two-rules"));
    env.set_extra_targets(&moto.remote(&moto.fleet).target_table(
        "offsite",
        &prefix,
        "lock = \"1 day\"",
    ));
    write_file(&env.path("src/acme/index.html"), b"<h1>acme</h1>\n");
    write_file(
        &env.path("books/acme/2026.csv"),
        b"date;amount\n2026-12-01;100\n",
    );
    let sources = format!(
        "{}{}[retention.category.bookkeeping]\nkeep = \"7 years\"\nafter_contract = \"7 years\"\nlegal_basis = \"Bokföringslagen\"\nlegal_obligation = true\n",
        tenant_paths_source("www", "site", "acme", &[s(&env.path("src/acme"))]),
        tenant_paths_source(
            "books",
            "bookkeeping",
            "acme",
            &[s(&env.path("books/acme"))]
        ),
    );
    env.write_config("16 MiB", &sources);
    env.init();
    // Both in one backup, so one ship brings both.
    let backup = env.backup(&[]);
    let site = backup_snapshot_id(&backup, "acme", "www");
    let books = backup_snapshot_id(&backup, "acme", "books");
    let versions = moto.boto3(&moto.fleet, LIST_VERSIONS, &[&prefix]);
    let locked_days = |id: &str| {
        let v = versions
            .as_array()
            .unwrap()
            .iter()
            .find(|v| str_field(v, "key") == format!("tenants/acme/snapshots/{id}"))
            .expect("the snapshot offsite");
        let until: jiff::Timestamp = str_field(v, "locked_until")
            .replace(' ', "T")
            .parse()
            .unwrap();
        (until - jiff::Timestamp::now()).get_seconds() / 86_400
    };
    assert!(
        (178..=186).contains(&locked_days(&site)),
        "the site's six months"
    );
    assert!(
        (2550..=2560).contains(&locked_days(&books)),
        "the books' seven years"
    );
}

#[test]
fn recovery_as_of_a_time_before_a_rotation_opens_the_rewrapped_keys() {
    let (Some(moto), Some(kms)) = (enforcing(), crate::erasure_holds::kms_endpoint()) else {
        return;
    };
    let (env, _) = one_server(&moto, &moto.deletion, "rotated", "", ["a", "b"]);
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str(&crate::erasure_holds::key_service_table(&env, &kms));
    std::fs::write(&env.config, text).unwrap();
    env.init();
    let backup = env.backup(&[]);
    let b = backup_snapshot_id(&backup, "b", "www");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = jiff::Timestamp::now().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // Erasing a rotates the epoch: b's key is rewrapped under a new one,
    // and the epoch of `before` is destroyed in the key service.
    let out = env.run(&["erase", "a", "--reason", "GDPR art. 17", "--yes"]);
    assert_success(&out, "erase a");
    let epochs = env.json(&["key", "epochs"]);
    let ids: std::collections::BTreeSet<&str> = epochs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| str_field(e, "epoch"))
        .collect();
    assert_eq!(ids.len(), 1, "one epoch on both targets: {epochs}");
    let made: jiff::Timestamp = str_field(&epochs[0], "created").parse().unwrap();
    let before_t: jiff::Timestamp = before.parse().unwrap();
    assert!(
        made > before_t,
        "made by the rotation, after `before`: {epochs}"
    );

    // As of `before`, b's key of that time no longer opens; its rewrapped
    // version does, and b restores byte for byte. a stays erased.
    let as_of = ["--target", "offsite", "--as-of", before.as_str()];
    restores_byte_for_byte(&env, "b", &b, &as_of, "restore b as of before the rotation");
    let a = backup_snapshot_id(&backup, "a", "www");
    let out = env.run(
        &[
            &["restore", a.as_str(), "--to", s(&env.path("recovered-a"))][..],
            &as_of,
        ]
        .concat(),
    );
    assert!(
        !out.status.success(),
        "the erased tenant stays unreadable: {}",
        describe(&out)
    );
}

/// Cancels the pending deletion of a key in moto's KMS and enables it
/// again: the operator's step for an epoch a forged rotation retired.
const CANCEL_KEY_DELETION: &str = r#"
import sys, json, boto3
endpoint, key_id = sys.argv[1:3]
kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="gallratest", aws_secret_access_key="gallratestsecret")
kms.cancel_key_deletion(KeyId=key_id)
kms.enable_key(KeyId=key_id)
json.dump(kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"], sys.stdout)
"#;

#[test]
fn after_an_attack_the_host_puts_the_offsite_back_and_then_deletes_exactly_what_is_due() {
    let (Some(moto), Some(kms)) = (enforcing(), crate::erasure_holds::kms_endpoint()) else {
        return;
    };
    let web01 = FleetServer::new(&moto, &kms, "web01", &moto.fleet, &["a", "b"]);
    let env = &web01.env;
    env.init();
    // Old snapshots (due under the six-month rule, shipped before the
    // offsite was locked) and today's (locked for their six months).
    let old = seven_months_ago();
    for t in ["a", "b"] {
        env.backup(&["--tenant", t, "--time", &old]);
    }
    web01.lock_offsite();
    let mut kept: BTreeMap<&str, String> = BTreeMap::new();
    for t in ["a", "b"] {
        let fresh = env.backup(&["--tenant", t]);
        kept.insert(t, backup_snapshot_id(&fresh, t, "www"));
    }
    env.ok(&["ship"]);
    let epochs_before = env.json(&["key", "epochs"]);
    let epoch_of_the_time = str_field(&epochs_before[0], "service_key").to_string();
    let host = Env::new();
    let host_config = lifecycle_host(&host, &moto, &kms, &[("web01", &web01)]);
    let on_host =
        |args: &[&str]| host.run_with(&host_config, &[&["--fleet", "web01"][..], args].concat());

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before_attack = jiff::Timestamp::now().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // The intruder, with the server's config and credentials, forges an
    // erasure and a contract end. The lifecycle host applies them that
    // night (it cannot tell them from genuine ones), and the server's own
    // lifecycle then destroys both tenants' keys: its rotation retires the
    // epoch of the time. Then garbage over every object.
    env.ok(&["erase", "a", "--reason", "forged", "--yes"]);
    env.ok(&["contract", "end", "b", "--effective", "2020-01-31"]);
    assert_success(
        &on_host(&["lifecycle", "apply"]),
        "the host applies the forged events",
    );
    env.ok(&["lifecycle", "apply"]);
    assert_eq!(
        web01.ids_on("offsite"),
        BTreeMap::new(),
        "both tenants gone"
    );
    let attack = moto.boto3(&moto.fleet, ATTACK, &[&web01.prefix]);
    assert_eq!(array_field(&attack, "delete_done").len(), 0, "{attack}");
    assert!(u64_field(&attack, "overwritten") > 10, "{attack}");
    let out = env.run(&["check", "--target", "offsite"]);
    assert!(!out.status.success(), "garbage: {}", describe(&out));

    // The fleet's credentials cannot put the offsite back: hiding what the
    // attack made needs the deletion role.
    let out = env.run(&["repair-target", "offsite", "--revert-to", &before_attack]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("lifecycle host"),
        "{}",
        describe(&out)
    );

    // On the lifecycle host: first what would change, then the revert.
    let revert = |more: &[&str]| {
        let args = [
            "--json",
            "repair-target",
            "offsite",
            "--revert-to",
            &before_attack,
        ];
        on_host(&[&args[..], more].concat())
    };
    let dry = revert(&["--dry-run"]);
    assert_success(&dry, "the dry run");
    let dry = parse_json(&dry);
    assert!(u64_field(&dry, "put_back") > 10, "{dry}");
    assert!(
        env.run(&["check", "--target", "offsite"]).status.code() != Some(0),
        "a dry run changes nothing"
    );
    let out = revert(&[]);
    assert_success(&out, "the revert on the lifecycle host");
    let report = parse_json(&out);
    assert_eq!(report["put_back"], dry["put_back"], "{report}");
    assert_eq!(report["failed"], serde_json::json!([]), "{report}");
    // The forged events are hidden, and named so that a genuine one can be
    // recorded again.
    let events: Vec<(String, String, String)> = array_field(&report, "hidden_events")
        .iter()
        .map(|e| {
            (
                str_field(e, "type").to_string(),
                str_field(e, "tenant").to_string(),
                str_field(e, "host").to_string(),
            )
        })
        .collect();
    assert!(
        events.contains(&("erasure_requested".into(), "a".into(), "testhost".into()))
            && events.contains(&("contract_ended".into(), "b".into(), "testhost".into())),
        "{report}"
    );
    // The keys of the time are back, but the epoch that wraps them is
    // pending deletion: no version opens yet (the rotation rewrapped
    // neither, as both were going).
    let kept_key = |tenant: &str| {
        array_field(&report, "keys")
            .iter()
            .find(|k| k["path"] == format!("tenants/{tenant}/key"))
            .map(|k| str_field(k, "kept").to_string())
    };
    assert_eq!(kept_key("a").as_deref(), Some("none-opens"), "{report}");
    assert_eq!(kept_key("b").as_deref(), Some("none-opens"), "{report}");
    // The epoch the forged rotation made wraps no key kept: hidden.
    assert!(
        array_field(&report, "keys")
            .iter()
            .any(|k| str_field(k, "path").starts_with("key-epochs/") && k["kept"] == "hidden"),
        "{report}"
    );
    // A second run finds nothing to put back or hide.
    let again = parse_json(&revert(&["--dry-run"]));
    assert_eq!(
        (u64_field(&again, "put_back"), u64_field(&again, "hidden")),
        (0, 0),
        "a second run finds it done: {again}"
    );

    // The operator cancels the deletion of the epoch's service key, within
    // its waiting period (docs/INSTALL.md section 7): the offsite is whole.
    let state = crate::common::remote::boto3(
        &moto.python,
        CANCEL_KEY_DELETION,
        &[&kms, &epoch_of_the_time],
    );
    assert_eq!(state, "Enabled");
    let out = on_host(&["check", "--target", "offsite", "--read-data"]);
    assert_success(&out, "the reverted offsite checks clean");
    // The fleet server, rebuilt, reads it again: its local target comes
    // from it, and every tenant restores byte for byte from both.
    std::fs::rename(env.path("repo"), env.path("repo.attacked")).unwrap();
    env.ok(&["repair-target", "local", "--from", "offsite", "--verify"]);
    let status = env.json(&["status"]);
    assert!(
        array_field(&status, "tenants")
            .iter()
            .all(|t| t["hold"].is_null()),
        "the events read again, and no forged one: {status}"
    );

    let before: Vec<usize> = web01.ids_on("offsite").values().map(Vec::len).collect();
    assert_eq!(
        before,
        vec![2, 2],
        "each tenant's old and fresh snapshot, back"
    );

    // The host's next apply deletes exactly what is due: the two old
    // snapshots, nothing of the tenants the forged events named.
    let out = host.run_with(
        &host_config,
        &["--fleet", "web01", "--json", "lifecycle", "apply"],
    );
    assert_success(&out, "the host's apply after the revert");
    env.ok(&["lifecycle", "apply"]);
    let expected: BTreeMap<String, Vec<String>> = kept
        .iter()
        .map(|(t, id)| (t.to_string(), vec![id.clone()]))
        .collect();
    assert_eq!(web01.ids_on("offsite"), expected);
    assert_eq!(web01.ids_on("local"), expected);
    for (tenant, id) in &kept {
        for target in ["offsite", "local"] {
            let what = format!("restore {tenant} from {target} after the recovery");
            restores_byte_for_byte(env, tenant, id, &["--target", target], &what);
        }
    }
    // The trail: the host's record of the revert, and both chains verify.
    assert_success(&on_host(&["audit", "verify"]), "the host's chain");
    env.ok(&["audit", "verify"]);
    let records = parse_json(&on_host(&["--json", "audit", "list"]));
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "target-reverted"),
        "{records}"
    );
}

#[test]
fn the_host_prunes_to_what_the_fleet_server_holds_and_the_next_ship_brings_nothing_back() {
    let (Some(moto), Some(kms)) = (enforcing(), crate::erasure_holds::kms_endpoint()) else {
        return;
    };
    let web01 = FleetServer::new(&moto, &kms, "web01", &moto.fleet, &["a"]);
    let env = &web01.env;
    env.init();
    // Seven months ago the site had a large photo; today only its page,
    // whose blob sits in the old snapshot's pack beside the photo's. When
    // the old snapshot goes, that pack is mostly garbage: the fleet
    // server's prune repacks the page's blob into a new pack.
    env.backup(&["--tenant", "a", "--time", &seven_months_ago()]);
    std::fs::remove_file(env.path("src/a/photo.jpg")).unwrap();
    let fresh = env.backup(&["--tenant", "a"]);
    let kept = backup_snapshot_id(&fresh, "a", "www");
    env.ok(&["ship"]);
    let report = env.json(&["lifecycle", "apply"]);
    // A new pack beside the new index: the page's blob, repacked.
    let written: u64 = array_field(&report, "tenants")
        .iter()
        .flat_map(|t| array_field(t, "targets").to_vec())
        .filter(|t| t["target"] == "local")
        .map(|t| u64_field(&t, "objects_written"))
        .sum();
    assert_eq!(written, 2, "the fleet's prune repacked: {report}");
    env.ok(&["ship"]);

    let host = Env::new();
    let host_config = lifecycle_host(&host, &moto, &kms, &[("web01", &web01)]);
    let out = host.run_with(&host_config, &["--fleet", "web01", "lifecycle", "apply"]);
    assert_success(&out, "the host's apply");
    // The host kept exactly the fleet server's packs and index, repacked
    // nothing of its own, and the next ship has nothing to bring back.
    let objects = |folder: &str| -> (Vec<String>, Vec<String>) {
        let names = |list: Vec<gallra::store::Listed>| -> Vec<String> {
            let mut v: Vec<String> = list.into_iter().map(|o| o.path).collect();
            v.sort();
            v
        };
        let local = gallra::store::Store::open(&gallra::store::TargetSettings::new(
            "local",
            &format!("file://{}", env.path("repo").display()),
        ))
        .unwrap();
        (
            names(local.list(folder).unwrap()),
            web01.offsite_objects(&moto, folder),
        )
    };
    for folder in ["tenants/a/packs", "tenants/a/index"] {
        let (local, mut offsite) = objects(folder);
        offsite.sort();
        assert_eq!(
            offsite, local,
            "{folder}: the offsite holds what the primary holds"
        );
    }
    let ship = env.json(&["ship"]);
    assert_eq!(
        u64_field(&ship[0], "copied"),
        0,
        "nothing shipped back: {ship}"
    );
    assert_eq!(
        web01.ids_on("offsite"),
        BTreeMap::from([("a".to_string(), vec![kept.clone()])])
    );
    let out = host.run_with(
        &host_config,
        &[
            "--fleet",
            "web01",
            "check",
            "--target",
            "offsite",
            "--read-data",
        ],
    );
    assert_success(&out, "the offsite checks clean after the host's prune");
    restores_byte_for_byte(
        env,
        "a",
        &kept,
        &["--target", "offsite"],
        "restore a from the offsite",
    );
}

#[test]
fn a_pack_a_later_snapshot_reuses_is_locked_until_that_snapshots_retention_ends() {
    let Some(moto) = enforcing() else { return };
    let (env, prefix) = one_server(&moto, &moto.fleet, "reused", "lock = \"1 day\"", ["a", "b"]);
    env.init();
    // Five months ago: its snapshot's retention ends in a month, and the
    // lock of the packs it brought a week later.
    let five_months_ago = jiff::Zoned::now()
        .checked_sub(jiff::Span::new().months(5))
        .unwrap()
        .timestamp()
        .to_string();
    env.backup(&["--tenant", "a", "--time", &five_months_ago]);
    let locked_days = || -> BTreeMap<String, i64> {
        let versions = moto.boto3(&moto.fleet, LIST_VERSIONS, &[&prefix]);
        versions
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| str_field(v, "key").starts_with("tenants/a/packs/") && v["latest"] == true)
            .map(|v| {
                let until: jiff::Timestamp = str_field(v, "locked_until")
                    .replace(' ', "T")
                    .parse()
                    .unwrap();
                (
                    str_field(v, "key").to_string(),
                    (until - jiff::Timestamp::now()).get_seconds() / 86_400,
                )
            })
            .collect()
    };
    let before = locked_days();
    assert!(!before.is_empty());
    assert!(
        before.values().all(|d| (35..=40).contains(d)),
        "a month and a week: {before:?}"
    );
    // Today's snapshot of the same files reuses every pack: each is now
    // locked until its six months end (and a week).
    // The ship's report and tenant a's part of it.
    let ship_tenant_a = || {
        let ship = env.json(&["ship"]);
        let tenant = array_field(&ship[0], "tenants")
            .iter()
            .find(|t| t["tenant"] == "a")
            .unwrap()
            .clone();
        (ship, tenant)
    };
    let out = env.backup(&["--tenant", "a", "--no-ship"]);
    let kept = backup_snapshot_id(&out, "a", "www");
    let (ship, tenant) = ship_tenant_a();
    assert_eq!(
        u64_field(&tenant, "locks_lengthened") as usize,
        before.len(),
        "{ship}"
    );
    let after = locked_days();
    // (A tree whose metadata changed, atimes, may bring a pack of its own,
    // locked as it is written.)
    assert!(before.keys().all(|k| after.contains_key(k)), "{after:?}");
    assert!(
        before.keys().all(|k| (184..=193).contains(&after[k])),
        "six months and a week: {after:?}"
    );
    assert!(after.values().all(|d| *d >= 178), "{after:?}");
    // What each pack is locked until is remembered in the state folder:
    // the next night's unchanged snapshot lengthens nothing.
    env.backup(&["--tenant", "a", "--no-ship"]);
    let (ship, tenant) = ship_tenant_a();
    assert_eq!(u64_field(&tenant, "locks_lengthened"), 0, "{ship}");
    assert!(env.path("state/pack-locks/offsite/a").exists());
    restores_byte_for_byte(
        &env,
        "a",
        &kept,
        &["--target", "offsite"],
        "restore a from the offsite",
    );
}

#[test]
fn the_host_deletes_nothing_that_the_fleet_servers_own_rules_would_keep() {
    let (Some(moto), Some(kms)) = (enforcing(), crate::erasure_holds::kms_endpoint()) else {
        return;
    };
    let web01 = FleetServer::new(&moto, &kms, "web01", &moto.fleet, &["a", "b"]);
    let env = &web01.env;
    env.init();
    let mut old = BTreeMap::new();
    for t in ["a", "b"] {
        let report = env.backup(&["--tenant", t, "--time", &seven_months_ago()]);
        old.insert(t, backup_snapshot_id(&report, t, "www"));
        env.backup(&["--tenant", t]);
    }
    env.ok(&["ship"]);
    // Later, web01 agrees with b to keep its backups a year; the host's
    // config is not told. The next ship, with no new backup, brings the
    // new rules (named by web01's `[agent] host`, "testhost").
    let agreement = "\n[retention.tenant.b]\nkeep = \"1 year\"\n";
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str(agreement);
    std::fs::write(&env.config, text).unwrap();
    env.ok(&["ship"]);

    let host = Env::new();
    let host_config = lifecycle_host(&host, &moto, &kms, &[("web01", &web01)]);
    let apply = |what: &str| -> (std::process::Output, Value) {
        let out = host.run_with(
            &host_config,
            &["--json", "--fleet", "web01", "lifecycle", "apply"],
        );
        let report = parse_json(&out);
        eprintln!("{what}: {}", describe(&out));
        (out, report)
    };
    let (out, report) = apply("the host without b's agreement");
    assert!(!out.status.success(), "the run fails: {}", describe(&out));
    let held = array_field(&report, "held");
    assert_eq!(held.len(), 1, "b's old snapshot waits: {report}");
    assert_eq!(str_field(&held[0], "snapshot"), old["b"]);
    let why = str_field(&held[0], "hold_reason");
    assert!(
        why.contains("tenant b, category site: keep 1y there, 6mo here")
            && why.contains("rule tenant.b on testhost, default here"),
        "{why}"
    );
    assert!(
        report["failures"]
            .to_string()
            .contains("keep 1y there, 6mo here"),
        "the run's failure says why: {report}"
    );
    let plan = host.run_with(&host_config, &["--fleet", "web01", "lifecycle", "plan"]);
    assert!(
        stderr(&plan).contains("tenant b: the fleet server's retention rules decide differently"),
        "the plan says so too: {}",
        describe(&plan)
    );
    let ids = web01.ids_on("offsite");
    assert!(
        !ids["a"].contains(&old["a"]),
        "a's rules agree: its old snapshot went: {ids:?}"
    );
    assert!(ids["b"].contains(&old["b"]), "{ids:?}");

    // With the agreement on the host as well, the run is clean and b's
    // snapshot is kept: it is not due under a year.
    let mut text = std::fs::read_to_string(&host_config).unwrap();
    text.push_str(agreement);
    std::fs::write(&host_config, text).unwrap();
    let (out, report) = apply("the host with b's agreement");
    assert_success(&out, "the host with the same rules");
    assert!(array_field(&report, "held").is_empty(), "{report}");
    assert!(web01.ids_on("offsite")["b"].contains(&old["b"]));

    // Whoever has web01's credentials overwrites the rules: the host
    // deletes nothing of any tenant, and says which object is wrong. (Web01
    // has applied its own lifecycle first, as its timer does, so that its
    // next ship does not bring back what the host deleted.)
    env.ok(&["lifecycle", "apply"]);
    let again = env.backup(&["--tenant", "a", "--time", &seven_months_ago()]);
    let old_a = backup_snapshot_id(&again, "a", "www");
    env.ok(&["ship"]);
    moto.remote(&moto.fleet)
        .store(&web01.prefix)
        .put(
            "lifecycle/rules",
            bytes::Bytes::from_static(b"keep = \"1 day\""),
        )
        .unwrap();
    let (out, report) = apply("the host after the rules were forged");
    assert!(!out.status.success(), "{}", describe(&out));
    let held = array_field(&report, "held");
    assert_eq!(held.len(), 1, "{report}");
    assert_eq!(str_field(&held[0], "snapshot"), old_a);
    assert!(
        str_field(&held[0], "hold_reason")
            .contains("target offsite: lifecycle/rules: truncated retention rules"),
        "{report}"
    );
    assert!(web01.ids_on("offsite")["a"].contains(&old_a));
    let check = host.run_with(
        &host_config,
        &["--fleet", "web01", "check", "--target", "offsite"],
    );
    assert!(
        !check.status.success() && stderr(&check).contains("lifecycle/rules: truncated"),
        "check names the object: {}",
        describe(&check)
    );
    // Web01's repair of its offsite writes its rules again, and the host
    // deletes what is due.
    env.ok(&["repair-target", "offsite"]);
    let (out, report) = apply("the host after web01's repair");
    assert_success(&out, "the host after the repair");
    assert_eq!(array_field(&report, "due").len(), 1, "{report}");
    assert!(!web01.ids_on("offsite")["a"].contains(&old_a));
}
