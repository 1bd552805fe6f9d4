//! Backup: discover tenants, walk sources, and run the parallel pipeline
//! read -> chunk -> id -> dedup -> compress -> encrypt -> pack -> store.
//!
//! The walk is sequential and keeps only metadata; file contents are read by
//! rayon workers (one file per task), each with its own reusable chunk buffer
//! and zstd context, and sealed blobs go through a bounded channel to the
//! packer thread, which keeps at most two packs' uploads in flight. Memory is
//! bounded by those queues, not by the data.

use crate::lock::{self, Holder, LockKind, TenantLock};
use globset::{GlobSet, GlobSetBuilder};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rustix::fd::OwnedFd;
use rustix::fs::{FileType, Mode, OFlags};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::beneath::{self, Meta};
use crate::cancel::Cancel;
use crate::chunker::{Chunker, ChunkerParams};
use crate::config::{Config, Source, SourceKind};
use crate::error::{Error, Result};
use crate::format::pack::seal_blob;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::format::{Id, Kind};
use crate::pace::Pacer;
use crate::repo::packer::{Packer, SealedBlob};
use crate::repo::{Index, Repository, Tenant};

#[derive(Default)]
pub struct BackupOptions {
    /// Only these tenants (all when empty).
    pub tenants: Vec<String>,
    pub time: Option<jiff::Timestamp>,
    pub tags: Vec<(String, String)>,
    pub progress: bool,
    pub compression: i32,
    pub pack_size: u64,
    /// Only these sources (all when empty).
    pub sources: Vec<String>,
    /// Stops the backup between files; nothing of it is committed.
    pub cancel: Cancel,
    /// Caps the rate at which files are read, so that customers' sites on
    /// the same disks stay fast.
    pub read_rate: Option<Arc<Pacer>>,
}

#[derive(Debug, Clone)]
pub struct SnapshotSummary {
    pub id: Id,
    pub snapshot: Snapshot,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub tenant: String,
    pub source: String,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct BackupReport {
    pub snapshots: Vec<SnapshotSummary>,
    pub failed: Vec<Failure>,
    /// A stop was requested and at least one job was abandoned for it (or
    /// not started): neither a success nor a failure of those jobs.
    pub cancelled: bool,
    pub seconds: f64,
}

/// One snapshot to take: a source for one tenant.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub tenant: String,
    pub source: &'a Source,
    /// Concrete paths (for a path source).
    pub paths: Vec<PathBuf>,
}

/// Expands `{tenant}` patterns into one job per (tenant, source). A folder
/// whose name is not a usable tenant name is a failure, not silently skipped;
/// `lost+found` and hidden folders are no customer's and are passed over.
pub fn plan_jobs<'a>(config: &'a Config, only: &[String]) -> (Vec<Job<'a>>, Vec<Failure>) {
    let mut jobs: Vec<Job<'a>> = Vec::new();
    let mut failed = Vec::new();
    for source in &config.sources {
        match (&source.kind, &source.tenant) {
            (SourceKind::Command { .. }, Some(t)) => jobs.push(Job {
                tenant: t.clone(),
                source,
                paths: vec![],
            }),
            (SourceKind::Paths(paths), Some(t)) => jobs.push(Job {
                tenant: t.clone(),
                source,
                paths: paths.iter().map(PathBuf::from).collect(),
            }),
            (SourceKind::Paths(patterns), None) => {
                let mut by_tenant: std::collections::BTreeMap<String, Vec<PathBuf>> =
                    Default::default();
                for pattern in patterns {
                    let (prefix, suffix) = pattern.split_once("{tenant}").expect("validated");
                    let suffix = suffix.trim_start_matches('/');
                    let entries = match std::fs::read_dir(prefix) {
                        Ok(e) => e,
                        Err(e) => {
                            failed.push(Failure {
                                tenant: "*".into(),
                                source: source.name.clone(),
                                error: format!("cannot list {prefix}: {e}"),
                            });
                            continue;
                        }
                    };
                    for entry in entries.flatten() {
                        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                            continue;
                        }
                        let name = entry.file_name();
                        // NFC, so that a folder named in NFD (as a Mac
                        // copies `å`) is the same tenant, not a second one.
                        let Some(tenant) = name
                            .to_str()
                            .map(|n| crate::tenant_name::nfc(n).into_owned())
                        else {
                            failed.push(Failure {
                                tenant: name.to_string_lossy().into_owned(),
                                source: source.name.clone(),
                                error: "folder name is not UTF-8, so it cannot name a tenant"
                                    .into(),
                            });
                            continue;
                        };
                        if crate::tenant_name::is_system_folder(&tenant) {
                            tracing::info!(
                                "source {}: {} is a system folder, not a tenant; skipped",
                                source.name,
                                entry.path().display()
                            );
                            continue;
                        }
                        if let Err(m) = crate::tenant_name::check(&tenant) {
                            failed.push(Failure {
                                tenant: tenant.clone(),
                                source: source.name.clone(),
                                error: m,
                            });
                            continue;
                        }
                        let path = if suffix.is_empty() {
                            entry.path()
                        } else {
                            entry.path().join(suffix)
                        };
                        if path.exists() {
                            by_tenant.entry(tenant).or_default().push(path);
                        }
                    }
                }
                for (tenant, paths) in by_tenant {
                    jobs.push(Job {
                        tenant,
                        source,
                        paths,
                    });
                }
            }
            (SourceKind::Command { .. }, None) => unreachable!("validated: command has tenant"),
        }
    }
    if !only.is_empty() {
        jobs.retain(|j| only.contains(&j.tenant));
        failed.retain(|f| only.contains(&f.tenant));
    }
    jobs.sort_by(|a, b| (&a.tenant, &a.source.name).cmp(&(&b.tenant, &b.source.name)));
    (jobs, failed)
}

