//! The prune plan: which of a tenant's packs are deleted, which repacked
//! (and which blobs of each move) and which kept, and the index that
//! replaces the tenant's own index objects. Pure, as restic's `PlanPrune`:
//! the packs and index objects as listed and loaded, and the live blobs,
//! in; a plan out, for `execute` to carry out.
//!
//! Every live blob has one place: the first pack that holds it, the
//! primary's packs first, then by pack id, so that the choice is the same
//! on every run. Then each pack is
//! * kept, if it is one of the primary's (on a secondary, see `super`);
//! * deleted, if no live blob has its place in it;
//! * repacked (on the primary only), if less than `repack_below_live_share`
//!   of its bytes are live blobs placed in it: they move to new packs and
//!   the pack is deleted;
//! * else kept.
//!
//! The tenant's own index objects (those that are not the primary's) are
//! replaced by one that places each live blob of the kept packs, and the
//! new packs' blobs, whenever a pack goes, or an own object lists anything
//! else (a deleted snapshot's blobs, a duplicate), or there are several
//! (one per backup) to fold into one. Otherwise the plan is empty.

use std::collections::{HashMap, HashSet};

use super::PrimaryLayout;
use crate::format::Id;
use crate::format::index::{IndexBody, IndexPack};
use crate::format::pack::PackEntry;
use crate::repo::Index;

/// A pack is repacked when less than this share of its bytes is live: at
/// most half of it is rewritten to free the other half.
pub const REPACK_BELOW_LIVE_SHARE: f64 = 0.5;

/// One of the tenant's index objects, as listed and opened.
#[derive(Debug, Clone)]
pub struct IndexObject {
    pub path: String,
    pub size: u64,
    pub body: IndexBody,
}

/// What a tenant holds on one target as prune found it, and the index
/// that gives each blob its one place.
pub struct TenantObjects<'a> {
    /// Every pack listed, with its size.
    pub packs: HashMap<Id, u64>,
    pub index_objects: Vec<IndexObject>,
    /// `None` on the primary.
    pub primary: Option<&'a PrimaryLayout>,
    index: Index,
}

impl<'a> TenantObjects<'a> {
    pub fn new(
        packs: HashMap<Id, u64>,
        index_objects: Vec<IndexObject>,
        primary: Option<&'a PrimaryLayout>,
    ) -> TenantObjects<'a> {
        let mut objects = TenantObjects {
            packs,
            index_objects,
            primary,
            index: Index::default(),
        };
        // `Index` keeps the first place added for a blob.
        let mut places: Vec<&IndexPack> = objects
            .index_objects
            .iter()
            .flat_map(|o| &o.body.packs)
            .filter(|p| objects.packs.contains_key(&p.id))
            .collect();
        places.sort_by_key(|p| (!objects.is_primary_pack(&p.id), p.id));
        let mut index = Index::default();
        for p in places {
            index.add_pack(p);
        }
        objects.index = index;
        objects
    }

    /// Each indexed blob in its one place: what the live blobs are found
    /// with, and what the plan keeps.
    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn is_primary_pack(&self, id: &Id) -> bool {
        self.primary.is_some_and(|p| p.packs.contains(id))
    }

    pub fn is_primary_index(&self, path: &str) -> bool {
        self.primary.is_some_and(|p| p.index.contains(path))
    }
}

/// A pack whose live blobs move to new packs before it is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repack {
    pub pack: Id,
    /// In offset order.
    pub blobs: Vec<PackEntry>,
}

/// An index object that the new index replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacedIndex {
    pub path: String,
    pub size: u64,
}

