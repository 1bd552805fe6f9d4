//! The walk of a path source: sequential, metadata only, every directory
//! opened beneath the one above it and held while its entries are read, so
//! that a tenant who swaps a folder for a symlink is not followed; a file
//! unchanged since the parent snapshot reuses its content list. Then, once
//! the files are read, the walked entries become tree blobs.

use globset::GlobSet;
use rustix::fd::OwnedFd;
use rustix::fs::{FileType, Mode, OFlags};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use super::pipeline::{Pipeline, SinkError};
use super::read::{FileResult, ReadJob, SourceDir};
use crate::beneath::{self, Meta};
use crate::error::{Error, Result};
use crate::format::Id;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::repo::Repository;

/// A walked entry: its node (metadata) and, for a directory, its children.
pub(super) struct Entry {
    node: Node,
    children: Vec<Entry>,
    /// Index into the read jobs for a file whose content must be read.
    job: Option<usize>,
}

impl Entry {
    /// An entry with no children and nothing to read.
    fn leaf(node: Node) -> Entry {
        Entry {
            node,
            children: vec![],
            job: None,
        }
    }
}

pub(super) struct Walker<'a> {
    pub(super) repo: &'a Repository,
    pub(super) pipe: &'a Pipeline<'a>,
    pub(super) excludes: GlobSet,
    pub(super) one_file_system: bool,
    pub(super) jobs: Vec<ReadJob>,
    pub(super) parent_trees_failed: bool,
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
        if meta.is_dir() {
            self.dir_entry(at, meta, parent, root_dev, depth)
        } else if meta.kind == FileType::RegularFile {
            Some(self.file_entry(at, meta, parent))
        } else if meta.kind == FileType::Symlink {
            self.symlink_entry(at, meta)
        } else {
            self.pipe.warn(format!(
                "{}: special file (device, fifo or socket) skipped",
                at.path.display()
            ));
            None
        }
    }

    /// A directory, opened beneath its parent and walked, unless it is a
    /// cache, on another file system (with `one_file_system`) or too deep.
    fn dir_entry(
        &mut self,
        at: &At<'_>,
        meta: &Meta,
        parent: Option<&Tree>,
        root_dev: u64,
        depth: usize,
    ) -> Option<Entry> {
        let name = at.name.as_bytes();
        let path = at.path;
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
    }

    /// A file: its content list reused from the parent snapshot when
    /// nothing says it changed, else a read job for it.
    fn file_entry(&mut self, at: &At<'_>, meta: &Meta, parent: Option<&Tree>) -> Entry {
        let name = at.name.as_bytes();
        let path = at.path;
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
            return Entry::leaf(node);
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
        Entry {
            job: Some(self.jobs.len() - 1),
            ..Entry::leaf(node)
        }
    }

    fn symlink_entry(&mut self, at: &At<'_>, meta: &Meta) -> Option<Entry> {
        let name = at.name.as_bytes();
        let path = at.path;
        let mut node = node_from_meta(name, meta, NodeKind::Symlink);
        match rustix::fs::readlinkat(at.dir, at.name, Vec::new()) {
            Ok(target) => node.link_target = target.into_bytes(),
            Err(e) => {
                self.pipe
                    .warn(format!("{}: cannot read symlink: {e}", path.display()));
                return None;
            }
        }
        Some(Entry::leaf(node))
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
    pub(super) fn add_source_path(
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
pub(super) struct Counts {
    pub(super) files: u64,
    pub(super) dirs: u64,
    pub(super) bytes: u64,
}

/// Turns walked entries into tree blobs, bottom-up; files whose read failed
/// are left out (a warning already says why).
pub(super) fn build_tree(
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