/// The tenant whose jobs are running: its name, keys, index and snapshots.
/// The tenant being backed up: its shared lock (taken before its index is
/// read, so that no prune can delete what the index names meanwhile), keys,
/// index and snapshots.
struct TenantState {
    name: String,
    lock: TenantLock,
    tenant: Arc<Tenant>,
    index: Index,
    snaps: Vec<(Id, Snapshot)>,
}

/// Runs every job; a failing job is reported and the others go on.
pub fn run(repo: &Repository, config: &Config, opts: &BackupOptions) -> Result<BackupReport> {
    let started = Instant::now();
    let (mut jobs, mut failed) = plan_jobs(config, &opts.tenants);
    if !opts.sources.is_empty() {
        jobs.retain(|j| opts.sources.contains(&j.source.name));
        failed.retain(|f| opts.sources.contains(&f.source));
    }
    for t in &opts.tenants {
        if !config
            .sources
            .iter()
            .any(|s| s.tenant.as_deref() == Some(t))
            && !jobs.iter().any(|j| &j.tenant == t)
        {
            failed.push(Failure {
                tenant: t.clone(),
                source: "*".into(),
                error: "no source of this tenant was found".into(),
            });
        }
    }
    let mut report = BackupReport::default();
    let mut current: Option<TenantState> = None;
    for job in &jobs {
        if opts.cancel.is_cancelled() {
            report.cancelled = true;
            break;
        }
        // A failure carries its tenant and source; the error's own text
        // must not name them a second time.
        let fail = |e: Error| Failure {
            tenant: job.tenant.clone(),
            source: job.source.name.clone(),
            error: match e {
                Error::Source { message, .. } => message,
                e => e.to_string(),
            },
        };
        if current.as_ref().is_none_or(|c| c.name != job.tenant) {
            // Release the previous tenant's lock before taking the next.
            drop(current.take());
            let holder = Holder {
                host: config.agent.host.clone(),
                command: "backup".into(),
            };
            let loaded = lock::acquire(&repo.store, &job.tenant, LockKind::Shared, &holder)
                .and_then(|lock| {
                    let tenant = repo.tenant(&job.tenant, true)?;
                    let index = repo.load_index(&tenant)?;
                    let snaps = repo.snapshots(&tenant)?;
                    Ok(TenantState {
                        name: job.tenant.clone(),
                        lock,
                        tenant,
                        index,
                        snaps,
                    })
                });
            match loaded {
                Ok(c) => current = Some(c),
                Err(e) => {
                    current = None;
                    failed.push(fail(e));
                    continue;
                }
            }
        }
        let state = current.as_mut().expect("loaded above");
        let parent = state
            .snaps
            .iter()
            .rev()
            .find(|(_, s)| s.source == job.source.name && s.host == config.agent.host)
            .cloned();
        match snapshot_job(repo, config, opts, job, state, parent) {
            Ok(summary) => {
                tracing::info!(
                    tenant = %job.tenant, source = %job.source.name, snapshot = %summary.id.short(),
                    "snapshot written"
                );
                state.snaps.push((summary.id, summary.snapshot.clone()));
                report.snapshots.push(summary);
            }
            // Once a stop is requested, whatever a job ends with (the
            // typed Cancelled, or a read or packer torn down under it) is the
            // stop's doing, not the source's: counting it as a failure would
            // leave a backup "failing" that nothing is wrong with.
            Err(e) if matches!(e, Error::Cancelled) || opts.cancel.is_cancelled() => {
                tracing::info!(
                    tenant = %job.tenant, source = %job.source.name,
                    "backup abandoned, nothing committed: {e}"
                );
                report.cancelled = true;
            }
            Err(e) => failed.push(fail(e)),
        }
    }
    report.failed = failed;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Records each snapshot taken in the audit trail, locally and on the
/// primary: evidence an auditor may ask for after the snapshot itself is
/// long deleted. Returns the targets a record could not be written to.
pub fn audit_snapshots(
    config: &Config,
    repo: &Repository,
    report: &BackupReport,
) -> Result<Vec<(String, Error)>> {
    use crate::audit::{Action, AuditLog, Entry, TargetCounts};
    let audit = AuditLog::open(&config.agent.state_dir, &config.agent.host)?;
    let mut failed = Vec::new();
    for s in &report.snapshots {
        let snap = &s.snapshot;
        let mut entry = Entry::new(Action::Backup, Some(&snap.tenant));
        entry.snapshots = vec![s.id.to_hex()];
        entry.targets = vec![TargetCounts {
            target: config.primary().name.clone(),
            objects: 0,
            bytes: snap.bytes_stored,
        }];
        entry.detail = Some(format!(
            "taken {}, source {}, category {}, {} files, {} bytes",
            jiff::Timestamp::from_second(snap.time_secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            snap.source,
            snap.category,
            snap.files,
            snap.bytes
        ));
        failed.extend(audit.append(entry, &[repo])?.1);
    }
    Ok(failed)
}

/// What the pipeline shares between its workers for one snapshot.
struct Pipeline<'a> {
    tenant: &'a Tenant,
    index: &'a Index,
    /// Blobs added by this snapshot so far, so that two workers meeting the
    /// same chunk store it once.
    new_ids: Mutex<HashSet<Id>>,
    packer_tx: crossbeam_channel::Sender<SealedBlob>,
    params: ChunkerParams,
    compression: i32,
    progress: ProgressBar,
    warnings: Mutex<Vec<String>>,
    cancel: &'a Cancel,
    read_rate: Option<&'a Pacer>,
}

enum SinkError {
    Io(io::Error),
    PackerGone,
    Cancelled,
}

impl From<io::Error> for SinkError {
    fn from(e: io::Error) -> Self {
        SinkError::Io(e)
    }
}

thread_local! {
    static WORKER: RefCell<Option<(ChunkerParams, i32, Chunker, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
}

impl Pipeline<'_> {
    fn warn(&self, message: String) {
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
                .is_none_or(|w| w.0 != self.params || w.1 != self.compression)
            {
                let compressor = zstd::bulk::Compressor::new(self.compression)
                    .map_err(|e| SinkError::Io(io::Error::other(e)))?;
                *slot = Some((
                    self.params,
                    self.compression,
                    Chunker::new(self.params),
                    compressor,
                ));
            }
            let (_, _, chunker, compressor) = slot.as_mut().expect("set above");
            f(chunker, compressor)
        })
    }

    /// Chunks a stream and stores its new chunks; returns the content list,
    /// SHA-256 and byte count.
    fn store_stream(
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
    fn store_tree(&self, tree: &Tree) -> std::result::Result<Id, SinkError> {
        let bytes = tree.encode();
        let id = self.tenant.blob_id(Kind::TreeBlob, &bytes);
        self.with_worker(|_, compressor| self.add_blob(Kind::TreeBlob, id, &bytes, compressor))?;
        Ok(id)
    }
}

