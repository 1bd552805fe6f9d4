//! Reads the checked-in format-v1 fixture repository (made by
//! tests/fixtures/make-fixture.sh). If this fails after a change, the change
//! altered the on-store format: old repositories would no longer open.

use assert_cmd::Command;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const ACME_WWW: &str = "12db7187e5284b83f662e4eee28ed55a237aa54ec97c378e68eeb501f14bd451";
const ACME_DB: &str = "2d351fd41093e3c08894f84709d93fdcaab771f7cf539c4fbfebb0f05f917b3c";
const BRAVO_WWW: &str = "1fc66771850cbe01193201299381c0b4e81bca6f75e746ebd01593f08e271a61";
const SRC: &str = "tmp/gallra-fixture-src/www";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        copy_dir(&fixtures.join("repo-v1"), &root.join("repo"));
        let key = root.join("key");
        std::fs::copy(fixtures.join("repo-v1.key"), &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = root.join("agent.toml");
        let text = std::fs::read_to_string(fixtures.join("agent.toml.in"))
            .unwrap()
            .replace("@STATE@", &root.join("state").to_string_lossy())
            .replace("@KEY@", &key.to_string_lossy())
            .replace("@REPO@", &root.join("repo").to_string_lossy());
        std::fs::write(&config, text).unwrap();
        Fixture {
            _tmp: tmp,
            root,
            config,
        }
    }

    fn gallra(&self, args: &[&str]) -> std::process::Output {
        Command::cargo_bin("gallra")
            .unwrap()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.gallra(args);
        assert!(
            out.status.success(),
            "gallra {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn fixture_objects_carry_version_1_envelopes() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repo-v1");
    let config = std::fs::read(repo.join("config")).unwrap();
    assert_eq!(&config[..6], b"GLRA\x01\x01");
    let snap = std::fs::read(repo.join("tenants/acme/snapshots").join(ACME_WWW)).unwrap();
    assert_eq!(&snap[..6], b"GLRA\x01\x06");
    let key = std::fs::read(repo.join("tenants/acme/key")).unwrap();
    assert_eq!(&key[..6], b"GLRA\x01\x03");
    let event = std::fs::read(repo.join("lifecycle/events/cli-20261123T152400Z-7c8ad7a1")).unwrap();
    assert_eq!(&event[..6], b"GLRA\x01\x09");
    let record = std::fs::read(repo.join("audit/fixture/000000000001-47f0f46e90739979")).unwrap();
    assert_eq!(&record[..6], b"GLRA\x01\x0a");
}

#[test]
fn fixture_snapshots_list_as_recorded() {
    let f = Fixture::new();
    let list = f.json(&["snapshots", "--json"]);
    let mut got: Vec<(String, String, String, u64, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["time"], "2026-01-01T00:00:00Z");
            assert_eq!(s["host"], "fixture");
            assert_eq!(s["tags"]["fixture"], "v1");
            (
                s["id"].as_str().unwrap().to_string(),
                s["tenant"].as_str().unwrap().to_string(),
                s["category"].as_str().unwrap().to_string(),
                s["files"].as_u64().unwrap(),
                s["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    let rows_len: u64 = (1..=60000u64)
        .map(|i| format!("row {i}\n").len() as u64)
        .sum();
    let mut want = vec![
        (
            ACME_WWW.into(),
            "acme".into(),
            "site".into(),
            4,
            14 + 22 + rows_len,
        ),
        (ACME_DB.into(), "acme".into(), "database".into(), 1, 25),
        (BRAVO_WWW.into(), "bravo".into(), "site".into(), 1, 15),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn fixture_restores_byte_for_byte_and_checks_clean() {
    let f = Fixture::new();
    let to = f.root.join("restore");
    let out = f.gallra(&[
        "restore",
        &ACME_WWW[..8],
        "--to",
        to.to_str().unwrap(),
        "--verify",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acme = to.join(SRC).join("acme");
    assert_eq!(
        std::fs::read(acme.join("index.html")).unwrap(),
        b"<h1>acme</h1>\n"
    );
    assert_eq!(
        std::fs::read(acme.join("css/site.css")).unwrap(),
        b"body { color: #333; }\n"
    );
    assert_eq!(std::fs::read(acme.join("empty.txt")).unwrap(), b"");
    assert!(acme.join("empty-dir").is_dir());
    assert_eq!(
        std::fs::read_link(acme.join("current.css")).unwrap(),
        Path::new("css/site.css")
    );
    let rows: String = (1..=60000).map(|i| format!("row {i}\n")).collect();
    assert_eq!(
        std::fs::read(acme.join("rows.txt")).unwrap(),
        rows.as_bytes()
    );
    let meta = std::fs::metadata(acme.join("index.html")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.mtime(), 1766588400);

    let dump = f.gallra(&["dump", ACME_DB, "/acme.sql"]);
    assert!(dump.status.success());
    assert_eq!(dump.stdout, b"CREATE TABLE t (id int);\n");

    let check = f.json(&["check", "--read-data", "--json"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["snapshots"], 3);
    assert!(check["errors"].as_array().unwrap().is_empty());
}

/// Kind 9 (lifecycle events) and kind 10 (audit records): a contract end of
/// bravo (last day 2026-10-31) and a legal hold on acme, with the agent's
/// local copy of the audit trail.
#[test]
fn fixture_lifecycle_events_and_audit_records_read_as_recorded() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.root.join("state")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repo-v1.audit.jsonl"),
        f.root.join("state/audit.jsonl"),
    )
    .unwrap();

    // The snapshots of 2026-01-01 00:00 UTC expire after six months in
    // Stockholm's time: 1 July 01:00 CEST. The hold keeps acme's.
    let due = f.json(&["lifecycle", "plan", "--at", "2026-07-02", "--json"]);
    let due = due.as_array().unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0]["tenant"], "bravo");
    assert_eq!(due[0]["snapshot"], BRAVO_WWW);
    assert_eq!(due[0]["expires"], "2026-06-30T23:00:00Z");
    assert_eq!(due[0]["reason"], "retention");
    let held = f.gallra(&["lifecycle", "plan", "--at", "2026-07-02"]);
    let text = String::from_utf8_lossy(&held.stdout);
    assert!(
        text.contains("tenant acme") && text.contains("fixture hold"),
        "{text}"
    );

    let records = f.json(&["audit", "list", "--json"]);
    let hashes: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["hash"].as_str().unwrap())
        .collect();
    assert_eq!(
        hashes,
        [
            "47f0f46e9073997994474f742bf050679e43282e1f16b8e1b5ab2cc9f512ace5",
            "95b7a376c0f537831d721efca6f10bfc4693511fdf185746afaaec98ad93ad66"
        ]
    );
    assert_eq!(records[0]["action"], "contract-ended");
    assert_eq!(records[1]["action"], "hold-set");
    let verify = f.json(&["audit", "verify", "--json"]);
    assert_eq!(verify["problems"], serde_json::json!([]), "{verify}");
    assert_eq!(verify["targets"][0]["records"], 2);
}
