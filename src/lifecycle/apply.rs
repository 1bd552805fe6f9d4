//! Applying the lifecycle: gathering what every target holds, planning, and
//! deleting on every target (primary first), pruning, destroying keys, and
//! auditing each action. Also taking in events, by CLI and by inbox.

use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::events::{Event, EventType, StoredEvent, TenantState, fold, fold_targets};
use super::journal::{self, InboxItem, Recorded};
use super::plan::{self, HeldEntry, Plan, PlanEntry, Reason, SnapshotFacts};
use super::prune::{self, PruneReport, TenantHoldings};
use super::rules::Policy;
use crate::audit::{Action, AuditLog, Entry, TargetCounts};
use crate::crypto::KeySource;
use crate::error::{Error, Result};
pub use crate::failure::Failure;
use crate::format::Id;
use crate::layout::{self, id_of_path};
use crate::lock::{self, Holder, LockKind};
use crate::repo::Repository;
use crate::store::{Locking, TargetSettings};

/// Everything applying the lifecycle needs.
pub struct Lifecycle<'a> {
    pub policy: &'a Policy,
    /// The primary first, then every secondary that could be opened.
    pub repos: &'a [Repository],
    /// Secondaries that could not be opened: while one is unknown, no key
    /// is destroyed.
    pub unopened: Vec<Failure>,
    pub host: String,
    pub state_dir: PathBuf,
    pub pack_size: u64,
    pub audit: &'a AuditLog,
}

/// Snapshot objects deleted from one target, with their sizes.
type Deleted = Vec<(String, u64)>;

/// What a snapshot object says that the planner needs.
#[derive(Clone)]
struct KnownSnapshot {
    created: Timestamp,
    category: String,
    source: String,
}

/// What the snapshot objects read so far say, by tenant and id.
type KnownSnapshots = HashMap<(String, Id), KnownSnapshot>;

/// Snapshot objects never change (their id names their content), so what
/// one read of them says is kept for the process's life: the agent plans
/// after every job and would otherwise read every snapshot of every target
/// each time (one GET each on S3).
fn known_snapshots() -> &'static std::sync::Mutex<KnownSnapshots> {
    static KNOWN: std::sync::OnceLock<std::sync::Mutex<KnownSnapshots>> =
        std::sync::OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// The repositories of every target (primary first) and the targets that
/// could not be opened.
pub struct TargetRepositories {
    pub repos: Vec<Repository>,
    pub failures: Vec<Failure>,
}

impl TargetRepositories {
    /// Opens every target with `key`. The primary must open; a secondary
    /// that does not is a failure the caller reports.
    pub fn open<'t>(
        primary: &TargetSettings,
        secondaries: impl IntoIterator<Item = &'t TargetSettings>,
        key: &KeySource,
    ) -> Result<TargetRepositories> {
        let mut out = TargetRepositories {
            repos: vec![Repository::open_target(primary, key)?],
            failures: Vec::new(),
        };
        for t in secondaries {
            match Repository::open_target(t, key) {
                Ok(r) => out.repos.push(r),
                Err(e) => out
                    .failures
                    .push(Failure::on_target(t.name.clone(), e.to_string())),
            }
        }
        Ok(out)
    }
}

/// What every target holds, as the planner sees it.
pub struct Holdings {
    pub states: BTreeMap<String, TenantState>,
    pub snapshots: Vec<SnapshotFacts>,
    /// Tenants with a folder (a key) on each target.
    pub tenants: BTreeMap<String, BTreeSet<String>>,
    /// Per target, tenant folders without a key: what a key destruction
    /// killed before it released its lock leaves (or a first backup that
    /// has only taken its lock).
    pub keyless: BTreeMap<String, BTreeSet<String>>,
    /// Targets that could not be read: no key is destroyed while one is
    /// unknown.
    pub failures: Vec<Failure>,
}

/// What one target holds (see `Holdings`).
struct TargetHoldings {
    snapshots: Vec<SnapshotFacts>,
    tenants: BTreeSet<String>,
    keyless: BTreeSet<String>,
    /// Tenants whose key or snapshots could not be read there.
    failures: Vec<Failure>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetResult {
    pub target: String,
    pub snapshots_deleted: u64,
    pub objects_deleted: u64,
    pub bytes_deleted: u64,
    pub objects_written: u64,
    pub bytes_written: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantResult {
    pub tenant: String,
    pub targets: Vec<TargetResult>,
    pub key_destroyed: bool,
    /// The targets the key was deleted from, each checked by a listing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_destroyed_on: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub dry_run: bool,
    pub due: Vec<PlanEntry>,
    pub held: Vec<HeldEntry>,
    pub legal_kept: Vec<PlanEntry>,
    pub tenants: Vec<TenantResult>,
    #[serde(serialize_with = "crate::failure::json::lifecycle")]
    pub failures: Vec<Failure>,
}

impl ApplyReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Whether `Lifecycle::apply` deletes what is due or only reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    DryRun,
    Delete,
}

impl<'a> Lifecycle<'a> {
    fn primary(&self) -> &Repository {
        &self.repos[0]
    }