/// The index written in place of the tenant's own index objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIndex {
    /// The live blobs of the kept packs that no kept index object of the
    /// primary's already places, each pack's in offset order. The new
    /// packs are added when they are written: their ids are their hashes.
    pub body: IndexBody,
    /// In listing order.
    pub replaces: Vec<ReplacedIndex>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePlan {
    /// Packs without a live blob placed in them, by id.
    pub delete: Vec<Id>,
    /// By pack id.
    pub repack: Vec<Repack>,
    /// By id.
    pub keep: Vec<Id>,
    /// `None` when the index objects stay as they are; always `Some` when
    /// a pack is deleted or repacked.
    pub index: Option<NewIndex>,
}

impl PrunePlan {
    /// Nothing to write and nothing to delete.
    pub fn is_empty(&self) -> bool {
        self.index.is_none()
    }
}

/// The plan for a tenant's objects, given its live blobs: every blob its
/// snapshots reference, each of which `objects.index()` places (a live
/// blob it does not place is ignored: the caller refuses to prune before).
pub fn plan(
    objects: &TenantObjects,
    live: &HashSet<Id>,
    repack_below_live_share: f64,
) -> PrunePlan {
    let index = objects.index();
    let mut live_in: HashMap<Id, Vec<PackEntry>> = HashMap::new();
    for blob in live {
        let Some(place) = index.get(blob) else {
            continue;
        };
        live_in
            .entry(index.pack_id(place))
            .or_default()
            .push(PackEntry {
                kind: place.kind as u8,
                id: *blob,
                offset: place.offset,
                length: place.length,
            });
    }
    for entries in live_in.values_mut() {
        entries.sort_by_key(|e| e.offset);
    }

    let mut delete: Vec<Id> = Vec::new();
    let mut repack: Vec<Repack> = Vec::new();
    let mut keep: Vec<Id> = Vec::new();
    for (&id, &size) in &objects.packs {
        let live_bytes: u64 = live_in
            .get(&id)
            .map_or(0, |v| v.iter().map(|e| u64::from(e.length)).sum());
        if objects.is_primary_pack(&id) {
            keep.push(id);
        } else if live_bytes == 0 {
            delete.push(id);
        } else if objects.primary.is_none()
            && (live_bytes as f64) < repack_below_live_share * size as f64
        {
            repack.push(Repack {
                pack: id,
                blobs: live_in[&id].clone(),
            });
        } else {
            keep.push(id);
        }
    }
    delete.sort();
    repack.sort_by_key(|r| r.pack);
    keep.sort();

    // Blobs the kept index objects of the primary already place.
    let covered: HashSet<Id> = objects
        .index_objects
        .iter()
        .filter(|o| objects.is_primary_index(&o.path))
        .flat_map(|o| &o.body.packs)
        .flat_map(|p| p.blobs.iter().map(|e| e.id))
        .collect();
    let own: Vec<&IndexObject> = objects
        .index_objects
        .iter()
        .filter(|o| !objects.is_primary_index(&o.path))
        .collect();
    let stale = own.iter().any(|o| {
        o.body.packs.iter().any(|p| {
            p.blobs.iter().any(|e| {
                !live.contains(&e.id)
                    || covered.contains(&e.id)
                    || index
                        .get(&e.id)
                        .is_none_or(|l| index.pack_id(l) != p.id || l.offset != e.offset)
            })
        })
    });
    if delete.is_empty() && repack.is_empty() && !stale && own.len() <= 1 {
        return PrunePlan {
            delete,
            repack,
            keep,
            index: None,
        };
    }

    let mut body = IndexBody::default();
    for id in &keep {
        let blobs: Vec<PackEntry> = live_in
            .get(id)
            .into_iter()
            .flatten()
            .filter(|e| !covered.contains(&e.id))
            .copied()
            .collect();
        if !blobs.is_empty() {
            body.packs.push(IndexPack {
                id: *id,
                size: objects.packs[id],
                blobs,
            });
        }
    }
    let replaces = own
        .iter()
        .map(|o| ReplacedIndex {
            path: o.path.clone(),
            size: o.size,
        })
        .collect();
    PrunePlan {
        delete,
        repack,
        keep,
        index: Some(NewIndex { body, replaces }),
    }
}
