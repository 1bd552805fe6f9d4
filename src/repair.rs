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
    /// a rotation since made), `hidden` (made since, and opens not), or
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
    // The config and key slots are those of the time again.
    let repo = Repository::open(store.clone(), &config.key)?;
    // Epochs first: a tenant key opens through its epoch's object.
    let (epochs, tenant_keys): (Vec<_>, Vec<_>) = plan
        .keys
        .iter()
        .partition(|k| crate::layout::is_under(&k.path, crate::layout::KEY_EPOCHS_FOLDER));
    for k in epochs {
        match keep_key(&store, k, |b| repo.open_epoch(&k.path, b).is_ok()) {
            Ok(kept) => report.keys.push(kept),
            Err(e) => report.failed.push(e.to_string()),
        }
    }
    for k in tenant_keys {
        let tenant = crate::layout::tenant_of_path(&k.path).unwrap_or_default();
        match keep_key(&store, k, |b| repo.open_tenant_key(&tenant, b).is_ok()) {
            Ok(kept) => report.keys.push(kept),
            Err(e) => report.failed.push(e.to_string()),
        }
    }
    // Locks are no version of the time: what the attack left there is
    // removed as `gallra unlock` removes it.
    for tenant in repo.tenant_names()? {
        match crate::lock::unlock(&store, &tenant, &config.agent.host) {
            Ok(r) => report.locks_removed += r.removed.len() as u64,
            Err(e) => report.failed.push(e.to_string()),
        }
    }
    for h in events {
        let id = crate::layout::event_id_of_path(&h.path).to_string();
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
        target: name.to_string(),
        objects: report.put_back + report.hidden,
        bytes: report.put_back_bytes,
    }];
    entry.detail = Some(format!(
        "as of {at}: {} put back, {} hidden ({} events), {} audit records kept",
        report.put_back,
        report.hidden,
        report.hidden_events.len(),
        report.audit_records_kept
    ));
    // A target that cannot take the record gets it with the next ship.
    audit.append(entry, &[&repo])?;
    Ok(report)
}

/// Keeps the first of a key object's candidate versions that `opens`;
/// when none does, its version of the time (or, made since, nothing).
fn keep_key(
    store: &Store,
    key: &crate::store::KeyChoice,
    opens: impl Fn(&[u8]) -> bool,
) -> Result<KeyKept> {
    for version in key.candidates() {
        if !opens(&store.get_version(&key.path, version)?) {
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
