//! Restore, ls and dump.
//!
//! Restore never writes outside its target directory: tree entries are
//! validated when decoded (no `/`, `..`, `.` or NUL), and every entry is
//! created, removed, chowned and chmodded relative to a descriptor of its
//! directory opened beneath the target without following any link
//! ([`RestoreRoot`]), so a symlink swapped in mid-restore is refused. A file whose data
//! cannot be read is reported, naming the pack, and the others go on.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::beneath;
use crate::error::{Error, Result};
use crate::format::Id;
use crate::format::Kind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::repo::{Index, Repository, Tenant};

/// An opened snapshot: its tenant, index and root tree.
pub struct OpenSnapshot<'a> {
    pub repo: &'a Repository,
    pub tenant: std::sync::Arc<Tenant>,
    pub id: Id,
    pub snapshot: Snapshot,
    pub index: Index,
}

impl<'a> OpenSnapshot<'a> {
    pub fn open(repo: &'a Repository, id_prefix: &str) -> Result<Self> {
        let (tenant, id) = repo.find_snapshot(id_prefix)?;
        let snapshot = repo.read_snapshot(&tenant, &id)?;
        let index = repo.load_index(&tenant)?;
        Ok(OpenSnapshot {
            repo,
            tenant,
            id,
            snapshot,
            index,
        })
    }

    pub fn tree(&self, id: &Id) -> Result<Tree> {
        self.repo.read_tree(&self.tenant, &self.index, id)
    }

    /// Finds the node at an absolute path inside the snapshot; `None` for "/".
    pub fn lookup(&self, path: &str) -> Result<Option<Node>> {
        let mut tree = self.tree(&self.snapshot.root)?;
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        if comps.is_empty() {
            return Ok(None);
        }
        for (i, comp) in comps.iter().enumerate() {
            let node = tree.find(comp.as_bytes()).cloned().ok_or_else(|| {
                Error::Usage(format!("{path}: not in snapshot {}", self.id.short()))
            })?;
            if i + 1 == comps.len() {
                return Ok(Some(node));
            }
            let sub = node.subtree.ok_or_else(|| {
                Error::Usage(format!("{path}: not in snapshot {}", self.id.short()))
            })?;
            tree = self.tree(&sub)?;
        }
        unreachable!("loop returns on the last component")
    }

    /// Writes one file's content to `out`; with `hash`, returns its SHA-256.
    pub fn write_content(
        &self,
        node: &Node,
        out: &mut dyn Write,
        hash: bool,
    ) -> Result<Option<[u8; 32]>> {
        self.write_content_from(node, out, hash, &HashMap::new(), None)
    }

    /// As `write_content`, taking blobs from `prefetched` where it has them;
    /// `first_byte` is set when the first content byte is written.
    fn write_content_from(
        &self,
        node: &Node,
        out: &mut dyn Write,
        hash: bool,
        prefetched: &HashMap<Id, Vec<u8>>,
        first_byte: Option<&OnceLock<Instant>>,
    ) -> Result<Option<[u8; 32]>> {
        let mut sha = hash.then(Sha256::new);
        let mut emit = |data: &[u8]| -> Result<()> {
            if let Some(sha) = &mut sha {
                sha.update(data);
            }
            if let Some(at) = first_byte
                && !data.is_empty()
            {
                at.get_or_init(Instant::now);
            }
            out.write_all(data)
                .map_err(|e| Error::io(node.name_lossy(), e))
        };
        if self.repo.store.is_local() {
            for id in &node.content {
                match prefetched.get(id) {
                    Some(data) => emit(data)?,
                    None => emit(&self.repo.read_blob(
                        &self.tenant,
                        &self.index,
                        id,
                        Kind::DataBlob,
                    )?)?,
                }
            }
        } else {
            // Over the network every request is a round trip: read a window
            // of the file's blobs at once, adjacent ones in one request.
            for window in node.content.chunks(REMOTE_WINDOW) {
                let missing: Vec<Id> = window
                    .iter()
                    .filter(|id| !prefetched.contains_key(id))
                    .copied()
                    .collect();
                let read =
                    self.repo
                        .read_blobs(&self.tenant, &self.index, &missing, Kind::DataBlob)?;
                let read: HashMap<&Id, &Vec<u8>> = missing.iter().zip(&read).collect();
                for id in window {
                    match prefetched.get(id) {
                        Some(data) => emit(data)?,
                        None => emit(read[id])?,
                    }
                }
            }
        }
        Ok(sha.map(|s| s.finalize().into()))
    }
}

