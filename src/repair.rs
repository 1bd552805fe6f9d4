//! `gallra repair-target`: rebuild a lost or emptied target by shipping
//! to it, from another target that holds the repository.

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::ship::{self, ShipOptions, ShipReport};
use crate::store::Store;

/// The target to copy from: `from` when given, else the first other
/// target (in config order) that holds a repository.
pub fn repair_source(config: &Config, name: &str, from: Option<&str>) -> Result<Store> {
    match from {
        Some(f) if f == name => Err(Error::Usage(format!(
            "--from {f}: a target cannot be repaired from itself"
        ))),
        Some(f) => Store::open(config.target(f)?),
        None => {
            for t in config.targets.iter().filter(|t| t.name != name) {
                if let Ok(store) = Store::open(t)
                    && store.size_of(crate::layout::CONFIG_PATH)?.is_some()
                {
                    return Ok(store);
                }
            }
            Err(Error::Usage(format!(
                "no target other than {name} holds a repository to repair it from"
            )))
        }
    }
}

/// Ships everything to target `name` from `from` (see `repair_source`),
/// creating the repository there if it lacks one and replacing objects
/// whose bytes do not match their name. `opts` gives verify, progress and
/// host; the rest is set here.
pub fn repair_target(
    config: &Config,
    name: &str,
    from: Option<&str>,
    as_of: Option<jiff::Timestamp>,
    opts: ShipOptions,
) -> Result<ShipReport> {
    let dst_target = config.target(name)?;
    let src = repair_source(config, name, from)?;
    // After an attack on the source: copy what it held at a time before.
    let src = match as_of {
        Some(at) => src.as_of(at)?,
        None => src,
    };
    // Only someone holding the key may rebuild a target from it.
    let src = Repository::open(src, &config.key)?;
    let dst = Store::open_or_create(dst_target)?;
    ship::ship(
        &src,
        &dst,
        &ShipOptions {
            tenants: Vec::new(),
            replace_damaged: true,
            initialise: true,
            ..opts
        },
    )
}

/// What `revert_target` did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RevertReport {
    pub target: String,
    pub as_of: jiff::Timestamp,
    pub dry_run: bool,
    /// Objects overwritten or deleted since the time, whose version of
    /// the time is current again.
    pub put_back: u64,
    pub put_back_bytes: u64,
    /// Objects made since the time, hidden under a delete marker (their
    /// versions stay, as evidence, until their lock and the bucket's
    /// rule for old versions end).
    pub hidden: u64,
    /// Audit records written since the time, kept: the trail of what
    /// happened, the attack's included.
    pub audit_records_kept: u64,
    pub unchanged: u64,
    /// The tenant keys and key epochs that changed since the time.
    pub keys: Vec<KeyKept>,
    /// The lifecycle events recorded since the time, now hidden: a
    /// genuine one among them must be recorded again.
    pub hidden_events: Vec<HiddenEvent>,
    /// The snapshots taken since the time, now hidden (`tenants/<t>/
    /// snapshots/<id>`): a genuine backup among them comes back with the
    /// fleet server's next ship if that server still holds it.
    pub hidden_snapshots: Vec<String>,
    /// Locks removed after the revert: stale, invalid or unreadable (the
    /// attack's garbage); live ones stay (`gallra unlock`'s rule).
    pub locks_removed: u64,
    /// What could not be done, each with its error: running the revert
    /// again does the rest.
    pub failed: Vec<String>,
}

impl RevertReport {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Which version of a key object is current after the revert.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyKept {
    pub path: String,
    /// `of-the-time`, `rewrapped-since` (the one of the time opens no
    /// more: a rotation since destroyed its epoch), `made-since` (an epoch
    /// a rotation since made, which a kept tenant key needs), `hidden`
    /// (made since: a tenant key, or an epoch no kept key needs), or
    /// `none-opens` (the version of the time is current again; see
    /// docs/INSTALL.md on cancelling a key deletion).
    pub kept: &'static str,
    pub version: Option<String>,
}

/// A lifecycle event recorded since the time, hidden by the revert.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HiddenEvent {
    pub id: String,
    /// `None` when it cannot be read (garbage, or not sealed with this
    /// repository's key).
    #[serde(rename = "type")]
    pub kind: Option<&'static str>,
    pub tenant: Option<String>,
    pub received: Option<jiff::Timestamp>,
    pub host: Option<String>,
}

