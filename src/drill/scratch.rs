//! The scratch folder a drill restores into: private, and emptied of what
//! any drill restored, even one that was killed.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::Problem;
use crate::error::{Error, Result};

/// The scratch folder: created 0700 if absent (and then removed again if
/// the drills leave it empty); each drill restores into its own
/// `drill-<pid>-<n>` folder in it, removed when the drill ends.
pub(super) struct Scratch {
    root: PathBuf,
    created: bool,
    next: std::cell::Cell<u64>,
}

const DIR_PREFIX: &str = "drill-";

impl Scratch {
    pub(super) fn open(root: &Path) -> Result<Scratch> {
        let created = !root.exists();
        if created {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(|e| Error::io(root, e))?;
        } else if !root.is_dir() {
            return Err(Error::Usage(format!(
                "scratch {}: exists and is not a directory",
                root.display()
            )));
        }
        let scratch = Scratch {
            root: root.to_path_buf(),
            created,
            next: std::cell::Cell::new(0),
        };
        scratch.remove_leftovers();
        Ok(scratch)
    }

    /// Removes what drills that were killed left: folders of ours whose
    /// process no longer runs.
    fn remove_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(DIR_PREFIX))
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            // SAFETY: kill with signal 0 only asks whether the process exists.
            let gone = unsafe { libc::kill(pid, 0) } == -1
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            if gone {
                let path = entry.path();
                match remove_tree(&path) {
                    Ok(()) => tracing::info!("removed {} left by a killed drill", path.display()),
                    Err(e) => tracing::warn!("could not remove {}: {e}", path.display()),
                }
            }
        }
    }

    /// Fails when the file system cannot hold `bytes` more.
    pub(super) fn has_room_for(&self, bytes: u64) -> std::result::Result<(), Problem> {
        let Some(free) = free_bytes(&self.root) else {
            return Ok(());
        };
        // Blocks round sizes up, and directories take room too.
        let needed = bytes + bytes / 16 + (16 << 20);
        if free >= needed {
            return Ok(());
        }
        Err(Problem::of_snapshot(format!(
            "scratch {} has {} MB free, the snapshot needs about {} MB: give --scratch (or [drill] scratch) on a larger file system",
            self.root.display(),
            free / 1_000_000,
            needed / 1_000_000
        )))
    }

    pub(super) fn make_dir(&self) -> Result<ScratchDir> {
        let n = self.next.get();
        self.next.set(n + 1);
        let path = self
            .root
            .join(format!("{DIR_PREFIX}{}-{n}", std::process::id()));
        if path.exists() {
            remove_tree(&path).map_err(|e| Error::io(&path, e))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(ScratchDir { path: Some(path) })
    }

    pub(super) fn close(self) {
        if self.created {
            // Only if empty: someone may have put something there meanwhile.
            let _ = std::fs::remove_dir(&self.root);
        }
    }
}

/// One drill's folder; removed by `remove`, or when dropped (a panic).
pub(super) struct ScratchDir {
    path: Option<PathBuf>,
}

impl ScratchDir {
    pub(super) fn path(&self) -> &Path {
        self.path.as_deref().expect("present until removed")
    }

    pub(super) fn remove(mut self) -> Result<()> {
        let path = self.path.take().expect("present until removed");
        remove_tree(&path).map_err(|e| Error::io(&path, e))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = remove_tree(&path);
        }
    }
}

/// `remove_dir_all`, after making every directory in the tree writable: a
/// restored directory keeps its recorded mode, which may forbid removing
/// its entries. Symlinks are removed, never followed.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    fn open_up(dir: &Path) -> std::io::Result<()> {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                open_up(&entry.path())?;
            }
        }
        Ok(())
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if !m.is_dir() => return std::fs::remove_file(path),
        Ok(_) => {}
    }
    open_up(path)?;
    std::fs::remove_dir_all(path)
}

fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` is written by statvfs
    // before it is read (only when it returns 0).
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // The field types are narrower on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A restored tree whose recorded modes forbid removing its entries.
    fn locked_tree(root: &Path) {
        let (ro, none) = (root.join("ro"), root.join("none"));
        std::fs::create_dir_all(none.join("deeper")).unwrap();
        std::fs::create_dir_all(&ro).unwrap();
        std::fs::write(ro.join("a"), b"a").unwrap();
        std::fs::write(none.join("b"), b"b").unwrap();
        std::fs::write(none.join("deeper/c"), b"c").unwrap();
        chmod(&none.join("deeper"), 0o000);
        chmod(&ro, 0o555);
        chmod(&none, 0o000);
    }

    #[test]
    fn remove_tree_opens_up_locked_dirs_and_never_follows_symlinks() {
        // As root the modes stop nothing; as another user they would.
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"keep").unwrap();
        chmod(&outside, 0o555);

        let tree = tmp.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        locked_tree(&tree);
        std::os::unix::fs::symlink(&outside, tree.join("out")).unwrap();
        remove_tree(&tree).unwrap();

        assert!(!tree.exists());
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"keep");
        let mode = std::fs::metadata(&outside).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o555, "the symlink's target was chmodded");

        // Given a symlink itself, it removes the link and not what it names.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        remove_tree(&link).unwrap();
        assert!(std::fs::symlink_metadata(&link).is_err() && outside.join("keep").exists());
        assert!(remove_tree(&tmp.path().join("absent")).is_ok());
        chmod(&outside, 0o755);
    }

    #[test]
    fn scratch_removes_only_what_killed_drills_left() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();

        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let left = root.join(format!("drill-{dead}-0"));
        std::fs::create_dir(&left).unwrap();
        locked_tree(&left);
        let ours = root.join(format!("drill-{}-7", std::process::id()));
        std::fs::create_dir(&ours).unwrap();
        std::fs::write(root.join("notes.txt"), b"mine").unwrap();

        let scratch = Scratch::open(root).unwrap();
        assert!(!left.exists(), "a dead drill's folder survived");
        assert!(ours.is_dir(), "a running drill's folder was removed");
        assert_eq!(std::fs::read(root.join("notes.txt")).unwrap(), b"mine");
        scratch.close();
        assert!(
            root.is_dir(),
            "a folder the drill did not create was removed"
        );

        let not_a_dir = root.join("notes.txt");
        assert!(Scratch::open(&not_a_dir).is_err());
    }

    #[test]
    fn scratch_it_creates_is_private_and_removed_when_left_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("scratch");
        let scratch = Scratch::open(&root).unwrap();
        let mode = std::fs::metadata(&root).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let dir = scratch.make_dir().unwrap();
        let name = format!("drill-{}-0", std::process::id());
        assert_eq!(dir.path(), root.join(name));
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        locked_tree(dir.path());
        dir.remove().unwrap();
        scratch.close();
        assert!(!root.exists());

        // A folder that was there before stays, even empty.
        std::fs::create_dir(&root).unwrap();
        Scratch::open(&root).unwrap().close();
        assert!(
            root.is_dir(),
            "a folder the drill did not create was removed"
        );
        std::fs::remove_dir(&root).unwrap();

        // Someone else's file in it keeps it.
        let scratch = Scratch::open(&root).unwrap();
        std::fs::write(root.join("theirs"), b"x").unwrap();
        scratch.close();
        assert!(root.join("theirs").exists());
    }
}
