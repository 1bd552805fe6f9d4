//! Opening paths beneath a held directory without following symbolic links.
//!
//! A tenant controls the names, links and timing of its own tree, and gallra
//! reads and writes that tree with more rights than the tenant has (root, or
//! `CAP_DAC_READ_SEARCH` under the unit). Any operation by path is therefore a
//! race the tenant can win: a directory checked a moment ago may be a symlink
//! to `/etc` when the file inside it is opened. So backup and restore hold a
//! descriptor of the directory they work in and name everything relative to
//! it, never following a link: `openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS` where the kernel has it (5.6+), else one `openat`
//! with `O_NOFOLLOW | O_DIRECTORY` per component, which is slower but refuses
//! the same links. What was opened is compared with what was walked by device
//! and inode ([`Meta::same_file`]).
//!
//! A configured source path is the operator's, but the tenant owns the folders
//! below its home: [`open_source`] follows a symlink on the way only when the
//! folder holding it could not have been changed by anyone but root or
//! gallra's own user (owned by one of them, writable by no group or other),
//! the rule OpenSSH applies to `authorized_keys`.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};

/// The metadata gallra records of an entry, from `fstat` or `fstatat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: FileType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
}

impl Meta {
    // The field types of `struct stat` differ between architectures; the
    // casts are no-ops on some of them.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn from_stat(s: &rustix::fs::Stat) -> Meta {
        Meta {
            kind: FileType::from_raw_mode(s.st_mode as _),
            mode: s.st_mode as u32,
            uid: s.st_uid as u32,
            gid: s.st_gid as u32,
            size: s.st_size.max(0) as u64,
            mtime: (s.st_mtime as i64, s.st_mtime_nsec as u32),
            ctime: (s.st_ctime as i64, s.st_ctime_nsec as u32),
            dev: s.st_dev as u64,
            ino: s.st_ino as u64,
            nlink: s.st_nlink as u64,
        }
    }

    /// Whether both name the same file: a file replaced between two looks at
    /// it has another inode, or lives on another device.
    pub fn same_file(&self, other: &Meta) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }

    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Directory
    }
}

fn to_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// `fstat` of an open descriptor.
pub fn fstat(fd: impl AsFd) -> io::Result<Meta> {
    rustix::fs::fstat(fd)
        .map(|s| Meta::from_stat(&s))
        .map_err(to_io)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: the entry itself, never what
/// a link names.
pub fn stat_at(dir: impl AsFd, name: &OsStr) -> io::Result<Meta> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|s| Meta::from_stat(&s))
        .map_err(to_io)
}

/// Opens a directory by its path as given (the kernel resolves it), for the
/// roots that the operator names: a restore's `--to`, the source's `/`.
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(path, dir_flags(), Mode::empty()).map_err(to_io)
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// Opens the directory `name` in `dir`, refusing a symlink.
pub fn open_dir_at(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    rustix::fs::openat(dir, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty()).map_err(to_io)
}

/// Whether `openat2` is known to be missing (old kernel, or a seccomp filter
/// that refuses it), so that the fallback is taken without asking again.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens `rel` (relative, without `..`) beneath `root` with `flags`; no
/// component, the last one included, may be a symlink. A link on the way is
/// `ELOOP`, as from the kernel's own `RESOLVE_NO_SYMLINKS`.
pub fn open_beneath(root: impl AsFd, rel: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let root = root.as_fd();
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if rel.as_os_str().is_empty() {
        return rustix::fs::openat(root, ".", flags, mode).map_err(to_io);
    }
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(root, rel, flags, mode, resolve) {
            Err(Errno::NOSYS | Errno::PERM) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // The kernel asks to retry when a rename raced the lookup.
            Err(Errno::AGAIN) => {}
            other => return other.map_err(to_io),
        }
    }
    open_beneath_by_components(root, rel, flags, mode)
}

/// The fallback of [`open_beneath`]: one `openat` per component.
fn open_beneath_by_components(
    root: BorrowedFd<'_>,
    rel: &Path,
    flags: OFlags,
    mode: Mode,
) -> io::Result<OwnedFd> {
    let comps = normal_components(rel)?;
    let (last, dirs) = comps
        .split_last()
        .expect("not empty: checked by the caller");
    let mut held: Option<OwnedFd> = None;
    for name in dirs {
        let dir = held.as_ref().map_or(root, |f| f.as_fd());
        held = Some(open_dir_at(dir, name)?);
    }
    let dir = held.as_ref().map_or(root, |f| f.as_fd());
    rustix::fs::openat(dir, *last, flags, mode).map_err(to_io)
}

/// The components of a relative path; `..`, `/` or a prefix are refused,
/// since they could leave the root.
fn normal_components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    rel.components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a plain relative path", rel.display()),
            )),
        })
        .collect()
}