/// A walked entry: its node (metadata) and, for a directory, its children.
struct Entry {
    node: Node,
    children: Vec<Entry>,
    /// Index into the read jobs for a file whose content must be read.
    job: Option<usize>,
}

/// A file to read, found by the walk: where it is (beneath a held
/// directory) and what the walk saw there.
struct ReadJob {
    root: Arc<SourceDir>,
    /// The file's full path, for messages and excludes; it is opened as the
    /// part below `root.path`, beneath `root.fd`.
    path: PathBuf,
    size: u64,
    mtime: (i64, u32),
    ctime: (i64, u32),
    dev: u64,
    ino: u64,
}

/// The directory holding one source path's last component, held open for
/// the whole backup: every file of that source path is opened beneath it.
struct SourceDir {
    fd: OwnedFd,
    path: PathBuf,
}

struct FileResult {
    content: Vec<Id>,
    sha256: [u8; 32],
    size: u64,
    changed: bool,
}

struct Walker<'a> {
    repo: &'a Repository,
    pipe: &'a Pipeline<'a>,
    excludes: GlobSet,
    one_file_system: bool,
    jobs: Vec<ReadJob>,
    parent_trees_failed: bool,
}

const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Folders nested deeper than this are not descended into: the walk holds
/// one descriptor and a few stack frames per level, and a tenant could
/// otherwise nest folders until the descriptors (a soft limit of 1024 by
/// default, shared with every other job) or a 2 MiB worker stack run out.
/// Real trees stay far below it (a deep Node.js tree is about 40).
const MAX_DEPTH: usize = 256;