impl HiddenEvent {
    /// An event known by its id only.
    fn unread(id: &str) -> HiddenEvent {
        HiddenEvent {
            id: id.to_string(),
            kind: None,
            tenant: None,
            received: None,
            host: None,
        }
    }
}

/// Puts target `name` back as it was at `at`, in place: each object's
/// version of that time is made current again, what was made since is
/// hidden (its versions stay), audit records are kept, and of each tenant
/// key and key epoch the version that opens is kept (docs/IMMUTABLE.md).
/// Needs an S3 target with versioning, and credentials that may delete
/// (the lifecycle host's deletion role). `dry_run` lists and changes
/// nothing.
pub fn revert_target(
    config: &Config,
    name: &str,
    at: jiff::Timestamp,
    dry_run: bool,
) -> Result<RevertReport> {
    let store = Store::open(config.target(name)?)?;
    if !store.deletes_here() && !dry_run {
        return Err(Error::Refused(format!(
            "target {name}: its deletions are a lifecycle host's (deletions = \"lifecycle-host\"); revert it from the lifecycle host, whose role may hide what was made since"
        )));
    }
    let plan = store.revert_plan(at)?;
    let mut report = RevertReport {
        target: name.to_string(),
        as_of: at,
        dry_run,
        put_back: plan.put_back.len() as u64,
        put_back_bytes: plan.put_back.iter().map(|p| p.size).sum(),
        hidden: plan.hidden.len() as u64,
        audit_records_kept: plan.kept.len() as u64,
        unchanged: plan.unchanged,
        keys: Vec::new(),
        hidden_events: Vec::new(),
        hidden_snapshots: plan
            .hidden
            .iter()
            .filter(|h| {
                crate::layout::tenant_of_path(&h.path).is_some_and(|t| {
                    crate::layout::is_under(&h.path, &crate::layout::snapshots_folder(&t))
                })
            })
            .map(|h| h.path.clone())
            .collect(),
        locks_removed: 0,
        failed: Vec::new(),
    };
    let events: Vec<&crate::store::Hidden> = plan
        .hidden
        .iter()
        .filter(|h| crate::layout::is_under(&h.path, crate::layout::EVENTS_PREFIX))
        .collect();
    if dry_run {
        report.hidden_events = events
            .iter()
            .map(|h| HiddenEvent::unread(crate::layout::event_id_of_path(&h.path)))
            .collect();
        report.keys = plan
            .keys
            .iter()
            .map(|k| KeyKept {
                path: k.path.clone(),
                kept: "undecided",
                version: None,
            })
            .collect();
        return Ok(report);
    }
    report.failed = store
        .apply_revert(&plan.put_back, &plan.hidden)
        .iter()
        .map(ToString::to_string)
        .collect();
    // Whatever fails from here, the report says what was done.
    if let Err(e) = finish_revert(config, &store, &plan, &events, &mut report) {
        report.failed.push(e.to_string());
    }
    Ok(report)
}