/// From a remote target: jobs run at once, the blobs of a big file read at
/// once, and the most bytes of small files whose blobs are read together.
/// Together they bound memory to about `REMOTE_JOBS` × 8 MiB.
const REMOTE_JOBS: usize = 8;
const REMOTE_WINDOW: usize = 16;
const REMOTE_GROUP_BYTES: u64 = 8 << 20;

/// The files to restore, as jobs. From a local target, one file each. From a
/// remote one, small files whose first blob is in the same pack are grouped,
/// so that one request brings the blobs of many files: a tenant of a few
/// thousand small files is otherwise a few thousand round trips.
fn restore_jobs(
    snap: &OpenSnapshot<'_>,
    planned: &[Planned],
    files: Vec<usize>,
) -> Vec<Vec<usize>> {
    if snap.repo.store.is_local() {
        return files.into_iter().map(|i| vec![i]).collect();
    }
    let mut jobs = Vec::new();
    let mut by_pack: HashMap<Id, (Vec<usize>, u64)> = HashMap::new();
    for i in files {
        let node = &planned[i].node;
        let pack = node
            .content
            .first()
            .and_then(|id| snap.index.get(id))
            .map(|loc| snap.index.pack_id(loc));
        match pack {
            Some(pack) if node.size < REMOTE_GROUP_BYTES / 4 => {
                let group = by_pack.entry(pack).or_default();
                if group.1 + node.size > REMOTE_GROUP_BYTES {
                    jobs.push(std::mem::take(&mut group.0));
                    group.1 = 0;
                }
                group.0.push(i);
                group.1 += node.size;
            }
            _ => jobs.push(vec![i]),
        }
    }
    jobs.extend(
        by_pack
            .into_values()
            .map(|(g, _)| g)
            .filter(|g| !g.is_empty()),
    );
    jobs
}

/// One line of `ls`.
#[derive(Debug, Clone)]
pub struct ListEntry {
    pub path: String,
    pub node: Node,
}

pub fn ls(snap: &OpenSnapshot<'_>, path: Option<&str>) -> Result<Vec<ListEntry>> {
    let base = path.unwrap_or("/").trim_end_matches('/').to_string();
    let mut out = Vec::new();
    let tree_id = match snap.lookup(&base)? {
        None => Some(snap.snapshot.root),
        Some(node) => {
            out.push(ListEntry {
                path: if base.is_empty() {
                    "/".into()
                } else {
                    base.clone()
                },
                node: node.clone(),
            });
            node.subtree
        }
    };
    if let Some(id) = tree_id {
        list_into(snap, &id, &base, &mut out)?;
    }
    Ok(out)
}

fn list_into(
    snap: &OpenSnapshot<'_>,
    id: &Id,
    prefix: &str,
    out: &mut Vec<ListEntry>,
) -> Result<()> {
    for node in snap.tree(id)?.nodes {
        let path = format!("{prefix}/{}", node.name_lossy());
        let sub = node.subtree;
        out.push(ListEntry {
            path: path.clone(),
            node,
        });
        if let Some(sub) = sub {
            list_into(snap, &sub, &path, out)?;
        }
    }
    Ok(())
}

pub fn dump(snap: &OpenSnapshot<'_>, path: &str, out: &mut dyn Write) -> Result<u64> {
    let node = snap
        .lookup(path)?
        .ok_or_else(|| Error::Usage("dump needs a file path, not /".into()))?;
    if node.kind != NodeKind::File {
        return Err(Error::Usage(format!("{path} is not a regular file")));
    }
    snap.write_content(&node, out, false)?;
    Ok(node.size)
}

pub struct RestoreOptions {
    pub to: PathBuf,
    /// Restore only this path of the snapshot (and what is below it).
    pub path: Option<String>,
    pub verify: bool,
}

/// What a restore did, as `restore --json` prints it.
#[derive(Debug, Default, Serialize)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub verified: u64,
    /// One per file or entry that could not be restored.
    pub errors: Vec<RestoreFailure>,
    pub seconds: f64,
    /// Seconds from the start until the first byte of file content was
    /// written; `None` if no file had content. Not in `restore --json`,
    /// which has never had it: the drill records it, where it is a figure.
    #[serde(skip)]
    pub first_byte: Option<f64>,
}