    fn repo_refs(&self) -> Vec<&Repository> {
        self.repos.iter().collect()
    }

    fn holder(&self, command: &str) -> Holder {
        Holder {
            host: self.host.clone(),
            command: command.to_string(),
        }
    }

    /// Reads every target's snapshots and events. A snapshot id names its
    /// content, so one read on the primary serves every copy. Events are
    /// folded from every target that could be read (see `fold_targets`):
    /// a tenant whose events differ between them is not deleted from.
    pub fn holdings(&self) -> Result<Holdings> {
        let mut known = known_snapshots().lock().expect("not poisoned");
        let mut holdings = Holdings {
            states: BTreeMap::new(),
            snapshots: Vec::new(),
            tenants: BTreeMap::new(),
            keyless: BTreeMap::new(),
            failures: self.unopened.clone(),
        };
        let mut events = Vec::new();
        for (i, repo) in self.repos.iter().enumerate() {
            match journal::load_target(repo) {
                Ok(t) => {
                    for id in &t.unreadable {
                        holdings.failures.push(Failure::on_target(
                            t.target.clone(),
                            format!("event object {} cannot be read", layout::event_path(id)),
                        ));
                    }
                    events.push(t);
                }
                Err(e) if i == 0 => return Err(e),
                Err(e) => holdings.failures.push(Failure::on_target(
                    repo.store.name().to_string(),
                    format!("events not read: {e}"),
                )),
            }
        }
        let audited_holds: Vec<(String, String)> = self
            .audit
            .records()?
            .into_iter()
            .filter(|r| r.action == Action::HoldSet)
            .filter_map(|r| Some((r.tenant?, r.event?)))
            .collect();
        for (i, repo) in self.repos.iter().enumerate() {
            let target = repo.store.name().to_string();
            match self.holdings_of(repo, &mut known) {
                Ok(here) => {
                    holdings.snapshots.extend(here.snapshots);
                    holdings.tenants.insert(target.clone(), here.tenants);
                    holdings.keyless.insert(target, here.keyless);
                    holdings.failures.extend(here.failures);
                }
                Err(e) if i == 0 => return Err(e),
                Err(e) => holdings
                    .failures
                    .push(Failure::on_target(target, e.to_string())),
            }
        }
        let tenants: BTreeSet<String> = holdings.tenants.values().flatten().cloned().collect();
        holdings.states = fold_targets(&events, &audited_holds, &tenants);
        // A target whose events were not read may hold the only copy of a
        // hold (one removed from the primary, say): fail closed, as for an
        // event object no target can read. Deletions wait until every
        // target's events are known; the overdue alert says they wait.
        let unknown: Vec<&str> = self
            .unopened
            .iter()
            .map(Failure::target_or_empty)
            .chain(
                holdings
                    .failures
                    .iter()
                    .filter(|f| f.tenant.is_none() && f.error.starts_with("events not read"))
                    .map(Failure::target_or_empty),
            )
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !unknown.is_empty() {
            let why = format!(
                "the events of target(s) {} could not be read, and a hold may be recorded only there; nothing is deleted until they can be",
                unknown.join(", ")
            );
            for tenant in &tenants {
                let state = holdings.states.entry(tenant.clone()).or_default();
                state.dispute = Some(match state.dispute.take() {
                    Some(d) => format!("{d}; {why}"),
                    None => why.clone(),
                });
            }
        }
        Ok(holdings)
    }

