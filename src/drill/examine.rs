//! The restore into scratch space and its examination: every failure named
//! by file, blob and pack, every restored entry compared with its node.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{DrillResult, Problem};
use crate::error::Result;
use crate::format::Id;
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::repo::{Repository, Tenant};
use crate::restore::{OpenSnapshot, Planned, RestoreOptions, RestoreReport};

pub(super) type Restored<'a> = (OpenSnapshot<'a>, Vec<Planned>, RestoreReport);

pub(super) fn restore_into<'a>(
    repo: &'a Repository,
    tenant: &Arc<Tenant>,
    id: Id,
    snap: &Snapshot,
    to: &Path,
    started: Instant,
) -> Result<Restored<'a>> {
    let open = OpenSnapshot {
        repo,
        tenant: tenant.clone(),
        id,
        snapshot: snap.clone(),
        index: repo.load_index(tenant)?,
    };
    let opts = RestoreOptions {
        to: to.to_path_buf(),
        path: None,
        verify: true,
    };
    let planned = crate::restore::plan_restore(&open, &opts)?;
    let report = crate::restore::restore_planned(&open, &opts, &planned, started);
    Ok((open, planned, report))
}

/// Turns the restore's failures into problems named by file, blob and pack,
/// then checks every restored entry's metadata against the snapshot, and
/// what the snapshot records it holds against what its trees hold.
pub(super) fn examine(
    result: &mut DrillResult,
    open: &OpenSnapshot<'_>,
    planned: &[Planned],
    report: &RestoreReport,
    root: &Path,
) {
    // A set, and each entry's ancestors looked up in it: a badly damaged
    // tenant has as many failures as files.
    let failed: HashSet<&Path> = report.errors.iter().map(|f| f.path.as_path()).collect();
    name_failures(result, open, planned, report, &failed, root);
    check_restored(result, planned, &failed, root);
    check_counts(result, open, planned);
}

/// A restored path as the snapshot names it.
fn in_snapshot(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    format!("/{}", rel.display())
}

/// The restore's failures as problems, each with the blob of its file that
/// lives in the pack whose read failed.
fn name_failures(
    result: &mut DrillResult,
    open: &OpenSnapshot<'_>,
    planned: &[Planned],
    report: &RestoreReport,
    failed: &HashSet<&Path>,
    root: &Path,
) {
    let nodes: HashMap<&Path, &crate::format::tree::Node> = planned
        .iter()
        .filter(|p| failed.contains(p.path.as_path()))
        .map(|p| (p.path.as_path(), &p.node))
        .collect();
    for f in &report.errors {
        let blob = match (&f.object, nodes.get(f.path.as_path())) {
            (Some(object), Some(node)) => failing_blob(open, object, &node.content),
            _ => None,
        };
        result.problems.push(Problem {
            file: Some(in_snapshot(root, &f.path)),
            blob: blob.map(|b| b.to_hex()),
            object: f.object.clone(),
            message: f.message.clone(),
        });
    }
}

/// Whether the drill could give restored entries their recorded owner:
/// only as root, and only then is the owner compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owners {
    Restored,
    NotRestored,
}

/// Checks every restored entry that no failure lies above, and counts what
/// passed.
fn check_restored(
    result: &mut DrillResult,
    planned: &[Planned],
    failed: &HashSet<&Path>,
    root: &Path,
) {
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid, is_root) = unsafe { (libc::geteuid(), libc::getegid(), libc::geteuid() == 0) };
    let owners = if is_root {
        Owners::Restored
    } else {
        Owners::NotRestored
    };
    let mut first_of_inode: HashMap<(u64, u64), u64> = HashMap::new();
    for p in planned {
        if p.path.ancestors().any(|a| failed.contains(a)) {
            continue;
        }
        let node = &p.node;
        match check_entry(p, owners, &mut first_of_inode).err() {
            None => {
                result.metadata_checked += 1;
                if node.kind == NodeKind::File {
                    result.files += 1;
                    result.bytes += node.size;
                }
                if owners == Owners::NotRestored && (node.uid != uid || node.gid != gid) {
                    result.ownership_not_restored += 1;
                }
            }
            Some(message) => result.problems.push(Problem {
                file: Some(in_snapshot(root, &p.path)),
                blob: None,
                object: None,
                message,
            }),
        }
    }
}

