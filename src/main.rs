//! The gallra command line: parse, then hand each command to its module
//! in `cli/`, which calls the library and prints (human or --json).

use clap::{Parser, Subcommand};
use serde_json::json;
use std::path::PathBuf;

use gallra::config::{Config, DEFAULT_CONFIG_PATH};
use gallra::error::Error;

mod cli;
use cli::lifecycle::{AuditCommand, ContractCommand, HoldCommand, InboxCommand, LifecycleCommand};
use cli::output::{esc, one_line};

#[derive(Parser)]
#[command(name = "gallra", version, about = "Encrypted backup lifecycle agent")]
struct Cli {
    /// agent.toml to use (else $GALLRA_CONFIG, else /etc/gallra/agent.toml)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Machine-readable output: one JSON document on stdout
    #[arg(long, global = true)]
    json: bool,
    /// On a lifecycle host: the [[fleet]] repository to work on (`lifecycle` without it works on each in turn)
    #[arg(long, global = true, value_name = "NAME")]
    fleet: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the repository on every target, with a key slot from [key]
    Init(cli::init::InitArgs),
    /// Manage key files and master-key slots
    Key {
        #[command(subcommand)]
        command: cli::key::KeyCommand,
    },
    /// Snapshot every configured source (or those of the named tenants)
    Backup(cli::backup::BackupArgs),
    /// Copy to the secondary targets what they lack (packs, index, snapshots)
    Ship(cli::ship::ShipArgs),
    /// Rebuild a lost or emptied target from another that holds the repository
    RepairTarget(cli::repair_target::RepairTargetArgs),
    /// Per target: snapshots, objects, bytes, and what it lacks compared with the primary
    Status,
    /// Remove a tenant's stale locks (lease run out) on every target; live locks stay
    Unlock(cli::unlock::UnlockArgs),
    /// List snapshots
    Snapshots(cli::snapshots::SnapshotsArgs),
    /// List the entries of a snapshot under PATH
    Ls(cli::ls::LsArgs),
    /// Restore a snapshot under DIR, each source path at its full path
    Restore(cli::restore::RestoreArgs),
    /// Write one file of a snapshot to stdout
    Dump(cli::dump::DumpArgs),
    /// Check the repository; --read-data also decrypts and authenticates every blob
    Check(cli::check::CheckArgs),
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
    Erase(cli::lifecycle::EraseArgs),
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
        command: cli::config::ConfigCommand,
    },
    /// Print shell completions for SHELL to stdout
    Completions(cli::completions::CompletionsArgs),
    /// Print the man page (roff) to stdout
    Man(cli::man::ManArgs),
    /// Create ./gallra-quickstart/ and run the whole job on it
    Quickstart(cli::quickstart::QuickstartArgs),
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

/// `gallra lifecycle ...` on a lifecycle host without `--fleet`: on each
/// fleet repository in turn, each under a heading; the exit code is the
/// worst. One repository that fails does not stop the others.
fn every_fleet_repository(
    config: &Config,
    json_out: bool,
    command: &cli::lifecycle::LifecycleCommand,
) -> anyhow::Result<i32> {
    if json_out {
        return Err(gallra::Error::Usage(
            "--json prints one repository's report: name it with --fleet NAME".into(),
        )
        .into());
    }
    let mut worst = 0;
    for f in &config.fleet {
        println!("== fleet repository {} ({})", f.name, f.prefix);
        let code = config
            .for_fleet(&f.name)
            .map_err(anyhow::Error::from)
            .and_then(|c| cli::lifecycle::lifecycle(&c, false, command.clone()))
            .unwrap_or_else(|e| {
                eprintln!("error: fleet repository {}: {e:#}", f.name);
                1
            });
        worst = worst.max(code);
    }
    Ok(worst)
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .or_else(|| std::env::var_os("GALLRA_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

fn run(cli: Cli, agent_config: Option<gallra::Result<Config>>) -> anyhow::Result<i32> {
    let json_out = cli.json;
    let path = config_path(&cli);
    let fleet = cli.fleet.clone();
    // On a lifecycle host's config, the fleet repository named.
    let select = |config: Config| -> anyhow::Result<Config> {
        match &fleet {
            Some(name) => Ok(config.for_fleet(name)?),
            None if !config.fleet.is_empty() => Err(gallra::Error::Usage(format!(
                "{} is a lifecycle host's config: name the repository with --fleet NAME (one of {})",
                path.display(),
                config.fleet_names()
            ))
            .into()),
            None => Ok(config),
        }
    };
    let load = || select(Config::load(&path)?);
    match cli.command {
        Command::Init(args) => cli::init::run(&load()?, json_out, args),
        Command::Key {
            command: cli::key::KeyCommand::Generate { file },
        } => cli::key::generate(json_out, &file),
        Command::Key { command } => cli::key::run(&load()?, json_out, command),
        Command::Backup(args) => cli::backup::run(&load()?, json_out, args),
        Command::Ship(args) => cli::ship::run(&load()?, json_out, args),
        Command::RepairTarget(args) => cli::repair_target::run(&load()?, json_out, args),
        Command::Status => cli::agent::status(&load()?, json_out),
        Command::Unlock(args) => cli::unlock::run(&load()?, json_out, args),
        Command::Snapshots(args) => cli::snapshots::run(&load()?, json_out, args),
        Command::Ls(args) => cli::ls::run(&load()?, json_out, args),
        Command::Restore(args) => cli::restore::run(&load()?, json_out, args),
        Command::Dump(args) => cli::dump::run(&load()?, args),
        Command::Check(args) => cli::check::run(&load()?, json_out, args),
        Command::Contract { command } => cli::lifecycle::contract(&load()?, json_out, command),
        Command::Hold { command } => cli::lifecycle::hold(&load()?, json_out, command),
        Command::Erase(args) => cli::lifecycle::erase(&load()?, json_out, args),
        Command::Inbox { command } => cli::lifecycle::inbox(&load()?, json_out, command),
        Command::Lifecycle { command } => {
            let config = Config::load(&path)?;
            match (&fleet, config.fleet.is_empty()) {
                (None, false) => every_fleet_repository(&config, json_out, &command),
                _ => cli::lifecycle::lifecycle(&select(config)?, json_out, command),
            }
        }
        Command::Audit { command } => cli::lifecycle::audit(&load()?, json_out, command),
        Command::Drill(args) => cli::drill::drill(&load()?, json_out, args),
        Command::Agent(_) => cli::agent::agent(agent_config.expect("loaded in main")?),
        Command::Config { command } => cli::config::run(&path, json_out, command),
        Command::Completions(args) => cli::completions::run(args),
        Command::Man(args) => cli::man::run(args),
        Command::Quickstart(args) => cli::quickstart::run(args),
    }
}
