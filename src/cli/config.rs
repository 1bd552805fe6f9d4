//! `gallra config check`.

use clap::Subcommand;
use serde::Serialize;
use std::path::{Path, PathBuf};

use gallra::config::{Config, SourceKind, Target};
use gallra::crypto::{KeyMaterial, KeySource};
use gallra::protection::Protection;
use gallra::survival::{self, OldVersions, Versioning};

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
    match &config.key.master {
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
    // The key service's credentials are read as the agent reads them; the
    // service itself is not called.
    if let Some(settings) = &config.key.service
        && let Err(e) = gallra::keyservice::KeyService::new(settings)
    {
        problems.push(e.to_string());
    }
    for t in &config.targets {
        if t.lock.is_some() && config.key.service.is_none() {
            warnings.push(format!(
                "target {}: lock without a [key_service]: a contract end or erasure hides a tenant's copies there on its day, but their versions stay locked until their snapshots' retention ends, and open with the key file until then; set up a [key_service] so that they open with nothing once the tenant's key epoch is destroyed",
                t.name
            ));
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

/// `config check --json`.
#[derive(Serialize)]
struct ConfigCheckJson<'a> {
    file: &'a Path,
    /// No problem found: the agent would start.
    ok: bool,
    problems: &'a [String],
    targets: Vec<TargetJson<'a>>,
    /// How many `[[source]]` tables.
    sources: usize,
    schedules: &'a [ScheduleJson],
    retention: &'a [RuleJson],
    tenant_retention: &'a [RuleJson],
    warnings: &'a [String],
}

/// A target as `config check` shows it: no store options, no credentials.
#[derive(Serialize)]
struct TargetJson<'a> {
    name: &'a str,
    url: &'a str,
    primary: bool,
    /// The recorded probe of its old versions; `None`: not probed yet
    /// (`config check` touches no store).
    old_versions: Option<Versioning>,
    noncurrent_expiry: Option<String>,
    /// What protects it against this server, as last probed.
    protection: Protection,
}

impl<'a> TargetJson<'a> {
    fn new(config: &Config, t: &'a Target) -> TargetJson<'a> {
        TargetJson {
            name: &t.name,
            url: &t.url,
            primary: t.primary,
            old_versions: survival::recorded(&config.agent.state_dir, t),
            noncurrent_expiry: t.noncurrent_expiry.map(|e| e.to_string()),
            protection: gallra::protection::recorded(&config.agent.state_dir, t),
        }
    }

    /// "target offsite: keeps old versions: yes (probed ...); noncurrent_expiry 30 days".
    fn line(&self) -> String {
        let known = match &self.old_versions {
            Some(v) => format!(
                "{} (probed {})",
                v.old_versions.as_word(),
                v.probed.map_or("-".into(), |t| t.to_string())
            ),
            None => "not probed yet (init, the agent and status probe it)".into(),
        };
        let expiry = match &self.noncurrent_expiry {
            Some(e) => format!("noncurrent_expiry {e}"),
            None => "no noncurrent_expiry stated".into(),
        };
        format!(
            "target {}: keeps old versions: {known}; {expiry}\n  protection: {}",
            self.name,
            self.protection.line()
        )
    }

    /// Why an erasure does not hold against this target's old versions,
    /// if it may not: they are kept (or not yet known not to be, on a
    /// bucket), with no stated end, and no key service shreds them.
    fn erasure_warning(&self, config: &Config) -> Option<String> {
        if self.noncurrent_expiry.is_some() || config.key.service.is_some() {
            return None;
        }
        let bucket = !(self.url.starts_with("file://") || self.url.starts_with("memory://"));
        let what = "an erasure does not hold against them: what gallra deletes there stays as old versions that open with the key file or a passphrase until someone deletes them; state the bucket rule's expiry as noncurrent_expiry, or set up a [key_service]";
        match self.old_versions.as_ref().map(|v| v.old_versions) {
            Some(OldVersions::NotKept) => None,
            Some(OldVersions::Kept) => Some(format!(
                "target {}: the bucket keeps old versions and no noncurrent_expiry is stated: {what}",
                self.name
            )),
            Some(OldVersions::Unknown) | None if bucket => Some(format!(
                "target {}: not yet known whether the bucket keeps old versions, and no noncurrent_expiry is stated: if it does, {what}",
                self.name
            )),
            Some(OldVersions::Unknown) | None => None,
        }
    }
}

/// When a job of the agent runs.
#[derive(Serialize)]
struct ScheduleJson {
    job: String,
    schedule: String,
}

/// The rule that governs a category's snapshots, of every tenant or (with
/// `tenant`) of one tenant with an agreement of its own.
#[derive(Serialize)]
struct RuleJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    category: String,
    rule: String,
    /// Periods as written in the config's style (`7y`, `6mo`).
    keep: String,
    after_contract: String,
    legal_obligation: bool,
    legal_basis: String,
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
    let (mut problems, mut warnings) = config_problems(&config);
    let targets: Vec<TargetJson> = config
        .targets
        .iter()
        .map(|t| TargetJson::new(&config, t))
        .collect();
    problems.extend(targets.iter().flat_map(|t| {
        t.protection
            .problems
            .iter()
            .map(|p| format!("target {}: {p}", t.name))
    }));
    warnings.extend(targets.iter().filter_map(|t| t.erasure_warning(&config)));
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
        RuleJson {
            tenant: (!tenant.is_empty()).then(|| tenant.to_string()),
            category: category.to_string(),
            rule: r.name,
            keep: format!("{:#}", r.keep),
            after_contract: format!("{:#}", r.after_contract),
            legal_obligation: r.legal_obligation,
            legal_basis: r.legal_basis,
        }
    };
    let rules: Vec<RuleJson> = categories.iter().map(|c| rule_json("", c)).collect();
    let tenant_rules: Vec<RuleJson> = config
        .retention
        .tenant
        .keys()
        .flat_map(|tenant| categories.iter().map(|c| rule_json(tenant, c)))
        .collect();
    let schedules: Vec<ScheduleJson> = config
        .sources
        .iter()
        .map(|s| ScheduleJson {
            job: format!("backup:{}", s.name),
            schedule: s.schedule.to_string(),
        })
        .chain([
            ScheduleJson {
                job: "lifecycle".into(),
                schedule: config.agent.lifecycle.to_string(),
            },
            ScheduleJson {
                job: "drill".into(),
                schedule: config
                    .drill
                    .schedule
                    .as_ref()
                    .map_or("off".into(), |s| s.to_string()),
            },
        ])
        .collect();
    if json_out {
        print_json(&ConfigCheckJson {
            file: path,
            ok: problems.is_empty(),
            problems: &problems,
            targets,
            sources: config.sources.len(),
            schedules: &schedules,
            retention: &rules,
            tenant_retention: &tenant_rules,
            warnings: &warnings,
        })?;
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
        for t in &targets {
            println!("{}", t.line());
        }
        for w in &warnings {
            println!("warning: {w}");
        }
        for s in &schedules {
            println!("schedule {:<16} {}", s.job, s.schedule);
        }
        println!("effective retention rules:");
        println!(
            "  {:<16} {:<22} {:<10} {:<14} {:<6} legal basis",
            "category", "rule", "keep", "after contract", "legal"
        );
        for r in rules.iter().chain(&tenant_rules) {
            let name = match &r.tenant {
                Some(t) => format!("{}@{t}", r.category),
                None => r.category.clone(),
            };
            println!(
                "  {:<16} {:<22} {:<10} {:<14} {:<6} {}",
                name,
                r.rule,
                r.keep,
                r.after_contract,
                if r.legal_obligation { "yes" } else { "no" },
                r.legal_basis
            );
        }
    }
    // A config that parses but cannot run is a bad config (exit 2), as the
    // agent would find at its first job.
    Ok(if problems.is_empty() { 0 } else { 2 })
}
