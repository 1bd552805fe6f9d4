//! `gallra ls`.

use clap::Args;
use serde_json::{Value, json};

use gallra::config::Config;
use gallra::format::tree::NodeKind;
use gallra::restore::{self, OpenSnapshot};

use super::TargetArg;
use super::output::{esc, print_json, rfc3339};

#[derive(Args)]
pub struct LsArgs {
    snapshot: String,
    path: Option<String>,
    #[command(flatten)]
    target: TargetArg,
}

pub fn run(config: &Config, json_out: bool, args: LsArgs) -> anyhow::Result<i32> {
    let repo = args.target.open(config)?;
    let snap = OpenSnapshot::open(&repo, &args.snapshot)?;
    let entries = restore::ls(&snap, args.path.as_deref())?;
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