/// Opens the directory that holds the last component of `rel` beneath
/// `root`, without following links, and returns it with that last name.
pub fn open_parent_beneath(root: impl AsFd, rel: &Path) -> io::Result<(OwnedFd, &OsStr)> {
    let name = rel.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: no file name", rel.display()),
        )
    })?;
    let parent = rel.parent().unwrap_or(Path::new(""));
    let fd = open_beneath(root, parent, dir_flags(), Mode::empty())?;
    Ok((fd, name))
}

/// A configured source path, opened: the directory that holds its last
/// component (with `name`, not yet opened, so that a symlink there is
/// stored as a symlink), and the directories above it, each with the
/// metadata of the directory actually opened for it.
pub struct SourcePath {
    pub parent: OwnedFd,
    pub name: OsString,
    pub above: Vec<(OsString, Meta)>,
}

/// Why a source path was not opened.
#[derive(Debug, thiserror::Error)]
pub enum SourcePathError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "{path} is a symlink in a folder that uid {owner} can change, so it is not followed (a source path may pass through symlinks only where root or gallra's user made them)"
    )]
    UntrustedLink { path: String, owner: u32 },
    #[error("{0}: too many levels of symbolic links")]
    Loop(String),
    #[error("\"/\" itself cannot be a source path")]
    Root,
}

/// How many symlinks resolving one source path may follow, as the kernel's
/// own limit.
const MAX_LINKS: usize = 40;

/// Opens the configured absolute `path` from `/` component by component. A
/// component that is a symlink is followed only in a trusted folder (see the
/// module doc); its target is resolved by the same rule.
pub fn open_source(path: &Path) -> Result<SourcePath, SourcePathError> {
    let shown = |p: &Path| p.display().to_string();
    let comps: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let Some((last, dirs)) = comps.split_last() else {
        return Err(SourcePathError::Root);
    };
    let io_err = |p: &Path, e: io::Error| SourcePathError::Io {
        path: shown(p),
        source: e,
    };
    let mut cur = open_dir_path(Path::new("/")).map_err(|e| io_err(Path::new("/"), e))?;
    let mut above = Vec::with_capacity(dirs.len());
    let mut so_far = std::path::PathBuf::from("/");
    let mut links = 0usize;
    for name in dirs {
        so_far.push(name);
        cur = resolve_dir(cur, name, &so_far, &mut links)?;
        let meta = fstat(&cur).map_err(|e| io_err(&so_far, e))?;
        above.push((name.to_os_string(), meta));
    }
    Ok(SourcePath {
        parent: cur,
        name: last.to_os_string(),
        above,
    })
}

/// Opens the directory `path` (made absolute against the working folder),
/// creating what is missing of it, by the rule of [`open_source`]: a
/// symlink on the way is followed only in a folder that nobody but root or
/// gallra's user can change. A restore's `--to` goes through here, so
/// `--to /home/alice/restores/today` cannot be sent elsewhere by a link
/// `restores -> /etc/nginx` that alice planted.
pub fn open_dir_creating(path: &Path) -> Result<OwnedFd, SourcePathError> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| SourcePathError::Io {
                path: path.display().to_string(),
                source: e,
            })?
            .join(path)
    };
    let io_err = |p: &Path, e: io::Error| SourcePathError::Io {
        path: p.display().to_string(),
        source: e,
    };
    let mut cur = open_dir_path(Path::new("/")).map_err(|e| io_err(Path::new("/"), e))?;
    let mut so_far = std::path::PathBuf::from("/");
    let mut links = 0usize;
    for comp in absolute.components() {
        let name = match comp {
            Component::Normal(n) => n,
            Component::ParentDir => OsStr::new(".."),
            _ => continue,
        };
        so_far.push(name);
        match rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(0o777)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io_err(&so_far, to_io(e))),
        }
        cur = resolve_dir(cur, name, &so_far, &mut links)?;
    }
    Ok(cur)
}

