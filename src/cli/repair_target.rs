//! `gallra repair-target`.

use clap::Args;

use gallra::config::Config;
use gallra::repair::RevertReport;
use gallra::ship::ShipOptions;

use super::output::{print_json, print_ship_report};

#[derive(Args)]
pub struct RepairTargetArgs {
    /// The target to rebuild
    name: String,
    /// Copy from this target (default: the first other target that has the repository)
    #[arg(long, value_name = "NAME")]
    from: Option<String>,
    /// Read every copied object back and check its hash
    #[arg(long)]
    verify: bool,
    /// Copy what the source held at TIME (an S3 target's old versions, after an attack); needs --from
    #[arg(long, value_name = "TIME", requires = "from")]
    as_of: Option<String>,
    /// Put this S3 target back in place as it was at TIME (after an attack; run with the deletion role, on the lifecycle host)
    #[arg(long, value_name = "TIME", conflicts_with_all = ["from", "as_of", "verify"])]
    revert_to: Option<String>,
    /// With --revert-to: say what would change, and change nothing
    #[arg(long, requires = "revert_to")]
    dry_run: bool,
}

pub fn run(config: &Config, json_out: bool, args: RepairTargetArgs) -> anyhow::Result<i32> {
    let name = &args.name;
    if let Some(at) = &args.revert_to {
        let at = super::parse_moment(config, "--revert-to", at)?;
        let report = gallra::repair::revert_target(config, name, at, args.dry_run)?;
        for f in &report.failed {
            eprintln!("error: revert of target {name}: {f}");
        }
        if json_out {
            print_json(&report)?;
        } else {
            print_revert_report(&report);
        }
        return Ok(if report.ok() { 0 } else { 1 });
    }
    let as_of = args
        .as_of
        .as_deref()
        .map(|t| super::parse_moment(config, "--as-of", t))
        .transpose()?;
    let report = gallra::repair::repair_target(
        config,
        name,
        args.from.as_deref(),
        as_of,
        ShipOptions {
            verify: args.verify,
            progress: !json_out,
            ..config.ship_options()
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
        print_json(&report)?;
    } else {
        print_ship_report(&report);
    }
    Ok(if report.ok() { 0 } else { 1 })
}

fn print_revert_report(r: &RevertReport) {
    let would = if r.dry_run { "would be " } else { "" };
    println!(
        "target {} as of {}: {} object(s) {would}put back ({}), {} made since {would}hidden, {} audit record(s) since kept, {} unchanged",
        r.target,
        r.as_of,
        r.put_back,
        gallra::text::human_bytes(r.put_back_bytes),
        r.hidden,
        r.audit_records_kept,
        r.unchanged
    );
    for k in &r.keys {
        let what = match k.kept {
            "of-the-time" => "its version of the time",
            "rewrapped-since" => "its version rewrapped since (the one of the time opens no more)",
            "made-since" => "kept: made since by a rotation, and a kept tenant key needs it",
            "hidden" => "hidden: made since, and no key of the time needs it",
            "none-opens" => {
                "no version opens: its version of the time is current again (a key deletion to cancel? docs/INSTALL.md section 7)"
            }
            _ => "to be chosen by which version opens",
        };
        println!("  {}: {what}", k.path);
    }
    if !r.hidden_snapshots.is_empty() {
        println!(
            "  {} snapshot(s) taken since {would}hidden: a genuine backup among them comes back with the server's next ship if it still holds it",
            r.hidden_snapshots.len()
        );
    }
    for e in &r.hidden_events {
        match (e.kind, &e.tenant) {
            (Some(kind), Some(tenant)) => println!(
                "  event {} {would}hidden: {kind} of tenant {tenant}, received {} from {}: if it was genuine, record it again",
                e.id,
                e.received.map(|t| t.to_string()).unwrap_or_default(),
                e.host.as_deref().unwrap_or("?")
            ),
            _ => println!(
                "  event {} {would}hidden{}",
                e.id,
                if r.dry_run {
                    ""
                } else {
                    ": it does not open (not this repository's)"
                }
            ),
        }
    }
    if !r.dry_run && r.ok() {
        println!(
            "next: gallra check --target {} --read-data, then the lifecycle's plan",
            r.target
        );
    }
}