fn is_cache_dir(dir: &OwnedFd) -> bool {
    let mut buf = [0u8; CACHEDIR_SIGNATURE.len()];
    // A tenant may plant a link or a FIFO under that name: neither is
    // followed nor waited for.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    rustix::fs::openat(dir, "CACHEDIR.TAG", flags, Mode::empty())
        .map(std::fs::File::from)
        .map_err(io::Error::from)
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok_and(|()| buf == CACHEDIR_SIGNATURE)
}

fn node_from_meta(name: &[u8], meta: &Meta, kind: NodeKind) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: meta.mode & 0o7777,
        uid: meta.uid,
        gid: meta.gid,
        mtime_secs: meta.mtime.0,
        mtime_nanos: meta.mtime.1,
        ctime_secs: meta.ctime.0,
        ctime_nanos: meta.ctime.1,
        dev: meta.dev,
        ino: meta.ino,
        nlink: meta.nlink,
        size: if kind == NodeKind::File { meta.size } else { 0 },
        content: vec![],
        sha256: None,
        subtree: None,
        link_target: vec![],
        changed_while_read: false,
    }
}

/// Where an entry is: the directory that holds it (open), its name there,
/// its full path, and the source directory its files are read beneath.
struct At<'x> {
    dir: &'x OwnedFd,
    name: &'x OsStr,
    path: &'x Path,
    root: &'x Arc<SourceDir>,
}

