//! Prune: after snapshots are deleted, remove the data no remaining snapshot
//! of a tenant references, on one target, under the tenant's exclusive lock.
//!
//! Order keeps every remaining snapshot restorable at any instant: packs of
//! moved blobs first, then the new index, then the old index objects, then
//! the packs nothing indexes any more. A kill at any point leaves at worst
//! duplicates and unindexed packs, which the next prune removes.
//!
//! The primary repacks packs that are mostly garbage. A secondary does not:
//! its packs come from the primary by ship, and blobs the primary moved
//! arrive in the primary's new packs with the next ship. A secondary keeps
//! every pack the primary has and prefers those for each blob, so that its
//! own copies become garbage and go, and it never deletes what the next ship
//! would copy again.
//!
//! Three steps, as restic's prune: `load` reads what the tenant holds and
//! the snapshots give the live blobs, `plan::plan` decides (pure, and
//! property-tested), `execute` writes and deletes.

mod execute;
pub mod plan;

use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::Id;
use crate::layout;
use crate::lock::TenantLock;
use crate::repo::{Repository, Tenant};
use plan::{IndexObject, REPACK_BELOW_LIVE_SHARE, TenantObjects};

pub use crate::repo::holdings::TenantHoldings;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PruneReport {
    pub packs_deleted: u64,
    pub index_deleted: u64,
    pub bytes_deleted: u64,
    pub packs_written: u64,
    pub index_written: u64,
    pub bytes_written: u64,
    pub blobs_repacked: u64,
    /// The tenant's packs and index objects afterwards.
    #[serde(skip)]
    pub after: TenantHoldings,
}

impl PruneReport {
    pub fn objects_deleted(&self) -> u64 {
        self.packs_deleted + self.index_deleted
    }
}

/// Prunes one tenant on one target. `primary` is `None` when pruning the
/// primary itself (which repacks), else what the primary holds of the
/// tenant. Returns what was done.
pub fn prune_tenant(
    repo: &Repository,
    tenant: &Arc<Tenant>,
    primary: Option<&TenantHoldings>,
    pack_size: u64,
    lock: &TenantLock,
) -> Result<PruneReport> {
    let objects = load(repo, tenant, primary)?;
    let live = live_blobs(repo, tenant, &objects)?;
    let plan = plan::plan(&objects, &live, REPACK_BELOW_LIVE_SHARE);
    execute::execute(repo, tenant, &objects, &plan, pack_size, lock)
}

/// Lists the tenant's packs and reads its index objects, each checked
/// against its name.
fn load<'a>(
    repo: &Repository,
    tenant: &Tenant,
    primary: Option<&'a TenantHoldings>,
) -> Result<TenantObjects<'a>> {
    let store = &repo.store;
    let mut packs: HashMap<Id, u64> = HashMap::new();
    for o in store.list(&layout::packs_folder(&tenant.name))? {
        if let Some(id) = layout::id_of_path(&o.path) {
            packs.insert(id, o.size);
        }
    }
    let mut index_objects = Vec::new();
    for o in store.list(&layout::index_folder(&tenant.name))? {
        let bytes = store.get(&o.path)?;
        if layout::id_of_path(&o.path) != Some(Id::of_bytes(&bytes)) {
            return Err(refuse(&o.path, "content does not match its name"));
        }
        let body = crate::format::index::open(&bytes, &tenant.cipher, &tenant.context, &o.path)?;
        index_objects.push(IndexObject {
            path: o.path,
            size: o.size,
            body,
        });
    }
    Ok(TenantObjects::new(packs, index_objects, primary))
}

/// Every tree and data blob the tenant's snapshots on this target
/// reference. Refuses (deleting nothing) if any of them cannot be found:
/// that is damage for `check` to name, not garbage. A blob that an index
/// object names only in packs this target lacks counts as not found, and
/// the refusal names those packs: a secondary has lost it until ship
/// brings one again. (Restic's prune refuses whenever its index names a
/// missing pack; here only a live blob without a held place stops it, see
/// `plan`.)
fn live_blobs(repo: &Repository, tenant: &Tenant, objects: &TenantObjects) -> Result<HashSet<Id>> {
    let index = objects.index();
    let mut live: HashSet<Id> = HashSet::new();
    for (snap_id, snap) in repo.snapshots(tenant)? {
        let mut stack = vec![snap.root];
        while let Some(tree_id) = stack.pop() {
            if !live.insert(tree_id) {
                continue;
            }
            let tree = repo.read_tree(tenant, index, &tree_id).map_err(|e| {
                let why = match missing_pack_of(tenant, objects, &tree_id) {
                    Some(pack) => format!("tree blob {} is in {pack}", tree_id.to_hex()),
                    None => e.to_string(),
                };
                refuse(
                    &layout::snapshot_path(&tenant.name, &snap_id),
                    &format!("cannot be read fully ({why})"),
                )
            })?;
            for node in tree.nodes {
                if let Some(sub) = node.subtree {
                    stack.push(sub);
                }
                for blob in node.content {
                    if live.insert(blob) && !index.contains(&blob) {
                        let why = match missing_pack_of(tenant, objects, &blob) {
                            Some(pack) => format!("names data blob {} in {pack}", blob.to_hex()),
                            None => {
                                format!("names data blob {} that no index holds", blob.to_hex())
                            }
                        };
                        return Err(refuse(&layout::snapshot_path(&tenant.name, &snap_id), &why));
                    }
                }
            }
        }
    }
    Ok(live)
}

/// For a blob the index does not place: the packs index objects name it
/// in, which this target lacks, as "pack P (in index I) and ..., which
/// this target lacks"; `None` if no index object names it.
fn missing_pack_of(tenant: &Tenant, objects: &TenantObjects, blob: &Id) -> Option<String> {
    let named: Vec<String> = objects
        .index_objects()
        .iter()
        .flat_map(|o| {
            o.body
                .packs
                .iter()
                .filter(|p| p.blobs.iter().any(|e| e.id == *blob))
                .map(|p| {
                    let pack = layout::pack_path(&tenant.name, &p.id);
                    format!("pack {pack} (in index {})", o.path)
                })
        })
        .collect();
    (!named.is_empty()).then(|| format!("{}, which this target lacks", named.join(" and ")))
}

fn refuse(object: &str, why: &str) -> Error {
    Error::corrupt(
        object,
        format!(
            "{why}; prune refuses to delete anything of this tenant until `gallra check` is clean"
        ),
    )
}

/// Lists the tenant again and fails if any deleted object is still there.
pub fn verify_gone(repo: &Repository, prefix: &str, gone: &[(String, u64)]) -> Result<()> {
    if gone.is_empty() {
        return Ok(());
    }
    let left: HashSet<String> = repo
        .store
        .list(prefix)?
        .into_iter()
        .map(|o| o.path)
        .collect();
    if let Some((path, _)) = gone.iter().find(|(p, _)| left.contains(p)) {
        return Err(Error::Store {
            target: repo.store.name().to_string(),
            object: path.clone(),
            message: "still listed after it was deleted".into(),
        });
    }
    Ok(())
}
