//! `gallra ls`.

use clap::Args;
use serde::Serialize;

use gallra::config::Config;
use gallra::format::tree::NodeKind;
use gallra::restore::{self, ListEntry, OpenSnapshot};

use super::TargetArg;
use super::json::UnixTime;
use super::output::{esc, print_json, rfc3339};

#[derive(Args)]
pub struct LsArgs {
    snapshot: String,
    path: Option<String>,
    #[command(flatten)]
    target: TargetArg,
}

/// An entry in `ls --json`: the tree node's fields a script needs, under
/// the names `ls` has always used (`Node`'s own `Serialize` is the on-store
/// encoding).
#[derive(Serialize)]
struct EntryJson<'a> {
    path: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    mode: u32,
    mtime: UnixTime,
}

impl<'a> EntryJson<'a> {
    fn new(e: &'a ListEntry) -> EntryJson<'a> {
        EntryJson {
            path: &e.path,
            kind: match e.node.kind {
                NodeKind::File => "file",
                NodeKind::Dir => "dir",
                NodeKind::Symlink => "symlink",
            },
            size: e.node.size,
            mode: e.node.mode,
            mtime: UnixTime {
                secs: e.node.mtime_secs,
                nanos: e.node.mtime_nanos,
            },
        }
    }
}

pub fn run(config: &Config, json_out: bool, args: LsArgs) -> anyhow::Result<i32> {
    let repo = args.target.open(config)?;
    let snap = OpenSnapshot::open(&repo, &args.snapshot)?;
    let entries = restore::ls(&snap, args.path.as_deref())?;
    if json_out {
        print_json(&entries.iter().map(EntryJson::new).collect::<Vec<_>>())?;
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