/// An entry that could not be restored, set or verified.
#[derive(Debug, Clone)]
pub struct RestoreFailure {
    /// Where it was to be restored.
    pub path: PathBuf,
    /// The store object (a pack, the index) whose read failed, if that was
    /// the cause.
    pub object: Option<String>,
    /// What went wrong; names the object, never the path again.
    pub message: String,
}

impl RestoreFailure {
    fn new(path: &Path, e: Error) -> Self {
        let object = e.object().map(str::to_string);
        let message = match e {
            Error::Io { path: p, source } if p == path => source.to_string(),
            Error::Restore(m) => m,
            e => e.to_string(),
        };
        RestoreFailure {
            path: path.to_path_buf(),
            object,
            message,
        }
    }

    fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        RestoreFailure {
            path: path.to_path_buf(),
            object: None,
            message: e.to_string(),
        }
    }
}

/// `restore --json` lists each failure as its line, `path: message`.
impl Serialize for RestoreFailure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for RestoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// One entry of a snapshot and the path it is restored to.
pub struct Planned {
    pub path: PathBuf,
    pub node: Node,
}

/// Collects what to restore, depth first, directories before their content.
/// Collects what to restore, depth first, directories before their content;
/// a tree that cannot be read is named with its directory (below `to`).
fn plan(
    snap: &OpenSnapshot<'_>,
    tree: &Id,
    to: &Path,
    dir: &Path,
    out: &mut Vec<Planned>,
) -> Result<()> {
    let nodes = snap.tree(tree).map_err(|e| Error::Tree {
        dir: format!("/{}", dir.strip_prefix(to).unwrap_or(dir).display()),
        tree: tree.to_hex(),
        source: Box::new(e),
    })?;
    for node in nodes.nodes {
        let path = dir.join(std::ffi::OsStr::from_bytes(&node.name));
        let sub = node.subtree;
        out.push(Planned {
            path: path.clone(),
            node,
        });
        if let Some(sub) = sub {
            plan(snap, &sub, to, &path, out)?;
        }
    }
    Ok(())
}

/// The restore's target folder, held open: every entry is created, removed,
/// chowned and chmodded relative to a directory descriptor opened beneath it
/// without following links ([`beneath::open_parent_beneath`]), so that a
/// folder a tenant swaps for a symlink mid-restore (its own tree restored
/// over as root) makes that entry fail instead of sending the write, the
/// unlink or the chown outside `--to`.
struct RestoreRoot {
    fd: OwnedFd,
    base: PathBuf,
}

impl RestoreRoot {
    fn open(to: &Path) -> io::Result<RestoreRoot> {
        Ok(RestoreRoot {
            fd: beneath::open_dir_creating(to).map_err(io::Error::other)?,
            base: to.to_path_buf(),
        })
    }