    /// What one target holds. A tenant whose key or snapshots cannot be
    /// read there is a failure of that tenant (returned, naming the
    /// object), not of the target: the other tenants are planned as usual.
    /// An unreadable snapshot gets no facts, so no deletion is decided on
    /// it, and its tenant's failure keeps the tenant's key.
    fn holdings_of(&self, repo: &Repository, known: &mut KnownSnapshots) -> Result<TargetHoldings> {
        let mut snapshots = Vec::new();
        let mut tenants = BTreeSet::new();
        let mut keyless = BTreeSet::new();
        let mut failures = Vec::new();
        let target = repo.store.name().to_string();
        for name in repo.tenant_names()? {
            let fail =
                |error: String| Failure::of_tenant(name.clone(), Some(target.clone()), error);
            // One request, where a listing of the whole folder would name
            // every pack.
            match repo.store.size_of(&layout::tenant_key_path(&name)) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    keyless.insert(name);
                    continue;
                }
                Err(e) => {
                    // Counted as present, so that nothing treats it as gone.
                    tenants.insert(name.clone());
                    failures.push(fail(format!("tenant not read: {e}")));
                    continue;
                }
            }
            tenants.insert(name.clone());
            let listed = match repo.store.list(&layout::snapshots_folder(&name)) {
                Ok(l) => l,
                Err(e) => {
                    failures.push(fail(format!("snapshots not listed: {e}")));
                    continue;
                }
            };
            let mut tenant = None;
            for o in listed {
                let Some(id) = id_of_path(&o.path) else {
                    continue;
                };
                let key = (name.clone(), id);
                if !known.contains_key(&key) {
                    if tenant.is_none() {
                        match repo.tenant(&name, false) {
                            Ok(t) => tenant = Some(t),
                            Err(e) => {
                                failures.push(fail(format!("tenant key not read: {e}")));
                                break;
                            }
                        }
                    }
                    let t = tenant.as_ref().expect("opened above");
                    match repo.read_snapshot(t, &id) {
                        Ok(snap) => {
                            let read = KnownSnapshot {
                                created: snap.timestamp(),
                                category: snap.category,
                                source: snap.source,
                            };
                            known.insert(key.clone(), read);
                        }
                        Err(e) => {
                            failures.push(fail(format!(
                                "snapshot object not read, so not planned: {e}"
                            )));
                            continue;
                        }
                    }
                }
                let KnownSnapshot {
                    created,
                    category,
                    source,
                } = known[&key].clone();
                snapshots.push(SnapshotFacts {
                    tenant: name.clone(),
                    id,
                    target: target.clone(),
                    created,
                    category,
                    source,
                });
            }
        }
        Ok(TargetHoldings {
            snapshots,
            tenants,
            keyless,
            failures,
        })
    }

    pub fn plan(&self, now: Timestamp) -> Result<(Plan, Holdings)> {
        let holdings = self.holdings()?;
        let plan = plan::plan(self.policy, &holdings.states, &holdings.snapshots, now);
        Ok((plan, holdings))
    }

    /// Accepts one event: records it in the repository and audits it. A
    /// claimed time in the future is refused; a release names the hold it
    /// lifts (the tenant's only hold when it names none), and a release of
    /// a hold not in force is refused, before anything is written.
    pub fn accept(&self, event: Event, via: &str, now: Timestamp) -> Result<Recorded> {
        self.accept_event(event, via, now).map(|(r, _)| r)
    }

    /// `accept`, returning the event as recorded (a release with its hold).
    pub fn accept_event(
        &self,
        mut event: Event,
        via: &str,
        now: Timestamp,
    ) -> Result<(Recorded, Event)> {
        event.check().map_err(Error::Usage)?;
        event.check_time(now).map_err(Error::Usage)?;
        if event.kind == EventType::HoldReleased {
            let existing = journal::load(self.primary())?;
            // The same inbox file again: its hold was filled in when it was
            // first taken, so compare with that.
            let same = |s: &StoredEvent| {
                s.event
                    == Event {
                        hold: event.hold.clone().or_else(|| s.event.hold.clone()),
                        ..event.clone()
                    }
            };
            if let Some(s) = existing.iter().find(|s| same(s)) {
                return Ok((Recorded::Duplicate, s.event.clone()));
            }
            let states = fold(&existing);
            let holds = states
                .get(&event.tenant)
                .map(|s| s.holds.clone())
                .unwrap_or_default();
            event.hold = Some(resolve_hold(&event.tenant, event.hold.take(), &holds)?);
        }
        let stored = StoredEvent {
            event,
            received: now,
            host: self.host.clone(),
            via: via.to_string(),
        };
        let recorded = journal::record_event(&self.repo_refs(), &stored)?;
        if recorded == Recorded::New {
            let e = &stored.event;
            let mut entry = Entry::new(
                match e.kind {
                    EventType::ContractEnded => Action::ContractEnded,
                    EventType::ContractReinstated => Action::ContractReinstated,
                    EventType::ErasureRequested => Action::ErasureRequested,
                    EventType::HoldSet => Action::HoldSet,
                    EventType::HoldReleased => Action::HoldReleased,
                },
                Some(&e.tenant),
            );
            entry.event = Some(e.id.clone());
            entry.reason = e.reason.clone();
            let mut detail = Vec::new();
            if let Some(d) = e.effective {
                detail.push(format!("last day of contract {d}"));
            }
            if let Some(r) = &e.reference {
                detail.push(format!("ref {r}"));
            }
            if e.include_legal {
                detail.push("including snapshots kept under a legal obligation".into());
            }
            if let Some(h) = &e.hold {
                detail.push(format!("releases hold {h}"));
            }
            entry.detail = (!detail.is_empty()).then(|| detail.join("; "));
            self.audit_append(entry)?;
        }
        Ok((recorded, stored.event))
    }

    fn audit_append(&self, entry: Entry) -> Result<()> {
        let (_, failed) = self.audit.append(entry, &self.repo_refs())?;
        for (target, e) in failed {
            tracing::warn!("audit record not yet on target {target}: {e}; the next ship copies it");
        }
        Ok(())
    }

    /// Takes in every event waiting in `<state_dir>/inbox/`.
    pub fn process_inbox(&self, now: Timestamp) -> Result<Vec<InboxItem>> {
        let inbox = journal::inbox_dir(&self.state_dir);
        let files = journal::pending(&inbox)?;
        let mut out = Vec::new();
        if files.is_empty() {
            return Ok(out);
        }
        // An erased tenant has no folder left but is known by its events.
        let mut tenants: BTreeSet<String> = self.primary().tenant_names()?.into_iter().collect();
        if let Ok(events) = journal::load_target(self.primary()) {
            tenants.extend(events.events.into_iter().map(|e| e.event.tenant));
        }
        for file in files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let mut item = InboxItem {
                file: name,
                outcome: String::new(),
                event: None,
                tenant: None,
                reason: None,
            };
            match journal::read_inbox_file(&file, &tenants) {
                Err(why) => {
                    journal::reject(&file, &why)?;
                    item.outcome = "rejected".into();
                    item.reason = Some(why);
                }
                Ok(event) => {
                    item.event = Some(event.id.clone());
                    item.tenant = Some(event.tenant.clone());
                    match self.accept(event, "inbox", now) {
                        Ok(r) => {
                            journal::move_to(&file, "processed")?;
                            item.outcome = match r {
                                Recorded::New => "accepted",
                                Recorded::Duplicate => "duplicate",
                            }
                            .into();
                        }
                        Err(e @ (Error::Usage(_) | Error::Refused(_))) => {
                            let why = e.to_string();
                            journal::reject(&file, &why)?;
                            item.outcome = "rejected".into();
                            item.reason = Some(why);
                        }
                        // The store is unreachable: the file waits for the next run.
                        Err(e) => {
                            item.outcome = "failed".into();
                            item.reason = Some(e.to_string());
                        }
                    }
                }
            }
            out.push(item);
        }
        Ok(out)
    }

    /// Deletes what is due on every target, prunes, destroys the keys of
    /// tenants that are gone, and audits. `only`: one tenant (erase).
    pub fn apply(&self, now: Timestamp, mode: Mode, only: Option<&str>) -> Result<ApplyReport> {
        let dry_run = mode == Mode::DryRun;
        let (plan, holdings) = self.plan(now)?;
        let keep = |t: &str| only.is_none_or(|o| o == t);
        let mut report = ApplyReport {
            dry_run,
            due: plan
                .due
                .iter()
                .filter(|e| keep(&e.tenant))
                .cloned()
                .collect(),
            held: plan
                .held
                .iter()
                .filter(|h| keep(&h.entry.tenant))
                .cloned()
                .collect(),
            legal_kept: plan
                .legal_kept
                .iter()
                .filter(|e| keep(&e.tenant))
                .cloned()
                .collect(),
            failures: holdings.failures.clone(),
            ..Default::default()
        };
        // A disagreement keeps the tenant's data like a hold, but it is a
        // fault the operator must clear: the run fails and says so.
        for (tenant, state) in holdings.states.iter().filter(|(t, _)| keep(t)) {
            if let Some(why) = &state.dispute {
                report
                    .failures
                    .push(Failure::of_tenant(tenant.clone(), None, why.clone()));
            }
        }
        if dry_run {
            return Ok(report);
        }
        self.audit_legal_kept(&holdings, &report.legal_kept)?;

        let pending = pending_prunes(&self.state_dir);
        let mut touched: BTreeSet<String> = report.due.iter().map(|e| e.tenant.clone()).collect();
        touched.extend(pending.into_iter().filter(|t| keep(t)));
        let mut checked: HashMap<String, Result<(), String>> = HashMap::new();
        let mut remaining: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &holdings.snapshots {
            *remaining.entry(s.tenant.as_str()).or_default() += 1;
        }
        for e in &report.due {
            *remaining.entry(e.tenant.as_str()).or_default() -= 1;
        }

        for tenant in &touched {
            let due: Vec<&PlanEntry> = report.due.iter().filter(|e| &e.tenant == tenant).collect();
            let result =
                self.apply_tenant(tenant, &due, &holdings, &mut checked, &mut report.failures)?;
            report.tenants.push(result);
        }

        // A key destruction killed before releasing its lock left only the
        // lock; a dead process's lock of this host goes, and the folder
        // with it.
        for repo in self.repos.iter() {
            let target = repo.store.name();
            for tenant in holdings.keyless.get(target).into_iter().flatten() {
                let left = remaining.get(tenant.as_str()).copied().unwrap_or(0);
                if keep(tenant)
                    && plan::key_destruction_due(
                        self.policy,
                        holdings.states.get(tenant),
                        left,
                        now,
                    )
                {
                    lock::unlock(&repo.store, tenant, &self.host)?;
                }
            }
        }

        // Keys go when nothing of the tenant is left anywhere; only when
        // every target could be read, and none of the tenant's objects
        // failed to (an unread snapshot is not counted in `remaining`).
        if holdings.failures.iter().all(|f| f.tenant.is_some()) {
            let all: BTreeSet<&String> = holdings.tenants.values().flatten().collect();
            let failed = |t: &String| {
                holdings
                    .failures
                    .iter()
                    .any(|f| f.tenant.as_ref() == Some(t))
            };
            for tenant in all.into_iter().filter(|t| keep(t) && !failed(t)) {
                let left = remaining.get(tenant.as_str()).copied().unwrap_or(0);
                if !plan::key_destruction_due(self.policy, holdings.states.get(tenant), left, now) {
                    continue;
                }
                match self.destroy_key(tenant, &holdings) {
                    Ok(on) => match report.tenants.iter_mut().find(|t| &t.tenant == tenant) {
                        Some(t) => {
                            t.key_destroyed = true;
                            t.key_destroyed_on = on;
                        }
                        None => report.tenants.push(TenantResult {
                            tenant: tenant.clone(),
                            key_destroyed: true,
                            key_destroyed_on: on,
                            ..Default::default()
                        }),
                    },
                    Err(e) => report.failures.push(Failure::of_tenant(
                        tenant.clone(),
                        None,
                        e.to_string(),
                    )),
                }
            }
        }
        Ok(report)
    }

    fn may_delete_on(
        &self,
        repo: &Repository,
        checked: &mut HashMap<String, Result<(), String>>,
    ) -> Result<()> {
        let name = repo.store.name().to_string();
        let verdict = checked.entry(name.clone()).or_insert_with(|| {
            if repo.store.locking() == Locking::None {
                return Ok(());
            }
            match repo.store.honours_conditional_create() {
                Ok(true) => Ok(()),
                Ok(false) => Err("it does not honour conditional creates, so a lock cannot keep another agent's backup out while data is deleted; refusing to delete there (set locking = \"none\" on the target if only this agent ever writes to it)".to_string()),
                Err(e) => Err(e.to_string()),
            }
        });
        verdict.clone().map_err(|message| Error::TargetConfig {
            target: name,
            message,
        })
    }

    fn apply_tenant(
        &self,
        tenant: &str,
        due: &[&PlanEntry],
        holdings: &Holdings,
        checked: &mut HashMap<String, Result<(), String>>,
        failures: &mut Vec<Failure>,
    ) -> Result<TenantResult> {
        mark_prune_pending(&self.state_dir, tenant)?;
        let mut result = TenantResult {
            tenant: tenant.to_string(),
            ..Default::default()
        };
        let mut groups: BTreeMap<(Reason, String, String), DeletedGroup> = BTreeMap::new();
        let mut pruned: Vec<TargetCounts> = Vec::new();
        let mut layout: Option<TenantHoldings> = None;
        let mut all_ok = true;
        let mut primary_prune_failed = false;
        for (i, repo) in self.repos.iter().enumerate() {
            let target = repo.store.name().to_string();
            let here: Vec<&PlanEntry> =
                due.iter().copied().filter(|e| e.target == target).collect();
            let present = holdings
                .tenants
                .get(&target)
                .is_some_and(|t| t.contains(tenant));
            if !present {
                if i == 0 {
                    // Nothing of the tenant on the primary (it keeps less,
                    // or lost it): nothing a ship could bring back, and no
                    // pack of its to keep.
                    layout = Some(TenantHoldings::default());
                }
                continue;
            }
            if i > 0 && layout.is_none() {
                // The primary first, always: a secondary emptied before it
                // would be refilled by the next ship.
                all_ok = false;
                failures.push(Failure::of_tenant(
                    tenant.to_string(),
                    Some(target),
                    "skipped: the primary target could not be processed first",
                ));
                continue;
            }
            let (mut shipped_objects, mut shipped_bytes) = (0u64, 0u64);
            let on_primary = holdings
                .tenants
                .get(self.primary().store.name())
                .is_some_and(|t| t.contains(tenant));
            if i > 0 && on_primary {
                // The primary's new index and packs first, so the secondary
                // prunes to the same layout instead of writing its own.
                let ship = crate::ship::ship(
                    self.primary(),
                    &repo.store,
                    &crate::ship::ShipOptions {
                        tenants: vec![tenant.to_string()],
                        host: self.host.clone(),
                        ..Default::default()
                    },
                );
                match ship {
                    Ok(r) if r.ok() => {
                        shipped_objects = r.copied as u64;
                        shipped_bytes = r.copied_bytes;
                    }
                    Ok(r) => tracing::warn!(
                        "tenant {tenant}: ship to {target} before pruning failed: {:?}",
                        r.failed
                    ),
                    Err(e) => tracing::warn!(
                        "tenant {tenant}: ship to {target} before pruning failed: {e}"
                    ),
                }
            }
            // A secondary pruned to a primary layout that was never made
            // would lose packs the primary keeps.
            let prune_now = i == 0 || !primary_prune_failed;
            let outcome = self.may_delete_on(repo, checked).and_then(|()| {
                self.delete_and_prune(repo, tenant, &here, layout.as_ref(), prune_now)
            });
            let outcome = outcome.map(|(deleted, prune)| {
                // The snapshots are gone whatever the prune says: their
                // deletion is audited; a prune that must wait (a snapshot
                // it cannot read may reference any pack) is the tenant's
                // failure, and stays pending for the next run.
                let prune = prune.unwrap_or_else(|e| {
                    all_ok = false;
                    primary_prune_failed |= i == 0;
                    failures.push(Failure::of_tenant(
                        tenant.to_string(),
                        Some(target.clone()),
                        format!("prune not done: {e}"),
                    ));
                    PruneReport::default()
                });
                (deleted, prune)
            });
            match outcome {
                Ok((deleted, prune)) => {
                    let tr = TargetResult {
                        target: target.clone(),
                        snapshots_deleted: deleted.len() as u64,
                        objects_deleted: deleted.len() as u64 + prune.objects_deleted(),
                        bytes_deleted: deleted.iter().map(|(_, s)| s).sum::<u64>()
                            + prune.bytes_deleted,
                        objects_written: prune.packs_written
                            + prune.index_written
                            + shipped_objects,
                        bytes_written: prune.bytes_written + shipped_bytes,
                    };
                    for (entry, size) in here.iter().zip(deleted.iter().map(|(_, s)| *s)) {
                        let g = groups
                            .entry((entry.reason, entry.rule.clone(), entry.legal_basis.clone()))
                            .or_default();
                        g.snapshots.insert(entry.snapshot.clone());
                        let c = g.per_target.entry(target.clone()).or_default();
                        c.objects += 1;
                        c.bytes += size;
                    }
                    if prune.objects_deleted() > 0 || prune.packs_written > 0 {
                        pruned.push(TargetCounts {
                            target: target.clone(),
                            objects: prune.objects_deleted(),
                            bytes: prune.bytes_deleted,
                        });
                    }
                    if i == 0 {
                        layout = Some(prune.after);
                    }
                    result.targets.push(tr);
                }
                Err(e) => {
                    all_ok = false;
                    failures.push(Failure::of_tenant(
                        tenant.to_string(),
                        Some(target),
                        e.to_string(),
                    ));
                }
            }
        }
        for ((reason, rule, basis), group) in groups {
            let mut entry = Entry::new(Action::Delete, Some(tenant));
            entry.snapshots = group.snapshots.into_iter().collect();
            entry.targets = group
                .per_target
                .into_iter()
                .map(|(target, deleted)| TargetCounts {
                    target,
                    objects: deleted.objects,
                    bytes: deleted.bytes,
                })
                .collect();
            entry.rule = Some(rule);
            entry.legal_basis = Some(basis);
            entry.detail = Some(format!("expired: {}", reason.as_str()));
            entry.reason = Some(reason.as_str().to_string());
            self.audit_append(entry)?;
        }
        if !pruned.is_empty() {
            let mut entry = Entry::new(Action::Prune, Some(tenant));
            entry.targets = pruned;
            entry.detail = Some("data no remaining snapshot references".into());
            self.audit_append(entry)?;
        }
        if all_ok {
            clear_prune_pending(&self.state_dir, tenant)?;
        }
        Ok(result)
    }

    /// Under the tenant's exclusive lock on one target: deletes the due
    /// snapshot objects, checks by listing that they are gone, prunes.
    fn delete_and_prune(
        &self,
        repo: &Repository,
        tenant: &str,
        due: &[&PlanEntry],
        primary: Option<&TenantHoldings>,
        prune_now: bool,
    ) -> Result<(Deleted, Result<PruneReport>)> {
        let t = repo.tenant(tenant, false)?;
        let lock = lock::acquire(
            &repo.store,
            tenant,
            LockKind::Exclusive,
            &self.holder("lifecycle apply"),
        )?;
        let sizes: HashMap<String, u64> = repo
            .store
            .list(&layout::snapshots_folder(tenant))?
            .into_iter()
            .map(|o| (o.path, o.size))
            .collect();
        let mut deleted = Vec::new();
        for e in due {
            let id = Id::from_hex(&e.snapshot).expect("plan entries hold hex ids");
            let path = layout::snapshot_path(tenant, &id);
            lock.check()?;
            repo.store.delete(&path)?;
            deleted.push((path.clone(), sizes.get(&path).copied().unwrap_or(0)));
        }
        prune::verify_gone(repo, &layout::snapshots_folder(tenant), &deleted)?;
        let pruned = match prune_now {
            true => prune::prune_tenant(repo, &t, primary, self.pack_size, &lock),
            false => Err(Error::Refused(
                "the primary's prune did not complete; this target's waits for it".into(),
            )),
        };
        Ok((deleted, pruned))
    }

    /// Crypto-shredding: deletes every object of the tenant on every target,
    /// its key last, and checks by listing that nothing but locks is left.
    /// Returns the targets it did this on.
    fn destroy_key(&self, tenant: &str, holdings: &Holdings) -> Result<Vec<String>> {
        let prefix = layout::tenant_prefix(tenant);
        let (snapshots, locks) = (
            layout::snapshots_folder(tenant),
            layout::locks_folder(tenant),
        );
        let mut counts = Vec::new();
        for repo in self.repos.iter() {
            let target = repo.store.name().to_string();
            if !holdings
                .tenants
                .get(&target)
                .is_some_and(|t| t.contains(tenant))
            {
                continue;
            }
            let lock = lock::acquire(
                &repo.store,
                tenant,
                LockKind::Exclusive,
                &self.holder("lifecycle key destruction"),
            )?;
            let listed = repo.store.list(&prefix)?;
            if listed.iter().any(|o| layout::is_under(&o.path, &snapshots)) {
                return Err(Error::Refused(format!(
                    "tenant {tenant}: a new snapshot appeared on target {target}; its key is kept"
                )));
            }
            let key_path = layout::tenant_key_path(tenant);
            let mut objects = 0;
            let mut bytes = 0;
            let mut gone = Vec::new();
            let (key, rest): (Vec<_>, Vec<_>) = listed
                .into_iter()
                .filter(|o| !layout::is_under(&o.path, &locks))
                .partition(|o| o.path == key_path);
            for o in rest.iter().chain(&key) {
                lock.check()?;
                repo.store.delete(&o.path)?;
                objects += 1;
                bytes += o.size;
                gone.push((o.path.clone(), o.size));
            }
            prune::verify_gone(repo, &prefix, &gone)?;
            counts.push(TargetCounts {
                target,
                objects,
                bytes,
            });
        }
        let on: Vec<String> = counts.iter().map(|c| c.target.clone()).collect();
        let mut entry = Entry::new(Action::KeyDestroyed, Some(tenant));
        entry.targets = counts;
        // Only what was checked: a copy outside these targets (a bucket
        // version, a replica, a copy of the backup server) was not looked
        // at, and a copy of the key object opens with the master key.
        entry.detail = Some(format!(
            "tenant key and every remaining object deleted on {}; a listing of each then showed none left. Not checked: copies outside these targets (store versions, replicas, copies of a store), where a surviving copy of the key object still opens with the repository's master key",
            on.join(", ")
        ));
        self.audit_append(entry)?;
        Ok(on)
    }

    /// Says once per erasure which snapshots it spared, and why.
    fn audit_legal_kept(&self, holdings: &Holdings, kept: &[PlanEntry]) -> Result<()> {
        if kept.is_empty() {
            return Ok(());
        }
        let recorded: BTreeSet<String> = self
            .audit
            .records()?
            .into_iter()
            .filter(|r| r.action == Action::LegalKept)
            .filter_map(|r| r.event)
            .collect();
        for (tenant, state) in &holdings.states {
            let mine: Vec<&PlanEntry> = kept.iter().filter(|e| &e.tenant == tenant).collect();
            if mine.is_empty() {
                continue;
            }
            for erasure in state.erasures.iter().filter(|e| !e.include_legal) {
                if recorded.contains(&erasure.event) {
                    continue;
                }
                let mut entry = Entry::new(Action::LegalKept, Some(tenant));
                let ids: BTreeSet<String> = mine.iter().map(|e| e.snapshot.clone()).collect();
                entry.snapshots = ids.into_iter().collect();
                entry.rule = Some(mine[0].rule.clone());
                entry.legal_basis = Some(mine[0].legal_basis.clone());
                entry.event = Some(erasure.event.clone());
                let last = mine.iter().map(|e| e.expires).max().expect("non-empty");
                entry.detail = Some(format!(
                    "kept despite the erasure: a legal obligation; the last goes at {last}, and the tenant key with it"
                ));
                self.audit_append(entry)?;
            }
        }
        Ok(())
    }
}

