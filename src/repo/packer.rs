//! Collects sealed blobs into packs and uploads them, with a bounded number of
//! uploads in flight so memory stays bounded whatever the data size.

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded};
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::Tenant;
use crate::error::Result;
use crate::format::index::IndexPack;
use crate::format::pack::PackBuilder;
use crate::format::{Id, Kind};
use crate::layout::pack_path;
use crate::store::{PendingPut, Store};

/// Uploads in flight at once; each holds one pack in memory.
const MAX_PENDING_UPLOADS: usize = 4;

pub struct SealedBlob {
    pub kind: Kind,
    pub id: Id,
    pub sealed: Vec<u8>,
    pub plain_len: usize,
}

#[derive(Debug, Default, Clone)]
pub struct PackerStats {
    pub blobs: u64,
    pub plain_bytes: u64,
    pub stored_bytes: u64,
}

/// A running packer; [`Packer::sender`] feeds it, [`Packer::finish`] flushes.
pub struct Packer {
    tx: Option<Sender<SealedBlob>>,
    thread: JoinHandle<Result<(Vec<IndexPack>, PackerStats)>>,
}

impl Packer {
    pub fn start(store: Store, tenant: Arc<Tenant>, pack_size: u64) -> Packer {
        // A few blobs of slack between the workers and the packer; each may be
        // a 2 MiB chunk (up to 16 MiB with custom chunk bounds), so this bounds memory as much as it smooths.
        let (tx, rx) = bounded::<SealedBlob>(4);
        let thread = std::thread::Builder::new()
            .name("gallra-packer".into())
            .spawn(move || run(store, tenant, pack_size as usize, rx))
            .expect("spawn packer thread");
        Packer {
            tx: Some(tx),
            thread,
        }
    }

    pub fn sender(&self) -> Sender<SealedBlob> {
        self.tx.clone().expect("packer is running")
    }

    /// Writes the last pack, waits for every upload, and returns the packs
    /// for the index.
    pub fn finish(mut self) -> Result<(Vec<IndexPack>, PackerStats)> {
        drop(self.tx.take());
        self.thread.join().expect("packer thread does not panic")
    }
}

fn run(
    store: Store,
    tenant: Arc<Tenant>,
    pack_size: usize,
    rx: Receiver<SealedBlob>,
) -> Result<(Vec<IndexPack>, PackerStats)> {
    let mut packs = Vec::new();
    let mut stats = PackerStats::default();
    let mut pending: VecDeque<PendingPut> = VecDeque::new();
    // A pack closes before the blob that would take it past `pack_size`, so
    // its buffer never grows (and reallocates) past that.
    let capacity = pack_size + (64 << 10);
    let mut current = PackBuilder::with_capacity(capacity);
    let mut flush = |builder: PackBuilder, pending: &mut VecDeque<PendingPut>| -> Result<()> {
        let (bytes, id, blobs) = builder.finish(&tenant.cipher, &tenant.context);
        let size = bytes.len() as u64;
        stats.stored_bytes += size;
        while pending.len() >= MAX_PENDING_UPLOADS {
            pending.pop_front().expect("non-empty").wait()?;
        }
        pending.push_back(store.put_background(pack_path(&tenant.name, &id), Bytes::from(bytes)));
        packs.push(IndexPack { id, size, blobs });
        Ok(())
    };
    let mut failed = None;
    for blob in rx.iter() {
        if failed.is_some() {
            continue; // drain so senders never block on a dead packer
        }
        stats.blobs += 1;
        stats.plain_bytes += blob.plain_len as u64;
        if !current.is_empty() && current.len() + blob.sealed.len() > pack_size {
            let full = std::mem::replace(&mut current, PackBuilder::with_capacity(capacity));
            if let Err(e) = flush(full, &mut pending) {
                failed = Some(e);
                continue;
            }
        }
        current.add(blob.kind, blob.id, &blob.sealed);
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if !current.is_empty() {
        flush(current, &mut pending)?;
    }
    for p in pending {
        p.wait()?;
    }
    Ok((packs, stats))
}
