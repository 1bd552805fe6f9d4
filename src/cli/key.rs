//! `gallra key generate|list|add|remove`.

use clap::Subcommand;
use serde::Serialize;
use std::path::{Path, PathBuf};

use gallra::config::Config;
use gallra::crypto::{self, KeySource};
use gallra::error::Error;
use gallra::keyservice::ServiceKeyState;
use gallra::lifecycle::rotate::{Due, RotationReport};
use gallra::repo::Repository;
use gallra::repo::keys::SlotInfo;
use gallra::store::Store;

use super::json::UnixTime;
use super::output::{print_json, rfc3339};

#[derive(Subcommand)]
pub enum KeyCommand {
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
    /// Rotate the key epoch now (with a [key_service]): rewrap every kept
    /// tenant's key on every target, then destroy the old epoch in the key
    /// service, so that no copy of an erased tenant's key opens again
    Rotate {
        /// Rotate even if no tenant key was destroyed since the last
        /// rotation, or `rotate_after` has not passed
        #[arg(long)]
        force: bool,
    },
    /// List the key epochs on each target, with what the key service says
    /// of each
    Epochs,
}

/// `key generate --json`.
#[derive(Serialize)]
struct GeneratedKey<'a> {
    file: &'a Path,
}

/// A slot in `key list --json`: its creation time as RFC 3339, not the
/// Unix seconds the slot holds.
#[derive(Serialize)]
struct SlotJson<'a> {
    id: &'a str,
    kind: &'a str,
    created: UnixTime,
    in_use: bool,
}

impl<'a> SlotJson<'a> {
    fn new(s: &'a SlotInfo) -> SlotJson<'a> {
        SlotJson {
            id: &s.id,
            kind: s.kind,
            created: UnixTime::secs(s.created),
            in_use: s.in_use,
        }
    }
}

/// `key add --json`: the new slot and its copy on each secondary.
#[derive(Serialize)]
struct SlotAdded<'a> {
    id: &'a str,
    targets: &'a [SlotSync],
}

/// `key remove --json`.
#[derive(Serialize)]
struct SlotRemoved<'a> {
    removed: &'a str,
    targets: &'a [SlotSync],
}

/// `key generate` needs no config: it makes the key a config then names.
pub fn generate(json_out: bool, file: &Path) -> anyhow::Result<i32> {
    crypto::generate_key_file(file)?;
    if json_out {
        print_json(&GeneratedKey { file })?;
    } else {
        println!(
            "wrote new key file {} (mode 0600); keep a copy offline: without it no backup can be read",
            file.display()
        );
    }
    Ok(0)
}