/// The hold a release lifts: the one it names, which must be in force, or
/// the tenant's only hold.
fn resolve_hold(
    tenant: &str,
    named: Option<String>,
    holds: &BTreeMap<String, super::events::Hold>,
) -> Result<String> {
    let listed = || {
        holds
            .values()
            .map(|h| format!("{} ({})", h.event, h.reason))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match named {
        Some(id) if holds.contains_key(&id) => Ok(id),
        Some(id) if holds.is_empty() => Err(Error::Refused(format!(
            "tenant {tenant} has no legal hold, so hold {id} cannot be released; nothing recorded"
        ))),
        Some(id) => Err(Error::Refused(format!(
            "tenant {tenant} has no hold {id}; its holds: {}; nothing recorded",
            listed()
        ))),
        None => match holds.len() {
            0 => Err(Error::Refused(format!(
                "tenant {tenant} has no legal hold to release; nothing recorded"
            ))),
            1 => Ok(holds.keys().next().expect("one").clone()),
            n => Err(Error::Refused(format!(
                "tenant {tenant} has {n} legal holds: {}; name the one to release (`gallra hold release {tenant} --hold ID`, or \"hold\" in the event); nothing recorded",
                listed()
            ))),
        },
    }
}

/// Snapshots deleted for one reason under one rule: their ids, and the
/// objects and bytes per target.
#[derive(Default)]
struct DeletedGroup {
    snapshots: BTreeSet<String>,
    per_target: BTreeMap<String, DeletedOnTarget>,
}

#[derive(Default)]
struct DeletedOnTarget {
    objects: u64,
    bytes: u64,
}

fn pending_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("prune-pending")
}

