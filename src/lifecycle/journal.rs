//! Accepted events in the repository (`lifecycle/events/<id>`), and the
//! inbox folder through which other systems hand events to the agent.

use bytes::Bytes;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::events::{Event, StoredEvent, TargetEvents};
use crate::error::{Error, Result};
use crate::format::{Kind, event, record};
use crate::layout;
use crate::limits::ReadLimit;
use crate::repo::Repository;

/// Every accepted event in a repository.
pub fn load(repo: &Repository) -> Result<Vec<StoredEvent>> {
    let mut out = Vec::new();
    for o in repo.store.list(layout::EVENTS_PREFIX)? {
        let bytes = repo.store.get_limited(&o.path, ReadLimit::Event)?;
        out.push(record::open(
            &bytes,
            Kind::Event,
            repo.master(),
            &repo.repo_id,
            &o.path,
        )?);
    }
    Ok(out)
}

/// Every event a target holds, and the ids of those that cannot be read
/// there (damaged, or written with another key): the caller decides what an
/// unknown event means, where `load` gives up at the first. Fails only when
/// the target cannot be listed.
pub fn load_target(repo: &Repository) -> Result<TargetEvents> {
    let mut out = TargetEvents {
        target: repo.store.name().to_string(),
        ..TargetEvents::default()
    };
    for o in repo.store.list(layout::EVENTS_PREFIX)? {
        let opened = repo
            .store
            .get_limited(&o.path, ReadLimit::Event)
            .and_then(|bytes| open_event(repo, &o.path, &bytes));
        let id = layout::event_id_of_path(&o.path).to_string();
        match opened {
            Ok(e) => out.events.push(e),
            Err(e) => {
                tracing::warn!(
                    "event object {} on target {} cannot be read: {e}",
                    o.path,
                    out.target
                );
                out.unreadable.push(id);
            }
        }
    }
    Ok(out)
}

/// Opens the bytes of an event object found at `path` of `repo`
/// (`format::event::open`, expecting the id the path names).
pub fn open_event(repo: &Repository, path: &str, bytes: &[u8]) -> Result<StoredEvent> {
    Ok(event::open(
        bytes,
        repo.master(),
        &repo.repo_id,
        path,
        layout::event_id_of_path(path),
    )?)
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recorded {
    New,
    /// The same event was accepted before: nothing changes.
    Duplicate,
}

/// Writes an accepted event to the primary (`repos[0]`, which decides)
/// and then to the other targets; a target that cannot be written now gets
/// the event with the next ship. An id already used by a different event is
/// refused.
pub fn record_event(repos: &[&Repository], stored: &StoredEvent) -> Result<Recorded> {
    let primary = repos[0];
    let path = layout::event_path(&stored.event.id);
    let seal =
        |repo: &Repository| Bytes::from(event::seal(stored, repo.master(), &repo.repo_id, &path));
    if !primary.store.put_new(&path, seal(primary))? {
        let existing: StoredEvent = record::open(
            &primary.store.get_limited(&path, ReadLimit::Event)?,
            Kind::Event,
            primary.master(),
            &primary.repo_id,
            &path,
        )?;
        if existing.event == stored.event {
            return Ok(Recorded::Duplicate);
        }
        return Err(Error::Usage(format!(
            "event id {:?} was already used for another event ({} of tenant {}); give each event its own id",
            stored.event.id,
            existing.event.kind.as_str(),
            existing.event.tenant
        )));
    }
    for repo in &repos[1..] {
        if let Err(e) = repo.store.put_new(&path, seal(repo)) {
            tracing::warn!(
                "event {} not yet on target {}: {e}; the next ship copies it",
                stored.event.id,
                repo.store.name()
            );
        }
    }
    Ok(Recorded::New)
}

/// One inbox file and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct InboxItem {
    pub file: String,
    /// "accepted", "duplicate", "rejected" or "failed" (left in the inbox
    /// for the next run).
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub fn inbox_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("inbox")
}

/// The files waiting in the inbox, oldest name first. Names starting with
/// '.' are files still being written (the writer renames them in).
pub fn pending(inbox: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(inbox) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(inbox, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(inbox, e))?;
        let is_file = entry
            .file_type()
            .map_err(|e| Error::io(inbox, e))?
            .is_file();
        let name = entry.file_name();
        if is_file && !name.to_string_lossy().starts_with('.') {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Moves an inbox file into `inbox/<folder>/`, never over another file.
pub fn move_to(file: &Path, folder: &str) -> Result<PathBuf> {
    let inbox = file.parent().expect("inbox files have a folder");
    let dir = crate::files::private_subdir(inbox, folder)
        .map_err(|e| Error::io(inbox.join(folder), e))?;
    let name = file
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .to_string();
    let mut to = dir.join(&name);
    let mut n = 1;
    while to.exists() {
        to = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    std::fs::rename(file, &to).map_err(|e| Error::io(file, e))?;
    Ok(to)
}

/// Sets an inbox file aside in `inbox/rejected/`, with `<name>.reason`.
pub fn reject(file: &Path, reason: &str) -> Result<()> {
    let to = move_to(file, "rejected")?;
    let mut why = to.clone().into_os_string();
    why.push(".reason");
    // Whoever can drop files into the inbox may have planted a link here.
    crate::files::replace_file(Path::new(&why), format!("{reason}\n").as_bytes())
        .map_err(|e| Error::io(Path::new(&why), e))
}

/// Reads one inbox file: the event, or why it is rejected.
pub fn read_inbox_file(
    file: &Path,
    tenants: &BTreeSet<String>,
) -> std::result::Result<Event, String> {
    let bytes = read_bounded(file)
        .map_err(|e| format!("cannot be read: {e}"))?
        .ok_or_else(|| ReadLimit::InboxFile.refusal())?;
    let event = Event::parse(&bytes)?;
    if !tenants.contains(&event.tenant) {
        return Err(format!(
            "tenant {:?} is not in the repository (no backup of it was ever taken)",
            event.tenant
        ));
    }
    Ok(event)
}

/// An inbox file, at most `ReadLimit::InboxFile` of it (`None` if larger),
/// opened without following a link or waiting on a FIFO swapped in after
/// the listing.
fn read_bounded(file: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(file)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    crate::files::read_capped(&mut f, ReadLimit::InboxFile.bytes())
}
