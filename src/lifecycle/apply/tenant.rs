//! Applying the plan to one tenant: on every target, primary first, the
//! due snapshots deleted and the tenant pruned; each deletion audited.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::audit_records::survives_on;
use super::delete::PruneStep;
use super::pending::{clear_prune_pending, mark_prune_pending};
use super::{Holdings, Lifecycle, TargetResult, TenantResult};
use crate::audit::{Action, Entry, Survives, TargetCounts};
use crate::error::{Error, Result};
use crate::failure::Failure;
use crate::lifecycle::plan::{PlanEntry, Reason};
use crate::lifecycle::prune::{PruneReport, TenantHoldings};
use crate::repo::Repository;
use crate::store::Locking;

impl Lifecycle<'_> {
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

    pub(super) fn apply_tenant(
        &self,
        tenant: &str,
        due: &[&PlanEntry],
        holdings: &Holdings,
        checked: &mut HashMap<String, Result<(), String>>,
        failures: &mut Vec<Failure>,
        survives: &[Survives],
    ) -> Result<TenantResult> {
        mark_prune_pending(&self.state_dir, tenant)?;
        let mut result = TenantResult {
            tenant: tenant.to_string(),
            ..Default::default()
        };
        let mut groups = DeletedGroups::new();
        let mut pruned: Vec<TargetCounts> = Vec::new();
        let mut primary_holdings: Option<TenantHoldings> = None;
        let mut all_ok = true;
        let mut primary_prune_failed = false;
        for (i, repo) in self.repos.iter().enumerate() {
            if !repo.store.deletes_here() {
                // Its lifecycle host deletes and prunes there (the plan's
                // `left_to_lifecycle_host`).
                continue;
            }
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
                    primary_holdings = Some(TenantHoldings::default());
                }
                continue;
            }
            if i > 0 && primary_holdings.is_none() {
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
            let on_primary = holdings
                .tenants
                .get(self.primary().store.name())
                .is_some_and(|t| t.contains(tenant));
            let shipped = if i > 0 && on_primary {
                self.ship_primary_first(repo, tenant, &target)
            } else {
                ShippedFirst::default()
            };
            let prune = match i == 0 || !primary_prune_failed {
                true => PruneStep::Run,
                false => PruneStep::WaitForPrimary,
            };
            let outcome = self.may_delete_on(repo, checked).and_then(|()| {
                // A lifecycle host prunes as a secondary of the fleet
                // server's primary: to the holdings it shipped, or (none
                // fresh) to none, deleting only packs nothing lives in.
                let fleet = match i == 0 && self.prunes_to_fleet {
                    true => Some(
                        repo.shipped_holdings(tenant, jiff::Timestamp::now())?
                            .unwrap_or_default(),
                    ),
                    false => None,
                };
                let primary = fleet.as_ref().or(primary_holdings.as_ref());
                self.delete_and_prune(repo, tenant, &here, primary, prune)
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
                    let tr = target_result(&target, &deleted, &prune, &shipped);
                    group_deleted(&mut groups, &target, &here, &deleted);
                    if prune.objects_deleted() > 0 || prune.packs_written > 0 {
                        pruned.push(TargetCounts {
                            target: target.clone(),
                            objects: prune.objects_deleted(),
                            bytes: prune.bytes_deleted,
                        });
                    }
                    if i == 0 {
                        primary_holdings = Some(prune.after);
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
        self.audit_deletions(tenant, groups, pruned, survives)?;
        if all_ok {
            clear_prune_pending(&self.state_dir, tenant)?;
        }
        Ok(result)
    }

    /// The primary's new index and packs first, so the secondary prunes to
    /// the same layout instead of writing its own. A failed ship is logged,
    /// not returned: the tenant is still pruned there.
    fn ship_primary_first(&self, repo: &Repository, tenant: &str, target: &str) -> ShippedFirst {
        let ship = crate::ship::ship(
            self.primary(),
            &repo.store,
            &crate::ship::ShipOptions {
                tenants: vec![tenant.to_string()],
                host: self.host.clone(),
                retention: self.retention.clone(),
                state_dir: Some(self.state_dir.clone()),
                ..Default::default()
            },
        );
        match ship {
            Ok(r) if r.ok() => ShippedFirst {
                objects: r.copied as u64,
                bytes: r.copied_bytes,
            },
            Ok(r) => {
                tracing::warn!(
                    "tenant {tenant}: ship to {target} before pruning failed: {:?}",
                    r.failed
                );
                ShippedFirst::default()
            }
            Err(e) => {
                tracing::warn!("tenant {tenant}: ship to {target} before pruning failed: {e}");
                ShippedFirst::default()
            }
        }
    }

    /// One record per reason, rule and legal basis of the snapshots
    /// deleted, and one of the tenant's prune on every target.
    fn audit_deletions(
        &self,
        tenant: &str,
        groups: DeletedGroups,
        pruned: Vec<TargetCounts>,
        survives: &[Survives],
    ) -> Result<()> {
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
            entry.survives = survives_on(survives, &entry.targets);
            self.audit_append(entry)?;
        }
        if !pruned.is_empty() {
            let mut entry = Entry::new(Action::Prune, Some(tenant));
            entry.targets = pruned;
            entry.detail = Some("data no remaining snapshot references".into());
            self.audit_append(entry)?;
        }
        Ok(())
    }
}

/// What the ship before a secondary's prune copied there.
#[derive(Default)]
struct ShippedFirst {
    objects: u64,
    bytes: u64,
}

/// What was deleted and written on `target`: the snapshots in `deleted`,
/// the prune, and the ship before it.
fn target_result(
    target: &str,
    deleted: &[(String, u64)],
    prune: &PruneReport,
    shipped: &ShippedFirst,
) -> TargetResult {
    TargetResult {
        target: target.to_string(),
        snapshots_deleted: deleted.len() as u64,
        objects_deleted: deleted.len() as u64 + prune.objects_deleted(),
        bytes_deleted: deleted.iter().map(|(_, s)| s).sum::<u64>() + prune.bytes_deleted,
        objects_written: prune.packs_written + prune.index_written + shipped.objects,
        bytes_written: prune.bytes_written + shipped.bytes,
    }
}

/// The snapshots deleted, by the reason, rule and legal basis they were
/// deleted under.
type DeletedGroups = BTreeMap<(Reason, String, String), DeletedGroup>;

/// Counts the snapshots deleted on `target` (`deleted` holds their paths
/// and sizes, in the order of `here`) into their groups.
fn group_deleted(
    groups: &mut DeletedGroups,
    target: &str,
    here: &[&PlanEntry],
    deleted: &[(String, u64)],
) {
    for (entry, size) in here.iter().zip(deleted.iter().map(|(_, s)| *s)) {
        let g = groups
            .entry((entry.reason, entry.rule.clone(), entry.legal_basis.clone()))
            .or_default();
        g.snapshots.insert(entry.snapshot.clone());
        let c = g.per_target.entry(target.to_string()).or_default();
        c.objects += 1;
        c.bytes += size;
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
