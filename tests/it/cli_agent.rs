//! `gallra agent` as a real process on a schedule of seconds, with two
//! `file://` targets: backups, ships, an inbox event applied, a drill,
//! metrics that agree with `gallra status --json`, reloads good and bad,
//! and SIGTERM leaving both targets clean and no lock behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::agent::{RunningAgent, free_port, get_metrics};
use crate::common::*;
use serde_json::Value;

struct Agent {
    env: Env,
    offsite: PathBuf,
    port: u16,
    process: RunningAgent,
}

/// The environment's config with `[agent]` and `[drill]` settings for a
/// schedule of seconds, the `www` source on `schedule`.
fn config_text(env: &Env, port: u16, schedule: &str, src: &Path) -> String {
    let pattern = format!("{}/{{tenant}}", s(src));
    env.config_text(&env.key)
        .replace(
            "host = \"testhost\"\n",
            &format!(
                "host = \"testhost\"\nmetrics = \"127.0.0.1:{port}\"\nsplay = \"1s\"\ninbox_poll = \"1s\"\nship_retry = \"2s\"\n"
            ),
        )
        + &paths_source("www", "site", &[&pattern], &[]).replace(
            "category = \"site\"\n",
            &format!("category = \"site\"\nschedule = {}\n", toml_str(schedule)),
        )
        + "\n[drill]\nschedule = \"every 4s\"\nscratch = \"scratch\"\n"
}

fn start(env: Env, offsite: PathBuf, port: u16) -> Agent {
    let process = RunningAgent::start(&env, "agent.log");
    Agent {
        env,
        offsite,
        port,
        process,
    }
}

impl Agent {
    fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// Polls `what` every 200 ms until it returns Some, for at most `secs`.
    fn wait_for<T>(&self, secs: u64, label: &str, mut what: impl FnMut(&Agent) -> Option<T>) -> T {
        self.process.wait_for(secs, label, || what(self))
    }

    fn metrics(&self) -> String {
        get_metrics(self.port).unwrap()
    }

    fn snapshot_ids(&self, target: &str, tenant: &str) -> Vec<String> {
        self.env
            .json(&["snapshots", "--target", target, "--tenant", tenant])
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    }
}

/// The value of one sample of the metrics text, e.g.
/// `gallra_target_snapshots{target="local"}`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Whether every figure the metrics share with `status --json` agrees.
fn agree(metrics: &str, status: &Value) -> Result<(), String> {
    let mut checks: Vec<(String, f64)> = vec![(
        "gallra_overdue_deletions{host=\"testhost\"}".into(),
        status["overdue_deletions"].as_f64().unwrap(),
    )];
    for t in status["targets"].as_array().unwrap() {
        let name = t["target"].as_str().unwrap();
        checks.push((
            format!("gallra_target_snapshots{{target=\"{name}\"}}"),
            t["snapshots"].as_f64().unwrap(),
        ));
        checks.push((
            format!("gallra_target_bytes{{target=\"{name}\"}}"),
            t["bytes"].as_f64().unwrap(),
        ));
    }
    for t in status["tenants"].as_array().unwrap() {
        let tenant = t["tenant"].as_str().unwrap();
        for src in t["sources"].as_array().unwrap() {
            if let Some(at) = src["last_backup"].as_str() {
                let secs = at.parse::<jiff::Timestamp>().unwrap().as_second();
                checks.push((
                    format!(
                        "gallra_last_backup_timestamp_seconds{{tenant=\"{tenant}\",source=\"{}\"}}",
                        src["source"].as_str().unwrap()
                    ),
                    secs as f64,
                ));
            }
        }
        for (target, held) in t["targets"].as_object().unwrap() {
            checks.push((
                format!("gallra_tenant_snapshots{{tenant=\"{tenant}\",target=\"{target}\"}}"),
                held["snapshots"].as_f64().unwrap(),
            ));
        }
    }
    if let Some(d) = status["drill"].as_object() {
        checks.push((
            "gallra_last_drill_success{host=\"testhost\"}".into(),
            if d["ok"] == true { 1.0 } else { 0.0 },
        ));
    }
    for (series, want) in checks {
        match sample(metrics, &series) {
            Some(v) if v == want => {}
            got => return Err(format!("{series}: metrics {got:?}, status {want}")),
        }
    }
    Ok(())
}