impl Walker<'_> {
    fn parent_subtree(&mut self, parent: Option<&Tree>, name: &[u8]) -> Option<Tree> {
        let node = parent?.find(name)?;
        let id = node.subtree?;
        match self.repo.read_tree(self.pipe.tenant, self.pipe.index, &id) {
            Ok(t) => Some(t),
            Err(e) => {
                if !self.parent_trees_failed {
                    self.pipe.warn(format!(
                        "parent snapshot unreadable ({e}); reading every file again"
                    ));
                    self.parent_trees_failed = true;
                }
                None
            }
        }
    }

    /// Makes the entry at `at` (already known not to be excluded), whose
    /// `fstatat` gave `meta`; `depth` is 0 for a source path itself.
    fn entry(
        &mut self,
        at: &At<'_>,
        meta: &Meta,
        parent: Option<&Tree>,
        root_dev: u64,
        depth: usize,
    ) -> Option<Entry> {
        let name = at.name.as_bytes();
        let path = at.path;
        if meta.is_dir() {
            let fd = match beneath::open_dir_at(at.dir, at.name) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
                Err(e) => {
                    let why = if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) {
                        "replaced by a symlink or file while it was walked; skipped".to_string()
                    } else {
                        format!("cannot open directory: {e}")
                    };
                    self.pipe.warn(format!("{}: {why}", path.display()));
                    return None;
                }
            };
            // What is walked is what was opened, not what stood there a
            // moment before.
            let opened = match beneath::fstat(&fd) {
                Ok(m) if m.same_file(meta) => m,
                Ok(_) => {
                    self.pipe.warn(format!(
                        "{}: replaced while it was walked; skipped",
                        path.display()
                    ));
                    return None;
                }
                Err(e) => {
                    self.pipe.warn(format!("{}: {e}", path.display()));
                    return None;
                }
            };
            if depth > 0 && is_cache_dir(&fd) {
                return None;
            }
            let mut node = node_from_meta(name, &opened, NodeKind::Dir);
            let mut children = Vec::new();
            if self.one_file_system && opened.dev != root_dev {
                self.pipe.warn(format!(
                    "{}: another file system; not descending (one_file_system)",
                    path.display()
                ));
            } else if depth >= MAX_DEPTH {
                self.pipe.warn(format!(
                    "{}: nested more than {MAX_DEPTH} folders deep; not descending",
                    path.display()
                ));
            } else {
                let sub = self.parent_subtree(parent, name);
                children = self.walk_dir(&fd, path, at.root, sub.as_ref(), root_dev, depth + 1);
            }
            node.subtree = Some(Id([0; 32]));
            Some(Entry {
                node,
                children,
                job: None,
            })
        } else if meta.kind == FileType::RegularFile {
            let mut node = node_from_meta(name, meta, NodeKind::File);
            let reused = parent.and_then(|t| t.find(name)).filter(|p| {
                p.kind == NodeKind::File
                    && p.size == node.size
                    && (p.mtime_secs, p.mtime_nanos) == (node.mtime_secs, node.mtime_nanos)
                    && (p.ctime_secs, p.ctime_nanos) == (node.ctime_secs, node.ctime_nanos)
                    && p.ino == node.ino
                    && !p.changed_while_read
                    && p.sha256.is_some()
                    && p.content.iter().all(|id| self.pipe.index.contains(id))
            });
            if let Some(p) = reused {
                node.content = p.content.clone();
                node.sha256 = p.sha256;
                return Some(Entry {
                    node,
                    children: vec![],
                    job: None,
                });
            }
            self.jobs.push(ReadJob {
                root: at.root.clone(),
                path: path.to_path_buf(),
                size: meta.size,
                mtime: meta.mtime,
                ctime: meta.ctime,
                dev: meta.dev,
                ino: meta.ino,
            });
            Some(Entry {
                node,
                children: vec![],
                job: Some(self.jobs.len() - 1),
            })
        } else if meta.kind == FileType::Symlink {
            let mut node = node_from_meta(name, meta, NodeKind::Symlink);
            match rustix::fs::readlinkat(at.dir, at.name, Vec::new()) {
                Ok(target) => node.link_target = target.into_bytes(),
                Err(e) => {
                    self.pipe
                        .warn(format!("{}: cannot read symlink: {e}", path.display()));
                    return None;
                }
            }
            Some(Entry {
                node,
                children: vec![],
                job: None,
            })
        } else {
            self.pipe.warn(format!(
                "{}: special file (device, fifo or socket) skipped",
                path.display()
            ));
            None
        }
    }

    /// Lists and walks the open directory `dir`, whose path is `path`.
    fn walk_dir(
        &mut self,
        dir: &OwnedFd,
        path: &Path,
        root: &Arc<SourceDir>,
        parent: Option<&Tree>,
        root_dev: u64,
        depth: usize,
    ) -> Vec<Entry> {
        let mut names: Vec<OsString> = Vec::new();
        let listed = rustix::fs::Dir::read_from(dir).map_err(io::Error::from);
        let listed = listed.and_then(|mut d| {
            while let Some(entry) = d.read() {
                let entry = entry.map_err(io::Error::from)?;
                let name = entry.file_name().to_bytes();
                if name != b"." && name != b".." {
                    names.push(OsStr::from_bytes(name).to_os_string());
                }
            }
            Ok(())
        });
        if let Err(e) = listed {
            self.pipe
                .warn(format!("{}: cannot list directory: {e}", path.display()));
            return vec![];
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if self.pipe.cancel.is_cancelled() {
                break;
            }
            let child = path.join(&name);
            if self.excludes.is_match(&child) {
                continue;
            }
            let meta = match beneath::stat_at(dir, &name) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.pipe.warn(format!("{}: {e}", child.display()));
                    continue;
                }
            };
            let at = At {
                dir,
                name: &name,
                path: &child,
                root,
            };
            if let Some(e) = self.entry(&at, &meta, parent, root_dev, depth) {
                out.push(e);
            }
        }
        out
    }

    /// Adds a source path below the root, creating the directories above it
    /// with their real metadata, as restic does. The path is opened from `/`
    /// by [`beneath::open_source`], so a symlink that a tenant placed on the
    /// way is refused, not followed.
    fn add_source_path(
        &mut self,
        root: &mut Vec<Entry>,
        path: &Path,
        parent_root: Option<&Tree>,
    ) -> Result<()> {
        let opened = beneath::open_source(path)?;
        let meta =
            beneath::stat_at(&opened.parent, &opened.name).map_err(|e| Error::io(path, e))?;
        let source_dir = Arc::new(SourceDir {
            fd: opened.parent,
            path: path.parent().unwrap_or(Path::new("/")).to_path_buf(),
        });
        let mut level = root;
        let mut parent_tree: Option<Tree> = parent_root.cloned();
        for (name, dir_meta) in &opened.above {
            let name = name.as_bytes();
            let pos = match level.iter().position(|e| e.node.name == name) {
                Some(p) => p,
                None => {
                    let mut node = node_from_meta(name, dir_meta, NodeKind::Dir);
                    node.subtree = Some(Id([0; 32]));
                    level.push(Entry {
                        node,
                        children: vec![],
                        job: None,
                    });
                    level.len() - 1
                }
            };
            if level[pos].node.kind != NodeKind::Dir {
                return Err(Error::Usage(format!(
                    "{} lies inside another path of the source",
                    path.display()
                )));
            }
            parent_tree = self.parent_subtree(parent_tree.as_ref(), name);
            level = &mut level[pos].children;
        }
        let name = opened.name.as_bytes();
        if level.iter().any(|e| e.node.name == name) {
            return Err(Error::Usage(format!(
                "{} is listed twice or inside another path of the source",
                path.display()
            )));
        }
        let at = At {
            dir: &source_dir.fd,
            name: &opened.name,
            path,
            root: &source_dir,
        };
        if let Some(e) = self.entry(&at, &meta, parent_tree.as_ref(), meta.dev, 0) {
            level.push(e);
        }
        Ok(())
    }
}

