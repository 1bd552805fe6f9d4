//! Reading the files the walk found, on all cores: each opened beneath its
//! source's held directory, checked to be the file the walk saw, and
//! streamed through the pipeline.

use rustix::fd::OwnedFd;
use rustix::fs::{FileType, Mode, OFlags};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::pipeline::{Pipeline, SinkError};
use crate::beneath;
use crate::format::Id;

/// A file to read, found by the walk: where it is (beneath a held
/// directory) and what the walk saw there.
pub(super) struct ReadJob {
    pub(super) root: Arc<SourceDir>,
    /// The file's full path, for messages and excludes; it is opened as the
    /// part below `root.path`, beneath `root.fd`.
    pub(super) path: PathBuf,
    pub(super) size: u64,
    pub(super) mtime: (i64, u32),
    pub(super) ctime: (i64, u32),
    pub(super) dev: u64,
    pub(super) ino: u64,
}

/// The directory holding one source path's last component, held open for
/// the whole backup: every file of that source path is opened beneath it.
pub(super) struct SourceDir {
    pub(super) fd: OwnedFd,
    pub(super) path: PathBuf,
}

pub(super) struct FileResult {
    pub(super) content: Vec<Id>,
    pub(super) sha256: [u8; 32],
    pub(super) size: u64,
    pub(super) changed: bool,
}

fn read_file(pipe: &Pipeline<'_>, job: &ReadJob) -> Option<FileResult> {
    if pipe.cancel.is_cancelled() {
        return None;
    }
    let file = match open_walked(job) {
        Ok(f) => f,
        Err(why) => {
            pipe.warn(format!("{}: {why}", job.path.display()));
            return None;
        }
    };
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

/// Opens the file the walk found, beneath its source's held directory, if
/// it is still the file the walk saw; else says why not.
fn open_walked(job: &ReadJob) -> std::result::Result<std::fs::File, String> {
    beneath::race_hook(&job.path);
    let rel = job.path.strip_prefix(&job.root.path).unwrap_or(&job.path);
    // O_NONBLOCK: a FIFO swapped in for the file must not stall the backup
    // (it has no effect on reading a regular file).
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
    let file = match beneath::open_beneath(&job.root.fd, rel, flags, Mode::empty()) {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err("vanished before it was read".into());
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            return Err(
                "a folder on its path became a symlink after the walk; skipped, not followed"
                    .into(),
            );
        }
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    match beneath::fstat(&file) {
        Ok(m) if m.kind == FileType::RegularFile && (m.dev, m.ino) == (job.dev, job.ino) => {
            Ok(file)
        }
        Ok(_) => Err("replaced by another file between the walk and the read; skipped".into()),
        Err(e) => Err(format!("cannot read: {e}")),
    }
}

/// Reads every job on all cores, largest file first.
pub(super) fn read_files(pipe: &Pipeline<'_>, jobs: &[ReadJob]) -> Vec<Option<FileResult>> {
    crate::parallel::largest_first(jobs, |j| j.size, |j| read_file(pipe, j))
}
