//! Applying the lifecycle: gathering what every target holds, planning, and
//! deleting on every target (primary first), pruning, destroying keys, and
//! auditing each action. Also taking in events, by CLI and by inbox.

mod audit_records;
mod delete;
mod holdings;
mod intake;
mod pending;
mod tenant;

pub use holdings::Holdings;

use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use super::plan::{self, HeldEntry, Plan, PlanEntry};
use super::rotate::{self, Due, RotationReport};
use super::rules::Policy;
use crate::audit::{AuditLog, Survives};
use crate::error::{Error, Result};
pub use crate::failure::Failure;
use crate::lock::{self, Holder};
use crate::repo::RepoKeys;
use crate::repo::Repository;
use crate::store::TargetSettings;
use pending::pending_prunes;

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
    /// Whether this lifecycle rotates the key epoch (with a key service):
    /// a fleet server's does; a lifecycle host's does not, as the epoch is
    /// the fleet server's to make and destroy (docs/IMMUTABLE.md).
    pub rotates: bool,
    /// On a lifecycle host: its target is a fleet server's secondary, which
    /// it prunes to the holdings that server ships (`tenants/<t>/holdings`)
    /// and never repacks, so that the fleet's next ship brings nothing
    /// back (docs/IMMUTABLE.md).
    pub prunes_to_fleet: bool,
    /// On a lifecycle host: deletions wait while the fleet server's
    /// shipped rules (`lifecycle/rules`) would decide them differently
    /// from `policy` (docs/IMMUTABLE.md).
    pub checks_fleet_rules: bool,
    /// The rules' expiry of a snapshot, for the ships before a secondary's
    /// prune (what they bring to a locked target is locked until then).
    pub retention: Option<crate::ship::RetentionExpiry>,
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
        key: &RepoKeys,
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
    /// Due, but under S3 Object Lock until later: deleted then.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locked: Vec<plan::LockedEntry>,
    /// On a lifecycle host: the retired epochs whose objects it removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retired_epochs_removed: Vec<String>,
    /// Due on a target whose deletions are a lifecycle host's: planned
    /// here, deleted there (and overdue here until it has).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_to_lifecycle_host: Vec<PlanEntry>,
    pub tenants: Vec<TenantResult>,
    #[serde(serialize_with = "crate::failure::json::lifecycle")]
    pub failures: Vec<Failure>,
    /// Whether the key epoch rotates (with a key service), and what the
    /// rotation did if it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_due: Option<Due>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationReport>,
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

    pub fn plan(&self, now: Timestamp) -> Result<(Plan, Holdings)> {
        let holdings = self.holdings()?;
        let mut plan = plan::plan(self.policy, &holdings.states, &holdings.snapshots, now);
        self.defer_locked(&mut plan, &holdings, now);
        Ok((plan, holdings))
    }

    /// Moves the due copies whose snapshot object is still under S3 Object
    /// Lock (asked of the store: one HEAD per such copy) to `plan.locked`:
    /// gallra never plans a retention delete before a lock ends. Not the
    /// copies of a tenant that goes (contract end, erasure), whatever the
    /// reason of each copy: those are hidden at once and the tenant's key
    /// destroyed, which is what makes the locked versions unreadable
    /// (docs/IMMUTABLE.md); waiting would hold the key, and the promise,
    /// until the lock ends. A HEAD that fails leaves the copy due: deleting
    /// it only hides it.
    fn defer_locked(&self, plan: &mut Plan, holdings: &Holdings, now: Timestamp) {
        let locked_targets: Vec<&Repository> = self
            .repos
            .iter()
            .filter(|r| r.store.object_lock().is_some())
            .collect();
        if locked_targets.is_empty() {
            return;
        }
        let mut still_due = Vec::with_capacity(plan.due.len());
        for e in std::mem::take(&mut plan.due) {
            let repo = locked_targets.iter().find(|r| r.store.name() == e.target);
            let goes = holdings
                .states
                .get(&e.tenant)
                .is_some_and(|s| plan::tenant_goes(self.policy, s, now));
            let until = match (repo, e.reason) {
                (Some(repo), plan::Reason::Retention) if !goes => {
                    crate::format::Id::from_hex(&e.snapshot)
                        .map(|id| crate::layout::snapshot_path(&e.tenant, &id))
                        .and_then(|path| match repo.store.lock_of(&path) {
                            Ok(lock) => lock.map(|(_, until)| until),
                            Err(err) => {
                                tracing::warn!("{err}: its lock is unknown; it is deleted as due");
                                None
                            }
                        })
                }
                _ => None,
            };
            match until {
                Some(until) if until > now => plan.locked.push(plan::LockedEntry {
                    entry: e,
                    locked_until: until,
                }),
                _ => still_due.push(e),
            }
        }
        plan.due = still_due;
    }

    /// Deletes what is due on every target, prunes, destroys the keys of
    /// tenants that are gone, and audits. `only`: one tenant (erase).
    /// `survives`: per target, what a deletion there leaves behind (the
    /// survival module says it); each deletion's record keeps the lines of
    /// the targets it deleted on.
    pub fn apply(
        &self,
        now: Timestamp,
        mode: Mode,
        only: Option<&str>,
        survives: &[Survives],
    ) -> Result<ApplyReport> {
        let dry_run = mode == Mode::DryRun;
        let (plan, holdings) = self.plan(now)?;
        let keep = |t: &str| only.is_none_or(|o| o == t);
        let mut report = report_for(&plan, &holdings, keep, dry_run);
        let elsewhere: BTreeSet<&str> = self
            .repos
            .iter()
            .filter(|r| !r.store.deletes_here())
            .map(|r| r.store.name())
            .collect();
        let (left, due): (Vec<PlanEntry>, Vec<PlanEntry>) = std::mem::take(&mut report.due)
            .into_iter()
            .partition(|e| elsewhere.contains(e.target.as_str()));
        report.due = due;
        report.left_to_lifecycle_host = left;
        if dry_run {
            return Ok(report);
        }
        self.audit_legal_kept(&holdings, &report.legal_kept)?;

        let pending = pending_prunes(&self.state_dir);
        let mut touched: BTreeSet<String> = report.due.iter().map(|e| e.tenant.clone()).collect();
        touched.extend(pending.into_iter().filter(|t| keep(t)));
        let mut checked: HashMap<String, Result<(), String>> = HashMap::new();
        let remaining = snapshots_left(&holdings, &report.due);

        for tenant in &touched {
            let due: Vec<&PlanEntry> = report.due.iter().filter(|e| &e.tenant == tenant).collect();
            let result = self.apply_tenant(
                tenant,
                &due,
                &holdings,
                &mut checked,
                &mut report.failures,
                survives,
            )?;
            report.tenants.push(result);
        }

        self.unlock_keyless(&holdings, &remaining, keep, now)?;
        self.destroy_due_keys(&holdings, &remaining, keep, now, &mut report, survives);
        if self.primary().keys().service.is_none() {
            return Ok(report);
        }
        if !self.rotates {
            match rotate::remove_retired(self.repos) {
                Ok(removed) => report.retired_epochs_removed = removed,
                Err(e) => report.failures.push(Failure::on_target(
                    e.target().unwrap_or(self.primary().store.name()),
                    format!("removing retired key epochs: {e}"),
                )),
            }
        } else {
            match self.rotate_keys(now, false) {
                Ok((due, rotation)) => {
                    if let Some(r) = &rotation
                        && !r.complete()
                    {
                        report.failures.extend(r.pending.iter().map(|p| {
                            Failure::on_target(
                                self.primary().store.name(),
                                format!("key rotation: {p}"),
                            )
                        }));
                    }
                    report.rotation_due = Some(due);
                    report.rotation = rotation;
                }
                Err(e) => report.failures.push(Failure::on_target(
                    e.target().unwrap_or(self.primary().store.name()),
                    format!("key rotation: {e}"),
                )),
            }
        }
        Ok(report)
    }

    /// Rotates the key epoch if one is due (or `force`): every tenant the
    /// lifecycle keeps is rewrapped, the others are left to the old epoch,
    /// which the rotation then destroys. Not while a target is unknown:
    /// its keys could not be rewrapped, and would die with the old epoch.
    pub fn rotate_keys(
        &self,
        now: Timestamp,
        force: bool,
    ) -> Result<(Due, Option<RotationReport>)> {
        if !self.rotates {
            // A lifecycle host sees one target of the repository: an epoch
            // it made would rewrap only that one, and destroying the old
            // epoch would leave the fleet server's own copies unreadable.
            return Err(Error::Refused(
                "a lifecycle host never rotates a fleet repository's key epoch: the fleet server does (docs/IMMUTABLE.md)".into(),
            ));
        }
        let due = rotate::due(self.repos, now)?;
        let run = match &due {
            Due::Yes { .. } => true,
            Due::Later { .. } => force,
            Due::No { .. } => force && self.primary().keys().service.is_some(),
        };
        if !run {
            return Ok((due, None));
        }
        if let Some(f) = self.unopened.first() {
            return Err(Error::Refused(format!(
                "target {} could not be opened ({}): no key epoch rotates while a target's keys cannot be rewrapped",
                f.target.as_deref().unwrap_or("?"),
                f.error
            )));
        }
        let (_, holdings) = self.plan(now)?;
        if let Some(f) = holdings.failures.iter().find(|f| f.tenant.is_none()) {
            return Err(Error::Refused(format!(
                "target {} could not be read ({}): no key epoch rotates until every target can be",
                f.target.as_deref().unwrap_or("?"),
                f.error
            )));
        }
        let mut left: BTreeMap<String, usize> = BTreeMap::new();
        for s in &holdings.snapshots {
            *left.entry(s.tenant.clone()).or_default() += 1;
        }
        // A tenant is left to the old epoch only if the lifecycle began
        // its key's destruction (the mark) and would destroy it now: never
        // one whose objects could not all be read (its snapshots are not
        // counted in `left`), never one due but not yet destroyed.
        let destroying = rotate::shred_due(self.repos)?;
        let failed = |t: &str| {
            holdings
                .failures
                .iter()
                .any(|f| f.tenant.as_deref() == Some(t))
        };
        let keep = |t: &str| {
            !destroying.contains(t)
                || failed(t)
                || !plan::key_destruction_due(
                    self.policy,
                    holdings.states.get(t),
                    left.get(t).copied().unwrap_or(0),
                    now,
                )
        };
        let report = rotate::rotate(self.repos, &keep, &self.holder("key rotation"))?;
        if report.complete() {
            self.audit_rotation(&report)?;
        }
        Ok((due, Some(report)))
    }

    /// A key destruction killed before releasing its lock left only the
    /// lock; a dead process's lock of this host goes, and the folder with
    /// it.
    fn unlock_keyless(
        &self,
        holdings: &Holdings,
        remaining: &BTreeMap<String, usize>,
        keep: impl Fn(&str) -> bool,
        now: Timestamp,
    ) -> Result<()> {
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
        Ok(())
    }

    /// Destroys the key of every tenant whose key destruction is due;
    /// a failure is the tenant's, in the report.
    fn destroy_due_keys(
        &self,
        holdings: &Holdings,
        remaining: &BTreeMap<String, usize>,
        keep: impl Fn(&str) -> bool,
        now: Timestamp,
        report: &mut ApplyReport,
        survives: &[Survives],
    ) {
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
                match self.destroy_key(tenant, holdings, survives) {
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
    }
}

/// The plan's entries for the tenants `keep` selects, as a report, with a
/// failure for each of them whose events disagree between targets.
fn report_for(
    plan: &Plan,
    holdings: &Holdings,
    keep: impl Fn(&str) -> bool,
    dry_run: bool,
) -> ApplyReport {
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
        locked: plan
            .locked
            .iter()
            .filter(|l| keep(&l.entry.tenant))
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
    report
}

/// Per tenant, the snapshot copies on every target that deleting `due`
/// leaves.
fn snapshots_left(holdings: &Holdings, due: &[PlanEntry]) -> BTreeMap<String, usize> {
    let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
    for s in &holdings.snapshots {
        *remaining.entry(s.tenant.clone()).or_default() += 1;
    }
    for e in due {
        *remaining.entry(e.tenant.clone()).or_default() -= 1;
    }
    remaining
}