#[derive(Default)]
struct Counts {
    files: u64,
    dirs: u64,
    bytes: u64,
}

/// Turns walked entries into tree blobs, bottom-up; files whose read failed
/// are left out (a warning already says why).
fn build_tree(
    pipe: &Pipeline<'_>,
    entries: Vec<Entry>,
    results: &mut [Option<FileResult>],
    counts: &mut Counts,
) -> std::result::Result<Id, SinkError> {
    let mut nodes = Vec::with_capacity(entries.len());
    let mut entries = entries;
    entries.sort_by(|a, b| a.node.name.cmp(&b.node.name));
    for mut e in entries {
        match e.node.kind {
            NodeKind::Dir => {
                e.node.subtree = Some(build_tree(pipe, e.children, results, counts)?);
                counts.dirs += 1;
            }
            NodeKind::File => {
                if let Some(job) = e.job {
                    let Some(r) = results[job].take() else {
                        continue;
                    };
                    e.node.content = r.content;
                    e.node.sha256 = Some(r.sha256);
                    e.node.size = r.size;
                    e.node.changed_while_read = r.changed;
                }
                counts.files += 1;
                counts.bytes += e.node.size;
            }
            NodeKind::Symlink => {}
        }
        nodes.push(e.node);
    }
    pipe.store_tree(&Tree { nodes })
}

fn read_file(pipe: &Pipeline<'_>, job: &ReadJob) -> Option<FileResult> {
    if pipe.cancel.is_cancelled() {
        return None;
    }
    beneath::race_hook(&job.path);
    let rel = job.path.strip_prefix(&job.root.path).unwrap_or(&job.path);
    // O_NONBLOCK: a FIFO swapped in for the file must not stall the backup
    // (it has no effect on reading a regular file).
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
    let open = beneath::open_beneath(&job.root.fd, rel, flags, Mode::empty());
    let file = match open {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            pipe.warn(format!(
                "{}: vanished before it was read",
                job.path.display()
            ));
            return None;
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            pipe.warn(format!(
                "{}: a folder on its path became a symlink after the walk; skipped, not followed",
                job.path.display()
            ));
            return None;
        }
        Err(e) => {
            pipe.warn(format!("{}: cannot read: {e}", job.path.display()));
            return None;
        }
    };
    match beneath::fstat(&file) {
        Ok(m) if m.kind == FileType::RegularFile && (m.dev, m.ino) == (job.dev, job.ino) => {}
        Ok(_) => {
            pipe.warn(format!(
                "{}: replaced by another file between the walk and the read; skipped",
                job.path.display()
            ));
            return None;
        }
        Err(e) => {
            pipe.warn(format!("{}: cannot read: {e}", job.path.display()));
            return None;
        }
    }
    match pipe.store_stream(&file) {
        Ok((content, sha256, size)) => {
            let changed = match file.metadata() {
                Ok(m) => {
                    m.size() != job.size
                        || size != job.size
                        || (m.mtime(), m.mtime_nsec() as u32) != job.mtime
                        || (m.ctime(), m.ctime_nsec() as u32) != job.ctime
                }
                Err(_) => true,
            };
            if changed {
                pipe.warn(format!(
                    "{}: changed while it was read; stored as read",
                    job.path.display()
                ));
            }
            Some(FileResult {
                content,
                sha256,
                size,
                changed,
            })
        }
        Err(SinkError::Io(e)) => {
            pipe.warn(format!("{}: read failed: {e}", job.path.display()));
            None
        }
        Err(SinkError::PackerGone | SinkError::Cancelled) => None,
    }
}

/// Reads every job on all cores, largest file first.
fn read_files(pipe: &Pipeline<'_>, jobs: &[ReadJob]) -> Vec<Option<FileResult>> {
    crate::parallel::largest_first(jobs, |j| j.size, |j| read_file(pipe, j))
}

pub(crate) fn progress_bar(enabled: bool, label: String, total: u64) -> ProgressBar {
    if !enabled || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(label);
    bar
}

