//! What a deletion leaves behind, said per target by `init`, `erase`,
//! `lifecycle plan`, `status`, `config check`, the audit record and
//! `audit export` (issue 17): on `file://` targets, and on moto's S3 with
//! bucket versioning on (with and without a stated `noncurrent_expiry`)
//! and off.

use crate::common::remote::{Remote, unique_prefix};
use crate::common::*;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// What every target's line ends with, under the master key.
const COPIES: &str = "A copy of this target made outside gallra (disk snapshot, replica, backup of the backup server) still opens with the key file or a passphrase until that copy is destroyed.";

/// The words for a target that keeps no old versions, under the master key.
fn not_kept(name: &str) -> String {
    format!("target {name}: the store keeps no old versions of what gallra deletes. {COPIES}")
}

/// The words for a versioned target whose old versions go on or after `date`.
fn kept_until(name: &str, date: &str) -> String {
    format!(
        "target {name}: the bucket keeps old versions: what gallra deletes survives until the bucket rule removes it, on or after {date} (noncurrent_expiry = 30 days), and opens with the key file or a passphrase until then. {COPIES}"
    )
}

/// The words for a versioned target with no expiry stated.
fn kept_forever(name: &str) -> String {
    format!(
        "target {name}: the bucket keeps old versions: what gallra deletes survives until someone deletes those versions (no noncurrent_expiry stated for this target), and opens with the key file or a passphrase until then. {COPIES}"
    )
}

/// The day, in the agent's default zone, 30 days after `t`.
fn thirty_days_after(t: Timestamp) -> String {
    let zone = jiff::tz::TimeZone::get(gallra::config::DEFAULT_TIME_ZONE).unwrap();
    (t + SignedDuration::from_hours(24 * 30))
        .to_zoned(zone)
        .strftime("%Y-%m-%d")
        .to_string()
}

fn old_versions_of(init: &Value) -> Vec<(String, String)> {
    init.as_array()
        .expect("init --json prints an array")
        .iter()
        .map(|t| {
            (
                str_field(t, "target").to_string(),
                str_field(t, "old_versions").to_string(),
            )
        })
        .collect()
}

/// The record of probes in the state folder, by target name.
fn recorded(env: &Env) -> Value {
    let text = std::fs::read_to_string(env.state.join("target-versions.json"))
        .expect("the probes are recorded in the state folder");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["targets"].clone()
}

/// The survives lines of the tenant's last record of `action`.
fn survives_of(env: &Env, tenant: &str, action: &str) -> Vec<Value> {
    let records = env.json(&["audit", "list", "--tenant", tenant]);
    let record = records
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r["action"] == action)
        .unwrap_or_else(|| panic!("no {action} record: {records}"));
    record["survives"].as_array().cloned().unwrap_or_default()
}

#[test]
fn on_file_targets_erase_says_no_old_versions_and_names_the_copies_outside() {
    let env = Env::new();
    env.set_extra_targets(&file_target("offsite", &env.path("offsite"), ""));
    env.write_acme_site_config();
    std::fs::create_dir_all(env.path("offsite")).unwrap();
    let init = env.json(&["init"]);
    assert_eq!(
        old_versions_of(&init),
        [
            ("local".to_string(), "not-kept".to_string()),
            ("offsite".to_string(), "not-kept".to_string())
        ]
    );
    let record = recorded(&env);
    assert_eq!(record["local"]["keeps_old_versions"], false, "{record}");
    assert_eq!(record["offsite"]["keeps_old_versions"], false, "{record}");
    assert!(record["local"]["probed"].is_string(), "{record}");

    let check = stdout(&env.ok(&["config", "check"]));
    assert!(
        check.contains("target offsite: keeps old versions: no (probed "),
        "{check}"
    );
    assert!(!check.contains("erasure does not hold"), "{check}");
    let status = stdout(&env.run(&["status"]));
    assert!(
        status.contains("target local keeps old versions: no (probed "),
        "{status}"
    );

    env.backup(&[]);
    env.ok(&["ship"]);
    let out = env.ok(&["erase", "acme", "--reason", "GDPR art. 17", "--yes"]);
    let text = stdout(&out);
    assert!(
        text.contains("what survives the deletion, per target:"),
        "{text}"
    );
    for name in ["local", "offsite"] {
        assert!(text.contains(&format!("  {}\n", not_kept(name))), "{text}");
    }
    assert!(!text.contains("unreadable"), "{text}");

    let survives = survives_of(&env, "acme", "key-destroyed");
    let targets: Vec<&str> = survives.iter().map(|s| str_field(s, "target")).collect();
    assert_eq!(targets, ["local", "offsite"], "{survives:?}");
    assert_eq!(survives[1]["old_versions"], "not-kept");
    assert_eq!(str_field(&survives[1], "words"), not_kept("offsite"));
    let export = stdout(&env.ok(&["audit", "export", "--tenant", "acme"]));
    assert!(
        export.contains(&format!(
            "What survives, per target, as gallra knew it then:\n\n- {}\n",
            not_kept("local")
        )),
        "{export}"
    );
    env.ok(&["audit", "verify"]);
}

/// `local` (file://), then moto's plain bucket, and its versioned bucket
/// with and without a stated expiry.
fn moto_env() -> Option<Env> {
    let versioned = Remote::moto("GALLRA_TEST_MOTO_VERSIONED_BUCKET")?;
    let plain = Remote::moto("GALLRA_TEST_MOTO_PLAIN_BUCKET")?;
    let env = Env::new();
    let prefix = unique_prefix("survival");
    env.set_extra_targets(&format!(
        "{}{}{}",
        plain.target_table("plain", &format!("{prefix}-plain"), ""),
        versioned.target_table(
            "kept30",
            &format!("{prefix}-kept30"),
            "noncurrent_expiry = \"30 days\""
        ),
        versioned.target_table("kept", &format!("{prefix}-kept"), ""),
    ));
    env.write_acme_site_config();
    Some(env)
}

