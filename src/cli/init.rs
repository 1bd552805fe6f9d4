//! `gallra init`.

use clap::Args;

use gallra::config::Config;

use super::output::print_json;

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
        }
    }
    if json_out {
        print_json(&report.targets)?;
    }
    Ok(if report.ok() { 0 } else { 1 })
}