/// Opens directory `name` in `dir`, following a symlink only if `dir` is
/// trusted; `shown` is the configured path so far, for messages.
fn resolve_dir(
    dir: OwnedFd,
    name: &OsStr,
    shown: &Path,
    links: &mut usize,
) -> Result<OwnedFd, SourcePathError> {
    let io_err = |e: io::Error| SourcePathError::Io {
        path: shown.display().to_string(),
        source: e,
    };
    if name == ".." {
        return open_dir_at(&dir, name).map_err(io_err);
    }
    match open_dir_at(&dir, name) {
        Ok(fd) => return Ok(fd),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            let meta = stat_at(&dir, name).map_err(io_err)?;
            if meta.kind != FileType::Symlink {
                return Err(io_err(e));
            }
        }
        Err(e) => return Err(io_err(e)),
    }
    let holder = fstat(&dir).map_err(io_err)?;
    if !is_trusted(&holder) {
        return Err(SourcePathError::UntrustedLink {
            path: shown.display().to_string(),
            owner: holder.uid,
        });
    }
    *links += 1;
    if *links > MAX_LINKS {
        return Err(SourcePathError::Loop(shown.display().to_string()));
    }
    let target = rustix::fs::readlinkat(&dir, name, Vec::new())
        .map_err(|e| io_err(to_io(e)))?
        .into_bytes();
    let target = Path::new(OsStr::from_bytes(&target));
    let mut cur = if target.is_absolute() {
        open_dir_path(Path::new("/")).map_err(io_err)?
    } else {
        dir
    };
    for comp in target.components() {
        match comp {
            Component::Normal(n) => cur = resolve_dir(cur, n, shown, links)?,
            Component::ParentDir => cur = open_dir_at(&cur, OsStr::new("..")).map_err(io_err)?,
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(cur)
}

/// A test hook for the races this module closes: in a debug build with
/// `GALLRA_TEST_PAUSE=NAME` and `GALLRA_TEST_PAUSE_DIR=DIR` set, the first
/// backup read or restore write of a file named NAME touches `DIR/paused`
/// and waits (at most 30 s) until `DIR/NAME.go` exists, so that a test can
/// change the tree between the walk and the read as an attacker with
/// inotify would. Release builds have no hook.
pub fn race_hook(path: &Path) {
    #[cfg(debug_assertions)]
    {
        let (Some(wanted), Some(dir)) = (
            std::env::var_os("GALLRA_TEST_PAUSE"),
            std::env::var_os("GALLRA_TEST_PAUSE_DIR"),
        ) else {
            return;
        };
        if path.file_name() != Some(wanted.as_os_str()) {
            return;
        }
        let dir = Path::new(&dir);
        let mut go = wanted.clone();
        go.push(".go");
        if dir.join(&go).exists() || std::fs::write(dir.join("paused"), b"").is_err() {
            return;
        }
        for _ in 0..600 {
            if dir.join(&go).exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = path;
}

/// A folder that nobody but root or this process's user can change.
fn is_trusted(dir: &Meta) -> bool {
    let me = rustix::process::geteuid().as_raw();
    (dir.uid == 0 || dir.uid == me) && dir.mode & 0o022 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn open_beneath_refuses_a_symlink_on_the_way_and_at_the_end() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/f"), b"x").unwrap();
        std::fs::create_dir(d.path().join("outside")).unwrap();
        std::fs::write(d.path().join("outside/f"), b"secret").unwrap();
        symlink("../outside", d.path().join("a/link")).unwrap();
        symlink("b/f", d.path().join("a/flink")).unwrap();
        let root = open_dir_path(&d.path().join("a")).unwrap();
        assert!(open_beneath(&root, Path::new("b/f"), OFlags::RDONLY, Mode::empty()).is_ok());
        for rel in ["link/f", "flink"] {
            let e = open_beneath(&root, Path::new(rel), OFlags::RDONLY, Mode::empty()).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{rel}: {e}");
        }
        let e = open_beneath(
            &root,
            Path::new("../outside/f"),
            OFlags::RDONLY,
            Mode::empty(),
        )
        .unwrap_err();
        assert!(e.raw_os_error().is_some() || e.kind() == io::ErrorKind::InvalidInput);
        // The fallback refuses the same links.
        for rel in ["link/f", "flink"] {
            let e = open_beneath_by_components(
                root.as_fd(),
                Path::new(rel),
                OFlags::RDONLY | OFlags::NOFOLLOW,
                Mode::empty(),
            )
            .unwrap_err();
            assert!(
                matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
                "{rel}: {e}"
            );
        }
        assert!(normal_components(Path::new("../x")).is_err());
    }

    #[test]
    fn a_source_path_follows_links_only_in_trusted_folders() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path();
        std::fs::create_dir_all(base.join("real/www")).unwrap();
        symlink(base.join("real"), base.join("trusted-link")).unwrap();
        let found = open_source(&base.join("trusted-link/www")).unwrap();
        assert_eq!(found.name, "www");
        let real = std::fs::metadata(base.join("real")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(found.above.last().unwrap().1.ino, real.ino());

        // A folder that others may write: a link there is not followed.
        std::fs::create_dir(base.join("open")).unwrap();
        std::fs::set_permissions(base.join("open"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        symlink(base.join("real"), base.join("open/link")).unwrap();
        let err = open_source(&base.join("open/link/www")).err().unwrap();
        assert!(
            matches!(err, SourcePathError::UntrustedLink { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("open/link"), "{err}");

        symlink("loop", base.join("loop")).unwrap();
        assert!(matches!(
            open_source(&base.join("loop/x")).err().unwrap(),
            SourcePathError::Loop(_)
        ));
        assert!(matches!(
            open_source(Path::new("/")).err().unwrap(),
            SourcePathError::Root
        ));
    }
}
