//! Deleting under the tenant's exclusive lock, each deletion checked by a
//! listing: due snapshots (then a prune), and a tenant's every object and
//! key (crypto-shredding).

use std::collections::HashMap;

use super::audit_records::survives_on;
use super::{Holdings, Lifecycle};
use crate::audit::{Action, Entry, Survives, TargetCounts};
use crate::error::{Error, Result};
use crate::format::Id;
use crate::format::tenant_key::{self, Wrap};
use crate::layout;
use crate::lifecycle::plan::PlanEntry;
use crate::lifecycle::prune::{self, PruneReport, TenantHoldings};
use crate::limits::ReadLimit;
use crate::lock::{self, LockKind};
use crate::repo::Repository;

/// Snapshot objects deleted from one target, with their sizes.
type Deleted = Vec<(String, u64)>;

/// Whether a target's prune runs after its deletions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum PruneStep {
    Run,
    /// The primary's prune failed: a secondary pruned to a primary layout
    /// that was never made would lose packs the primary keeps.
    WaitForPrimary,
}

impl Lifecycle<'_> {
    /// Under the tenant's exclusive lock on one target: deletes the due
    /// snapshot objects, checks by listing that they are gone, prunes.
    pub(super) fn delete_and_prune(
        &self,
        repo: &Repository,
        tenant: &str,
        due: &[&PlanEntry],
        primary: Option<&TenantHoldings>,
        prune: PruneStep,
    ) -> Result<(Deleted, Result<PruneReport>)> {
        let t = repo.tenant(tenant)?;
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
        let pruned = match prune {
            PruneStep::Run => prune::prune_tenant(repo, &t, primary, self.pack_size, &lock),
            PruneStep::WaitForPrimary => Err(Error::Refused(
                "the primary's prune did not complete; this target's waits for it".into(),
            )),
        };
        Ok((deleted, pruned))
    }

    /// Crypto-shredding: deletes every object of the tenant on every target,
    /// its key last, and checks by listing that nothing but locks is left.
    /// Returns the targets it did this on.
    pub(super) fn destroy_key(
        &self,
        tenant: &str,
        holdings: &Holdings,
        survives: &[Survives],
    ) -> Result<Vec<String>> {
        let prefix = layout::tenant_prefix(tenant);
        let (snapshots, locks) = (
            layout::snapshots_folder(tenant),
            layout::locks_folder(tenant),
        );
        let mut counts = Vec::new();
        // What wraps the key being destroyed: what still opens a copy of it.
        let mut wrap = None;
        // A target whose deletions are a lifecycle host's keeps the key
        // until that host destroys it there.
        for repo in self.repos.iter().filter(|r| r.store.deletes_here()) {
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
            // Before the key goes: until a rotation retires its epoch, a
            // surviving copy of the key still opens with it.
            if repo.keys().service.is_some() && self.rotates {
                crate::lifecycle::rotate::mark_shred_due(repo, tenant, jiff::Timestamp::now())?;
            }
            if wrap.is_none() {
                wrap = match repo.store.get_limited(&key_path, ReadLimit::TenantKey) {
                    Ok(bytes) => tenant_key::wrapped_by(&bytes, &key_path).ok(),
                    Err(_) => None,
                };
            }
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
        entry.survives = survives_on(survives, &counts);
        entry.targets = counts;
        // Only what was checked: a copy outside these targets (a bucket
        // version, a replica, a copy of the backup server) was not looked
        // at, and a copy of the key object opens with the master key;
        // `survives` says per target what is known of them.
        let opens_with = match wrap {
            Some(Wrap::Epoch(id)) => format!(
                "its key epoch {} until a rotation destroys that epoch in the key service",
                hex::encode(&id[..4])
            ),
            _ => "the repository's master key".to_string(),
        };
        entry.detail = Some(format!(
            "tenant key and every remaining object deleted on {}; a listing of each then showed none left. Not checked: copies outside these targets (store versions, replicas, copies of a store), where a surviving copy of the key object still opens with {opens_with}; what survives on each target is stated beside this",
            on.join(", ")
        ));
        self.audit_append(entry)?;
        Ok(on)
    }
}