/// After the put-backs and hidings: the key objects, the locks, what the
/// hidden events were, and the audit record.
fn finish_revert(
    config: &Config,
    store: &Store,
    plan: &crate::store::RevertPlan,
    events: &[&crate::store::Hidden],
    report: &mut RevertReport,
) -> Result<()> {
    use crate::layout;
    // The config and key slots are those of the time again.
    let repo = Repository::open(store.clone(), &config.key)?;
    // Epochs first: a tenant key opens through its epoch's object.
    let (epochs, tenant_keys): (Vec<_>, Vec<_>) = plan
        .keys
        .iter()
        .partition(|k| layout::is_under(&k.path, layout::KEY_EPOCHS_FOLDER));
    for k in epochs {
        match keep_key(store, k, |b| opens(repo.open_epoch(&k.path, b).map(drop))) {
            Ok(kept) => report.keys.push(kept),
            Err(e) => report.failed.push(e.to_string()),
        }
    }
    let mut used_epochs = std::collections::HashSet::new();
    for k in tenant_keys {
        match keep_tenant_key(&repo, k) {
            Ok((kept, epoch)) => {
                used_epochs.extend(epoch);
                report.keys.push(kept);
            }
            Err(e) => report.failed.push(e.to_string()),
        }
    }
    // An epoch made since that no kept tenant key is wrapped by is not the
    // time's: an intruder holding the master key can make one.
    for kept in report.keys.iter_mut().filter(|k| k.kept == "made-since") {
        let id = layout::key_epoch_id_of_path(&kept.path);
        if id.is_some_and(|id| !used_epochs.contains(&id)) {
            store.delete(&kept.path)?;
            kept.kept = "hidden";
            kept.version = None;
        }
    }
    // Each other host's head: the newest version that opens (its records
    // since are kept). This host's own is written anew by the record below.
    let own = layout::audit_head_path(&config.agent.host);
    for head in plan.heads.iter().filter(|h| h.path != own) {
        if let Err(e) = keep_head(store, &repo, head) {
            report.failed.push(e.to_string());
        }
    }
    // Locks are no version of the time: what the attack left there is
    // removed as `gallra unlock` removes it.
    for tenant in repo.tenant_names()? {
        match crate::lock::unlock(store, &tenant, &config.agent.host) {
            Ok(r) => report.locks_removed += r.removed.len() as u64,
            Err(e) => report.failed.push(e.to_string()),
        }
    }
    for h in events {
        let id = layout::event_id_of_path(&h.path).to_string();
        // The attack may have written garbage over a forged event: the
        // newest version that opens says what it was.
        let opened = h.versions.iter().find_map(|v| {
            store
                .get_version(&h.path, v)
                .and_then(|b| crate::lifecycle::journal::open_event(&repo, &h.path, &b))
                .ok()
        });
        report.hidden_events.push(match opened {
            Some(e) => HiddenEvent {
                id,
                kind: Some(e.event.kind.as_str()),
                tenant: Some(e.event.tenant),
                received: Some(e.received),
                host: Some(e.host),
            },
            None => HiddenEvent::unread(&id),
        });
    }
    let audit = crate::audit::AuditLog::open(&config.agent.state_dir, &config.agent.host)?;
    let mut entry = crate::audit::Entry::new(crate::audit::Action::TargetReverted, None);
    entry.targets = vec![crate::audit::TargetCounts {
        target: report.target.clone(),
        objects: report.put_back + report.hidden,
        bytes: report.put_back_bytes,
    }];
    let events: Vec<&str> = report.hidden_events.iter().map(|e| e.id.as_str()).collect();
    entry.detail = Some(format!(
        "as of {}: {} put back, {} hidden, {} audit records kept, {} failed; events hidden: {}",
        report.as_of,
        report.put_back,
        report.hidden,
        report.audit_records_kept,
        report.failed.len(),
        if events.is_empty() {
            "none".to_string()
        } else {
            events.join(", ")
        }
    ));
    // This host ships nothing: a target that cannot take the record is a
    // failure of the revert.
    let (_, unwritten) = audit.append(entry, &[&repo])?;
    for (target, e) in unwritten {
        report.failed.push(format!(
            "the audit record was not written to target {target}: {e}"
        ));
    }
    Ok(())
}

/// Makes the newest version of an audit head that opens its current one;
/// hides it when none does.
fn keep_head(store: &Store, repo: &Repository, head: &crate::store::KeyChoice) -> Result<()> {
    for version in head.later.iter().chain(&head.at_time) {
        let bytes = store.get_version(&head.path, version)?;
        if opens(crate::audit::open_head(repo, &head.path, &bytes).map(drop))? {
            if head.current.as_deref() != Some(version) {
                store.put_back(&head.path, version)?;
            }
            return Ok(());
        }
    }
    if head.current.is_some() {
        store.delete(&head.path)?;
    }
    Ok(())
}

/// Whether an object opened: `Ok(false)` when it does not (damaged,
/// forged, or its epoch destroyed), an error when the store or the key
/// service could not be asked.
fn opens(result: Result<()>) -> Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e @ (Error::Store { .. } | Error::Io { .. })) => Err(e),
        Err(_) => Ok(false),
    }
}

