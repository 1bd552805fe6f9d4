//! `gallra quickstart`: a self-contained demo of the real job on local
//! `file://` targets, runnable on a fresh clone with nothing but Rust.
//!
//! It drives the gallra binary itself, step by step, printing each command,
//! so what it shows is exactly what an operator would type.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

const TENANTS: [&str; 3] = ["acme", "bravo", "cirrus"];

fn write(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(path, data).map_err(|e| Error::io(path, e))
}

/// Deterministic filler so the demo is the same on every machine.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn make_demo_tree(demo: &Path) -> Result<()> {
    for (i, t) in TENANTS.iter().enumerate() {
        let www = demo.join("www").join(t);
        write(
            &www.join("index.php"),
            format!("<?php\n// {t}'s site\necho 'Välkommen till {t}';\n")
                .repeat(20)
                .as_bytes(),
        )?;
        write(
            &www.join("css/style.css"),
            b"body { font-family: sans-serif; }\n".repeat(50).as_slice(),
        )?;
        write(
            &www.join("uploads/2026/11/photo.jpg"),
            &pseudo_random(300_000 + i * 50_000, i as u64),
        )?;
        write(
            &www.join("cache/page.html"),
            b"cached page, excluded by the source's glob",
        )?;
        let link = www.join("current.css");
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("css/style.css", &link).map_err(|e| Error::io(&link, e))?;
        }
        let maildir = demo.join("mail").join(t).join("Maildir/cur");
        for m in 0..5 {
            write(
                &maildir.join(format!("17000000{m}.M{i}P1.demo:2,S")),
                format!("From: kund{m}@example.se\nTo: info@{t}.example\nSubject: Order {m}\n\nHej! Order {m} för {t}.\n").as_bytes(),
            )?;
        }
    }
    Ok(())
}

fn config_text(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"# gallra quickstart: everything lives under {d}
[agent]
host = "quickstart"
state_dir = "{d}/state"

[key]
file = "{d}/key"

[[target]]
name = "local"
url = "file://{d}/repo-local"
primary = true

[[target]]
name = "offsite"
url = "file://{d}/repo-offsite"

[[source]]
name = "www"
category = "site"
paths = ["{d}/demo/www/{{tenant}}"]
exclude = ["**/cache/**"]

[[source]]
name = "mail"
category = "mail"
paths = ["{d}/demo/mail/{{tenant}}"]

[[source]]
name = "db"
category = "database"
tenant = "acme"
command = ["sh", "-c", "echo '-- dump of acme'; i=0; while [ $i -lt 3000 ]; do echo \"INSERT INTO orders VALUES ($i, 'kund$i', 'order för kund $i');\"; i=$((i+1)); done"]
stdout_file = "acme.sql"

[retention.default]
keep = "6 months"
after_contract = "1 month"
legal_basis = "agreement: backups kept at most six months"
"#
    )
}

struct Runner {
    exe: PathBuf,
    /// How to call the binary from the current folder, for the printed commands.
    shown: String,
    config: PathBuf,
}

impl Runner {
    fn run(&self, args: &[&str]) -> Result<String> {
        println!(
            "\n$ {} --config {} {}",
            self.shown,
            self.config.display(),
            args.join(" ")
        );
        let out = Command::new(&self.exe)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .map_err(|e| Error::io(&self.exe, e))?;
        std::io::stderr().write_all(&out.stderr).ok();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !args.contains(&"--json") {
            print!("{stdout}");
        }
        if !out.status.success() {
            return Err(Error::Usage(format!(
                "quickstart step `gallra {}` failed ({})",
                args.join(" "),
                out.status
            )));
        }
        Ok(stdout)
    }
}

