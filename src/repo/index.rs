//! The in-memory index of a tenant: blob id -> pack, offset, length.

use std::collections::HashMap;

use crate::format::index::{IndexBody, IndexPack};
use crate::format::{Id, Kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Position of the pack in [`Index::pack_id`]'s table.
    pack: u32,
    pub offset: u64,
    pub length: u32,
    pub kind: Kind,
}

#[derive(Debug, Default)]
pub struct Index {
    blobs: HashMap<Id, BlobLocation>,
    packs: Vec<(Id, u64)>,
    pack_slot: HashMap<Id, u32>,
}

impl Index {
    pub fn add_body(&mut self, body: &IndexBody) {
        for p in &body.packs {
            self.add_pack(p);
        }
    }

    pub fn add_pack(&mut self, p: &IndexPack) {
        let slot = *self.pack_slot.entry(p.id).or_insert_with(|| {
            self.packs.push((p.id, p.size));
            (self.packs.len() - 1) as u32
        });
        for b in &p.blobs {
            let Some(kind) = b.blob_kind() else { continue };
            self.blobs.entry(b.id).or_insert(BlobLocation {
                pack: slot,
                offset: b.offset,
                length: b.length,
                kind,
            });
        }
    }

    pub fn get(&self, id: &Id) -> Option<&BlobLocation> {
        self.blobs.get(id)
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn pack_id(&self, loc: &BlobLocation) -> Id {
        self.packs[loc.pack as usize].0
    }

    /// Every indexed pack with its size.
    pub fn packs(&self) -> &[(Id, u64)] {
        &self.packs
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    pub fn blobs(&self) -> impl Iterator<Item = (&Id, &BlobLocation)> {
        self.blobs.iter()
    }
}