fn setup(schedule: &str) -> (Env, PathBuf, PathBuf, u16) {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("acme/index.html"), b"<h1>acme</h1>\n");
    write_file(&src.join("acme/img/logo.png"), &Rng::new(1).bytes(300_000));
    write_file(&src.join("bravo/index.html"), b"<h1>bravo</h1>\n");
    write_file(&src.join("bravo/data.bin"), &Rng::new(2).bytes(200_000));
    let offsite = env.path("offsite");
    env.set_extra_targets(&file_target("offsite", &offsite, ""));
    env.write_config("1 MiB", "");
    let port = free_port();
    fs::write(&env.config, config_text(&env, port, schedule, &src)).unwrap();
    env.init();
    (env, src, offsite, port)
}

/// Lock objects left on a `file://` target.
fn locks(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(tenants) = fs::read_dir(dir.join("tenants")) else {
        return found;
    };
    for t in tenants.flatten() {
        if let Ok(l) = fs::read_dir(t.path().join("locks")) {
            found.extend(l.flatten().map(|e| e.path()));
        }
    }
    found
}

#[test]
fn the_agent_backs_up_ships_applies_an_event_drills_reports_reloads_and_stops_cleanly() {
    let (env, src, offsite, port) = setup("every 2s");
    let agent = start(env, offsite, port);

    // Backups of both tenants reach the offsite target.
    agent.wait_for(60, "both tenants on offsite", |a| {
        let st = a.env.json(&["status"]);
        let on_offsite = |t: &str| {
            st["tenants"].as_array().unwrap().iter().any(|x| {
                x["tenant"] == t && x["targets"]["offsite"]["snapshots"].as_u64().unwrap_or(0) >= 1
            })
        };
        (on_offsite("acme") && on_offsite("bravo")).then_some(())
    });
    let bravo_before = agent.snapshot_ids("offsite", "bravo");
    assert!(!bravo_before.is_empty());

    // A drill runs on its schedule and passes; its record is in the trail.
    let drill = agent.wait_for(60, "a drill", |a| {
        let h = a.env.json(&["drill", "history"]);
        let h = h.as_array().unwrap();
        (!h.is_empty()).then(|| h[0].clone())
    });
    assert_eq!(drill["ok"], true, "{drill}");
    assert_eq!(drill["target"], "offsite", "{drill}");

    // The CRM drops a contract end for bravo, 40 days past: its month after
    // the contract is over, so every copy goes, on both targets.
    let last_day = jiff::Zoned::now()
        .date()
        .checked_sub(jiff::Span::new().days(40))
        .unwrap();
    let event = format!(
        r#"{{"id": "crm-agent-1", "type": "contract_ended", "tenant": "bravo", "effective": "{last_day}"}}"#
    );
    agent
        .env
        .drop_in_inbox("crm-agent-1.json", event.as_bytes());
    let inbox = agent.env.state.join("inbox");
    agent.wait_for(60, "bravo gone from both targets", |a| {
        (a.snapshot_ids("local", "bravo").is_empty()
            && a.snapshot_ids("offsite", "bravo").is_empty())
        .then_some(())
    });
    assert!(inbox.join("processed/crm-agent-1.json").exists());
    let acme_local = agent.snapshot_ids("local", "acme");
    assert!(!acme_local.is_empty(), "acme keeps its snapshots");
    // bravo is not backed up again: two more backups of acme, the second
    // started after the event was applied, and bravo's last attempt stays.
    let attempt = |a: &Agent, key: &str| -> Option<String> {
        let st: Value =
            serde_json::from_slice(&fs::read(a.env.state.join("agent-state.json")).ok()?).ok()?;
        st["backups"][key]["last_attempt"]
            .as_str()
            .map(str::to_string)
    };
    let a0 = attempt(&agent, "acme/www");
    let a1 = agent.wait_for(20, "an acme backup", |a| {
        attempt(a, "acme/www").filter(|t| Some(t) != a0.as_ref())
    });
    let bravo = attempt(&agent, "bravo/www");
    agent.wait_for(20, "another acme backup", |a| {
        attempt(a, "acme/www").filter(|t| *t != a1)
    });
    assert_eq!(
        attempt(&agent, "bravo/www"),
        bravo,
        "a tenant whose contract ended is not backed up again"
    );
    assert!(agent.snapshot_ids("local", "bravo").is_empty());

    // Quiet the schedule by a reload, so that the figures stop moving.
    let quiet = config_text(&agent.env, port, "daily 02:00", &src)
        .replace("schedule = \"every 4s\"", "schedule = \"off\"");
    fs::write(&agent.env.config, quiet).unwrap();
    agent.process.signal(libc::SIGHUP);
    agent.wait_for(20, "the reload", |a| {
        a.log_text()
            .contains("configuration reloaded")
            .then_some(())
    });

    // The metrics agree with `gallra status --json`, once the last job's
    // figures are in.
    let (metrics, status) = agent.wait_for(60, "metrics matching status", |a| {
        let status = a.env.json(&["status"]);
        let metrics = a.metrics();
        agree(&metrics, &status).ok().map(|()| (metrics, status))
    });
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    assert_eq!(status["overdue_deletions"], 0, "{status}");
    assert_eq!(
        sample(&metrics, "gallra_overdue_deletions{host=\"testhost\"}"),
        Some(0.0)
    );
    assert_eq!(status["agent"]["running"], true, "{status}");
    assert!(
        status["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["tenant"] != "bravo" || t["targets"].as_object().unwrap().is_empty()),
        "bravo holds nothing: {status}"
    );
    assert!(
        sample(&metrics, "gallra_bytes_shipped_total{host=\"testhost\"}").unwrap() > 0.0,
        "{metrics}"
    );
    let acme = status["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "acme")
        .unwrap();
    let www = &acme["sources"][0];
    assert_eq!(www["source"], "www");
    assert!(www["next_run"].as_str().is_some(), "{acme}");
    assert!(www["age_seconds"].as_i64().unwrap() < 120, "{acme}");
    assert_eq!(acme["last_drill"]["ok"], true, "{acme}");
    assert!(acme["oldest_expires"].as_str().is_some(), "{acme}");
    // The human status names the tenants and the overdue count.
    let human = stdout(&agent.env.ok(&["status"]));
    assert!(
        human.contains("tenant acme") && human.contains("overdue deletions: 0"),
        "{human}"
    );

    // A broken config is refused, named by line, and the old one kept.
    let good = fs::read_to_string(&agent.env.config).unwrap();
    let broken = good.replace("[key]\n", "[key]\nfiel = \"oops\"\n");
    let bad_line = broken.lines().position(|l| l.starts_with("fiel")).unwrap() + 1;
    fs::write(&agent.env.config, &broken).unwrap();
    agent.process.signal(libc::SIGHUP);
    agent.wait_for(20, "the refused reload", |a| {
        a.log_text()
            .contains("configuration not reloaded")
            .then_some(())
    });
    let log = agent.log_text();
    assert!(
        log.contains(&format!("line {bad_line}")) && log.contains("fiel"),
        "{log}"
    );
    assert!(agent.process.alive());
    assert!(agent.metrics().starts_with("HTTP/1.1 200 OK"));
    fs::write(&agent.env.config, &good).unwrap();

    // SIGTERM: exit 0 well within 30 s, nothing locked, both targets clean.
    let stopped = Instant::now();
    agent.process.signal(libc::SIGTERM);
    let code = loop {
        if let Some(st) = agent.process.exit_status() {
            break st.code();
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "no exit in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, Some(0), "{}", agent.log_text());
    assert!(agent.log_text().contains("stopped"));
    assert_eq!(locks(&agent.env.repo), Vec::<PathBuf>::new());
    assert_eq!(locks(&agent.offsite), Vec::<PathBuf>::new());
    for target in ["local", "offsite"] {
        let check = agent
            .env
            .json(&["check", "--target", target, "--read-data"]);
        assert_eq!(check["ok"], true, "{target}: {check}");
    }
    let audit = agent.env.json(&["audit", "verify"]);
    assert!(audit["problems"].as_array().unwrap().is_empty(), "{audit}");
    let status = agent.env.json(&["status"]);
    assert_eq!(status["agent"]["running"], false, "{status}");
}

/// An agent stopped by SIGTERM two seconds into a slow backup (8 MiB of
/// acme alone, reads capped at 256 KiB/s), with its exit code and how long
/// it took to exit.
struct StoppedBackup {
    agent: Agent,
    src: PathBuf,
    code: Option<i32>,
    took: Duration,
}

fn sigterm_during_a_slow_backup() -> StoppedBackup {
    let (env, src, offsite, port) = setup("every 1s");
    write_file(&src.join("acme/big.bin"), &Rng::new(3).bytes(8 << 20));
    fs::remove_dir_all(src.join("bravo")).unwrap();
    let text = fs::read_to_string(&env.config).unwrap().replace(
        "splay = \"1s\"\n",
        "splay = \"1s\"\nmax_read = \"256 KiB/s\"\n",
    );
    fs::write(&env.config, text).unwrap();
    let agent = start(env, offsite, port);
    agent.wait_for(30, "the backup to start", |a| {
        a.log_text()
            .contains("starting job=backup:www")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let stopped = Instant::now();
    agent.process.signal(libc::SIGTERM);
    let code = agent.process.wait_exit().code();
    StoppedBackup {
        agent,
        src,
        code,
        took: stopped.elapsed(),
    }
}

/// SIGTERM in the middle of a slow backup (reads capped at 256 KiB/s): the
/// agent stops it before it commits, exits 0 within 30 s, releases the
/// tenant's lock, and leaves no snapshot and nothing damaged.
#[test]
fn sigterm_abandons_a_backup_in_flight_without_a_snapshot_or_a_lock() {
    let StoppedBackup {
        agent, code, took, ..
    } = sigterm_during_a_slow_backup();
    let log = agent.log_text();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("stopped before committing"), "{log}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        agent.snapshot_ids("local", "acme").is_empty(),
        "no snapshot of a part-read source"
    );
    assert_eq!(locks(&agent.env.repo), Vec::<PathBuf>::new());
    let check = agent.env.json(&["check"]);
    assert_eq!(check["ok"], true, "{check}");
}

#[test]
fn the_agent_refuses_a_broken_config_naming_the_line() {
    let (env, _src, _offsite, _port) = setup("every 2s");
    let text = fs::read_to_string(&env.config).unwrap();
    let broken = text.replace("schedule = \"every 2s\"", "schedule = \"every fortnight\"");
    let line = broken
        .lines()
        .position(|l| l.contains("fortnight"))
        .unwrap()
        + 1;
    fs::write(&env.config, &broken).unwrap();
    let out = env.run(&["agent"]);
    assert_error(
        &out,
        2,
        "agent with a bad schedule",
        &[&format!("line {line}"), "every fortnight", "www"],
    );

    let broken = text.replace("[key]\n", "[key]\nfiel = \"x\"\n");
    let line = broken.lines().position(|l| l.starts_with("fiel")).unwrap() + 1;
    fs::write(&env.config, &broken).unwrap();
    let out = env.run(&["agent"]);
    assert_error(
        &out,
        2,
        "agent with an unknown key",
        &[&format!("line {line}"), "fiel"],
    );
}

#[test]
fn config_check_accepts_the_example_and_prints_the_retention_table() {
    let env = Env::new();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.toml.example");
    // As shipped, the example names a key file this machine does not have:
    // config check says so (the agent would fail at its first job).
    let out = env.run_without_config(&["config", "check", s(&shipped)]);
    assert_exit(&out, 2, "config check of the example as shipped");
    assert!(
        stderr(&out).contains("/etc/gallra/key"),
        "{}",
        describe(&out)
    );
    // With a key file that exists and a dump command that does, it passes.
    let example = env.path("agent.toml");
    let text = fs::read_to_string(&shipped)
        .unwrap()
        .replace("/etc/gallra/key", s(&env.key))
        .replace("\"mysqldump\"", "\"true\"")
        .replace("\"pg_dump\"", "\"true\"");
    fs::write(&example, text).unwrap();
    let out = env.run_without_config(&["config", "check", s(&example)]);
    assert_success(&out, "config check of the example");
    let text = stdout(&out);
    for (category, keep, after) in [
        ("site", "6mo", "1mo"),
        ("logs", "6mo", "6mo"),
        ("bookkeeping", "7y", "7y"),
        ("contacts", "7y", "7y"),
        ("company-mail", "2y", "2y"),
        ("chat", "12mo", "12mo"),
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{category} ")))
            .unwrap_or_else(|| panic!("no rule line for {category}:\n{text}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((words[2], words[3]), (keep, after), "{line}");
    }
    let v: Value = parse_json(&env.run_without_config(&["config", "check", s(&example), "--json"]));
    let book = v["retention"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["category"] == "bookkeeping")
        .unwrap();
    assert_eq!(book["legal_obligation"], true, "{v}");
    assert!(
        v["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["job"] == "backup:www" && s["schedule"] == "daily 02:00"),
        "{v}"
    );

    // A store option that object_store does not know is named; nothing
    // was contacted (the endpoint does not exist).
    let bad = fs::read_to_string(&example)
        .unwrap()
        .replace("region = \"eu-north-1\"", "regoin = \"eu-north-1\"");
    let file = env.path("bad.toml");
    fs::write(&file, bad).unwrap();
    let out = env.run_without_config(&["config", "check", s(&file)]);
    assert_error(
        &out,
        2,
        "config check with a bad store option",
        &["offsite", "regoin"],
    );
}

/// Under systemd the key arrives as a credential (`LoadCredential=`):
/// `[key] credential` reads `$CREDENTIALS_DIRECTORY/NAME`, accepts the 0440
/// that systemd 254+ shows for its ACL, refuses a world-readable one, and
/// says what is missing outside the service.
#[test]
fn the_key_may_come_from_a_systemd_credential() {
    use std::os::unix::fs::PermissionsExt;
    let (env, _src, _offsite, _port) = setup("every 2s");
    let creds = env.path("credentials");
    fs::create_dir(&creds).unwrap();
    let key = creds.join("gallra.key");
    fs::copy(&env.key, &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o440)).unwrap();
    let text = fs::read_to_string(&env.config).unwrap().replace(
        &format!("file = {}", toml_str(s(&env.key))),
        "credential = \"gallra.key\"",
    );
    fs::write(&env.config, text).unwrap();
    let run = |dir: Option<&Path>| {
        let mut cmd = env.spawnable(&["key", "list"]);
        cmd.env_remove("CREDENTIALS_DIRECTORY");
        if let Some(d) = dir {
            cmd.env("CREDENTIALS_DIRECTORY", d);
        }
        cmd.output().unwrap()
    };
    assert_success(&run(Some(&creds)), "key list with the credential");
    let out = run(None);
    assert_error(
        &out,
        1,
        "without $CREDENTIALS_DIRECTORY",
        &["CREDENTIALS_DIRECTORY", "LoadCredential=gallra.key"],
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o444)).unwrap();
    let out = run(Some(&creds));
    assert_error(
        &out,
        1,
        "a world-readable credential",
        &["0444", "gallra.key"],
    );
}

/// Issue 15 item 6: with an event object that cannot be read the agent
/// logged "every tenant is backed up" and backed up an erased tenant again
/// under a new key. Now it backs up no one and says why.
#[test]
fn an_unreadable_event_object_stops_the_agents_backups() {
    let (env, _src, offsite, port) = setup("every 2s");
    env.ok(&["backup", "--tenant", "acme", "--tenant", "bravo"]);
    env.ok(&["erase", "bravo", "--reason", "GDPR art. 17", "--yes"]);
    let key = env.repo.join("tenants/bravo/key");
    assert!(!key.exists(), "erased");
    for e in fs::read_dir(env.repo.join("lifecycle/events")).unwrap() {
        fs::write(e.unwrap().path(), b"damaged").unwrap();
    }
    let agent = start(env, offsite, port);
    let error = agent.wait_for(30, "acme's backup refused", |a| {
        let st: Value =
            serde_json::from_slice(&fs::read(a.env.state.join("agent-state.json")).ok()?).ok()?;
        st["backups"]["acme/www"]["last_error"]
            .as_str()
            .map(str::to_string)
    });
    assert!(error.contains("lifecycle events"), "{error}");
    assert!(!key.exists(), "no new key for the erased tenant");
    assert!(
        !fs::read_dir(agent.env.repo.join("tenants"))
            .unwrap()
            .flatten()
            .any(|t| t.file_name() == "bravo" && t.path().join("snapshots").exists()),
        "bravo was not backed up again"
    );
}

/// The samples of the agent's /metrics, or None while it does not answer
/// or has no status yet.
fn scrape(a: &Agent) -> Option<Vec<crate::common::alerts::Sample>> {
    let text = get_metrics(a.port).ok()?;
    // 503 until the agent's first status: no samples yet, not a bad scrape.
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some(crate::common::alerts::parse(body))
}

/// The value of `name` with exactly `labels`, if the scrape has it.
fn value_of(
    samples: &[crate::common::alerts::Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
}

/// Whether any series of the scrape names `tenant` and `source`.
fn has_source_series(
    samples: &[crate::common::alerts::Sample],
    tenant: &str,
    source: &str,
) -> bool {
    samples.iter().any(|(_, l, _)| {
        l.iter().any(|(k, v)| k == "tenant" && v == tenant)
            && l.iter().any(|(k, v)| k == "source" && v == source)
    })
}

/// Before: a backup that SIGTERM stopped was recorded as failed, so
/// `gallra_backup_failing` read 1 for a source nothing was wrong with,
/// and `gallra_errors_total{kind="backup"}` grew with every restart.
#[test]
fn a_sigterm_during_a_backup_is_not_a_failure_in_metrics() {
    let StoppedBackup {
        mut agent,
        src,
        code,
        ..
    } = sigterm_during_a_slow_backup();
    let port = agent.port;
    let log = agent.log_text();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("stopped before committing"), "{log}");
    assert!(agent.snapshot_ids("local", "acme").is_empty());

    // The agent again, on a schedule that does not come round during the
    // test: what it serves is what the stopped run left on record.
    let quiet = config_text(&agent.env, port, "cron 0 3 1 1 *", &src)
        .replace("schedule = \"every 4s\"", "schedule = \"off\"");
    fs::write(&agent.env.config, quiet).unwrap();
    agent.process = RunningAgent::start(&agent.env, "agent.log");
    let samples = agent.wait_for(30, "acme's metrics", |a| {
        scrape(a).filter(|s| {
            value_of(
                s,
                "gallra_backup_failing",
                &[("tenant", "acme"), ("source", "www")],
            )
            .is_some()
        })
    });
    assert_eq!(
        value_of(
            &samples,
            "gallra_backup_failing",
            &[("tenant", "acme"), ("source", "www")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value_of(&samples, "gallra_errors_total", &[("kind", "backup")]),
        Some(0.0)
    );
    let st = agent.env.json(&["status"]);
    let acme = st["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "acme")
        .unwrap();
    assert_eq!(acme["sources"][0]["last_error"], Value::Null, "{acme}");
}

/// Before: a source taken out of the config kept its series, among them
/// `gallra_backup_failing` at 1 for ever if its last run failed.
#[test]
fn a_removed_source_has_no_series() {
    let (env, src, offsite, port) = setup("cron 0 3 1 1 *");
    let with_db = fs::read_to_string(&env.config).unwrap()
        + &command_source("db", "database", "acme", &["false"], "acme.sql")
            .replace("[[source]]\n", "[[source]]\nschedule = \"every 1s\"\n");
    fs::write(&env.config, &with_db).unwrap();
    let agent = start(env, offsite, port);
    agent.wait_for(30, "db failing", |a| {
        scrape(a).filter(|s| {
            value_of(
                s,
                "gallra_backup_failing",
                &[("tenant", "acme"), ("source", "db")],
            ) == Some(1.0)
        })
    });
    fs::write(
        &agent.env.config,
        config_text(&agent.env, port, "cron 0 3 1 1 *", &src),
    )
    .unwrap();
    agent.process.signal(libc::SIGHUP);
    // The drill (every 4 s) refreshes the status after the reload.
    let samples = agent.wait_for(30, "db's series gone", |a| {
        scrape(a).filter(|s| !has_source_series(s, "acme", "db"))
    });
    assert!(
        value_of(
            &samples,
            "gallra_backup_failing",
            &[("tenant", "acme"), ("source", "www")]
        )
        .is_some(),
        "the source still configured keeps its series"
    );
}

/// Before: an erased tenant whose snapshots a hold keeps still had
/// `gallra_last_backup_timestamp_seconds`, so the README's freshness alert
/// fired for it for ever; `status` showed it a next run, and printed
/// "held:" for every tenant, held or not.
#[test]
fn an_erased_tenant_has_no_freshness_series() {
    let (env, _src, offsite, port) = setup("every 2s");
    env.ok(&["backup", "--tenant", "acme", "--tenant", "bravo"]);
    env.ok(&["hold", "set", "bravo", "--reason", "court order 7"]);
    let agent = start(env, offsite, port);
    agent.wait_for(30, "bravo's freshness series", |a| {
        scrape(a).filter(|s| has_source_series(s, "bravo", "www"))
    });
    agent.env.drop_in_inbox(
        "erase-bravo.json",
        br#"{"id": "erase-bravo", "type": "erasure_requested", "tenant": "bravo", "reason": "GDPR art. 17"}"#,
    );
    let samples = agent.wait_for(30, "bravo's series gone", |a| {
        scrape(a).filter(|s| !has_source_series(s, "bravo", "www"))
    });
    assert!(
        value_of(
            &samples,
            "gallra_last_backup_timestamp_seconds",
            &[("tenant", "acme"), ("source", "www")]
        )
        .is_some(),
        "acme is still backed up"
    );
    assert!(!agent.snapshot_ids("local", "bravo").is_empty(), "held");

    let st = agent.env.json(&["status"]);
    let tenant = |name: &str| {
        st["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tenant"] == name)
            .unwrap()
            .clone()
    };
    let (acme, bravo) = (tenant("acme"), tenant("bravo"));
    assert_eq!(bravo["erasure_requested"], true, "{bravo}");
    assert_eq!(bravo["sources"][0]["next_run"], Value::Null, "{bravo}");
    assert!(acme["sources"][0]["next_run"].is_string(), "{acme}");
    assert_eq!(bravo["holds"][0]["reason"], "court order 7", "{bravo}");
    assert_eq!(acme["holds"], serde_json::json!([]), "{acme}");

    let text = stdout(&agent.env.ok(&["status"]));
    let section = |name: &str| -> String {
        text.split("\ntenant ")
            .find(|s| s.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .to_string()
    };
    assert!(!section("acme").contains("held:"), "{text}");
    assert!(section("bravo").contains("held: hold"), "{text}");
    assert!(section("bravo").contains("court order 7"), "{text}");
}

/// Before: a tenant whose contract had ended kept its freshness series
/// until the lifecycle deleted its last snapshot, a month on.
#[test]
fn an_ended_tenant_has_no_freshness_series() {
    let (env, _src, offsite, port) = setup("cron 0 3 1 1 *");
    env.ok(&["backup", "--tenant", "acme", "--tenant", "bravo"]);
    let yesterday = jiff::Zoned::now().date().yesterday().unwrap().to_string();
    env.ok(&["contract", "end", "bravo", "--effective", &yesterday]);
    let agent = start(env, offsite, port);
    let samples = agent.wait_for(30, "acme's freshness series", |a| {
        scrape(a).filter(|s| {
            value_of(
                s,
                "gallra_last_backup_timestamp_seconds",
                &[("tenant", "acme"), ("source", "www")],
            )
            .is_some()
        })
    });
    assert!(!has_source_series(&samples, "bravo", "www"));
    assert!(
        !agent.snapshot_ids("local", "bravo").is_empty(),
        "kept a month"
    );
}

/// Before: while the offsite could not be read its backlog series were
/// left out, and with them the README's backlog alert went quiet for as
/// long as the outage lasted.
#[test]
fn the_backlog_alert_fires_while_the_offsite_is_down() {
    let backlog_alert = crate::common::alerts::README_ALERTS
        .iter()
        .find(|a| a.starts_with("gallra_ship_backlog_objects"))
        .unwrap();
    let (env, _src, offsite, port) = setup("cron 0 3 1 1 *");
    env.ok(&["backup", "--tenant", "acme"]);
    let agent = start(env, offsite.clone(), port);
    let up = agent.wait_for(30, "offsite up", |a| {
        scrape(a).filter(|s| value_of(s, "gallra_target_up", &[("target", "offsite")]) == Some(1.0))
    });
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!(
        crate::common::alerts::fires(backlog_alert, now, &up, &up).is_empty(),
        "nothing is behind"
    );
    // The offsite goes away (an unmounted backup server).
    let away = agent.env.path("offsite-away");
    fs::rename(&offsite, &away).unwrap();
    let down = agent.wait_for(30, "offsite down", |a| {
        scrape(a).filter(|s| value_of(s, "gallra_target_up", &[("target", "offsite")]) == Some(0.0))
    });
    let firing = crate::common::alerts::fires(backlog_alert, now, &down, &down);
    assert_eq!(
        firing.into_iter().collect::<Vec<_>>(),
        vec![vec![("target".to_string(), "offsite".to_string())]]
    );
    fs::rename(&away, &offsite).unwrap();
}
