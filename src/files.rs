//! Local files gallra trusts: key files and credentials files it reads,
//! and the files it creates in its state folder. Each is opened so that a
//! path swapped for a symlink, a FIFO or another user's file cannot make
//! gallra hang, leak or write where it should not.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// The most a credentials file holds: a few `KEY=value` lines.
const CREDENTIALS_FILE_MAX: u64 = 64 << 10;

/// A credentials file's `KEY=value` lines (`#` comments, quotes around a
/// value dropped), read whole from a private file (`open_private`, 0600 or
/// 0400). Every key must be one `accepts` takes; a line that is not such a
/// pair is named by its number only, with `expected` saying what was: a
/// secret pasted without its key, or with a space instead of `=`, may
/// itself hold `=` (base64 padding), and whatever stands left of it is
/// then the secret, not a key to echo. Errors are messages: the caller
/// names the file.
pub fn read_credentials(
    path: &Path,
    accepts: &dyn Fn(&str) -> bool,
    expected: &str,
) -> Result<Vec<(String, Zeroizing<String>)>, String> {
    let mut file = open_private(path, 0o077, "it must be 0600 or 0400")?;
    let bytes = read_capped(&mut file, CREDENTIALS_FILE_MAX)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("larger than {} KiB", CREDENTIALS_FILE_MAX >> 10))?;
    let text = String::from_utf8(bytes).map(Zeroizing::new).map_err(|e| {
        let _ = Zeroizing::new(e.into_bytes());
        "not UTF-8 text".to_string()
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            format!(
                "line {}: expected KEY=value with KEY {expected} (the line is not shown: it may hold a secret)",
                n + 1
            )
        };
        let (key, value) = line.split_once('=').ok_or_else(bad)?;
        let key = key.trim();
        if !accepts(key) {
            return Err(bad());
        }
        out.push((
            key.to_string(),
            Zeroizing::new(value.trim().trim_matches('"').to_string()),
        ));
    }
    Ok(out)
}

/// Opens a secret file for reading and checks what was opened: a regular
/// file (not a symlink: O_NOFOLLOW; not a FIFO, which would block a plain
/// open until a writer comes: O_NONBLOCK), owned by the user gallra runs as
/// or by root (a 0600 file of another user is that user's secret to swap),
/// and with none of the `refused` permission bits. The checks are made on
/// the opened descriptor, so the file cannot change between check and read.
/// `mode_hint` says which modes are fine, for the message.
pub fn open_private(path: &Path, refused: u32, mode_hint: &str) -> Result<File, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "is a symbolic link; name the file itself".to_string(),
            _ => e.to_string(),
        })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err(format!("not a regular file ({})", kind_of(&meta)));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "owned by uid {}; it must belong to the user gallra runs as (uid {me}) or to root",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & refused != 0 {
        return Err(format!("permissions {mode:04o} are too open; {mode_hint}"));
    }
    Ok(file)
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a file"
    }
}

/// Reads at most `max` bytes; `None` if the file holds more.
pub fn read_capped(file: &mut File, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= max).then_some(buf))
}

/// Writes `bytes` to `path` whole: into a new file beside it, created with
/// O_EXCL|O_NOFOLLOW and mode 0600 (a planted link or file there is never
/// opened), then renamed over `path`. Rename replaces whatever entry
/// `path` is, a symlink included, and never writes through it; a reader
/// sees the old file or the new one, never half of one.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace_file_with_mode(path, bytes, 0o600)
}

/// As `replace_file`, for a file others must read (`mode`).
pub fn replace_file_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    // A temp file left by a crash (or planted) is removed, not opened:
    // remove_file takes the link itself, not what it points to.
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)
    };
    if let Err(e) = write() {
        return Err(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", tmp.display()),
        ));
    }
    std::fs::rename(&tmp, path)
}

/// Creates the folder `parent/name` (mode 0700) unless it exists, and
/// makes sure it is a folder and not a symlink to somewhere else, so that
/// files moved into it stay where gallra put them.
pub fn private_subdir(parent: &Path, name: &str) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = parent.join(name);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.file_type().is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a folder (a symlink or file stands there); remove it",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Creates a state folder (and its parents) mode 0700 if it is missing.
/// One that exists keeps its mode: the returned mode lets the caller warn
/// when others may read it (an operator may have opened the inbox to the
/// group that delivers events, so gallra does not tighten it behind their
/// back).
pub fn ensure_state_dir(dir: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    Ok(std::fs::metadata(dir)?.mode() & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn private_file(dir: &Path, name: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b"secret").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn open_private_refuses_links_fifos_foreign_owners_and_open_modes() {
        let dir = tempfile::tempdir().unwrap();
        let ok = private_file(dir.path(), "ok", 0o600);
        assert!(open_private(&ok, 0o077, "0600").is_ok());
        // 0440: a systemd credential granted by ACL; the caller allows it.
        let group = private_file(dir.path(), "group", 0o440);
        assert!(open_private(&group, 0o037, "0440").is_ok());
        let e = open_private(&group, 0o077, "0600 or 0400").unwrap_err();
        assert!(e.contains("0440") && e.contains("0600 or 0400"), "{e}");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        let e = open_private(&link, 0o077, "0600").unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");

        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string in our own temp folder.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Would block for ever without O_NONBLOCK: no writer ever comes.
        let e = open_private(&fifo, 0o077, "0600").unwrap_err();
        assert!(e.contains("not a regular file (a FIFO)"), "{e}");
        let e = open_private(dir.path(), 0o077, "0600").unwrap_err();
        assert!(e.contains("a directory"), "{e}");

        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let foreign = private_file(dir.path(), "foreign", 0o600);
            let c = std::ffi::CString::new(foreign.to_str().unwrap()).unwrap();
            // SAFETY: chown of our own temp file to the nobody user.
            assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
            let e = open_private(&foreign, 0o077, "0600").unwrap_err();
            assert!(e.contains("owned by uid 65534"), "{e}");
        }
    }

    #[test]
    fn replace_file_replaces_a_planted_link_instead_of_writing_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("state.json");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        // And a link where the temp file goes.
        std::os::unix::fs::symlink(&victim, dir.path().join(".state.json.tmp")).unwrap();
        replace_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("rejected")).unwrap();
        let e = private_subdir(dir.path(), "rejected").unwrap_err();
        assert!(e.to_string().contains("not a folder"), "{e}");
        let made = private_subdir(dir.path(), "processed").unwrap();
        let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn read_capped_stops_after_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = private_file(dir.path(), "f", 0o600);
        let mut f = File::open(&p).unwrap();
        assert_eq!(read_capped(&mut f, 6).unwrap().unwrap(), b"secret");
        let mut f = File::open(&p).unwrap();
        assert!(read_capped(&mut f, 5).unwrap().is_none());
    }
}
