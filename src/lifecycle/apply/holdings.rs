//! What every target holds: its tenants, their snapshots' facts and
//! events, read once per snapshot for the process's life.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Lifecycle;
use crate::audit::Action;
use crate::error::Result;
use crate::failure::Failure;
use crate::format::Id;
use crate::layout::{self, id_of_path};
use crate::lifecycle::events::{TargetEvents, TenantState, fold_targets};
use crate::lifecycle::journal;
use crate::lifecycle::plan::SnapshotFacts;
use crate::lifecycle::rules::{Retention, RuleDifference};
use crate::repo::Repository;
use jiff::Timestamp;

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

/// Suspends every deletion of a tenant, saying `why` (after any reason
/// given before).
fn dispute(state: &mut TenantState, why: String) {
    state.dispute = Some(match state.dispute.take() {
        Some(d) => format!("{d}; {why}"),
        None => why,
    });
}

/// What one target holds (see `Holdings`).
struct TargetHoldings {
    snapshots: Vec<SnapshotFacts>,
    tenants: BTreeSet<String>,
    keyless: BTreeSet<String>,
    /// Tenants whose key or snapshots could not be read there.
    failures: Vec<Failure>,
}

impl Lifecycle<'_> {
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
        let events = self.read_events(&mut holdings.failures)?;
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
        self.hold_back_while_events_unknown(&mut holdings, &tenants);
        if self.checks_fleet_rules {
            self.hold_back_while_rules_differ(&mut holdings, &tenants);
        }
        Ok(holdings)
    }

    /// On a lifecycle host: holds back, as a dispute, the deletions of
    /// each tenant that the fleet server's rules (`lifecycle/rules`, as its
    /// ship wrote them) would decide differently from this host's, and of
    /// every tenant while those rules cannot be read. The host applies
    /// its own rules, never the shipped ones, so a forged object can delay
    /// deletions (the run fails, and the fleet server's overdue alert
    /// fires) but never bring one forward (docs/IMMUTABLE.md).
    fn hold_back_while_rules_differ(&self, holdings: &mut Holdings, tenants: &BTreeSet<String>) {
        let primary = self.primary();
        let target = primary.store.name().to_string();
        let differences = match primary.read_rules(&primary.store) {
            Ok(None) => {
                // Written by every ship of a fleet server since this
                // object exists: an older fleet server's are not compared.
                holdings.failures.push(Failure::on_target(
                    target,
                    format!(
                        "the fleet server has shipped no retention rules ({}): they are not compared with this host's until its next ship",
                        layout::RULES_PATH
                    ),
                ));
                return;
            }
            Ok(Some(body)) => match Retention::policy_of_body(&body) {
                Ok(theirs) => {
                    let pairs = holdings
                        .snapshots
                        .iter()
                        .map(|s| (s.tenant.as_str(), s.category.as_str()));
                    self.policy.differences(&theirs, &body.host, pairs)
                }
                Err(m) => vec![RuleDifference {
                    tenant: None,
                    text: format!("{}'s rules do not parse here: {m}", body.host),
                }],
            },
            Err(e) => vec![RuleDifference {
                tenant: None,
                text: e.to_string(),
            }],
        };
        if differences.is_empty() {
            return;
        }
        for tenant in tenants {
            let texts: Vec<&str> = differences
                .iter()
                .filter(|d| d.tenant.as_ref().is_none_or(|t| t == tenant))
                .map(|d| d.text.as_str())
                .collect();
            if texts.is_empty() {
                continue;
            }
            dispute(
                holdings.states.entry(tenant.clone()).or_default(),
                format!(
                    "the fleet server's retention rules decide differently from this host's ({}); nothing of the tenant is deleted until they are the same (docs/INSTALL.md section 7)",
                    texts.join("; ")
                ),
            );
        }
    }

    /// The events of every target that can be read; each target, or
    /// event object, that cannot is a failure. The primary's must be read.
    fn read_events(&self, failures: &mut Vec<Failure>) -> Result<Vec<TargetEvents>> {
        let mut events = Vec::new();
        for (i, repo) in self.repos.iter().enumerate() {
            match journal::load_target(repo) {
                Ok(t) => {
                    for id in &t.unreadable {
                        failures.push(Failure::on_target(
                            t.target.clone(),
                            format!("event object {} cannot be read", layout::event_path(id)),
                        ));
                    }
                    events.push(t);
                }
                Err(e) if i == 0 => return Err(e),
                Err(e) => failures.push(Failure::on_target(
                    repo.store.name().to_string(),
                    format!("events not read: {e}"),
                )),
            }
        }
        Ok(events)
    }

    /// Holds every tenant's deletions back, as a dispute, while a target's
    /// events are unknown.
    fn hold_back_while_events_unknown(&self, holdings: &mut Holdings, tenants: &BTreeSet<String>) {
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
            for tenant in tenants {
                dispute(
                    holdings.states.entry(tenant.clone()).or_default(),
                    why.clone(),
                );
            }
        }
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
                        match repo.tenant(&name) {
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
}
