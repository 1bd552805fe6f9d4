//! `gallra key generate|list|add|remove`.

use clap::Subcommand;
use serde::Serialize;
use std::path::{Path, PathBuf};

use gallra::config::Config;
use gallra::crypto::{self, KeySource};
use gallra::error::Error;
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
    let repo = Repository::open_target(config.primary(), &config.key)?;
    match command {
        KeyCommand::Generate { .. } => unreachable!("handled above"),
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
