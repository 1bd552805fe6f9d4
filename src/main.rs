//! The gallra command line: parse, call the library, print (human or --json).

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;

use gallra::backup::{self, BackupOptions};
use gallra::check::{self, ReadData};
use gallra::config::Target;
use gallra::config::{Config, DEFAULT_CONFIG_PATH};
use gallra::crypto::{self, KeySource};
use gallra::error::Error;
use gallra::format::snapshot::Snapshot;
use gallra::format::tree::NodeKind;
use gallra::repo::Repository;
use gallra::restore::{self, OpenSnapshot, RestoreOptions};
use gallra::ship::{self, ShipOptions, ShipReport};
use gallra::store::Store;
use gallra::text::{escape_control as esc, human_bytes};

mod cli;
use cli::lifecycle::{AuditCommand, ContractCommand, HoldCommand, InboxCommand, LifecycleCommand};

#[derive(Parser)]
#[command(name = "gallra", version, about = "Encrypted backup lifecycle agent")]
struct Cli {
    /// agent.toml to use (else $GALLRA_CONFIG, else /etc/gallra/agent.toml)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Machine-readable output: one JSON document on stdout
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the repository on every target, with a key slot from [key]
    Init,
    /// Manage key files and master-key slots
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Snapshot every configured source (or those of the named tenants)
    Backup(BackupArgs),
    /// Copy to the secondary targets what they lack (packs, index, snapshots)
    Ship {
        /// Only this target (repeatable; default: every secondary)
        #[arg(long, value_name = "NAME")]
        target: Vec<String>,
        /// Only this tenant (repeatable)
        #[arg(long)]
        tenant: Vec<String>,
        /// Read every copied object back and check its hash
        #[arg(long)]
        verify: bool,
    },
    /// Rebuild a lost or emptied target from another that holds the repository
    RepairTarget {
        /// The target to rebuild
        name: String,
        /// Copy from this target (default: the first other target that has the repository)
        #[arg(long, value_name = "NAME")]
        from: Option<String>,
        /// Read every copied object back and check its hash
        #[arg(long)]
        verify: bool,
    },
    /// Per target: snapshots, objects, bytes, and what it lacks compared with the primary
    Status,
    /// Remove a tenant's stale locks (lease run out) on every target; live locks stay
    Unlock {
        #[arg(long)]
        tenant: String,
        /// Only on this target
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
    },
    /// List snapshots
    Snapshots {
        /// Only this tenant's snapshots
        #[arg(long)]
        tenant: Vec<String>,
        #[command(flatten)]
        target: TargetArg,
    },
    /// List the entries of a snapshot under PATH
    Ls {
        snapshot: String,
        path: Option<String>,
        #[command(flatten)]
        target: TargetArg,
    },
    /// Restore a snapshot under DIR, each source path at its full path
    Restore {
        snapshot: String,
        /// Directory to restore into
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Restore only this path of the snapshot
        #[arg(long, value_name = "P")]
        path: Option<String>,
        /// Check every restored file against its recorded SHA-256
        #[arg(long)]
        verify: bool,
        #[command(flatten)]
        target: TargetArg,
    },
    /// Write one file of a snapshot to stdout
    Dump {
        snapshot: String,
        path: String,
        #[command(flatten)]
        target: TargetArg,
    },
    /// Check the repository; --read-data also decrypts and authenticates every blob
    Check {
        #[arg(long, conflicts_with = "read_data_subset")]
        read_data: bool,
        /// Read this percentage of packs, chosen at random
        #[arg(long, value_name = "PCT")]
        read_data_subset: Option<f64>,
        #[command(flatten)]
        target: TargetArg,
    },
    /// Record a contract's end, or cancel it
    Contract {
        #[command(subcommand)]
        command: ContractCommand,
    },
    /// Set or release a legal hold: while set, nothing of the tenant is deleted
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// Erase a tenant: delete every copy on every target and destroy its key
    Erase {
        tenant: String,
        /// Why (recorded in the audit trail)
        #[arg(long)]
        reason: String,
        /// Confirm: erasure cannot be undone
        #[arg(long)]
        yes: bool,
        /// Erase snapshots kept under a legal obligation too
        #[arg(long)]
        include_legal: bool,
    },
    /// Take in lifecycle events dropped into <state_dir>/inbox/
    Inbox {
        #[command(subcommand)]
        command: InboxCommand,
    },
    /// Plan or apply deletions by retention rules, contract ends and erasures
    Lifecycle {
        #[command(subcommand)]
        command: LifecycleCommand,
    },
    /// The hash-chained audit trail: list, verify, export evidence
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Restore drill: restore snapshots into scratch space, verify every byte, time it, record it
    Drill(cli::drill::DrillArgs),
    /// Run the agent: scheduled backups and ships, the event inbox, the lifecycle, drills, metrics
    Agent(cli::agent::AgentArgs),
    /// Validate agent.toml without touching stores or keys
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print shell completions for SHELL to stdout
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to stdout
    Man,
    /// Create ./gallra-quickstart/ and run the whole job on it
    Quickstart {
        #[arg(long, default_value = "gallra-quickstart")]
        dir: PathBuf,
    },
}