    fn rel<'p>(&self, path: &'p Path) -> &'p Path {
        path.strip_prefix(&self.base).unwrap_or(path)
    }

    /// The open directory holding `path`, and its name there.
    fn parent<'p>(&self, path: &'p Path) -> io::Result<(OwnedFd, &'p OsStr)> {
        beneath::open_parent_beneath(&self.fd, self.rel(path)).map_err(refused_link)
    }

    /// Creates `path` as a directory (0700 until its own mode is set at the
    /// end), or accepts an existing real directory; refuses a symlink or
    /// other file in its place. Returns whether it was created.
    fn ensure_dir(&self, path: &Path) -> io::Result<bool> {
        let (dir, name) = self.parent(path)?;
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => {
                if beneath::stat_at(&dir, name)?.is_dir() {
                    Ok(false)
                } else {
                    Err(io::Error::other(
                        "exists and is not a directory (a symlink is never followed)",
                    ))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a non-directory entry that stands where we restore, so that
    /// nothing is written through it.
    fn clear_non_dir(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
        match beneath::stat_at(dir, name) {
            Ok(m) if m.is_dir() => Err(io::Error::other("a directory stands in the way")),
            Ok(_) => Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the file `path` anew, readable back for verification.
    fn create_file(&self, path: &Path) -> io::Result<(std::fs::File, OwnedFd)> {
        let (dir, name) = self.parent(path)?;
        Self::clear_non_dir(&dir, name)?;
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o600))?;
        Ok((std::fs::File::from(fd), dir))
    }

    fn remove_file(dir: &OwnedFd, path: &Path) {
        if let Some(name) = path.file_name() {
            let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
        }
    }

    fn hard_link(&self, first: &Path, path: &Path) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(first)?;
        let (dir, name) = self.parent(path)?;
        Self::clear_non_dir(&dir, name)?;
        // No AT_SYMLINK_FOLLOW: a link swapped in for the first name links
        // the link, never what it points to.
        Ok(rustix::fs::linkat(
            &from_dir,
            from_name,
            &dir,
            name,
            AtFlags::empty(),
        )?)
    }

    fn symlink(&self, target: &OsStr, path: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        Self::clear_non_dir(&dir, name)?;
        Ok(rustix::fs::symlinkat(target, &dir, name)?)
    }

    /// Sets owner (as root), mode and mtime of a directory, through a
    /// descriptor of the directory itself.
    fn set_dir_meta(&self, path: &Path, node: &Node, is_root: bool) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let fd = beneath::open_dir_at(&dir, name).map_err(refused_link)?;
        set_meta_fd(&fd, node, is_root)
    }

    /// Sets owner (as root) and mtime of a symlink itself (a symlink's mode
    /// means nothing on Linux).
    fn set_symlink_meta(&self, path: &Path, node: &Node, is_root: bool) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        if beneath::stat_at(&dir, name)?.kind != rustix::fs::FileType::Symlink {
            return Err(io::Error::other("no longer the symlink restored"));
        }
        if is_root {
            rustix::fs::chownat(
                &dir,
                name,
                Some(uid(node)),
                Some(gid(node)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        rustix::fs::utimensat(&dir, name, &times(node), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }
}

/// ELOOP (or ENOTDIR, for a link where a directory was opened) from a
/// lookup beneath the target means a symlink stood on the way.
fn refused_link(e: io::Error) -> io::Error {
    if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) {
        io::Error::other("a symlink or file stands where a folder on its path was; not followed")
    } else {
        e
    }
}

fn uid(node: &Node) -> rustix::fs::Uid {
    // Unchecked: a recorded uid is restored as it was, whatever it is.
    rustix::fs::Uid::from_raw_unchecked(node.uid)
}

fn gid(node: &Node) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw_unchecked(node.gid)
}

fn times(node: &Node) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: node.mtime_secs,
        tv_nsec: node.mtime_nanos.into(),
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Owner (as root), then mode (chown clears set-id bits), then mtime, all
/// on the descriptor.
fn set_meta_fd(fd: &impl AsFd, node: &Node, is_root: bool) -> io::Result<()> {
    if is_root {
        rustix::fs::fchown(fd, Some(uid(node)), Some(gid(node)))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(node.mode))?;
    rustix::fs::futimens(fd, &times(node))?;
    Ok(())
}

fn write_file(
    snap: &OpenSnapshot<'_>,
    root: &RestoreRoot,
    p: &Planned,
    verify: bool,
    prefetched: &HashMap<Id, Vec<u8>>,
    first_byte: &OnceLock<Instant>,
    is_root: bool,
) -> Result<bool> {
    beneath::race_hook(&p.path);
    let (file, dir) = root
        .create_file(&p.path)
        .map_err(|e| Error::io(&p.path, e))?;
    let mut out = io::BufWriter::with_capacity(1 << 20, file);
    let written = snap.write_content_from(&p.node, &mut out, verify, prefetched, Some(first_byte));
    let flushed = out
        .into_inner()
        .map_err(|e| Error::io(&p.path, e.into_error()));
    let (sha, mut file) = match (written, flushed) {
        (Ok(sha), Ok(file)) => (sha, file),
        (Err(e), _) | (_, Err(e)) => {
            RestoreRoot::remove_file(&dir, &p.path);
            return Err(e);
        }
    };
    let verified = match sha {
        None => false,
        Some(sha) => {
            let expected = p
                .node
                .sha256
                .ok_or_else(|| Error::Restore("no checksum recorded".into()))?;
            if sha != expected {
                return Err(Error::Restore(
                    "content does not match the recorded SHA-256".into(),
                ));
            }
            // Read back what landed on disk, not what we meant to write:
            // through the same descriptor, so it is the file written.
            file.seek(io::SeekFrom::Start(0))
                .map_err(|e| Error::io(&p.path, e))?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).map_err(|e| Error::io(&p.path, e))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            if <[u8; 32]>::from(h.finalize()) != expected {
                return Err(Error::Restore(
                    "file on disk does not match the recorded SHA-256".into(),
                ));
            }
            true
        }
    };
    set_meta_fd(&file, &p.node, is_root)
        .map_err(|e| Error::Restore(format!("setting metadata: {e}")))?;
    Ok(verified)
}