#[test]
fn on_versioned_and_plain_buckets_every_command_says_what_survives_until_when() {
    let Some(env) = moto_env() else { return };
    let init = env.json(&["init"]);
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        old_versions_of(&init),
        [
            pair("local", "not-kept"),
            pair("plain", "not-kept"),
            pair("kept30", "kept"),
            pair("kept", "kept")
        ]
    );
    let record = recorded(&env);
    assert_eq!(record["kept30"]["keeps_old_versions"], true, "{record}");
    assert_eq!(record["plain"]["keeps_old_versions"], false, "{record}");

    // config check reads the record, and warns only of the versioned
    // bucket with no expiry stated.
    let check = stdout(&env.ok(&["config", "check"]));
    assert!(
        check.contains("target kept30: keeps old versions: yes (probed ")
            && check.contains("; noncurrent_expiry 30 days\n"),
        "{check}"
    );
    let warnings: Vec<&str> = check
        .lines()
        .filter(|l| l.contains("an erasure does not hold"))
        .collect();
    assert_eq!(warnings.len(), 1, "{check}");
    assert!(warnings[0].starts_with("warning: target kept: "), "{check}");
    let check = env.json(&["config", "check"]);
    let kept30 = &array_field(&check, "targets")[2];
    assert_eq!(kept30["old_versions"]["old_versions"], "kept", "{check}");
    assert_eq!(kept30["noncurrent_expiry"], "30 days", "{check}");

    let status = stdout(&env.run(&["status"]));
    for line in [
        "target plain keeps old versions: no (probed ",
        "target kept keeps old versions: yes (probed ",
    ] {
        assert!(status.contains(line), "{status}");
    }
    assert!(
        status.contains(
            "; no noncurrent_expiry stated: old versions stay until someone deletes them"
        ),
        "{status}"
    );

    env.backup(&[]);
    env.ok(&["ship"]);
    // A plan for a day when the tenant's data is due says, per target,
    // what its deletion there leaves, dated from that day.
    env.ok(&["contract", "end", "acme", "--effective", "2026-01-01"]);
    let plan = stdout(&env.ok(&["lifecycle", "plan", "--at", "2031-03-01"]));
    assert!(
        plan.contains("what these deletions leave behind, per target:"),
        "{plan}"
    );
    for line in [
        not_kept("local"),
        not_kept("plain"),
        kept_until("kept30", "2031-03-31"),
        kept_forever("kept"),
    ] {
        assert!(plan.contains(&format!("  {line}")), "{line}\n{plan}");
    }

    let before = Timestamp::now();
    let out = env.ok(&["erase", "acme", "--reason", "GDPR art. 17", "--yes"]);
    let after = Timestamp::now();
    let text = stdout(&out);
    for line in [not_kept("local"), not_kept("plain"), kept_forever("kept")] {
        assert!(text.contains(&format!("  {line}")), "{line}\n{text}");
    }
    assert!(
        [thirty_days_after(before), thirty_days_after(after)]
            .iter()
            .any(|d| text.contains(&format!("  {}", kept_until("kept30", d)))),
        "{text}"
    );
    assert!(!text.contains("unreadable"), "{text}");

    // The record keeps, per target, the kind and the date.
    let survives = survives_of(&env, "acme", "key-destroyed");
    let by_target = |name: &str| {
        survives
            .iter()
            .find(|s| s["target"] == name)
            .unwrap_or_else(|| panic!("{name}: {survives:?}"))
    };
    assert_eq!(by_target("kept")["old_versions"], "kept");
    assert!(by_target("kept")["until"].is_null());
    assert_eq!(by_target("plain")["old_versions"], "not-kept");
    let until: Timestamp = str_field(by_target("kept30"), "until").parse().unwrap();
    let month = SignedDuration::from_hours(24 * 30);
    assert!(before + month <= until && until <= after + month, "{until}");
    env.ok(&["audit", "verify"]);
}

#[test]
fn a_dry_run_in_json_gives_the_leftovers_of_the_targets_it_would_delete_on() {
    let Some(env) = moto_env() else { return };
    env.init();
    env.backup(&[]);
    env.ok(&["ship"]);
    env.ok(&["contract", "end", "acme", "--effective", "2020-01-01"]);
    let report = env.json(&["lifecycle", "apply", "--dry-run"]);
    let leftovers = array_field(&report, "leftovers");
    let names: Vec<&str> = leftovers.iter().map(|l| str_field(l, "target")).collect();
    assert_eq!(names, ["local", "plain", "kept30", "kept"], "{report}");
    assert_eq!(leftovers[2]["old_versions"], "kept");
    assert_eq!(leftovers[2]["noncurrent_expiry"], "30 days");
    assert!(leftovers[2]["survives_until"].is_string(), "{report}");
    assert!(leftovers[3]["survives_until"].is_null(), "{report}");
    assert_eq!(
        str_field(&leftovers[1], "readable_by"),
        "the key file or a passphrase"
    );
    assert_eq!(str_field(&leftovers[3], "words"), kept_forever("kept"));
    // The report keeps its old keys beside the new one.
    assert_eq!(report["dry_run"], true);
    assert!(report["due"].as_array().is_some_and(|d| !d.is_empty()));
}