/// What the snapshot records it holds against what its trees hold.
fn check_counts(result: &mut DrillResult, open: &OpenSnapshot<'_>, planned: &[Planned]) {
    let (files, bytes) = planned
        .iter()
        .filter(|p| p.node.kind == NodeKind::File)
        .fold((0u64, 0u64), |(n, b), p| (n + 1, b + p.node.size));
    if (files, bytes) != (result.expected_files, result.expected_bytes) {
        result.problems.push(Problem::of_snapshot(format!(
            "snapshot {} records {} files of {} bytes, its trees hold {files} files of {bytes} bytes",
            open.id.short(),
            result.expected_files,
            result.expected_bytes
        )));
    }
}

/// Which of a file's blobs lives in the pack whose read failed.
fn failing_blob(open: &OpenSnapshot<'_>, object: &str, content: &[Id]) -> Option<Id> {
    let pack = Id::from_hex(object.rsplit('/').next()?)?;
    content.iter().copied().find(|b| {
        open.index
            .get(b)
            .is_some_and(|loc| open.index.pack_id(loc) == pack)
    })
}

/// Compares one restored entry with its node: kind, size, permission bits,
/// modification time, link target, hard links, and (as root) owner.
fn check_entry(
    p: &Planned,
    owners: Owners,
    first_of_inode: &mut HashMap<(u64, u64), u64>,
) -> std::result::Result<(), String> {
    let node = &p.node;
    let meta = std::fs::symlink_metadata(&p.path).map_err(|e| format!("not restored: {e}"))?;
    let kind_ok = match node.kind {
        NodeKind::Dir => meta.is_dir(),
        NodeKind::File => meta.is_file(),
        NodeKind::Symlink => meta.file_type().is_symlink(),
    };
    if !kind_ok {
        return Err(format!(
            "restored as another kind than the {:?} recorded",
            node.kind
        ));
    }
    if node.kind == NodeKind::File && meta.len() != node.size {
        return Err(format!(
            "size {} where {} was recorded",
            meta.len(),
            node.size
        ));
    }
    if node.kind != NodeKind::Symlink && meta.permissions().mode() & 0o7777 != node.mode {
        return Err(format!(
            "mode {:04o} where {:04o} was recorded",
            meta.permissions().mode() & 0o7777,
            node.mode
        ));
    }
    if (meta.mtime(), meta.mtime_nsec()) != (node.mtime_secs, i64::from(node.mtime_nanos)) {
        return Err(format!(
            "modification time {}.{:09} where {}.{:09} was recorded",
            meta.mtime(),
            meta.mtime_nsec(),
            node.mtime_secs,
            node.mtime_nanos
        ));
    }
    if node.kind == NodeKind::Symlink {
        let target = std::fs::read_link(&p.path).map_err(|e| format!("reading link: {e}"))?;
        if target.as_os_str().as_encoded_bytes() != node.link_target.as_slice() {
            return Err("symlink target differs from the one recorded".into());
        }
    }
    if node.kind == NodeKind::File && node.nlink > 1 && node.ino != 0 {
        let first = *first_of_inode
            .entry((node.dev, node.ino))
            .or_insert(meta.ino());
        if first != meta.ino() {
            return Err("not a hard link of the other names of its inode".into());
        }
    }
    if owners == Owners::Restored && (meta.uid(), meta.gid()) != (node.uid, node.gid) {
        return Err(format!(
            "owner {}:{} where {}:{} was recorded",
            meta.uid(),
            meta.gid(),
            node.uid,
            node.gid
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::Node;
    use filetime::FileTime;
    use std::path::PathBuf;

    /// The modification time every fixture is given, and nodes record.
    const MTIME: (i64, u32) = (1_700_000_000, 123_456_789);

    fn node(kind: NodeKind, mode: u32, size: u64) -> Node {
        Node {
            name: b"x".to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime_secs: MTIME.0,
            mtime_nanos: MTIME.1,
            ctime_secs: 0,
            ctime_nanos: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
            size,
            content: vec![],
            sha256: None,
            subtree: (kind == NodeKind::Dir).then_some(Id([1; 32])),
            link_target: vec![],
            changed_while_read: false,
        }
    }

    fn mtime() -> FileTime {
        FileTime::from_unix_time(MTIME.0, MTIME.1)
    }

    /// A file as a restore leaves it: content, mode, then mtime.
    fn file(dir: &Path, name: &str, content: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        filetime::set_file_mtime(&path, mtime()).unwrap();
        path
    }

    fn check(path: &Path, node: Node) -> std::result::Result<(), String> {
        let p = Planned {
            path: path.to_path_buf(),
            node,
        };
        check_entry(&p, Owners::NotRestored, &mut HashMap::new())
    }

    fn refused(path: &Path, node: Node, needle: &str) {
        match check(path, node) {
            Ok(()) => panic!("{} passed, expected {needle:?}", path.display()),
            Err(e) => assert!(e.contains(needle), "{needle:?} not in {e:?}"),
        }
    }

    #[test]
    fn check_entry_passes_a_faithful_restore() {
        let tmp = tempfile::tempdir().unwrap();
        let f = file(tmp.path(), "f", b"hello", 0o640);
        assert_eq!(check(&f, node(NodeKind::File, 0o640, 5)), Ok(()));

        let d = tmp.path().join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o750)).unwrap();
        filetime::set_file_mtime(&d, mtime()).unwrap();
        assert_eq!(check(&d, node(NodeKind::Dir, 0o750, 0)), Ok(()));

        // A symlink's own mode is not compared (Linux gives them all 0777).
        let l = tmp.path().join("l");
        std::os::unix::fs::symlink("../target", &l).unwrap();
        filetime::set_symlink_file_times(&l, mtime(), mtime()).unwrap();
        let link = Node {
            link_target: b"../target".to_vec(),
            ..node(NodeKind::Symlink, 0o644, 0)
        };
        assert_eq!(check(&l, link), Ok(()));

        // Owner is compared only as root, whoever runs the test.
        let meta = std::fs::metadata(&f).unwrap();
        let other = Node {
            uid: meta.uid() + 1,
            ..node(NodeKind::File, 0o640, 5)
        };
        assert_eq!(check(&f, other.clone()), Ok(()));
        let p = Planned {
            path: f,
            node: other,
        };
        let e = check_entry(&p, Owners::Restored, &mut HashMap::new()).unwrap_err();
        assert!(e.contains(&format!("where {}:", meta.uid() + 1)), "{e}");
    }

    #[test]
    fn check_entry_names_what_differs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();

        let f = file(dir, "mode", b"hello", 0o640);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        refused(
            &f,
            node(NodeKind::File, 0o640, 5),
            "mode 0600 where 0640 was recorded",
        );

        let f = file(dir, "mtime", b"hello", 0o640);
        filetime::set_file_mtime(&f, FileTime::from_unix_time(MTIME.0 + 60, 0)).unwrap();
        let want = "modification time 1700000060.000000000 where 1700000000.123456789 was recorded";
        refused(&f, node(NodeKind::File, 0o640, 5), want);
        // Restore sets nanoseconds too, so a drill must notice them differ.
        filetime::set_file_mtime(&f, FileTime::from_unix_time(MTIME.0, MTIME.1 + 1)).unwrap();
        let want = "1700000000.123456790 where 1700000000.123456789";
        refused(&f, node(NodeKind::File, 0o640, 5), want);

        let f = file(dir, "size", b"hello", 0o640);
        refused(
            &f,
            node(NodeKind::File, 0o640, 6),
            "size 5 where 6 was recorded",
        );

        let l = dir.join("link");
        std::os::unix::fs::symlink("/etc/passwd", &l).unwrap();
        filetime::set_symlink_file_times(&l, mtime(), mtime()).unwrap();
        let link = Node {
            link_target: b"/etc/hostname".to_vec(),
            ..node(NodeKind::Symlink, 0o777, 0)
        };
        refused(&l, link, "symlink target differs");

        let f = file(dir, "kind", b"", 0o755);
        refused(
            &f,
            node(NodeKind::Dir, 0o755, 0),
            "another kind than the Dir recorded",
        );

        refused(
            &dir.join("absent"),
            node(NodeKind::File, 0o640, 0),
            "not restored",
        );
    }

    #[test]
    fn check_entry_tells_hard_links_from_copies() {
        let tmp = tempfile::tempdir().unwrap();
        let linked = Node {
            dev: 7,
            ino: 42,
            nlink: 2,
            ..node(NodeKind::File, 0o640, 5)
        };
        let run = |a: &Path, b: &Path| {
            // One map for the whole drill: the second name is judged against the first.
            let mut seen = HashMap::new();
            let mut one = |path: &Path| {
                let p = Planned {
                    path: path.to_path_buf(),
                    node: linked.clone(),
                };
                check_entry(&p, Owners::NotRestored, &mut seen)
            };
            (one(a), one(b))
        };

        let a = file(tmp.path(), "a", b"hello", 0o640);
        let b = tmp.path().join("b");
        std::fs::hard_link(&a, &b).unwrap();
        assert_eq!(run(&a, &b), (Ok(()), Ok(())));

        let c = file(tmp.path(), "c", b"hello", 0o640);
        let d = file(tmp.path(), "d", b"hello", 0o640);
        let (first, second) = run(&c, &d);
        assert_eq!(first, Ok(()));
        let e = second.unwrap_err();
        assert!(e.contains("not a hard link of the other names"), "{e}");
    }
}