#[derive(Args)]
struct BackupArgs {
    /// Only this tenant (repeatable)
    #[arg(long)]
    tenant: Vec<String>,
    /// Record this creation time (RFC 3339) instead of now
    #[arg(long, value_name = "RFC3339")]
    time: Option<String>,
    /// Tag the snapshots (repeatable)
    #[arg(long, value_name = "K=V")]
    tag: Vec<String>,
    /// Do not ship to the secondary targets afterwards
    #[arg(long)]
    no_ship: bool,
    /// Back up the tenants named by --tenant even if their contract has ended or their erasure was requested (with --yes)
    #[arg(long)]
    include_ended: bool,
    /// Confirm --include-ended
    #[arg(long)]
    yes: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check every key, URL, store option and schedule; print the effective retention rules
    Check {
        /// The file to check (default: --config, $GALLRA_CONFIG, /etc/gallra/agent.toml)
        file: Option<PathBuf>,
    },
}

#[derive(Args)]
struct TargetArg {
    /// Read from this target instead of the primary (e.g. offsite, after a disaster)
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Write a new random key file (mode 0600); never overwrites
    Generate { file: PathBuf },
    /// List master-key slots
    List,
    /// Add a slot for another key file or passphrase
    Add {
        #[arg(
            long,
            conflicts_with = "passphrase_env",
            required_unless_present = "passphrase_env"
        )]
        file: Option<PathBuf>,
        #[arg(long, value_name = "VAR")]
        passphrase_env: Option<String>,
    },
    /// Remove a slot (never the last, nor the one in use)
    Remove { id: String },
}

fn main() {
    limit_heap_retention();
    raise_descriptor_limit();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if !matches!(cli.command, Command::Agent(_)) {
        die_quietly_on_closed_pipe();
    }
    // The agent logs what it does (info); a command only its warnings.
    // The agent's config is read once, before logging starts: it says how
    // the agent logs.
    let agent_config = match &cli.command {
        Command::Agent(_) => Some(Config::load(&config_path(&cli))),
        _ => None,
    };
    let agent_log = agent_config
        .as_ref()
        .map(|c| cli::agent::log_format(c.as_ref().ok()));
    let filter = tracing_subscriber::EnvFilter::try_from_env("GALLRA_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if agent_log.is_some() { "info" } else { "warn" })
    });
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    if agent_log == Some(gallra::config::LogFormat::Json) {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    let json_out = cli.json;
    match run(cli, agent_config) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let code = e
                .chain()
                .find_map(|c| c.downcast_ref::<Error>())
                .map_or(1, Error::exit_code);
            eprintln!("error: {}", esc(&one_line(&e)));
            // A script that asked for JSON reads stdout: it gets the error
            // there too, exact (not escaped), with the exit status.
            if json_out {
                println!("{}", json!({"error": one_line(&e), "exit_code": code}));
            }
            std::process::exit(code);
        }
    }
}

/// glibc raises its mmap threshold each time a large block is freed, after
/// which 8 MiB chunk buffers and 16 MiB packs come from the heap and stay
/// resident in every thread's arena: peak RSS of a 2 GiB backup went from
/// about 90 MiB to 130-165 MiB. A fixed threshold returns them on free.
fn limit_heap_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

