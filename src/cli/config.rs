//! `gallra config check`.

use clap::Subcommand;
use serde_json::json;
use std::path::{Path, PathBuf};

use gallra::config::{Config, SourceKind};
use gallra::crypto::{KeyMaterial, KeySource};

use super::output::print_json;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check every key, URL, store option and schedule; print the effective retention rules
    Check {
        /// The file to check (default: --config, $GALLRA_CONFIG, /etc/gallra/agent.toml)
        file: Option<PathBuf>,
    },
}

/// `config_path` is the file `--config` or the environment names, checked
/// when the command names none.
pub fn run(config_path: &Path, json_out: bool, command: ConfigCommand) -> anyhow::Result<i32> {
    match command {
        ConfigCommand::Check { file } => {
            config_check(file.as_deref().unwrap_or(config_path), json_out)
        }
    }
}

/// Whether `program` would start: a path to an executable file, or a name
/// found as one in `$PATH`, as `execvp` looks it up.
fn command_found(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return runnable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| runnable(&d.join(program))))
}

/// What would stop the agent or a backup at its first job, though the file
/// parses: a key that cannot be read, a command source that cannot start.
/// The key is read as the agent reads it (owner, mode, size) and dropped at
/// once; no store is touched.
fn config_problems(config: &Config) -> (Vec<String>, Vec<String>) {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    match &config.key {
        KeySource::Credential(_) if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() => {}
        KeySource::PassphraseEnv(var) if std::env::var_os(var).is_none() => warnings.push(format!(
            "[key] passphrase_env: ${var} is not set here; the agent needs it in its environment"
        )),
        source => {
            if let Err(e) = KeyMaterial::load(source) {
                problems.push(format!("[key]: {e}"));
            }
        }
    }
    for s in &config.sources {
        if let SourceKind::Command { argv, .. } = &s.kind
            && !command_found(&argv[0])
        {
            problems.push(format!(
                "[[source]] {}: command {:?} is not an executable file, nor found in $PATH",
                s.name, argv[0]
            ));
        }
    }
    (problems, warnings)
}

/// Checks a config without touching a store: every key known, URLs and
/// store options valid, schedules parsed, the key file readable and every
/// command source's program found; prints the effective retention rule of
/// each category.
fn config_check(path: &Path, json_out: bool) -> anyhow::Result<i32> {
    let config = Config::load(path)?;
    for t in &config.targets {
        gallra::store::check_target(t)?;
    }
    let (problems, mut warnings) = config_problems(&config);
    warnings.extend(
        config
            .targets
            .iter()
            .filter_map(|t| gallra::store::credentials_file_problem(&t.store)),
    );
    let mut categories: Vec<String> = config
        .sources
        .iter()
        .map(|s| s.category.clone())
        .chain(config.retention.category.keys().cloned())
        .collect();
    categories.sort();
    categories.dedup();
    // A tenant without an agreement of its own ("") gets the category's rule.
    let rule_json = |tenant: &str, category: &str| {
        let r = config.policy.rule_for(tenant, category);
        let mut v = json!({
            "category": category,
            "rule": r.name,
            "keep": format!("{:#}", r.keep),
            "after_contract": format!("{:#}", r.after_contract),
            "legal_obligation": r.legal_obligation,
            "legal_basis": r.legal_basis,
        });
        if !tenant.is_empty() {
            v["tenant"] = tenant.into();
        }
        v
    };
    let rules: Vec<serde_json::Value> = categories.iter().map(|c| rule_json("", c)).collect();
    let tenant_rules: Vec<serde_json::Value> = config
        .retention
        .tenant
        .keys()
        .flat_map(|tenant| categories.iter().map(|c| rule_json(tenant, c)))
        .collect();
    let schedules: Vec<serde_json::Value> = config
        .sources
        .iter()
        .map(|s| json!({"job": format!("backup:{}", s.name), "schedule": s.schedule.to_string()}))
        .chain([
            json!({"job": "lifecycle", "schedule": config.agent.lifecycle.to_string()}),
            json!({"job": "drill", "schedule": config.drill.schedule.as_ref().map_or("off".into(), |s| s.to_string())}),
        ])
        .collect();
    if json_out {
        print_json(&json!({
            "file": path,
            "ok": problems.is_empty(),
            "problems": problems,
            "targets": config.targets.iter().map(|t| json!({"name": t.name, "url": t.url, "primary": t.primary})).collect::<Vec<_>>(),
            "sources": config.sources.len(),
            "schedules": schedules,
            "retention": rules,
            "tenant_retention": tenant_rules,
            "warnings": warnings,
        }))?;
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        println!(
            "{}: {} ({} targets, {} sources)",
            path.display(),
            if problems.is_empty() {
                "ok".to_string()
            } else {
                format!("{} problem(s)", problems.len())
            },
            config.targets.len(),
            config.sources.len()
        );
        for w in &warnings {
            println!("warning: {w}");
        }
        for s in &schedules {
            println!(
                "schedule {:<16} {}",
                s["job"].as_str().unwrap_or_default(),
                s["schedule"].as_str().unwrap_or_default()
            );
        }
        println!("effective retention rules:");
        println!(
            "  {:<16} {:<22} {:<10} {:<14} {:<6} legal basis",
            "category", "rule", "keep", "after contract", "legal"
        );
        for r in rules.iter().chain(&tenant_rules) {
            let name = match r["tenant"].as_str() {
                Some(t) => format!("{}@{t}", r["category"].as_str().unwrap_or_default()),
                None => r["category"].as_str().unwrap_or_default().to_string(),
            };
            println!(
                "  {:<16} {:<22} {:<10} {:<14} {:<6} {}",
                name,
                r["rule"].as_str().unwrap_or_default(),
                r["keep"].as_str().unwrap_or_default(),
                r["after_contract"].as_str().unwrap_or_default(),
                if r["legal_obligation"] == true {
                    "yes"
                } else {
                    "no"
                },
                r["legal_basis"].as_str().unwrap_or_default()
            );
        }
    }
    // A config that parses but cannot run is a bad config (exit 2), as the
    // agent would find at its first job.
    Ok(if problems.is_empty() { 0 } else { 2 })
}
