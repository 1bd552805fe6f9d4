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

use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::index::{IndexBody, IndexPack};
use crate::format::pack::PackEntry;
use crate::format::{Id, Kind};
use crate::lock::TenantLock;
use crate::repo::packer::{Packer, SealedBlob};
use crate::repo::{self, Index, Repository, Tenant, id_of_path};

/// A pack is repacked when less than this share of its bytes is live.
const REPACK_BELOW_LIVE_SHARE: f64 = 0.5;

/// What the primary holds of a tenant, for pruning a secondary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PrimaryLayout {
    pub packs: HashSet<Id>,
    /// Paths of index objects.
    pub index: HashSet<String>,
}

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
    pub after: PrimaryLayout,
}

impl PruneReport {
    pub fn objects_deleted(&self) -> u64 {
        self.packs_deleted + self.index_deleted
    }
}

/// Prunes one tenant on one target. `primary` is `None` when pruning the
/// primary itself (which repacks), else the primary's layout. Returns what
/// was done.
pub fn prune_tenant(
    repo: &Repository,
    tenant: &Arc<Tenant>,
    primary: Option<&PrimaryLayout>,
    pack_size: u64,
    lock: &TenantLock,
) -> Result<PruneReport> {
    let store = &repo.store;
    let name = &tenant.name;
    let prefix = repo::tenant_prefix(name);
    let mut pack_sizes: HashMap<Id, u64> = HashMap::new();
    for o in store.list(&format!("{prefix}/packs"))? {
        if let Some(id) = id_of_path(&o.path) {
            pack_sizes.insert(id, o.size);
        }
    }
    let mut bodies: Vec<(String, u64, IndexBody)> = Vec::new();
    for o in store.list(&format!("{prefix}/index"))? {
        let bytes = store.get(&o.path)?;
        if id_of_path(&o.path) != Some(Id::of_bytes(&bytes)) {
            return Err(refuse(&o.path, "content does not match its name"));
        }
        let body = crate::format::index::open(&bytes, &tenant.cipher, &tenant.context, &o.path)?;
        bodies.push((o.path, o.size, body));
    }
    let shared = |path: &str| primary.is_some_and(|p| p.index.contains(path));
    let preferred = |id: &Id| primary.is_some_and(|p| p.packs.contains(id));

    // The first location added wins: the primary's packs, then by id, so
    // that the choice is the same on every run.
    let mut located: Vec<&IndexPack> = bodies
        .iter()
        .flat_map(|(_, _, b)| &b.packs)
        .filter(|p| pack_sizes.contains_key(&p.id))
        .collect();
    located.sort_by_key(|p| (!preferred(&p.id), p.id));
    let mut index = Index::default();
    for p in located {
        index.add_pack(p);
    }

    let live = live_blobs(repo, tenant, &index)?;
    let mut live_in: HashMap<Id, Vec<PackEntry>> = HashMap::new();
    for blob in &live {
        let loc = index
            .get(blob)
            .expect("live_blobs checks every blob is indexed");
        live_in
            .entry(index.pack_id(loc))
            .or_default()
            .push(PackEntry {
                kind: loc.kind as u8,
                id: *blob,
                offset: loc.offset,
                length: loc.length,
            });
    }
    let mut delete: Vec<Id> = Vec::new();
    let mut repack: Vec<Id> = Vec::new();
    let mut keep: Vec<Id> = Vec::new();
    for (&id, &size) in &pack_sizes {
        let live_bytes: u64 = live_in
            .get(&id)
            .map_or(0, |v| v.iter().map(|e| u64::from(e.length)).sum());
        if preferred(&id) {
            keep.push(id);
        } else if live_bytes == 0 {
            delete.push(id);
        } else if primary.is_none() && (live_bytes as f64) < REPACK_BELOW_LIVE_SHARE * size as f64 {
            repack.push(id);
        } else {
            keep.push(id);
        }
    }
    delete.sort();
    repack.sort();
    keep.sort();

    // Blobs the kept shared index objects already place.
    let covered: HashSet<Id> = bodies
        .iter()
        .filter(|(path, _, _)| shared(path))
        .flat_map(|(_, _, b)| &b.packs)
        .flat_map(|p| p.blobs.iter().map(|e| e.id))
        .collect();
    let own_index: Vec<&(String, u64, IndexBody)> =
        bodies.iter().filter(|(path, _, _)| !shared(path)).collect();
    // An own index object that lists anything but the chosen live places
    // (a deleted snapshot's blobs, a duplicate) is rewritten, as are
    // several own objects (one per backup) folded into one.
    let stale = own_index.iter().any(|(_, _, b)| {
        b.packs.iter().any(|p| {
            p.blobs.iter().any(|e| {
                !live.contains(&e.id)
                    || covered.contains(&e.id)
                    || index
                        .get(&e.id)
                        .is_none_or(|l| index.pack_id(l) != p.id || l.offset != e.offset)
            })
        })
    });
    let mut report = PruneReport::default();
    if delete.is_empty() && repack.is_empty() && !stale && own_index.len() <= 1 {
        report.after = PrimaryLayout {
            packs: pack_sizes.into_keys().collect(),
            index: bodies.into_iter().map(|(path, _, _)| path).collect(),
        };
        return Ok(report);
    }

    // Move the live blobs of mostly-empty packs, one pack in memory at a time.
    let mut new_packs: Vec<IndexPack> = Vec::new();
    if !repack.is_empty() {
        let packer = Packer::start(store.clone(), tenant.clone(), pack_size);
        let tx = packer.sender();
        let mut moved = Ok(());
        for id in &repack {
            let path = repo::pack_path(name, id);
            let bytes = match store.get(&path) {
                Ok(b) => b,
                Err(e) => {
                    moved = Err(e);
                    break;
                }
            };
            if Id::of_bytes(&bytes) != *id {
                moved = Err(refuse(&path, "content does not match its name"));
                break;
            }
            for e in live_in.get(id).into_iter().flatten() {
                let end = (e.offset + u64::from(e.length)) as usize;
                let Some(sealed) = bytes.get(e.offset as usize..end) else {
                    moved = Err(refuse(&path, "shorter than its index says"));
                    break;
                };
                report.blobs_repacked += 1;
                let kind = Kind::from_byte(e.kind).expect("index entries are blobs");
                if tx
                    .send(SealedBlob {
                        kind,
                        id: e.id,
                        sealed: sealed.to_vec(),
                        plain_len: 0,
                    })
                    .is_err()
                {
                    break;
                }
            }
            if moved.is_err() {
                break;
            }
        }
        drop(tx);
        let (packs, _) = packer.finish()?;
        moved?;
        report.packs_written = packs.len() as u64;
        report.bytes_written = packs.iter().map(|p| p.size).sum();
        new_packs = packs;
    }

    let mut body = IndexBody::default();
    for id in &keep {
        let mut blobs: Vec<PackEntry> = live_in
            .get(id)
            .into_iter()
            .flatten()
            .filter(|e| !covered.contains(&e.id))
            .copied()
            .collect();
        if blobs.is_empty() {
            continue;
        }
        blobs.sort_by_key(|e| e.offset);
        body.packs.push(IndexPack {
            id: *id,
            size: pack_sizes[id],
            blobs,
        });
    }
    let new_pack_ids: Vec<Id> = new_packs.iter().map(|p| p.id).collect();
    body.packs.extend(new_packs);
    lock.check()?;
    let mut written = None;
    if !body.packs.is_empty() {
        let id = repo.write_index(tenant, &body)?;
        let path = repo::index_path(name, &id);
        report.index_written = 1;
        report.bytes_written += store.size_of(&path)?.unwrap_or(0);
        written = Some(path);
    }
    let mut gone: Vec<(String, u64)> = Vec::new();
    for (path, size, _) in &own_index {
        if Some(path) != written.as_ref() {
            store.delete(path)?;
            report.index_deleted += 1;
            report.bytes_deleted += size;
            gone.push((path.clone(), *size));
        }
    }
    lock.check()?;
    for id in delete.iter().chain(&repack) {
        let path = repo::pack_path(name, id);
        store.delete(&path)?;
        report.packs_deleted += 1;
        report.bytes_deleted += pack_sizes[id];
        gone.push((path, pack_sizes[id]));
    }
    verify_gone(repo, &prefix, &gone)?;
    report.after = PrimaryLayout {
        packs: keep.into_iter().chain(new_pack_ids).collect(),
        index: bodies
            .iter()
            .map(|(path, _, _)| path.clone())
            .filter(|path| shared(path))
            .chain(written)
            .collect(),
    };
    Ok(report)
}

/// Every tree and data blob the tenant's snapshots on this target
/// reference. Refuses (deleting nothing) if any of them cannot be found:
/// that is damage for `check` to name, not garbage.
fn live_blobs(repo: &Repository, tenant: &Tenant, index: &Index) -> Result<HashSet<Id>> {
    let mut live: HashSet<Id> = HashSet::new();
    for (snap_id, snap) in repo.snapshots(tenant)? {
        let mut stack = vec![snap.root];
        while let Some(tree_id) = stack.pop() {
            if !live.insert(tree_id) {
                continue;
            }
            let tree = repo.read_tree(tenant, index, &tree_id).map_err(|e| {
                refuse(
                    &repo::snapshot_path(&tenant.name, &snap_id),
                    &format!("cannot be read fully ({e})"),
                )
            })?;
            for node in tree.nodes {
                if let Some(sub) = node.subtree {
                    stack.push(sub);
                }
                for blob in node.content {
                    if live.insert(blob) && !index.contains(&blob) {
                        return Err(refuse(
                            &repo::snapshot_path(&tenant.name, &snap_id),
                            &format!("names data blob {} that no index holds", blob.to_hex()),
                        ));
                    }
                }
            }
        }
    }
    Ok(live)
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
