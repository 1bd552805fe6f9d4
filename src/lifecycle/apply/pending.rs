//! Marks in the state folder of tenants whose last apply did not finish
//! on every target, so the next run prunes them again.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn pending_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("prune-pending")
}

/// Tenants whose last apply did not finish everywhere: pruned again.
pub(super) fn pending_prunes(state_dir: &Path) -> Vec<String> {
    std::fs::read_dir(pending_dir(state_dir))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                // `.name.tmp`: a mark a crash left half made (no tenant
                // name starts with '.').
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn mark_prune_pending(state_dir: &Path, tenant: &str) -> Result<()> {
    let dir = pending_dir(state_dir);
    crate::files::ensure_state_dir(state_dir).map_err(|e| Error::io(state_dir, e))?;
    // Whoever can write the state folder may have planted a link where the
    // mark goes: neither the folder nor the mark is followed through one.
    crate::files::private_subdir(state_dir, "prune-pending").map_err(|e| Error::io(&dir, e))?;
    let f = dir.join(tenant);
    crate::files::replace_file(&f, b"").map_err(|e| Error::io(&f, e))
}

pub(super) fn clear_prune_pending(state_dir: &Path, tenant: &str) -> Result<()> {
    let f = pending_dir(state_dir).join(tenant);
    match std::fs::remove_file(&f) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&f, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;

    #[test]
    fn a_prune_mark_never_writes_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"keep me").unwrap();
        std::fs::create_dir_all(pending_dir(&state)).unwrap();
        std::os::unix::fs::symlink(&outside, pending_dir(&state).join("acme")).unwrap();
        mark_prune_pending(&state, "acme").unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
        let mark = std::fs::symlink_metadata(pending_dir(&state).join("acme")).unwrap();
        assert!(mark.file_type().is_file(), "the link is replaced by a mark");
        assert_eq!(pending_prunes(&state), vec!["acme".to_string()]);
        clear_prune_pending(&state, "acme").unwrap();
        assert!(pending_prunes(&state).is_empty());
    }
}