pub fn run(config: &Config, json_out: bool, command: KeyCommand) -> anyhow::Result<i32> {
    if let KeyCommand::Generate { file } = &command {
        return generate(json_out, file);
    }
    match &command {
        KeyCommand::Rotate { force } => return rotate(config, json_out, *force),
        KeyCommand::Epochs => return epochs(config, json_out),
        _ => {}
    }
    let repo = Repository::open_target(config.primary(), &config.key)?;
    match command {
        KeyCommand::Generate { .. } | KeyCommand::Rotate { .. } | KeyCommand::Epochs => {
            unreachable!("handled above")
        }
        KeyCommand::List => {
            let slots = repo.list_slots()?;
            if json_out {
                print_json(&slots.iter().map(SlotJson::new).collect::<Vec<_>>())?;
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
            Ok(0)
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
            let targets = sync_key_slot(config, &repo, &id, SlotChange::Added);
            if json_out {
                print_json(&SlotAdded {
                    id: &id,
                    targets: &targets,
                })?;
            } else {
                println!("added key slot {id} for {}", source.describe());
            }
            Ok(i32::from(targets.iter().any(|t| !t.ok)))
        }
        KeyCommand::Remove { id } => {
            repo.remove_slot(&id)?;
            let targets = sync_key_slot(config, &repo, &id, SlotChange::Removed);
            if json_out {
                print_json(&SlotRemoved {
                    removed: &id,
                    targets: &targets,
                })?;
            } else {
                println!("removed key slot {id}");
            }
            Ok(i32::from(targets.iter().any(|t| !t.ok)))
        }
    }
}

/// What happened to the slot on the primary, to be repeated on the
/// secondaries.
#[derive(Clone, Copy)]
enum SlotChange {
    Added,
    Removed,
}

/// One secondary's copy of the slot change.
#[derive(Serialize)]
struct SlotSync {
    target: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Writes (or deletes) key slot `id` on every secondary at once, as the
/// primary now has it: a key added must open the offsite copy after a
/// disaster, and a key removed must stop opening it. A target that cannot
/// be reached is named; the primary keeps its change, `gallra status`
/// shows the difference and the next ship repairs it.
fn sync_key_slot(
    config: &Config,
    repo: &Repository,
    id: &str,
    change: SlotChange,
) -> Vec<SlotSync> {
    let mut out = Vec::new();
    for t in config.secondaries() {
        let done = Store::open(t)
            .map_err(|e| match e {
                Error::NotInitialised { target } => Error::NoRepository { target },
                e => e,
            })
            .and_then(|dst| gallra::repo::keys::sync_slot(&repo.store, &dst, id));
        match done {
            Ok(()) => out.push(SlotSync {
                target: t.name.clone(),
                ok: true,
                error: None,
            }),
            Err(e) => {
                match change {
                    SlotChange::Added => eprintln!(
                        "error: key slot {id} not written to target {}: {e}; it is on the primary, and the next `gallra ship` copies it (until then `gallra status` shows it missing there)",
                        t.name
                    ),
                    SlotChange::Removed => eprintln!(
                        "error: key slot {id} not removed from target {}: {e}; the removed key still opens that target's copy until the next `gallra ship` removes it there (`gallra status` shows it meanwhile)",
                        t.name
                    ),
                }
                out.push(SlotSync {
                    target: t.name.clone(),
                    ok: false,
                    error: Some(e.to_string()),
                });
            }
        }
    }
    out
}

/// `key rotate`: the lifecycle's rotation, now.
fn rotate(config: &Config, json_out: bool, force: bool) -> anyhow::Result<i32> {
    if config.key.service.is_none() {
        anyhow::bail!(Error::Usage(
            "key rotate needs a [key_service]: without one, tenant keys are wrapped by the master key and there is no epoch to rotate (docs/SECURITY.md)".into()
        ));
    }
    let opened = super::lifecycle::open_all(config)?;
    let audit = gallra::audit::AuditLog::open(&config.agent.state_dir, &config.agent.host)?;
    let lc = config.lifecycle(&opened, &audit);
    let (due, report) = lc.rotate_keys(jiff::Timestamp::now(), force)?;
    if json_out {
        print_json(&RotationJson {
            due: &due,
            rotation: report.as_ref(),
        })?;
    } else {
        for line in rotation_lines(&due, report.as_ref()) {
            println!("{line}");
        }
    }
    Ok(i32::from(report.is_some_and(|r| !r.complete())))
}

/// `key rotate --json`, and the `rotation` of `lifecycle apply --json`.
#[derive(Serialize)]
struct RotationJson<'a> {
    #[serde(flatten)]
    due: &'a Due,
    rotation: Option<&'a RotationReport>,
}

/// What a rotation did, or why none ran, in plain lines.
pub fn rotation_lines(due: &Due, report: Option<&RotationReport>) -> Vec<String> {
    let when = |t: &jiff::Timestamp| rfc3339(t.as_second(), 0);
    let mut out = Vec::new();
    let Some(r) = report else {
        out.push(match due {
            Due::No { because } => format!("key rotation: not due ({because})"),
            Due::Later { at, because } => format!(
                "key rotation: due at {} ({because}); until then surviving copies of those keys open with the current epoch (rotate_after in [key_service]; `gallra key rotate --force` rotates now)",
                when(at)
            ),
            Due::Yes { because } => format!("key rotation: due ({because})"),
        });
        return out;
    };
    for (target, tenants) in &r.rewrapped {
        out.push(format!(
            "target {target}: rewrapped {} tenant key(s) under key epoch {}",
            tenants.len(),
            r.epoch
        ));
    }
    if !r.complete() {
        out.push(format!(
            "key rotation to epoch {} is not complete: {}; every old epoch stays valid, and the next run finishes it",
            r.epoch,
            r.pending.join("; ")
        ));
        return out;
    }
    for x in &r.retired {
        out.push(format!(
            "key epoch {} destroyed in the key service (service key {}: unusable now{})",
            x.epoch,
            x.service_key,
            x.deleted_by
                .map(|t| format!(", deleted for good by {}", when(&t)))
                .unwrap_or_default()
        ));
    }
    for t in &r.shredded {
        out.push(match r.shredded_once_master_wrapped.contains(t) {
            false => format!(
                "tenant {t}: every surviving copy of its key (old bucket versions, replicas, copies of a target) opens no more"
            ),
            true => format!(
                "tenant {t}: every surviving copy of its key wrapped by a key epoch opens no more; copies made before the repository had key epochs were wrapped by the master key and still open with the key file until those copies are gone"
            ),
        });
    }
    for (target, tenants) in &r.left_unwrapped {
        for t in tenants {
            out.push(format!(
                "tenant {t}: its key on target {target} was not deleted (its destruction failed there) and was not rewrapped: it opens no more, and the next lifecycle apply deletes it"
            ));
        }
    }
    for t in &r.from_master_key {
        out.push(format!(
            "tenant {t}: its key was wrapped by the master key until now; copies of it made before this rotation still open with the key file or a passphrase until those copies are gone"
        ));
    }
    out.push(format!(
        "key epoch {} wraps every kept tenant key on every target",
        r.epoch
    ));
    out
}

/// `key epochs`: each target's epochs, and the service's word on each.
fn epochs(config: &Config, json_out: bool) -> anyhow::Result<i32> {
    let opened = super::lifecycle::open_all(config)?;
    let mut rows = Vec::new();
    for repo in &opened.repos {
        for e in repo.epochs()? {
            let state = match repo.keys().client() {
                Ok(c) => match c.describe_key(&e.body.key_id) {
                    Ok(ServiceKeyState::Enabled) => "enabled".to_string(),
                    Ok(ServiceKeyState::PendingDeletion { deletion }) => format!(
                        "pending deletion{}",
                        deletion
                            .map(|t| format!(" (gone by {})", rfc3339(t.as_second(), 0)))
                            .unwrap_or_default()
                    ),
                    Ok(ServiceKeyState::Other(s)) => s,
                    Err(err) => format!("unknown: {err}"),
                },
                Err(err) => format!("unknown: {err}"),
            };
            rows.push(EpochJson {
                target: repo.store.name().to_string(),
                epoch: hex::encode(e.id),
                created: UnixTime::secs(e.body.created),
                service_key: e.body.key_id.clone(),
                state,
            });
        }
    }
    if json_out {
        print_json(&rows)?;
    } else if rows.is_empty() {
        println!(
            "no key epochs: tenant keys are wrapped by the master key{}",
            match config.key.service {
                Some(_) => " (the first `gallra key rotate` or lifecycle apply makes one)",
                None => " (no [key_service])",
            }
        );
    } else {
        for r in &rows {
            println!(
                "target {}: epoch {}  made {}  service key {}  {}",
                r.target,
                &r.epoch[..8],
                rfc3339(r.created.secs, 0),
                r.service_key,
                r.state
            );
        }
    }
    Ok(0)
}

#[derive(Serialize)]
struct EpochJson {
    target: String,
    epoch: String,
    created: UnixTime,
    service_key: String,
    state: String,
}