/// Keeps the version of a tenant key that opens and reads one of the
/// tenant's snapshots of the time (an intruder with the master key can
/// wrap a key that opens but reads nothing); a key made since is hidden
/// with the tenant's other objects made since. Returns the epoch the kept
/// version is wrapped by.
fn keep_tenant_key(
    repo: &Repository,
    key: &crate::store::KeyChoice,
) -> Result<(KeyKept, Option<[u8; 16]>)> {
    use crate::layout;
    let store = &repo.store;
    if key.at_time.is_none() {
        if key.current.is_some() {
            store.delete(&key.path)?;
        }
        let kept = KeyKept {
            path: key.path.clone(),
            kept: "hidden",
            version: None,
        };
        return Ok((kept, None));
    }
    let tenant = layout::tenant_of_path(&key.path).unwrap_or_default();
    let probe = match store.list(&layout::snapshots_folder(&tenant))?.first() {
        Some(o) => Some((o.path.clone(), store.get(&o.path)?)),
        None => None,
    };
    let kept = keep_key(store, key, |bytes| {
        let t = match repo.open_tenant_key(&tenant, bytes) {
            Ok(t) => t,
            Err(e) => return opens(Err(e)),
        };
        match &probe {
            Some((path, snapshot)) => opens(repo.open_snapshot(&t, path, snapshot).map(drop)),
            None => Ok(true),
        }
    })?;
    let epoch = match &kept.version {
        Some(v) => match crate::format::tenant_key::wrapped_by(
            &store.get_version(&key.path, v)?,
            &key.path,
        ) {
            Ok(crate::format::tenant_key::Wrap::Epoch(id)) => Some(id),
            _ => None,
        },
        None => None,
    };
    Ok((kept, epoch))
}

/// Keeps the first of a key object's candidate versions that `opens`;
/// when none does, its version of the time (or, made since, nothing).
fn keep_key(
    store: &Store,
    key: &crate::store::KeyChoice,
    opens: impl Fn(&[u8]) -> Result<bool>,
) -> Result<KeyKept> {
    for version in key.candidates() {
        if !opens(&store.get_version(&key.path, version)?)? {
            continue;
        }
        if key.current.as_deref() != Some(version) {
            store.put_back(&key.path, version)?;
        }
        let kept = if key.at_time.as_deref() == Some(version) {
            "of-the-time"
        } else if key.at_time.is_some() {
            "rewrapped-since"
        } else {
            "made-since"
        };
        return Ok(KeyKept {
            path: key.path.clone(),
            kept,
            version: Some(version.to_string()),
        });
    }
    match &key.at_time {
        Some(version) => {
            if key.current.as_deref() != Some(version) {
                store.put_back(&key.path, version)?;
            }
            Ok(KeyKept {
                path: key.path.clone(),
                kept: "none-opens",
                version: Some(version.clone()),
            })
        }
        None => {
            if key.current.is_some() {
                store.delete(&key.path)?;
            }
            Ok(KeyKept {
                path: key.path.clone(),
                kept: "hidden",
                version: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Targets a (primary), b and c, each a folder under `dir`; those in
    /// `holding` get a repository config object.
    fn config(dir: &std::path::Path, holding: &[&str]) -> Config {
        let mut text = format!(
            "[agent]\nhost = \"h\"\nstate_dir = \"{0}/state\"\n\n[key]\nfile = \"{0}/key\"\n\n",
            dir.display()
        );
        for name in ["a", "b", "c"] {
            let folder = dir.join(name);
            std::fs::create_dir_all(&folder).unwrap();
            if holding.contains(&name) {
                std::fs::write(folder.join(crate::layout::CONFIG_PATH), b"x").unwrap();
            }
            text += &format!(
                "[[target]]\nname = \"{name}\"\nurl = \"file://{}\"\nprimary = {}\n\n",
                folder.display(),
                name == "a"
            );
        }
        Config::parse(&text, &dir.join("agent.toml")).unwrap()
    }

    #[test]
    fn the_default_source_is_the_first_other_target_holding_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &["a", "c"]);
        assert_eq!(repair_source(&config, "a", None).unwrap().name(), "c");
        assert_eq!(repair_source(&config, "b", None).unwrap().name(), "a");
    }

    #[test]
    fn from_names_the_source_but_never_the_target_itself() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &["a"]);
        assert_eq!(repair_source(&config, "a", Some("b")).unwrap().name(), "b");
        let e = repair_source(&config, "a", Some("a")).err().unwrap();
        assert_eq!(
            e.to_string(),
            "--from a: a target cannot be repaired from itself"
        );
    }

    #[test]
    fn no_other_target_holding_the_repository_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &["a"]);
        let e = repair_source(&config, "a", None).err().unwrap();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        assert_eq!(
            e.to_string(),
            "no target other than a holds a repository to repair it from"
        );
    }
}