/// Tenants whose last apply did not finish everywhere: pruned again.
fn pending_prunes(state_dir: &Path) -> Vec<String> {
    std::fs::read_dir(pending_dir(state_dir))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                // `.name.tmp`: a mark a crash left half made (no tenant
                // name starts with '.').
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

fn mark_prune_pending(state_dir: &Path, tenant: &str) -> Result<()> {
    let dir = pending_dir(state_dir);
    crate::files::ensure_state_dir(state_dir).map_err(|e| Error::io(state_dir, e))?;
    // Whoever can write the state folder may have planted a link where the
    // mark goes: neither the folder nor the mark is followed through one.
    crate::files::private_subdir(state_dir, "prune-pending").map_err(|e| Error::io(&dir, e))?;
    let f = dir.join(tenant);
    crate::files::replace_file(&f, b"").map_err(|e| Error::io(&f, e))
}

fn clear_prune_pending(state_dir: &Path, tenant: &str) -> Result<()> {
    let f = pending_dir(state_dir).join(tenant);
    match std::fs::remove_file(&f) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&f, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;

    #[test]
    fn a_prune_mark_never_writes_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"keep me").unwrap();
        std::fs::create_dir_all(pending_dir(&state)).unwrap();
        std::os::unix::fs::symlink(&outside, pending_dir(&state).join("acme")).unwrap();
        mark_prune_pending(&state, "acme").unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
        let mark = std::fs::symlink_metadata(pending_dir(&state).join("acme")).unwrap();
        assert!(mark.file_type().is_file(), "the link is replaced by a mark");
        assert_eq!(pending_prunes(&state), vec!["acme".to_string()]);
        clear_prune_pending(&state, "acme").unwrap();
        assert!(pending_prunes(&state).is_empty());
    }
}
