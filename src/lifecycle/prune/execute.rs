//! Carrying out a prune plan under the tenant's exclusive lock, in the
//! order that keeps every remaining snapshot restorable (see `super`):
//! new packs, the new index, the replaced index objects, then the packs.

use std::sync::Arc;

use super::plan::{PrunePlan, TenantObjects};
use super::{PruneReport, TenantHoldings, refuse, verify_gone};
use crate::error::Result;
use crate::format::index::IndexPack;
use crate::format::{Id, Kind};
use crate::layout;
use crate::lock::TenantLock;
use crate::repo::packer::{Packer, SealedBlob};
use crate::repo::{Repository, Tenant};

/// Carries out `plan`, made from `objects`, and says what was done.
pub fn execute(
    repo: &Repository,
    tenant: &Arc<Tenant>,
    objects: &TenantObjects,
    plan: &PrunePlan,
    pack_size: u64,
    lock: &TenantLock,
) -> Result<PruneReport> {
    let store = &repo.store;
    let name = &tenant.name;
    let mut report = PruneReport::default();
    let Some(new_index) = &plan.index else {
        report.after = TenantHoldings {
            packs: objects.packs().keys().copied().collect(),
            index: objects
                .index_objects()
                .iter()
                .map(|o| o.path.clone())
                .collect(),
        };
        return Ok(report);
    };

    let mut new_packs: Vec<IndexPack> = Vec::new();
    if !plan.repack.is_empty() {
        new_packs = repack(repo, tenant, plan, pack_size, &mut report)?;
    }

    let mut body = new_index.body.clone();
    let new_pack_ids: Vec<Id> = new_packs.iter().map(|p| p.id).collect();
    body.packs.extend(new_packs);
    lock.check()?;
    let mut written = None;
    if !body.packs.is_empty() {
        let id = repo.write_index(tenant, &body)?;
        let path = layout::index_path(name, &id);
        report.index_written = 1;
        report.bytes_written += store.size_of(&path)?.unwrap_or(0);
        written = Some(path);
    }
    let mut gone: Vec<(String, u64)> = Vec::new();
    for replaced in &new_index.replaces {
        if Some(&replaced.path) != written.as_ref() {
            store.delete(&replaced.path)?;
            report.index_deleted += 1;
            report.bytes_deleted += replaced.size;
            gone.push((replaced.path.clone(), replaced.size));
        }
    }
    lock.check()?;
    let repacked = plan.repack.iter().map(|r| &r.pack);
    for id in plan.delete.iter().chain(repacked) {
        let path = layout::pack_path(name, id);
        let size = objects.packs()[id];
        store.delete(&path)?;
        report.packs_deleted += 1;
        report.bytes_deleted += size;
        gone.push((path, size));
    }
    verify_gone(repo, &layout::tenant_prefix(name), &gone)?;
    report.after = TenantHoldings {
        packs: plan.keep.iter().copied().chain(new_pack_ids).collect(),
        index: objects
            .index_objects()
            .iter()
            .map(|o| o.path.clone())
            .filter(|path| objects.is_primary_index(path))
            .chain(written)
            .collect(),
    };
    Ok(report)
}

/// Moves the live blobs of the packs to repack into new packs, one old
/// pack in memory at a time, and returns the new packs.
fn repack(
    repo: &Repository,
    tenant: &Arc<Tenant>,
    plan: &PrunePlan,
    pack_size: u64,
    report: &mut PruneReport,
) -> Result<Vec<IndexPack>> {
    let store = &repo.store;
    let packer = Packer::start(store.clone(), tenant.clone(), pack_size);
    let tx = packer.sender();
    let mut moved = Ok(());
    for r in &plan.repack {
        let path = layout::pack_path(&tenant.name, &r.pack);
        let bytes = match store.get(&path) {
            Ok(b) => b,
            Err(e) => {
                moved = Err(e);
                break;
            }
        };
        if Id::of_bytes(&bytes) != r.pack {
            moved = Err(refuse(&path, "content does not match its name"));
            break;
        }
        for e in &r.blobs {
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
    Ok(packs)
}
