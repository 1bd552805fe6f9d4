//! What a snapshot's workers share: each chunks a stream with its own
//! chunker and zstd context, stores each chunk once (seals it and hands it to
//! the packer), and stores the tree blobs.

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashSet;
use std::io::{self, Read};
use std::sync::Mutex;

use crate::cancel::Cancel;
use crate::chunker::{Chunker, ChunkerParams};
use crate::format::pack::seal_blob;
use crate::format::tree::Tree;
use crate::format::{Id, Kind};
use crate::pace::Pacer;
use crate::repo::packer::SealedBlob;
use crate::repo::{Index, Tenant};

/// What the pipeline shares between its workers for one snapshot.
pub(super) struct Pipeline<'a> {
    pub(super) tenant: &'a Tenant,
    pub(super) index: &'a Index,
    /// Blobs added by this snapshot so far, so that two workers meeting the
    /// same chunk store it once.
    pub(super) new_ids: Mutex<HashSet<Id>>,
    pub(super) packer_tx: crossbeam_channel::Sender<SealedBlob>,
    pub(super) params: ChunkerParams,
    pub(super) compression: i32,
    pub(super) progress: ProgressBar,
    pub(super) warnings: Mutex<Vec<String>>,
    pub(super) cancel: &'a Cancel,
    pub(super) read_rate: Option<&'a Pacer>,
}

pub(super) enum SinkError {
    Io(io::Error),
    PackerGone,
    Cancelled,
}

impl From<io::Error> for SinkError {
    fn from(e: io::Error) -> Self {
        SinkError::Io(e)
    }
}

/// A worker thread's chunker and zstd context, and the settings they were
/// made for (a thread may serve another snapshot's settings next).
struct Worker {
    params: ChunkerParams,
    compression: i32,
    chunker: Chunker,
    compressor: zstd::bulk::Compressor<'static>,
}

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

impl Pipeline<'_> {
    pub(super) fn warn(&self, message: String) {
        tracing::warn!("{message}");
        self.warnings.lock().expect("not poisoned").push(message);
    }

    fn is_new(&self, id: &Id) -> bool {
        !self.index.contains(id) && self.new_ids.lock().expect("not poisoned").insert(*id)
    }

    fn add_blob(
        &self,
        kind: Kind,
        id: Id,
        data: &[u8],
        compressor: &mut zstd::bulk::Compressor<'static>,
    ) -> std::result::Result<(), SinkError> {
        if !self.is_new(&id) {
            return Ok(());
        }
        let sealed = seal_blob(&self.tenant.cipher, kind, &id, data, Some(compressor));
        self.packer_tx
            .send(SealedBlob {
                kind,
                id,
                sealed,
                plain_len: data.len(),
            })
            .map_err(|_| SinkError::PackerGone)
    }

    /// Runs `f` with this thread's chunker and zstd context, made once per
    /// thread and kept for every file and tree it handles.
    fn with_worker<T>(
        &self,
        f: impl FnOnce(
            &mut Chunker,
            &mut zstd::bulk::Compressor<'static>,
        ) -> std::result::Result<T, SinkError>,
    ) -> std::result::Result<T, SinkError> {
        WORKER.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot
                .as_ref()
                .is_none_or(|w| w.params != self.params || w.compression != self.compression)
            {
                let compressor = zstd::bulk::Compressor::new(self.compression)
                    .map_err(|e| SinkError::Io(io::Error::other(e)))?;
                *slot = Some(Worker {
                    params: self.params,
                    compression: self.compression,
                    chunker: Chunker::new(self.params),
                    compressor,
                });
            }
            let Worker {
                chunker,
                compressor,
                ..
            } = slot.as_mut().expect("set above");
            f(chunker, compressor)
        })
    }

    /// Chunks a stream and stores its new chunks; returns the content list,
    /// SHA-256 and byte count.
    pub(super) fn store_stream(
        &self,
        reader: impl Read,
    ) -> std::result::Result<(Vec<Id>, [u8; 32], u64), SinkError> {
        self.with_worker(|chunker, compressor| {
            let mut sha = Sha256::new();
            let mut content = Vec::new();
            let n = chunker.chunk(reader, |chunk: &[u8]| {
                if self.cancel.is_cancelled() {
                    return Err(SinkError::Cancelled);
                }
                if let Some(pacer) = self.read_rate {
                    pacer.wait_blocking(chunk.len() as u64);
                }
                sha.update(chunk);
                let id = self.tenant.blob_id(Kind::DataBlob, chunk);
                self.add_blob(Kind::DataBlob, id, chunk, compressor)?;
                content.push(id);
                self.progress.inc(chunk.len() as u64);
                Ok::<(), SinkError>(())
            })?;
            Ok((content, sha.finalize().into(), n))
        })
    }

    /// Stores a tree blob; returns its id.
    pub(super) fn store_tree(&self, tree: &Tree) -> std::result::Result<Id, SinkError> {
        let bytes = tree.encode();
        let id = self.tenant.blob_id(Kind::TreeBlob, &bytes);
        self.with_worker(|_, compressor| self.add_blob(Kind::TreeBlob, id, &bytes, compressor))?;
        Ok(id)
    }
}