/// The walk holds a descriptor per folder level and every job shares the
/// process's table; the default soft limit (1024) is a relic of select(2),
/// which gallra does not use, so it takes the hard limit (systemd's
/// default is 524288), as systemd's own documentation advises.
fn raise_descriptor_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// Rust ignores SIGPIPE, so a write to a closed pipe (`gallra snapshots |
/// head -1`) fails, and `println!` panics on that. Every command but the
/// agent takes the default action back: the process ends at that write,
/// silently, as `ls` or `cat` do. The agent keeps ignoring it: it writes
/// only to sockets and its log, and a scraper hanging up must not end it.
/// (Sockets are not affected either way: Rust sends with MSG_NOSIGNAL.)
fn die_quietly_on_closed_pipe() {
    // SAFETY: signal(2) with a valid signal number and the default action,
    // before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .or_else(|| std::env::var_os("GALLRA_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// Writes (or deletes) key slot `id` on every secondary at once, as the
/// primary now has it: a key added must open the offsite copy after a
/// disaster, and a key removed must stop opening it. A target that cannot
/// be reached is named; the primary keeps its change, `gallra status`
/// shows the difference and the next ship repairs it. Returns the JSON of
/// each target and whether any failed.
fn sync_key_slot(config: &Config, repo: &Repository, id: &str, added: bool) -> (Vec<Value>, bool) {
    let mut out = Vec::new();
    let mut failed = false;
    for t in config.secondaries() {
        let done = Store::open(t)
            .map_err(|e| match e {
                Error::NotInitialised { target } => Error::NoRepository { target },
                e => e,
            })
            .and_then(|dst| gallra::repo::keys::sync_slot(&repo.store, &dst, id));
        match done {
            Ok(()) => out.push(json!({"target": t.name, "ok": true})),
            Err(e) => {
                failed = true;
                if added {
                    eprintln!(
                        "error: key slot {id} not written to target {}: {e}; it is on the primary, and the next `gallra ship` copies it (until then `gallra status` shows it missing there)",
                        t.name
                    );
                } else {
                    eprintln!(
                        "error: key slot {id} not removed from target {}: {e}; the removed key still opens that target's copy until the next `gallra ship` removes it there (`gallra status` shows it meanwhile)",
                        t.name
                    );
                }
                out.push(json!({"target": t.name, "ok": false, "error": e.to_string()}));
            }
        }
    }
    (out, failed)
}

fn open_primary(config: &Config) -> anyhow::Result<Repository> {
    open_repo(config, &TargetArg { target: None })
}

/// Opens the repository on the named target, else on the primary.
fn open_repo(config: &Config, target: &TargetArg) -> anyhow::Result<Repository> {
    let t = match &target.target {
        Some(name) => config.target(name)?,
        None => config.primary(),
    };
    Ok(Repository::open_target(t, &config.key)?)
}

fn ship_report_json(r: &ShipReport) -> Value {
    serde_json::to_value(r).expect("serialisable")
}

fn print_ship_report(r: &ShipReport) {
    let snapshots: usize = r.tenants.iter().map(|t| t.snapshots_copied).sum();
    let present: usize = r.tenants.iter().map(|t| t.present).sum();
    println!(
        "shipped {} → {}: {} objects ({}, {} snapshots) copied{}, {} already there; {:.1}s, {} requests, {} retries",
        r.from,
        r.target,
        r.copied + r.repository_objects,
        human_bytes(r.copied_bytes),
        snapshots,
        if r.verified > 0 {
            format!(" and {} verified", r.verified)
        } else {
            String::new()
        },
        present,
        r.seconds,
        r.store.requests,
        r.store.retries
    );
}

/// An error's text, prefixed with the target unless it names it already.
fn naming_target(target: &str, e: &Error) -> String {
    let text = e.to_string().replace('\n', " ");
    if text.contains(&format!("target {target}")) {
        text
    } else {
        format!("target {target}: {text}")
    }
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn rfc3339(secs: i64, nanos: u32) -> String {
    jiff::Timestamp::new(secs, nanos as i32)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn snapshot_json(id: &gallra::format::Id, s: &Snapshot) -> Value {
    json!({
        "id": id.to_hex(),
        "tenant": s.tenant,
        "source": s.source,
        "category": s.category,
        "time": rfc3339(s.time_secs, s.time_nanos),
        "host": s.host,
        "files": s.files,
        "bytes": s.bytes,
        "tags": s.tags.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
        "paths": s.paths,
        "parent": s.parent.map(|p| p.to_hex()),
    })
}

fn run(cli: Cli, agent_config: Option<gallra::Result<Config>>) -> anyhow::Result<i32> {
    let json_out = cli.json;
    let path = config_path(&cli);
    let load = || -> anyhow::Result<Config> { Ok(Config::load(&path)?) };
    match cli.command {
        Command::Key {
            command: KeyCommand::Generate { ref file },
        } => {
            crypto::generate_key_file(file)?;
            if json_out {
                print_json(&json!({"file": file}))?;
            } else {
                println!(
                    "wrote new key file {} (mode 0600); keep a copy offline: without it no backup can be read",
                    file.display()
                );
            }
            Ok(0)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "gallra",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut std::io::stdout())?;
            Ok(0)
        }
        Command::Quickstart { ref dir } => {
            gallra::quickstart::run(dir, &std::env::current_exe()?)?;
            Ok(0)
        }
        Command::Init => {
            let config = load()?;
            // A second init is harmless, and says so; it must not send the
            // operator to rebuild a healthy primary.
            let primary = config.primary();
            if Store::open(primary)
                .and_then(|s| s.size_of(gallra::repo::CONFIG_PATH))
                .is_ok_and(|held| held.is_some())
            {
                anyhow::bail!(Error::Usage(format!(
                    "target {} already holds this server's repository: nothing to initialise (`gallra check` tells whether it is healthy; `gallra repair-target NAME` fills a secondary that lacks it)",
                    primary.name
                )));
            }
            // A secondary that already holds a repository means the primary
            // was lost: a new repository there could never ship to it.
            for t in config.secondaries() {
                let held = Store::open(t)
                    .and_then(|s| s.size_of(gallra::repo::CONFIG_PATH))
                    .unwrap_or(None);
                if held.is_some() {
                    anyhow::bail!(Error::Usage(format!(
                        "target {} already holds a repository; to rebuild the primary from it run `gallra repair-target {}` (init would start a second, different repository)",
                        t.name,
                        config.primary().name
                    )));
                }
            }
            let t = config.primary();
            let store = Store::open_or_create(t)?;
            let repo = Repository::init(store.clone(), &config.key, config.repository.chunker)?;
            let mut out = Vec::new();
            let mut failed = false;
            let conditional = |store: &Store, t: &Target| -> anyhow::Result<bool> {
                let ok = store.honours_conditional_create()?;
                if !ok && t.locking == gallra::store::Locking::Lease {
                    eprintln!(
                        "warning: target {} does not honour conditional create (a second create of one object succeeded): its locks cannot be trusted, and lifecycle deletes there will be refused unless its [[target]] sets locking = \"none\"",
                        t.name
                    );
                }
                Ok(ok)
            };
            let ok = conditional(&store, t)?;
            out.push(json!({"target": t.name, "created": true, "key_slot": repo.slot_in_use, "conditional_create": ok}));
            if !json_out {
                println!(
                    "initialised repository on target {} ({}), key slot {}",
                    t.name, t.url, repo.slot_in_use
                );
            }
            // Secondaries receive the same repository (config and key slots)
            // by shipping; doing it now proves their settings at once.
            for t in config.secondaries() {
                let outcome = Store::open_or_create(t).and_then(|dst| {
                    let r = ship::ship(
                        &repo,
                        &dst,
                        &ShipOptions {
                            host: config.agent.host.clone(),
                            initialise: true,
                            ..Default::default()
                        },
                    )?;
                    Ok((dst, r))
                });
                match outcome {
                    Ok((dst, _)) => {
                        let ok = conditional(&dst, t)?;
                        out.push(
                            json!({"target": t.name, "created": true, "conditional_create": ok}),
                        );
                        if !json_out {
                            println!("initialised repository on target {} ({})", t.name, t.url);
                        }
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!(
                            "error: {}; once it is reachable, `gallra repair-target {}` finishes it",
                            naming_target(&t.name, &e),
                            t.name
                        );
                        out.push(
                            json!({"target": t.name, "created": false, "error": e.to_string()}),
                        );
                    }
                }
            }
            if json_out {
                print_json(&Value::Array(out))?;
            }
            Ok(if failed { 1 } else { 0 })
        }
        Command::Key { command } => {
            let config = load()?;
            let repo = open_primary(&config)?;
            match command {
                KeyCommand::List => {
                    let slots = repo.list_slots()?;
                    if json_out {
                        print_json(&Value::Array(
                            slots
                                .iter()
                                .map(|s| json!({"id": s.id, "kind": s.kind, "created": rfc3339(s.created, 0), "in_use": s.in_use}))
                                .collect(),
                        ))?;
                    } else {
                        for s in slots {
                            println!(
                                "{}  {:<10}  {}{}",
                                s.id,
                                s.kind,
                                rfc3339(s.created, 0),
                                if s.in_use { "  (in use)" } else { "" }
                            );
                        }
                    }
                }
                KeyCommand::Add {
                    file,
                    passphrase_env,
                } => {
                    let source = match (file, passphrase_env) {
                        (Some(f), None) => KeySource::File(f),
                        (None, Some(v)) => KeySource::PassphraseEnv(v),
                        _ => anyhow::bail!(Error::Usage("give --file or --passphrase-env".into())),
                    };
                    let id = repo.add_slot(&source)?;
                    let targets = sync_key_slot(&config, &repo, &id, true);
                    if json_out {
                        print_json(&json!({"id": id, "targets": targets.0}))?;
                    } else {
                        println!("added key slot {id} for {}", source.describe());
                    }
                    return Ok(i32::from(targets.1));
                }
                KeyCommand::Remove { id } => {
                    repo.remove_slot(&id)?;
                    let targets = sync_key_slot(&config, &repo, &id, false);
                    if json_out {
                        print_json(&json!({"removed": id, "targets": targets.0}))?;
                    } else {
                        println!("removed key slot {id}");
                    }
                    return Ok(i32::from(targets.1));
                }
                KeyCommand::Generate { .. } => unreachable!("handled above"),
            }
            Ok(0)
        }
        Command::Backup(args) => {
            let config = load()?;
            // Safe beside the agent (tenant locks, the audit log's lock),
            // but the operator should know that its scheduled backups of the
            // same sources may run at the same time.
            if let Some(pid) = gallra::agent::running_agent(&config.agent.state_dir) {
                eprintln!(
                    "warning: the gallra agent (pid {pid}) runs on state folder {}; its scheduled backups may run beside this one",
                    config.agent.state_dir.display()
                );
            }
            let time = args
                .time
                .as_deref()
                .map(|t| {
                    t.parse::<jiff::Timestamp>()
                        .map_err(|e| Error::Usage(format!("--time {t:?}: {e}")))
                })
                .transpose()?;
            let mut tags = Vec::new();
            for t in &args.tag {
                let (k, v) = t
                    .split_once('=')
                    .ok_or_else(|| Error::Usage(format!("--tag {t:?}: expected K=V")))?;
                tags.push((k.to_string(), v.to_string()));
            }
            let now = jiff::Timestamp::now();
            if let Some(t) = time {
                gallra::lifecycle::gate::check_backup_time(t, now)?;
            }
            if args.include_ended && (args.tenant.is_empty() || !args.yes) {
                return Err(Error::Usage(
                    "--include-ended backs up ended or erased tenants: name each with --tenant and confirm with --yes".into(),
                )
                .into());
            }
            let repo = open_primary(&config)?;
            let (jobs, _) = backup::plan_jobs(&config, &args.tenant);
            let mut wanted: Vec<String> = jobs.iter().map(|j| j.tenant.clone()).collect();
            wanted.extend(args.tenant.iter().cloned());
            wanted.sort();
            wanted.dedup();
            let confirmed = if args.include_ended {
                args.tenant.clone()
            } else {
                Vec::new()
            };
            let refused = gallra::lifecycle::gate::backup_refusals(
                &repo,
                &config.policy,
                &wanted,
                &confirmed,
                now,
            );
            let mut refusal_failed = false;
            for (tenant, r) in &refused {
                // A tenant asked for by name, or a fault, fails the run; an
                // ended tenant found among the folders is routine.
                if r.fault || args.tenant.contains(tenant) {
                    refusal_failed = true;
                    eprintln!("error: tenant {tenant} not backed up: {}", r.why);
                } else {
                    eprintln!("skipped: tenant {tenant}: {}", r.why);
                }
            }
            let tenants = if refused.is_empty() {
                args.tenant
            } else {
                wanted
                    .into_iter()
                    .filter(|t| !refused.contains_key(t))
                    .collect()
            };
            let report = if !refused.is_empty() && tenants.is_empty() {
                backup::BackupReport::default()
            } else {
                backup::run(
                    &repo,
                    &config,
                    &BackupOptions {
                        tenants,
                        time,
                        tags,
                        progress: !json_out,
                        compression: config.repository.compression,
                        pack_size: config.repository.pack_size,
                        // The nightly service runs this command: it is as
                        // gentle on the customers' disks as the agent.
                        read_rate: config
                            .agent
                            .max_read
                            .map(|r| std::sync::Arc::new(gallra::pace::Pacer::new(r))),
                        ..BackupOptions::default()
                    },
                )?
            };
            for f in &report.failed {
                eprintln!(
                    "error: source {} (tenant {}): {}",
                    f.source, f.tenant, f.error
                );
            }
            for (target, e) in backup::audit_snapshots(&config, &repo, &report)? {
                eprintln!("warning: audit record not written to target {target}: {e}");
            }
            let secondaries: Vec<&Target> = config.secondaries().collect();
            let mut backed_up: Vec<String> = report
                .snapshots
                .iter()
                .map(|s| s.snapshot.tenant.clone())
                .collect();
            backed_up.sort();
            backed_up.dedup();
            let (ships, ship_failed) = if args.no_ship || backed_up.is_empty() {
                (Vec::new(), Vec::new())
            } else {
                ship::ship_to(
                    config.primary(),
                    &config.key,
                    &secondaries,
                    &ShipOptions {
                        tenants: backed_up,
                        verify: false,
                        progress: !json_out,
                        host: config.agent.host.clone(),
                        ..Default::default()
                    },
                )?
            };
            for f in &ship_failed {
                eprintln!(
                    "error: ship to target {} failed: {}; the snapshots stay on the primary and the next `gallra ship` copies them",
                    f.target, f.error
                );
            }
            let total = |f: fn(&Snapshot) -> u64| -> u64 {
                report.snapshots.iter().map(|s| f(&s.snapshot)).sum()
            };
            if json_out {
                print_json(&json!({
                    "snapshots": report.snapshots.iter().map(|s| {
                        let mut v = snapshot_json(&s.id, &s.snapshot);
                        let o = v.as_object_mut().expect("object");
                        o.insert("bytes_read".into(), s.snapshot.bytes_read.into());
                        o.insert("bytes_added".into(), s.snapshot.bytes_added.into());
                        o.insert("bytes_stored".into(), s.snapshot.bytes_stored.into());
                        o.insert("seconds".into(), s.seconds.into());
                        o.insert("warnings".into(), s.snapshot.warnings.clone().into());
                        v
                    }).collect::<Vec<_>>(),
                    "failed": report.failed.iter().map(|f| json!({"tenant": f.tenant, "source": f.source, "error": f.error})).collect::<Vec<_>>(),
                    "shipped": ships.iter().map(ship_report_json).collect::<Vec<_>>(),
                    "ship_failed": ship_failed.iter().map(|f| json!({"target": f.target, "error": f.error})).collect::<Vec<_>>(),
                    "skipped": refused.iter().map(|(t, r)| json!({"tenant": t, "reason": r.why})).collect::<Vec<_>>(),
                    "files": total(|s| s.files),
                    "bytes_read": total(|s| s.bytes_read),
                    "bytes_added": total(|s| s.bytes_added),
                    "bytes_stored": total(|s| s.bytes_stored),
                    "seconds": report.seconds,
                }))?;
            } else {
                for s in &report.snapshots {
                    let snap = &s.snapshot;
                    println!(
                        "snapshot {} {}/{}: {} files, {} read, {} new, {} stored, {:.1}s{}",
                        s.id.short(),
                        snap.tenant,
                        snap.source,
                        snap.files,
                        human_bytes(snap.bytes_read),
                        human_bytes(snap.bytes_added),
                        human_bytes(snap.bytes_stored),
                        s.seconds,
                        if snap.warnings.is_empty() {
                            String::new()
                        } else {
                            format!(", {} warnings", snap.warnings.len())
                        }
                    );
                    for w in &snap.warnings {
                        eprintln!("warning: {}/{}: {}", snap.tenant, snap.source, esc(w));
                    }
                }
                println!(
                    "{} snapshots, {} failed; {} files, {} read, {} new after dedup, {} stored after compression; {:.1}s",
                    report.snapshots.len(),
                    report.failed.len(),
                    total(|s| s.files),
                    human_bytes(total(|s| s.bytes_read)),
                    human_bytes(total(|s| s.bytes_added)),
                    human_bytes(total(|s| s.bytes_stored)),
                    report.seconds
                );
                for r in &ships {
                    print_ship_report(r);
                }
            }
            Ok(
                if report.failed.is_empty() && ship_failed.is_empty() && !refusal_failed {
                    0
                } else {
                    1
                },
            )
        }
        Command::Ship {
            target,
            tenant,
            verify,
        } => {
            let config = load()?;
            let targets: Vec<&Target> = if target.is_empty() {
                config.secondaries().collect()
            } else {
                let mut v = Vec::new();
                for name in &target {
                    let t = config.target(name)?;
                    if t.primary {
                        anyhow::bail!(Error::Usage(format!(
                            "target {name} is the primary: ship copies from it, not to it (to rebuild it, use `gallra repair-target {name}`)"
                        )));
                    }
                    v.push(t);
                }
                v
            };
            if targets.is_empty() {
                anyhow::bail!(Error::Usage(format!(
                    "{} names no secondary target to ship to",
                    config.path.display()
                )));
            }
            let (reports, failed) = ship::ship_to(
                config.primary(),
                &config.key,
                &targets,
                &ShipOptions {
                    tenants: tenant,
                    verify,
                    progress: !json_out,
                    host: config.agent.host.clone(),
                    ..Default::default()
                },
            )?;
            for f in &failed {
                eprintln!("error: ship to target {} failed: {}", f.target, f.error);
            }
            if json_out {
                let mut all: Vec<Value> = reports.iter().map(ship_report_json).collect();
                all.extend(
                    failed
                        .iter()
                        .map(|f| json!({"target": f.target, "error": f.error})),
                );
                print_json(&Value::Array(all))?;
            } else {
                reports.iter().for_each(print_ship_report);
            }
            Ok(if failed.is_empty() { 0 } else { 1 })
        }
        Command::RepairTarget { name, from, verify } => {
            let config = load()?;
            let dst_target = config.target(&name)?;
            let src = match &from {
                Some(f) if *f == name => anyhow::bail!(Error::Usage(format!(
                    "--from {f}: a target cannot be repaired from itself"
                ))),
                Some(f) => Store::open(config.target(f)?)?,
                None => {
                    // The first other target that holds a repository.
                    let mut found = None;
                    for t in config.targets.iter().filter(|t| t.name != name) {
                        if let Ok(store) = Store::open(t)
                            && store.size_of(gallra::repo::CONFIG_PATH)?.is_some()
                        {
                            found = Some(store);
                            break;
                        }
                    }
                    found.ok_or_else(|| {
                        Error::Usage(format!(
                            "no target other than {name} holds a repository to repair it from"
                        ))
                    })?
                }
            };
            // Only someone holding the key may rebuild a target from it.
            let src = Repository::open(src, &config.key)?;
            let dst = Store::open_or_create(dst_target)?;
            let report = ship::ship(
                &src,
                &dst,
                &ShipOptions {
                    tenants: Vec::new(),
                    verify,
                    progress: !json_out,
                    host: config.agent.host.clone(),
                    replace_damaged: true,
                    initialise: true,
                    ..Default::default()
                },
            )?;
            for r in &report.rejected {
                eprintln!("error: repair of target {name}: {}", r.error);
            }
            for f in &report.failed {
                eprintln!(
                    "error: repair of target {name}: tenant {}: {}",
                    f.tenant, f.error
                );
            }
            if json_out {
                print_json(&ship_report_json(&report))?;
            } else {
                print_ship_report(&report);
            }
            Ok(if report.ok() { 0 } else { 1 })
        }
        Command::Unlock { tenant, target } => {
            let config = load()?;
            gallra::tenant_name::check(&tenant)
                .map_err(|m| Error::Usage(format!("--tenant {tenant:?}: {m}")))?;
            let targets: Vec<&Target> = match &target {
                Some(name) => vec![config.target(name)?],
                None => config.targets.iter().collect(),
            };
            let mut reports = Vec::new();
            for t in targets {
                reports.push(gallra::lock::unlock(
                    &Store::open(t)?,
                    &tenant,
                    &config.agent.host,
                )?);
            }
            if json_out {
                print_json(&serde_json::to_value(&reports)?)?;
            } else {
                for r in &reports {
                    for l in &r.removed {
                        println!("target {}: removed {l}", r.target);
                    }
                    for l in &r.live {
                        println!("target {}: kept {l} (its holder renews it)", r.target);
                    }
                    if r.removed.is_empty() && r.live.is_empty() {
                        println!("target {}: tenant {} has no locks", r.target, r.tenant);
                    }
                }
            }
            Ok(0)
        }
        Command::Status => cli::agent::status(&load()?, json_out),
        Command::Agent(_) => cli::agent::agent(agent_config.expect("loaded in main")?),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => cli::agent::config_check(&file.unwrap_or(path.clone()), json_out),
        Command::Contract { command } => cli::lifecycle::contract(&load()?, json_out, command),
        Command::Hold { command } => cli::lifecycle::hold(&load()?, json_out, command),
        Command::Erase {
            tenant,
            reason,
            yes,
            include_legal,
        } => cli::lifecycle::erase(&load()?, json_out, &tenant, &reason, yes, include_legal),
        Command::Inbox { command } => cli::lifecycle::inbox(&load()?, json_out, command),
        Command::Lifecycle { command } => cli::lifecycle::lifecycle(&load()?, json_out, command),
        Command::Audit { command } => cli::lifecycle::audit(&load()?, json_out, command),
        Command::Drill(args) => cli::drill::drill(&load()?, json_out, args),
        Command::Snapshots { tenant, target } => {
            let config = load()?;
            let repo = open_repo(&config, &target)?;
            let mut all = Vec::new();
            // One object that cannot be read is named, and the rest listed.
            let mut bad = Vec::new();
            for name in repo.tenant_names()? {
                if !tenant.is_empty() && !tenant.contains(&name) {
                    continue;
                }
                let t = match repo.tenant(&name, false) {
                    Ok(t) => t,
                    // A folder holding only locks: a first backup is starting.
                    Err(Error::NotFound { .. }) => continue,
                    Err(e) => {
                        bad.push(format!("tenant {name}: {e}"));
                        continue;
                    }
                };
                match repo.readable_snapshots(&t) {
                    Ok((snaps, unreadable)) => {
                        all.extend(snaps);
                        bad.extend(
                            unreadable
                                .iter()
                                .map(|(_, e)| format!("tenant {name}: {e}")),
                        );
                    }
                    Err(e) => bad.push(format!("tenant {name}: {e}")),
                }
            }
            all.sort_by_key(|(id, s)| (s.time_secs, s.time_nanos, s.tenant.clone(), *id));
            let events = gallra::lifecycle::journal::load_target(&repo)?;
            bad.extend(events.unreadable.iter().map(|id| {
                let path = gallra::lifecycle::journal::event_path(id);
                format!("event object {path} cannot be read; expiries shown without it")
            }));
            let states = gallra::lifecycle::events::fold(&events.events);
            let expiry = |id: &gallra::format::Id, s: &Snapshot| {
                gallra::lifecycle::plan::expiry(
                    &config.policy,
                    states.get(&s.tenant),
                    &gallra::lifecycle::SnapshotFacts {
                        tenant: s.tenant.clone(),
                        id: *id,
                        target: repo.store.name().to_string(),
                        created: s.timestamp(),
                        category: s.category.clone(),
                        source: s.source.clone(),
                    },
                )
            };
            if json_out {
                print_json(&Value::Array(
                    all.iter()
                        .map(|(id, s)| {
                            let e = expiry(id, s);
                            let mut v = snapshot_json(id, s);
                            let o = v.as_object_mut().expect("object");
                            o.insert("expires".into(), e.at.to_string().into());
                            o.insert("reason".into(), e.reason.as_str().into());
                            o.insert("rule".into(), e.rule.into());
                            v
                        })
                        .collect(),
                ))?;
            } else {
                println!(
                    "{:<12}  {:<16} {:<10} {:<10} {:<25} {:<10} {:>8} {:>10}  {:<21} reason",
                    "id",
                    "tenant",
                    "source",
                    "category",
                    "time",
                    "host",
                    "files",
                    "size",
                    "expires"
                );
                for (id, s) in &all {
                    let e = expiry(id, s);
                    let held = states.get(&s.tenant).is_some_and(|st| st.held());
                    println!(
                        "{:<12}  {:<16} {:<10} {:<10} {:<25} {:<10} {:>8} {:>10}  {:<21} {}{}",
                        id.short(),
                        s.tenant,
                        s.source,
                        s.category,
                        rfc3339(s.time_secs, 0),
                        s.host,
                        s.files,
                        human_bytes(s.bytes),
                        e.at.to_zoned(config.policy.time_zone.clone())
                            .strftime("%Y-%m-%d %H:%M %Z"),
                        e.reason.as_str(),
                        if held { " (held)" } else { "" }
                    );
                }
            }
            for b in &bad {
                eprintln!("error: target {}: {}", repo.store.name(), esc(b));
            }
            Ok(i32::from(!bad.is_empty()))
        }
        Command::Ls {
            snapshot,
            path,
            target,
        } => {
            let config = load()?;
            let repo = open_repo(&config, &target)?;
            let snap = OpenSnapshot::open(&repo, &snapshot)?;
            let entries = restore::ls(&snap, path.as_deref())?;
            if json_out {
                print_json(&Value::Array(entries.iter().map(|e| json!({
                    "path": e.path,
                    "type": match e.node.kind { NodeKind::File => "file", NodeKind::Dir => "dir", NodeKind::Symlink => "symlink" },
                    "size": e.node.size,
                    "mode": e.node.mode,
                    "mtime": rfc3339(e.node.mtime_secs, e.node.mtime_nanos),
                })).collect()))?;
            } else {
                for e in entries {
                    let t = match e.node.kind {
                        NodeKind::File => '-',
                        NodeKind::Dir => 'd',
                        NodeKind::Symlink => 'l',
                    };
                    println!(
                        "{t}{:04o} {:>10}  {}  {}",
                        e.node.mode,
                        e.node.size,
                        rfc3339(e.node.mtime_secs, 0),
                        esc(&e.path)
                    );
                }
            }
            Ok(0)
        }
        Command::Dump {
            snapshot,
            path,
            target,
        } => {
            let config = load()?;
            let repo = open_repo(&config, &target)?;
            let snap = OpenSnapshot::open(&repo, &snapshot)?;
            let mut out = std::io::stdout().lock();
            restore::dump(&snap, &path, &mut out)?;
            out.flush()?;
            Ok(0)
        }
        Command::Restore {
            snapshot,
            to,
            path,
            verify,
            target,
        } => {
            let config = load()?;
            let repo = open_repo(&config, &target)?;
            let snap = OpenSnapshot::open(&repo, &snapshot)?;
            let report = restore::restore(
                &snap,
                &RestoreOptions {
                    to: to.clone(),
                    path,
                    verify,
                },
            )
            .with_context(|| format!("restore of snapshot {}", snap.id.short()))?;
            for e in &report.errors {
                eprintln!("error: {}", esc(&e.to_string()));
            }
            if json_out {
                print_json(&json!({
                    "snapshot": snap.id.to_hex(), "files": report.files, "dirs": report.dirs,
                    "symlinks": report.symlinks, "bytes": report.bytes, "verified": report.verified,
                    "errors": report.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                    "seconds": report.seconds,
                }))?;
            } else {
                println!(
                    "restored snapshot {} ({}/{}) to {}: {} files, {} dirs, {} symlinks, {}{}; {:.1}s",
                    snap.id.short(),
                    snap.snapshot.tenant,
                    snap.snapshot.source,
                    to.display(),
                    report.files,
                    report.dirs,
                    report.symlinks,
                    human_bytes(report.bytes),
                    if verify {
                        format!(", {} verified", report.verified)
                    } else {
                        String::new()
                    },
                    report.seconds
                );
            }
            Ok(if report.errors.is_empty() { 0 } else { 1 })
        }
        Command::Check {
            read_data,
            read_data_subset,
            target,
        } => {
            let config = load()?;
            let repo = open_repo(&config, &target)?;
            let mode = match (read_data, read_data_subset) {
                (true, _) => ReadData::All,
                (false, Some(p)) if (0.0..=100.0).contains(&p) => ReadData::Subset(p),
                (false, Some(p)) => anyhow::bail!(Error::Usage(format!(
                    "--read-data-subset {p}: give a percentage from 0 to 100"
                ))),
                (false, None) => ReadData::None,
            };
            let report = check::run(&repo, mode, &config.agent.host)?;
            for f in &report.errors {
                eprintln!("error: {}: {}", f.object, f.message);
            }
            let finding =
                |f: &check::Finding, key: &str| json!({"object": f.object, key: f.message});
            if json_out {
                print_json(&json!({
                    "ok": report.ok(),
                    "errors": report.errors.iter().map(|f| finding(f, "error")).collect::<Vec<_>>(),
                    "unreferenced": report.unreferenced.iter().map(|f| finding(f, "info")).collect::<Vec<_>>(),
                    "snapshots": report.snapshots, "packs": report.packs, "blobs": report.blobs, "blobs_read": report.blobs_read,
                }))?;
            } else {
                for f in &report.unreferenced {
                    println!("info: {}: {}", f.object, f.message);
                }
                println!(
                    "{}: {} snapshots, {} packs, {} blobs{}; {} errors",
                    if report.ok() { "ok" } else { "DAMAGED" },
                    report.snapshots,
                    report.packs,
                    report.blobs,
                    if mode == ReadData::None {
                        String::new()
                    } else {
                        format!(", {} blobs read and authenticated", report.blobs_read)
                    },
                    report.errors.len()
                );
            }
            Ok(if report.ok() { 0 } else { 1 })
        }
    }
}
