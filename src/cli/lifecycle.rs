//! `contract`, `hold`, `erase`, `inbox`, `lifecycle` and `audit`.

use anyhow::Context;
use clap::{Args, Subcommand};
use jiff::Timestamp;
use jiff::civil::Date;
use serde::Serialize;

use gallra::audit::{Action, AuditLog, Record};
use gallra::config::Config;
use gallra::error::Error;
use gallra::lifecycle::apply::{ApplyReport, Failure, Lifecycle, Mode, TargetRepositories};
use gallra::lifecycle::journal::Recorded;
use gallra::lifecycle::rotate::Due;
use gallra::lifecycle::{Event, EventType, Plan};
use gallra::repo::Repository;
use gallra::survival::{self, Leftovers};
use std::collections::BTreeSet;

#[derive(Subcommand)]
pub enum ContractCommand {
    /// Record that a tenant's contract ends; its data goes after the post-contract window
    End {
        tenant: String,
        /// The contract's last day (YYYY-MM-DD); the window starts at 00:00 the next day
        #[arg(long, value_name = "DATE")]
        effective: String,
        /// A reference, e.g. the CRM case
        #[arg(long = "ref", value_name = "TEXT")]
        reference: Option<String>,
    },
    /// Cancel a recorded contract end
    Reinstate {
        tenant: String,
        #[arg(long = "ref", value_name = "TEXT")]
        reference: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum HoldCommand {
    /// Suspend every deletion of a tenant's data
    Set {
        tenant: String,
        #[arg(long)]
        reason: String,
    },
    /// Lift one hold: what expired meanwhile goes at the next apply, unless another hold keeps it
    Release {
        tenant: String,
        /// The hold to lift: the id `hold set` printed (needed when the tenant has several)
        #[arg(long, value_name = "ID")]
        hold: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum InboxCommand {
    /// Take in the event files waiting in <state_dir>/inbox/
    Process,
}

#[derive(Subcommand, Clone)]
pub enum LifecycleCommand {
    /// What is due now, or what will be gone by DATE
    Plan {
        /// As if now were 00:00 of DATE (YYYY-MM-DD) in the configured time zone
        #[arg(long, value_name = "DATE")]
        at: Option<String>,
    },
    /// Delete what is due on every target, prune, destroy keys of tenants that are gone, audit
    Apply {
        /// Show what would be deleted, delete nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Records of the local audit trail
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Recompute the hash chain in the local file and on every target
    Verify,
    /// The evidence for one tenant, for an auditor (to stdout)
    Export {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "md", value_parser = ["md", "json"])]
        format: String,
    },
}

/// Every target's repository; a secondary that does not open is warned.
pub fn open_all(config: &Config) -> anyhow::Result<TargetRepositories> {
    let opened = config.open_repositories()?;
    for f in &opened.failures {
        eprintln!("warning: target {}: {}", f.target_or_empty(), f.error);
    }
    Ok(opened)
}

fn audit_log(config: &Config) -> anyhow::Result<AuditLog> {
    Ok(AuditLog::open(&config.agent.state_dir, &config.agent.host)?)
}

fn parse_date(flag: &str, text: &str) -> anyhow::Result<Date> {
    Ok(text
        .parse::<Date>()
        .map_err(|_| Error::Usage(format!("{flag} {text:?}: expected a date like 2026-10-31")))?)
}

/// `--at DATE`: 00:00 of DATE in the configured time zone.
fn at_date(config: &Config, text: &str) -> anyhow::Result<Timestamp> {
    let date = parse_date("--at", text)?;
    Ok(date
        .to_zoned(config.policy.time_zone.clone())
        .with_context(|| format!("--at {text}"))?
        .timestamp())
}

fn local(config: &Config, t: Timestamp) -> String {
    if t == Timestamp::MAX {
        return "never".into();
    }
    t.to_zoned(config.policy.time_zone.clone())
        .strftime("%Y-%m-%d %H:%M %Z")
        .to_string()
}

fn new_event(kind: EventType, tenant: &str) -> Event {
    let now = Timestamp::now();
    Event {
        id: format!(
            "cli-{}-{}",
            now.strftime("%Y%m%dT%H%M%SZ"),
            hex::encode(gallra::crypto::random_bytes::<4>())
        ),
        kind,
        tenant: tenant.to_string(),
        effective: None,
        reason: None,
        reference: None,
        time: Some(now),
        include_legal: false,
        hold: None,
    }
}

fn with<R>(
    config: &Config,
    work: impl FnOnce(&Lifecycle) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let opened = open_all(config)?;
    let audit = audit_log(config)?;
    work(&config.lifecycle(&opened, &audit))
}

/// contract end/reinstate, hold set/release: one event, taken in.
pub fn record(config: &Config, json_out: bool, event: Event) -> anyhow::Result<i32> {
    with(config, |lc| {
        // An erased tenant has no folder left but is known by its events
        // (a reinstatement must still reach it).
        let known = lc.repos[0].tenant_names()?;
        let evented = || -> anyhow::Result<bool> {
            Ok(gallra::lifecycle::journal::load(&lc.repos[0])?
                .iter()
                .any(|e| e.event.tenant == event.tenant))
        };
        if !known.contains(&event.tenant) && !evented()? {
            anyhow::bail!(Error::Usage(format!(
                "tenant {:?} is not in the repository (no backup of it was ever taken)",
                event.tenant
            )));
        }
        let (recorded, event) = lc.accept_event(event, "cli", Timestamp::now())?;
        if json_out {
            super::output::print_json(&EventRecorded {
                event: &event,
                recorded,
            })?;
        } else {
            println!(
                "recorded {} of tenant {} (event {})",
                event.kind.as_str(),
                event.tenant,
                event.id
            );
            if let Some(hold) = &event.hold {
                println!("hold {hold} is lifted; any other hold of the tenant stays");
            }
            if event.kind == EventType::HoldSet {
                println!(
                    "hold id {}: each hold is lifted on its own, by `gallra hold release {} --hold {}`",
                    event.id, event.tenant, event.id
                );
            }
            if event.kind == EventType::ContractEnded {
                let end = gallra::lifecycle::plan::contract_window_start(
                    &config.policy,
                    event.effective.expect("checked"),
                );
                println!(
                    "its post-contract window starts {}; `gallra lifecycle plan` shows when each snapshot goes",
                    local(config, end)
                );
            }
        }
        Ok(0)
    })
}

pub fn contract(config: &Config, json_out: bool, cmd: ContractCommand) -> anyhow::Result<i32> {
    let event = match cmd {
        ContractCommand::End {
            tenant,
            effective,
            reference,
        } => {
            let mut e = new_event(EventType::ContractEnded, &tenant);
            e.effective = Some(parse_date("--effective", &effective)?);
            e.reference = reference;
            e
        }
        ContractCommand::Reinstate { tenant, reference } => {
            let mut e = new_event(EventType::ContractReinstated, &tenant);
            e.reference = reference;
            e
        }
    };
    record(config, json_out, event)
}

pub fn hold(config: &Config, json_out: bool, cmd: HoldCommand) -> anyhow::Result<i32> {
    let event = match cmd {
        HoldCommand::Set { tenant, reason } => {
            let mut e = new_event(EventType::HoldSet, &tenant);
            e.reason = Some(reason);
            e
        }
        HoldCommand::Release { tenant, hold } => {
            let mut e = new_event(EventType::HoldReleased, &tenant);
            e.hold = hold;
            e
        }
    };
    record(config, json_out, event)
}

#[derive(Args)]
pub struct EraseArgs {
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
}

pub fn erase(config: &Config, json_out: bool, args: EraseArgs) -> anyhow::Result<i32> {
    let tenant = args.tenant.as_str();
    if !args.yes {
        anyhow::bail!(Error::Usage(format!(
            "erase deletes every copy of tenant {tenant}'s data on every target and destroys its key; nothing can bring it back. Add --yes to do it"
        )));
    }
    with(config, |lc| {
        let (_, holdings) = lc.plan(Timestamp::now())?;
        if !holdings.tenants.values().any(|t| t.contains(tenant)) {
            anyhow::bail!(Error::Usage(format!(
                "tenant {tenant:?} is in no target's repository"
            )));
        }
        if let Some(state) = holdings.states.get(tenant).filter(|s| !s.holds.is_empty()) {
            let holds: Vec<String> = state
                .holds
                .values()
                .map(|h| {
                    format!(
                        "{} since {}, hold {}",
                        h.reason,
                        local(config, h.since),
                        h.event
                    )
                })
                .collect();
            anyhow::bail!(Error::Refused(format!(
                "tenant {tenant} is under a legal hold ({}): nothing of it may be deleted; release the hold first (`gallra hold release {tenant} --hold ID`)",
                holds.join("; ")
            )));
        }
        if let Some(why) = holdings.states.get(tenant).and_then(|s| s.dispute.as_ref()) {
            anyhow::bail!(Error::Refused(format!("tenant {tenant}: {why}")));
        }
        let mut event = new_event(EventType::ErasureRequested, tenant);
        event.reason = Some(args.reason.clone());
        event.include_legal = args.include_legal;
        lc.accept(event, "cli", Timestamp::now())?;
        let now = Timestamp::now();
        let leftovers = survival::leftovers(config, now);
        let report = lc.apply(
            now,
            Mode::Delete,
            Some(tenant),
            &survival::survives(&leftovers),
        )?;
        print_apply(config, json_out, &report, &leftovers)
    })
}

pub fn inbox(config: &Config, json_out: bool, _cmd: InboxCommand) -> anyhow::Result<i32> {
    with(config, |lc| {
        let items = lc.process_inbox(Timestamp::now())?;
        let failed = items.iter().any(|i| i.outcome == "failed");
        if json_out {
            super::output::print_json(&serde_json::to_value(&items)?)?;
        } else if items.is_empty() {
            println!(
                "inbox {}: no events waiting",
                gallra::lifecycle::journal::inbox_dir(&config.agent.state_dir).display()
            );
        } else {
            for i in &items {
                println!(
                    "{:<9} {}{}{}",
                    i.outcome,
                    i.file,
                    i.event
                        .as_ref()
                        .map(|e| format!(
                            " (event {e}, tenant {})",
                            i.tenant.as_deref().unwrap_or("?")
                        ))
                        .unwrap_or_default(),
                    i.reason
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                );
            }
        }
        Ok(i32::from(failed))
    })
}

pub fn lifecycle(config: &Config, json_out: bool, cmd: LifecycleCommand) -> anyhow::Result<i32> {
    match cmd {
        LifecycleCommand::Plan { at } => {
            let now = match &at {
                Some(d) => at_date(config, d)?,
                None => Timestamp::now(),
            };
            with(config, |lc| {
                let (plan, holdings) = lc.plan(now)?;
                if json_out {
                    // The due entries, as scripts have always read them;
                    // what survives is in `lifecycle apply --dry-run --json`.
                    super::output::print_json(&serde_json::to_value(&plan.due)?)?;
                } else {
                    print_plan(config, &plan, at.as_deref(), &holdings.failures);
                    let targets: BTreeSet<&str> =
                        plan.due.iter().map(|e| e.target.as_str()).collect();
                    let leftovers = match targets.is_empty() {
                        true => Vec::new(),
                        false => survival::leftovers(config, now),
                    };
                    print_leftovers(
                        "what these deletions leave behind, per target:",
                        &leftovers,
                        &targets,
                    );
                }
                for (tenant, state) in &holdings.states {
                    if let Some(why) = &state.dispute {
                        eprintln!("warning: tenant {tenant}: {why}");
                    }
                }
                Ok(0)
            })
        }
        LifecycleCommand::Apply { dry_run } => with(config, |lc| {
            let now = Timestamp::now();
            let leftovers = survival::leftovers(config, now);
            let report = lc.apply(
                now,
                if dry_run { Mode::DryRun } else { Mode::Delete },
                None,
                &survival::survives(&leftovers),
            )?;
            print_apply(config, json_out, &report, &leftovers)
        }),
    }
}

fn print_entries(config: &Config, entries: &[&gallra::lifecycle::PlanEntry]) {
    println!(
        "  {:<16} {:<12} {:<10} {:<22} {:<15} {:<22} legal basis",
        "tenant", "snapshot", "target", "expires", "reason", "rule"
    );
    for e in entries {
        println!(
            "  {:<16} {:<12} {:<10} {:<22} {:<15} {:<22} {}",
            e.tenant,
            &e.snapshot[..12],
            e.target,
            local(config, e.expires),
            e.reason.as_str(),
            e.rule,
            e.legal_basis
        );
    }
}

fn print_plan(config: &Config, plan: &Plan, at: Option<&str>, failures: &[Failure]) {
    for f in failures {
        println!(
            "target {} could not be read: {}",
            f.target_or_empty(),
            f.error
        );
    }
    let when = at.map_or("now".to_string(), |d| format!("by {d}"));
    if plan.due.is_empty() {
        println!("nothing is due {when}");
    } else {
        println!("due {when}: {} snapshot copies", plan.due.len());
        print_entries(config, &plan.due.iter().collect::<Vec<_>>());
    }
    for l in &plan.locked {
        println!(
            "locked: tenant {} snapshot {} on {}: due {}, deleted when its S3 Object Lock ends at {}",
            l.entry.tenant,
            &l.entry.snapshot[..12],
            l.entry.target,
            local(config, l.entry.expires),
            local(config, l.locked_until)
        );
    }
    for t in config
        .targets
        .iter()
        .filter(|t| t.deletions == gallra::store::Deletions::LifecycleHost)
    {
        let n = plan.due.iter().filter(|e| e.target == t.name).count();
        if n > 0 {
            println!(
                "target {}: its {n} due copies are deleted by its lifecycle host (deletions = \"lifecycle-host\"), not from here; until it has, they count as overdue",
                t.name
            );
        }
    }
    /// A tenant's held copies, under its (first) hold.
    struct Held<'a> {
        copies: usize,
        reason: &'a str,
        erasure_deferred: bool,
    }
    let mut held: std::collections::BTreeMap<&str, Held> = Default::default();
    for h in &plan.held {
        let e = held.entry(h.entry.tenant.as_str()).or_insert(Held {
            copies: 0,
            reason: h.hold_reason.as_str(),
            erasure_deferred: false,
        });
        e.copies += 1;
        e.erasure_deferred |= h.entry.reason == gallra::lifecycle::Reason::Erasure;
    }
    for (tenant, h) in held {
        let Held {
            copies: n,
            reason,
            erasure_deferred: erasure,
        } = h;
        println!(
            "held: tenant {tenant}: {n} snapshot copies past their expiry are kept ({reason}); nothing of this tenant is deleted{}",
            if erasure {
                "; its erasure is deferred until nothing holds it"
            } else {
                ""
            }
        );
    }
    if !plan.legal_kept.is_empty() {
        println!(
            "snapshots kept under a legal obligation despite an erasure request (one line each):"
        );
        print_entries(config, &plan.legal_kept.iter().collect::<Vec<_>>());
    }
    for u in &plan.upcoming {
        println!(
            "next: tenant {}: {} snapshot copies go at {} ({})",
            u.tenant,
            u.copies,
            local(config, u.expires),
            u.reason.as_str()
        );
    }
}

/// The targets a report deleted on (or would, in a dry run).
fn touched_targets(report: &ApplyReport) -> BTreeSet<&str> {
    let mut out: BTreeSet<&str> = report.due.iter().map(|e| e.target.as_str()).collect();
    for t in &report.tenants {
        let deleted = t
            .targets
            .iter()
            .filter(|r| r.snapshots_deleted + r.objects_deleted > 0);
        out.extend(deleted.map(|r| r.target.as_str()));
        out.extend(t.key_destroyed_on.iter().map(String::as_str));
    }
    out
}

/// One line per target in `targets`, under `heading`; nothing when none.
fn print_leftovers(heading: &str, leftovers: &[Leftovers], targets: &BTreeSet<&str>) {
    let lines: Vec<&Leftovers> = leftovers
        .iter()
        .filter(|l| targets.contains(l.target.as_str()))
        .collect();
    if lines.is_empty() {
        return;
    }
    println!("{heading}");
    for l in lines {
        println!("  {}", l.words);
    }
}

/// `erase` and `lifecycle apply` in `--json`: the report as it always was,
/// and what survives on each target it deleted on.
#[derive(Serialize)]
struct ApplyJson<'a> {
    #[serde(flatten)]
    report: &'a ApplyReport,
    leftovers: Vec<&'a Leftovers>,
}

fn print_apply(
    config: &Config,
    json_out: bool,
    report: &ApplyReport,
    leftovers: &[Leftovers],
) -> anyhow::Result<i32> {
    let touched = touched_targets(report);
    if json_out {
        super::output::print_json(&ApplyJson {
            report,
            leftovers: leftovers
                .iter()
                .filter(|l| touched.contains(l.target.as_str()))
                .collect(),
        })?;
    } else {
        if report.dry_run {
            println!("dry run: nothing is deleted");
            print_entries(config, &report.due.iter().collect::<Vec<_>>());
        }
        if !report.retired_epochs_removed.is_empty() {
            println!(
                "removed the objects of key epoch(s) {} that the fleet server's rotation retired (their keys are pending deletion in the key service)",
                report.retired_epochs_removed.join(", ")
            );
        }
        for l in &report.locked {
            println!(
                "tenant {}: snapshot {} on {} is locked until {} (S3 Object Lock): deleted then",
                l.entry.tenant,
                &l.entry.snapshot[..12],
                l.entry.target,
                local(config, l.locked_until)
            );
        }
        let mut elsewhere: std::collections::BTreeMap<&str, usize> = Default::default();
        for e in &report.left_to_lifecycle_host {
            *elsewhere.entry(e.target.as_str()).or_default() += 1;
        }
        for (target, n) in elsewhere {
            println!(
                "target {target}: {n} due snapshot copies are left to its lifecycle host (deletions = \"lifecycle-host\"); until it deletes them they count as overdue"
            );
        }
        for t in &report.tenants {
            for r in &t.targets {
                if r.snapshots_deleted + r.objects_deleted + r.objects_written == 0 {
                    continue;
                }
                println!(
                    "tenant {} on {}: {} snapshots deleted, {} objects / {} removed{}",
                    t.tenant,
                    r.target,
                    r.snapshots_deleted,
                    r.objects_deleted,
                    super::output::human_bytes(r.bytes_deleted),
                    if r.objects_written > 0 {
                        format!(
                            ", {} objects / {} written (new index, repacked packs, or shipped from the primary)",
                            r.objects_written,
                            super::output::human_bytes(r.bytes_written)
                        )
                    } else {
                        String::new()
                    }
                );
            }
            if t.key_destroyed {
                println!(
                    "tenant {}: key destroyed: it and every remaining object of the tenant were deleted on {}, and a listing of each showed none left; copies outside these targets were not checked (what survives is below)",
                    t.tenant,
                    t.key_destroyed_on.join(", ")
                );
            }
        }
        let mut held: Vec<&str> = report
            .held
            .iter()
            .map(|h| h.entry.tenant.as_str())
            .collect();
        held.dedup();
        for tenant in held {
            println!("tenant {tenant}: held, nothing deleted");
        }
        let mut kept: Vec<&str> = report
            .legal_kept
            .iter()
            .map(|e| e.tenant.as_str())
            .collect();
        kept.dedup();
        for tenant in kept {
            let n = report
                .legal_kept
                .iter()
                .filter(|e| e.tenant == tenant)
                .count();
            println!(
                "tenant {tenant}: {n} snapshot(s) kept under a legal obligation (see `gallra lifecycle plan`); the key goes with the last of them"
            );
        }
        if !report.dry_run
            && report.tenants.is_empty()
            && report.left_to_lifecycle_host.is_empty()
            && report.ok()
        {
            println!("nothing was due");
        }
        let heading = match report.dry_run {
            true => "what these deletions would leave behind, per target:",
            false => "what survives the deletion, per target:",
        };
        print_leftovers(heading, leftovers, &touched);
        // With a key service: whether the erasures are now complete for
        // every surviving copy too, or when they will be.
        if let Some(due) = &report.rotation_due
            && (report.rotation.is_some() || !matches!(due, Due::No { .. }))
        {
            for line in super::key::rotation_lines(due, report.rotation.as_ref()) {
                println!("{line}");
            }
        }
        for f in &report.failures {
            eprintln!(
                "error: {}target {}: {}",
                f.tenant
                    .as_ref()
                    .map(|t| format!("tenant {t}, "))
                    .unwrap_or_default(),
                f.target_or_empty(),
                f.error
            );
        }
    }
    Ok(i32::from(!report.ok()))
}

pub fn audit(config: &Config, json_out: bool, cmd: AuditCommand) -> anyhow::Result<i32> {
    let log = audit_log(config)?;
    match cmd {
        AuditCommand::List { tenant } => {
            let records: Vec<Record> = log
                .records()?
                .into_iter()
                .filter(|r| tenant.is_none() || r.tenant == tenant)
                .collect();
            if json_out {
                super::output::print_json(&serde_json::to_value(&records)?)?;
            } else {
                println!(
                    "{:>5}  {:<21} {:<20} {:<16} {:>9}  targets",
                    "seq", "time", "action", "tenant", "snapshots"
                );
                for r in &records {
                    println!(
                        "{:>5}  {:<21} {:<20} {:<16} {:>9}  {}",
                        r.seq,
                        r.time,
                        r.action.as_str(),
                        r.tenant.as_deref().unwrap_or("-"),
                        r.snapshots.len(),
                        r.targets
                            .iter()
                            .map(|t| format!(
                                "{} {} objects/{}",
                                t.target,
                                t.objects,
                                super::output::human_bytes(t.bytes)
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
            Ok(0)
        }
        AuditCommand::Verify => {
            let opened = open_all(config)?;
            let refs: Vec<&Repository> = opened.repos.iter().collect();
            let report = log.verify(&refs)?;
            if json_out {
                super::output::print_json(&serde_json::to_value(&report)?)?;
            } else {
                println!("{}: {} records", log.path().display(), report.local_records);
                for t in &report.targets {
                    println!("target {}: {} records", t.target, t.records);
                }
                match (report.head, &report.head_place) {
                    (Some(seq), Some(place)) => println!("head: seq {seq} ({place})"),
                    _ => println!(
                        "head: no head recorded yet (written from the next append on); a removed tail cannot be told from the chain's end until then"
                    ),
                }
                for p in &report.problems {
                    println!("problem: {}: {}", p.place, p.message);
                }
                if report.ok() && opened.failures.is_empty() {
                    println!("audit trail intact: every hash chain recomputes");
                }
            }
            for f in &opened.failures {
                eprintln!(
                    "error: target {} could not be checked: {}",
                    f.target_or_empty(),
                    f.error
                );
            }
            Ok(i32::from(!report.ok() || !opened.failures.is_empty()))
        }
        AuditCommand::Export { tenant, format } => {
            let records: Vec<Record> = log
                .records()?
                .into_iter()
                .filter(|r| r.tenant.as_deref() == Some(tenant.as_str()))
                .collect();
            // Every backup, deletion and event of a tenant leaves a record:
            // none means a misspelt name, not a tenant with a clean record.
            if records.is_empty() {
                anyhow::bail!(Error::Usage(format!(
                    "no audit record in {} names tenant {tenant:?}: check the spelling (`gallra snapshots` lists the tenants)",
                    log.path().display()
                )));
            }
            if format == "json" {
                let destroyed = records
                    .iter()
                    .find(|r| r.action == Action::KeyDestroyed)
                    .map(|r| r.time.clone());
                super::output::print_json(&AuditExport {
                    tenant: &tenant,
                    records: &records,
                    key_destroyed: destroyed,
                })?;
            } else {
                print!("{}", gallra::audit::export_markdown(&records, &tenant));
            }
            Ok(0)
        }
    }
}

/// `contract end|reinstate`, `hold` and `erase` in `--json`: the event as
/// accepted, and whether it was new.
#[derive(Serialize)]
struct EventRecorded<'a> {
    event: &'a Event,
    recorded: Recorded,
}

/// `audit export --format json`: a tenant's records, and when its key was
/// destroyed (null while it lives).
#[derive(Serialize)]
struct AuditExport<'a> {
    tenant: &'a str,
    records: &'a [Record],
    key_destroyed: Option<String>,
}