pub fn restore(snap: &OpenSnapshot<'_>, opts: &RestoreOptions) -> Result<RestoreReport> {
    let started = Instant::now();
    let planned = plan_restore(snap, opts)?;
    Ok(restore_planned(snap, opts, &planned, started))
}

/// Creates `opts.to` and lists what to restore into it, directories before
/// their content. Reads every tree on the way: a tree that cannot be read
/// fails the whole restore, naming it.
pub fn plan_restore(snap: &OpenSnapshot<'_>, opts: &RestoreOptions) -> Result<Vec<Planned>> {
    // `--to` is the operator's, but folders on its way may be a tenant's.
    beneath::open_dir_creating(&opts.to)?;
    let mut planned = Vec::new();
    match opts
        .path
        .as_deref()
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty())
    {
        None => plan(snap, &snap.snapshot.root, &opts.to, &opts.to, &mut planned)?,
        Some(sub) => {
            // Create the directories above the requested path, then it.
            let comps: Vec<&str> = sub.split('/').filter(|c| !c.is_empty()).collect();
            let mut tree = snap.tree(&snap.snapshot.root)?;
            let mut dir = opts.to.clone();
            for (i, comp) in comps.iter().enumerate() {
                let node = tree.find(comp.as_bytes()).cloned().ok_or_else(|| {
                    Error::Usage(format!("{sub}: not in snapshot {}", snap.id.short()))
                })?;
                dir = dir.join(comp);
                let sub_id = node.subtree;
                planned.push(Planned {
                    path: dir.clone(),
                    node,
                });
                match sub_id {
                    Some(id) if i + 1 < comps.len() => tree = snap.tree(&id)?,
                    Some(id) => plan(snap, &id, &opts.to, &dir, &mut planned)?,
                    None if i + 1 < comps.len() => {
                        return Err(Error::Usage(format!(
                            "{sub}: not in snapshot {}",
                            snap.id.short()
                        )));
                    }
                    None => {}
                }
            }
        }
    }

    Ok(planned)
}

