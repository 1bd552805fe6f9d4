//! `gallra init`.

use clap::Args;

use gallra::config::Config;

use super::output::print_json;
use gallra::survival::{OldVersions, Shredding};

/// What init's probe found, and what it means for an erasure there.
fn old_versions_words(config: &Config, target: &str, old: OldVersions) -> anyhow::Result<String> {
    let expiry = config.target(target)?.noncurrent_expiry;
    let master_key = Shredding::of(config) == Shredding::MasterKey;
    Ok(match (old, expiry) {
        (OldVersions::NotKept, _) => {
            format!("target {target} keeps no old versions of what gallra deletes")
        }
        (OldVersions::Kept, Some(e)) => format!(
            "target {target} keeps old versions of what gallra deletes, until its bucket rule removes them (noncurrent_expiry = {e})"
        ),
        (OldVersions::Kept, None) if master_key => format!(
            "target {target} keeps old versions of what gallra deletes, and no noncurrent_expiry is stated: an erasure does not hold against them (they open with the key file or a passphrase until someone deletes them)"
        ),
        (OldVersions::Kept, None) => format!(
            "target {target} keeps old versions of what gallra deletes, and no noncurrent_expiry is stated"
        ),
        (OldVersions::Unknown, _) => format!(
            "target {target}: whether it keeps old versions of what gallra deletes is unknown (the probe failed); `gallra status` probes it again"
        ),
    })
}

#[derive(Args)]
pub struct InitArgs {}

pub fn run(config: &Config, json_out: bool, _args: InitArgs) -> anyhow::Result<i32> {
    let report = gallra::init::init_targets(config)?;
    for t in &report.targets {
        if t.locks_untrustworthy {
            eprintln!(
                "warning: target {} does not honour conditional create (a second create of one object succeeded): its locks cannot be trusted, and lifecycle deletes there will be refused unless its [[target]] sets locking = \"none\"",
                t.target
            );
        }
        if let Some(e) = &t.error {
            eprintln!(
                "error: {}; once it is reachable, `gallra repair-target {}` finishes it",
                e.text_in_target(&t.target).replace('\n', " "),
                t.target
            );
        } else if !json_out {
            let url = &config.target(&t.target)?.url;
            match &t.key_slot {
                Some(slot) => println!(
                    "initialised repository on target {} ({url}), key slot {slot}",
                    t.target
                ),
                None => println!("initialised repository on target {} ({url})", t.target),
            }
            if let Some(old) = t.old_versions {
                println!("  {}", old_versions_words(config, &t.target, old)?);
            }
            if let Some(p) = &t.protection {
                println!("  target {} protection: {}", t.target, p.words);
            }
        }
        for problem in t.protection.iter().flat_map(|p| &p.problems) {
            eprintln!("warning: target {}: {problem}", t.target);
        }
    }
    if let Some(e) = &report.key_epoch_error {
        eprintln!(
            "error: no key epoch made: {e}; the repository is there, and the first backup or `gallra key rotate` makes the epoch once the key service answers (until then no tenant key is written)"
        );
    }
    if let (Some(epoch), false) = (&report.key_epoch, json_out) {
        println!(
            "key epoch {epoch} made in the {}: it wraps every tenant key, and an erasure holds against every copy once a rotation destroys the epoch that wrapped the tenant (`gallra key epochs`)",
            config
                .key
                .service
                .as_ref()
                .map(|s| s.describe())
                .unwrap_or_default()
        );
    }
    if json_out {
        print_json(&report.targets)?;
    }
    Ok(if report.ok() && report.key_epoch_error.is_none() {
        0
    } else {
        1
    })
}