pub fn run(dir: &Path, exe: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let key = dir.join("key");
    if !key.exists() {
        crate::crypto::generate_key_file(&key)?;
        println!("generated key file {} (0600)", key.display());
    }
    let config = dir.join("agent.toml");
    if !config.exists() {
        std::fs::write(&config, config_text(&dir)).map_err(|e| Error::io(&config, e))?;
        println!("wrote {}", config.display());
    }
    make_demo_tree(&dir.join("demo"))?;
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            exe.strip_prefix(cwd)
                .ok()
                .map(|rel| format!("./{}", rel.display()))
        })
        .unwrap_or_else(|| exe.display().to_string());
    let r = Runner {
        exe: exe.to_path_buf(),
        shown: shown.clone(),
        config: config.clone(),
    };
    let first_run = !dir.join("repo-local/config").exists();
    if first_run {
        r.run(&["init"])?;
        // A backup dated seven months back, so that the lifecycle below has
        // something past the six-month rule to delete.
        let old = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .checked_sub(jiff::Span::new().months(7))
            .map_err(|e| Error::Usage(format!("date arithmetic: {e}")))?
            .timestamp()
            .to_string();
        r.run(&[
            "backup", "--tenant", "bravo", "--time", &old, "--tag", "run=old",
        ])?;
    } else {
        println!("repository exists already; taking another backup");
    }
    r.run(&["backup", "--tag", "run=quickstart"])?;
    // Change one page, then back up again: only that file is read.
    let page = dir.join("demo/www/acme/index.php");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&page)
        .map_err(|e| Error::io(&page, e))?;
    writeln!(f, "// edited at {}", jiff::Timestamp::now()).map_err(|e| Error::io(&page, e))?;
    r.run(&["backup", "--tenant", "acme"])?;
    r.run(&["snapshots"])?;
    // Each backup shipped its snapshots to the offsite target.
    r.run(&["status"])?;
    let listing = r.run(&["snapshots", "--tenant", "acme", "--json"])?;
    let snaps: serde_json::Value = serde_json::from_str(&listing)
        .map_err(|e| Error::Usage(format!("snapshots --json: {e}")))?;
    let latest = snaps
        .as_array()
        .and_then(|a| a.iter().rev().find(|s| s["source"] == "www"))
        .and_then(|s| s["id"].as_str())
        .ok_or_else(|| Error::Usage("no snapshot of acme/www".into()))?
        .to_string();
    let n = (1..)
        .find(|n| !dir.join(format!("restore-{n}")).exists())
        .expect("some n is free");
    let to = dir.join(format!("restore-{n}"));
    // Restored from the offsite copy, as after losing the server.
    r.run(&[
        "restore",
        &latest[..12],
        "--target",
        "offsite",
        "--to",
        &to.to_string_lossy(),
        "--verify",
    ])?;
    // The lifecycle: what is due, then deleting it on both targets, with
    // the audit trail as evidence.
    r.run(&["lifecycle", "plan"])?;
    r.run(&["lifecycle", "apply"])?;
    r.run(&["snapshots", "--tenant", "bravo"])?;
    // A restore drill of two tenants drawn at random, from the offsite copy
    // as after a disaster, with a report for an auditor.
    let report = dir.join("drill-report.md");
    r.run(&["drill", "--report", &report.to_string_lossy()])?;
    r.run(&["audit", "list", "--tenant", "bravo"])?;
    r.run(&["audit", "verify"])?;
    r.run(&["check", "--read-data"])?;
    r.run(&["check", "--target", "offsite"])?;
    let c = format!("{shown} --config {}", config.display());
    println!(
        "\nDone. The restored site is under {}{}/demo/www/acme.\nTry next:\n  {c} snapshots\n  {c} ls {short}\n  {c} dump {short} {d}/demo/www/acme/index.php\n  {c} check --read-data\n  {c} status\n  {c} backup --json\n  {c} lifecycle plan --at 2027-06-01\n  {c} audit export --tenant bravo\n  {c} drill --tenant acme --target local --report drill.html\n  {c} drill history\n  {c} config check\n  {c} agent      # the daemon, on the schedules of agent.toml; Ctrl-C stops it",
        to.display(),
        dir.display(),
        short = &latest[..8],
        d = dir.display(),
    );
    Ok(())
}
