//! Small truths an operator's first week found (issue 15, item 26): advice,
//! exit codes and output shapes that said something other than what holds.

use crate::common::*;
use std::fs;
use std::time::Instant;

fn env_with_offsite() -> Env {
    let env = Env::new();
    env.set_extra_targets(&file_target("offsite", &env.path("offsite"), ""));
    env.write_acme_site_config();
    env
}

#[test]
fn a_second_init_says_the_repository_exists_and_advises_no_rebuild() {
    let env = env_with_offsite();
    env.init();
    let out = env.run(&["init"]);
    assert_exit(&out, 2, "a second init");
    let err = stderr(&out);
    assert!(err.contains("already holds"), "{err}");
    assert!(
        !err.contains("repair-target local"),
        "a healthy primary must not be sent to repair: {err}"
    );
    // Under --json the refusal is a JSON document on stdout.
    let out = env.run(&["init", "--json"]);
    assert_exit(&out, 2, "a second init --json");
    let v = parse_json(&out);
    assert!(str_field(&v, "error").contains("already holds"), "{v}");
    assert_eq!(u64_field(&v, "exit_code"), 2);
}

#[test]
fn errors_under_json_are_a_json_document_on_stdout() {
    let env = env_with_offsite();
    env.init();
    let out = env.run(&["restore", "deadbeefdeadbeef", "--to", "x", "--json"]);
    assert_exit(&out, 1, "restore of an unknown snapshot");
    let v = parse_json(&out);
    assert!(str_field(&v, "error").contains("deadbeef"), "{v}");
    assert_eq!(u64_field(&v, "exit_code"), 1);
}

#[test]
fn audit_export_of_an_unknown_tenant_fails_naming_it() {
    let env = env_with_offsite();
    env.init();
    env.backup(&[]);
    let out = env.run(&["audit", "export", "--tenant", "acmee"]);
    let err = assert_error(&out, 2, "audit export of a misspelt tenant", &["acmee"]);
    assert!(err.contains("no audit record"), "{err}");
    env.ok(&["audit", "export", "--tenant", "acme"]);
}

#[test]
fn a_failed_dump_names_its_source_once() {
    let env = Env::new();
    env.write_config(
        "16 MiB",
        &command_source("db", "database", "acme", &["false"], "acme.sql"),
    );
    env.init();
    let out = env.run(&["backup"]);
    assert_exit(&out, 1, "backup with a failing dump");
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains("\"false\" failed"))
        .unwrap_or_else(|| panic!("no line for the failed command: {err}"));
    assert_eq!(line.matches("source db").count(), 1, "{line}");
}

#[test]
fn config_check_finds_a_missing_key_file_and_a_missing_command() {
    let env = Env::new();
    env.write_config(
        "16 MiB",
        &command_source(
            "db",
            "database",
            "acme",
            &["mysqldump-not-installed", "acme"],
            "acme.sql",
        ),
    );
    let good = env.run(&["config", "check"]);
    let err = assert_error(&good, 2, "config check", &["mysqldump-not-installed"]);
    assert!(err.contains("[[source]] db"), "{err}");
    let text = fs::read_to_string(&env.config)
        .unwrap()
        .replace(s(&env.key), s(&env.path("no-such-key")));
    fs::write(&env.config, text).unwrap();
    let out = env.run(&["config", "check", "--json"]);
    assert_exit(&out, 2, "config check with a missing key file");
    let v = parse_json(&out);
    assert_eq!(v["ok"], false, "{v}");
    let problems = array_field(&v, "problems");
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().contains("no-such-key")),
        "{problems:?}"
    );
}

#[test]
fn splay_can_be_switched_off() {
    let env = Env::new();
    env.write_config(
        "16 MiB",
        &command_source("db", "database", "acme", &["true"], "acme.sql"),
    );
    let text = fs::read_to_string(&env.config).unwrap().replace(
        "host = \"testhost\"",
        "host = \"testhost\"\nsplay = \"off\"",
    );
    fs::write(&env.config, text).unwrap();
    env.ok(&["config", "check"]);
}

#[test]
fn max_read_caps_gallra_backup_as_it_caps_the_agent() {
    let env = Env::new();
    let src = env.path("src/acme");
    // 4 MiB of incompressible data: at least two chunks (of at most 2 MiB),
    // so a cap of 1 MiB/s holds the second back for at least two seconds.
    let mut data = vec![0u8; 4 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    write_file(&src.join("big.bin"), &data);
    env.write_config(
        "16 MiB",
        &tenant_paths_source("www", "site", "acme", &[s(&src)]),
    );
    let text = fs::read_to_string(&env.config).unwrap().replace(
        "host = \"testhost\"",
        "host = \"testhost\"\nmax_read = \"1 MiB/s\"",
    );
    fs::write(&env.config, text).unwrap();
    env.init();
    let started = Instant::now();
    env.backup(&[]);
    let took = started.elapsed().as_secs_f64();
    assert!(
        took >= 1.9,
        "4 MiB read under a 1 MiB/s cap took {took:.2} s: the cap was not applied"
    );
}

#[test]
fn local_times_in_human_output_say_their_zone() {
    let env = env_with_offsite();
    env.init();
    // 00:00 UTC on 1 June is 02:00 summer time in Stockholm; six months on,
    // the expiry keeps the wall clock, in winter time.
    env.backup(&["--time", "2026-06-01T00:00:00Z"]);
    let listing = stdout(&env.ok(&["snapshots"]));
    assert!(
        listing.contains("2026-12-01 02:00 CET"),
        "the expiry says its zone: {listing}"
    );
    let status = stdout(&env.ok(&["status"]));
    assert!(
        status.contains("2026-06-01 02:00 CEST"),
        "the last backup says its zone: {status}"
    );
}