/// Restores what `plan_restore` listed; `started` is when the restore
/// began, for the times in the report.
pub fn restore_planned(
    snap: &OpenSnapshot<'_>,
    opts: &RestoreOptions,
    planned: &[Planned],
    started: Instant,
) -> RestoreReport {
    let mut report = RestoreReport::default();
    let root = match RestoreRoot::open(&opts.to) {
        Ok(root) => root,
        Err(e) => {
            report.errors.push(RestoreFailure::io(&opts.to, e));
            report.seconds = started.elapsed().as_secs_f64();
            return report;
        }
    };
    // The folders above the snapshot's source paths (`/var`, `/var/www` of
    // `/var/www/acme`) are recorded so that a restore into an empty folder
    // recreates them as they were; one that already exists (a restore to
    // `/`) is the system's, not the snapshot's, and is left as it is.
    let above_sources: HashSet<PathBuf> = snap
        .snapshot
        .paths
        .iter()
        .flat_map(|p| Path::new(p).ancestors().skip(1).map(Path::to_path_buf))
        .map(|a| opts.to.join(a.strip_prefix("/").unwrap_or(&a)))
        .collect();
    let mut left_as_found: HashSet<usize> = HashSet::new();
    // Directories first, in order, so each parent exists and is checked.
    let mut failed_dirs: Vec<PathBuf> = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        if p.node.kind != NodeKind::Dir || failed_dirs.iter().any(|d| p.path.starts_with(d)) {
            continue;
        }
        match root.ensure_dir(&p.path) {
            Ok(created) => {
                report.dirs += 1;
                if !created && above_sources.contains(&p.path) {
                    left_as_found.insert(i);
                }
            }
            Err(e) => {
                report.errors.push(RestoreFailure::io(&p.path, e));
                failed_dirs.push(p.path.clone());
            }
        }
    }
    let under_failed = |p: &Path| failed_dirs.iter().any(|d| p.starts_with(d));

    // Hard links: the first name of an inode carries the content, the
    // others become links to it.
    let mut first_of_inode: HashMap<(u64, u64), usize> = HashMap::new();
    let mut links: Vec<(usize, usize)> = Vec::new();
    let mut files: Vec<usize> = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        if p.node.kind != NodeKind::File || under_failed(&p.path) {
            continue;
        }
        if p.node.nlink > 1 && p.node.ino != 0 {
            if let Some(&first) = first_of_inode.get(&(p.node.dev, p.node.ino)) {
                links.push((first, i));
                continue;
            }
            first_of_inode.insert((p.node.dev, p.node.ino), i);
        }
        files.push(i);
    }

    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    let errors = Mutex::new(Vec::new());
    let first_byte = OnceLock::new();
    // A file's own metadata is set by the worker that wrote it; only
    // directories (whose mtimes the writes change) wait for the end.
    let jobs = restore_jobs(snap, planned, files);
    let restore_job = |job: &Vec<usize>| -> Option<Vec<(usize, bool)>> {
        // The blobs of a group of small files, in as few requests as their
        // places in the packs allow.
        let mut prefetched = HashMap::new();
        if job.len() > 1 {
            let ids: Vec<Id> = job
                .iter()
                .flat_map(|&i| planned[i].node.content.iter().copied())
                .collect();
            match snap
                .repo
                .read_blobs(&snap.tenant, &snap.index, &ids, Kind::DataBlob)
            {
                Ok(blobs) => prefetched = ids.into_iter().zip(blobs).collect(),
                // Each file then reads its own, and the damaged one is named.
                Err(e) => tracing::debug!("grouped read failed, reading file by file: {e}"),
            }
        }
        let mut done = Vec::new();
        for &i in job {
            let p = &planned[i];
            let res = write_file(
                snap,
                &root,
                p,
                opts.verify,
                &prefetched,
                &first_byte,
                is_root,
            );
            match res {
                Ok(verified) => done.push((i, verified)),
                Err(e) => errors
                    .lock()
                    .expect("not poisoned")
                    .push(RestoreFailure::new(&p.path, e)),
            }
        }
        Some(done)
    };
    let job_size = |job: &Vec<usize>| job.iter().map(|&i| planned[i].node.size).sum::<u64>();
    let done: Vec<(usize, bool)> = if snap.repo.store.is_local() {
        crate::parallel::largest_first(&jobs, job_size, restore_job)
    } else {
        crate::parallel::largest_first_waiting(&jobs, job_size, restore_job, REMOTE_JOBS)
    }
    .into_iter()
    .flatten()
    .flatten()
    .collect();
    report
        .errors
        .extend(errors.into_inner().expect("not poisoned"));
    let mut restored = vec![false; planned.len()];
    for &(i, verified) in &done {
        restored[i] = true;
        report.files += 1;
        report.bytes += planned[i].node.size;
        report.verified += u64::from(verified);
    }
    for (first, i) in links {
        if !restored[first] {
            // The first name's own failure is reported with its path.
            let why = "not linked: the first name of its inode could not be restored";
            report
                .errors
                .push(RestoreFailure::io(&planned[i].path, why));
            continue;
        }
        match root.hard_link(&planned[first].path, &planned[i].path) {
            Ok(()) => {
                restored[i] = true;
                report.files += 1;
            }
            Err(e) => report.errors.push(RestoreFailure::io(&planned[i].path, e)),
        }
    }
    for (i, p) in planned.iter().enumerate() {
        if p.node.kind != NodeKind::Symlink || under_failed(&p.path) {
            continue;
        }
        let target = std::ffi::OsStr::from_bytes(&p.node.link_target);
        match root.symlink(target, &p.path) {
            Ok(()) => {
                restored[i] = true;
                report.symlinks += 1;
            }
            Err(e) => report.errors.push(RestoreFailure::io(&p.path, e)),
        }
    }

    // Directories and symlinks last, deepest first, so that creating their
    // entries does not bump a directory's mtime after it was set.
    for (i, p) in planned.iter().enumerate().rev() {
        let set = match p.node.kind {
            NodeKind::Dir if !under_failed(&p.path) && !left_as_found.contains(&i) => {
                root.set_dir_meta(&p.path, &p.node, is_root)
            }
            NodeKind::Symlink if restored[i] => root.set_symlink_meta(&p.path, &p.node, is_root),
            _ => continue,
        };
        if let Err(e) = set {
            let why = format!("setting metadata: {e}");
            report.errors.push(RestoreFailure::io(&p.path, why));
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.first_byte = first_byte
        .get()
        .map(|at| at.duration_since(started).as_secs_f64());
    report
}