fn snapshot_job(
    repo: &Repository,
    config: &Config,
    opts: &BackupOptions,
    job: &Job<'_>,
    state: &mut TenantState,
    parent: Option<(Id, Snapshot)>,
) -> Result<SnapshotSummary> {
    let TenantState {
        lock,
        tenant,
        index,
        ..
    } = state;
    let started = Instant::now();
    let source_err = |message: String| Error::Source {
        source_name: job.source.name.clone(),
        tenant: job.tenant.clone(),
        message,
    };
    let time = opts.time.unwrap_or_else(jiff::Timestamp::now);
    let packer = Packer::start(repo.store.clone(), tenant.clone(), opts.pack_size);
    let mut pipe = Pipeline {
        tenant,
        index,
        new_ids: Mutex::default(),
        packer_tx: packer.sender(),
        params: repo.chunker_params(),
        compression: opts.compression,
        progress: ProgressBar::hidden(),
        warnings: Mutex::default(),
        cancel: &opts.cancel,
        read_rate: opts.read_rate.as_deref(),
    };
    let mut counts = Counts::default();
    let (root, paths, bytes_read) = match &job.source.kind {
        SourceKind::Paths(_) => {
            let mut excludes = GlobSetBuilder::new();
            for g in &job.source.exclude {
                excludes.add(globset::Glob::new(g).map_err(|e| source_err(e.to_string()))?);
            }
            let parent_root = parent.as_ref().and_then(|(id, s)| {
                repo.read_tree(tenant, index, &s.root)
                    .map_err(|e| {
                        pipe.warn(format!(
                            "parent snapshot {} unreadable ({e}); reading every file again",
                            id.short()
                        ))
                    })
                    .ok()
            });
            let mut walker = Walker {
                repo,
                pipe: &pipe,
                excludes: excludes.build().map_err(|e| source_err(e.to_string()))?,
                one_file_system: job.source.one_file_system,
                jobs: Vec::new(),
                parent_trees_failed: false,
            };
            let mut root = Vec::new();
            for p in &job.paths {
                walker.add_source_path(&mut root, p, parent_root.as_ref())?;
            }
            let jobs = std::mem::take(&mut walker.jobs);
            tracing::debug!(files = jobs.len(), elapsed = ?started.elapsed(), "walked");
            let total: u64 = jobs.iter().map(|j| j.size).sum();
            pipe.progress = progress_bar(
                opts.progress,
                format!("{}/{}", job.tenant, job.source.name),
                total,
            );
            let mut results = read_files(&pipe, &jobs);
            pipe.progress.finish_and_clear();
            tracing::debug!(elapsed = ?started.elapsed(), "files read");
            let bytes_read = results.iter().flatten().map(|r| r.size).sum();
            let root_id = build_tree(&pipe, root, &mut results, &mut counts)
                .map_err(|_| source_err("packer stopped".into()))?;
            let paths = job.paths.iter().map(|p| p.display().to_string()).collect();
            (root_id, paths, bytes_read)
        }
        SourceKind::Command { argv, stdout_file } => {
            let (file_node, bytes_read) =
                run_command(&pipe, argv, stdout_file, time, &config.key).map_err(&source_err)?;
            counts.files = 1;
            counts.bytes = file_node.size;
            let root = pipe
                .store_tree(&Tree {
                    nodes: vec![file_node],
                })
                .map_err(|_| source_err("packer stopped".into()))?;
            (root, vec![format!("/{stdout_file}")], bytes_read)
        }
    };
    let warnings = std::mem::take(&mut *pipe.warnings.lock().expect("not poisoned"));
    drop(pipe);
    tracing::debug!(elapsed = ?started.elapsed(), "trees built");
    let (packs, stats) = packer.finish()?;
    // The packs uploaded stay unreferenced (check reports them as
    // information); no index or snapshot names a part-read source.
    opts.cancel.check()?;
    tracing::debug!(elapsed = ?started.elapsed(), "packs written");
    if !packs.is_empty() {
        repo.write_index(
            tenant,
            &crate::format::index::IndexBody {
                packs: packs.clone(),
            },
        )?;
    }
    let snapshot = Snapshot {
        time_secs: time.as_second(),
        time_nanos: time.subsec_nanosecond() as u32,
        host: config.agent.host.clone(),
        tenant: job.tenant.clone(),
        source: job.source.name.clone(),
        category: job.source.category.clone(),
        paths,
        tags: opts.tags.clone(),
        root,
        parent: parent.map(|(id, _)| id),
        files: counts.files,
        dirs: counts.dirs,
        bytes: counts.bytes,
        bytes_read,
        bytes_added: stats.plain_bytes,
        bytes_stored: stats.stored_bytes,
        warnings,
        program: format!("gallra {}", env!("CARGO_PKG_VERSION")),
    };
    lock.check()?;
    let id = repo.write_snapshot(tenant, &snapshot)?;
    for p in &packs {
        index.add_pack(p);
    }
    Ok(SnapshotSummary {
        id,
        snapshot,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Whether a variable of gallra's environment is one a command source must
/// not see: gallra's own settings and secrets, the cloud SDKs' credentials
/// (which object_store reads from the environment), and systemd's
/// credentials folder, which holds the key. A dump tool's own secrets
/// (`MYSQL_PWD`, `PGPASSWORD`) pass through.
fn is_withheld_from_commands(name: &str, key: &crate::crypto::KeySource) -> bool {
    const PREFIXES: &[&str] = &["GALLRA_", "AWS_", "AZURE_", "GOOGLE_", "GCS_", "GCP_"];
    PREFIXES.iter().any(|p| name.starts_with(p))
        || name == "CREDENTIALS_DIRECTORY"
        || matches!(key, crate::crypto::KeySource::PassphraseEnv(v) if v == name)
}

/// How long a command source is given to exit after SIGTERM before its
/// process group is killed.
const COMMAND_TERM_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends the process group `pgid`: SIGTERM, then SIGKILL to whatever is left
/// after the grace period.
fn end_process_group(pgid: i32, child: &mut std::process::Child) {
    // SAFETY: kill(2) with a negative pid signals that process group; it has
    // no memory effects.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let deadline = Instant::now() + COMMAND_TERM_GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: as above; the group may be gone already (ESRCH is fine).
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Runs a command source, streaming its stdout into the repository.
///
/// The command runs in a process group of its own, so that a stop of gallra
/// ends the whole pipeline a `sh -c` may start (a watcher ends the group
/// when the backup is cancelled, even while the command is silent), and
/// with `PR_SET_PDEATHSIG`, so that a gallra killed with SIGKILL takes the
/// command with it instead of leaving a dump running without an owner.
fn run_command(
    pipe: &Pipeline<'_>,
    argv: &[String],
    stdout_file: &str,
    time: jiff::Timestamp,
    key: &crate::crypto::KeySource,
) -> std::result::Result<(Node, u64), String> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| is_withheld_from_commands(n, key))
        {
            cmd.env_remove(&name);
        }
    }
    // SAFETY: the closure runs in the forked child before exec and calls
    // only prctl and getppid, which are async-signal-safe.
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                return Err(io::Error::other("gallra ended while starting the command"));
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", argv[0]))?;
    let pgid = child.id() as i32;
    let mut stderr = child.stderr.take().expect("piped");
    let stderr_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    // A cancelled backup must not wait for a silent command: this watcher
    // ends the group, which closes stdout and so ends the read below.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        let cancel = pipe.cancel.clone();
        std::thread::spawn(move || {
            let step = std::time::Duration::from_millis(100);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if cancel.is_cancelled() {
                    // SAFETY: as in end_process_group.
                    unsafe { libc::kill(-pgid, libc::SIGTERM) };
                    // A command that ignores SIGTERM (`trap '' TERM`) gets
                    // SIGKILL after the grace period (the group id stays the
                    // command's while it or any member of its group lives).
                    let deadline = Instant::now() + COMMAND_TERM_GRACE;
                    while Instant::now() < deadline {
                        if done.load(std::sync::atomic::Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(step);
                    }
                    // SAFETY: as above.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(step);
            }
        })
    };
    let stdout = child.stdout.take().expect("piped");
    let stored = pipe.store_stream(stdout);
    if stored.is_err() {
        // Whatever stopped the read (a cancel, a full packer queue), the
        // command must not run on without a reader.
        end_process_group(pgid, &mut child);
    }
    let status = child.wait().map_err(|e| e.to_string());
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    // Children of the command that outlive it (a backgrounded helper) are
    // not left behind holding its pipes.
    // SAFETY: as in end_process_group; ESRCH when the group is empty.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let status = status?;
    let err_text = stderr_thread.join().unwrap_or_default();
    let (content, sha256, size) = match stored {
        Ok(v) => v,
        Err(SinkError::Io(e)) => return Err(format!("reading the command's output: {e}")),
        Err(SinkError::PackerGone) => return Err("packer stopped".into()),
        Err(SinkError::Cancelled) => return Err("stopped: the agent is shutting down".into()),
    };
    if !status.success() {
        let text = String::from_utf8_lossy(&err_text);
        let tail: String = text
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        return Err(format!(
            "command {:?} failed ({status}){}; no snapshot written",
            argv[0],
            if tail.is_empty() {
                String::new()
            } else {
                format!(": {tail}")
            }
        ));
    }
    // SAFETY: geteuid and getegid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    Ok((
        Node {
            name: stdout_file.as_bytes().to_vec(),
            kind: NodeKind::File,
            mode: 0o600,
            uid,
            gid,
            mtime_secs: time.as_second(),
            mtime_nanos: time.subsec_nanosecond() as u32,
            ctime_secs: time.as_second(),
            ctime_nanos: time.subsec_nanosecond() as u32,
            dev: 0,
            ino: 0,
            nlink: 1,
            size,
            content,
            sha256: Some(sha256),
            subtree: None,
            link_target: vec![],
            changed_while_read: false,
        },
        size,
    ))
}
