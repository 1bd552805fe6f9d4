//! Key rotation: the step that makes an erasure hold against every copy
//! that survives it (docs/SECURITY.md, "Erasure against copies that
//! survive"). A rotation makes a new key epoch in the key service, rewraps
//! the key of every tenant the lifecycle keeps on every target, reads each
//! back, and only then schedules the old epochs' service keys for deletion:
//! from that moment no copy of a tenant key they wrapped opens, wherever
//! the copy is (an old bucket version, a replica, a copy of the disk).
//!
//! Interrupted at any point, a rotation leaves every epoch it has not
//! retired valid, and the next run finishes it with the newest epoch. A
//! tenant is rewrapped under its exclusive lock, so that a ship or another
//! rotation never sees half of it; a key is never rewrapped to an epoch
//! older than the one wrapping it. A backup that makes a tenant key while a
//! rotation runs looks for a newer epoch once its key is written
//! (`Repository::follow_rotation`), and the rotation checks every target
//! again before it retires anything.

use bytes::Bytes;
use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::format::tenant_key::{self, Wrap};
use crate::keyservice::ServiceKeyState;
use crate::layout;
use crate::limits::ReadLimit;
use crate::lock::{self, Holder, LockKind};
use crate::repo::{Epoch, Repository, tenant_names_on};

/// Passes over every target before a rotation gives up on stragglers (keys
/// made or shipped while it ran) until its next run.
const PASSES: usize = 3;

/// How far apart two hosts' clocks may be (seconds) when a destruction's
/// time is compared with an epoch's.
const CLOCK_SKEW: i64 = 300;

/// Why a rotation is due, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "due", rename_all = "snake_case")]
pub enum Due {
    Yes {
        because: String,
    },
    No {
        because: String,
    },
    /// Tenant keys were destroyed, and the rotation waits for `at` so that
    /// erasures are batched (`rotate_after`).
    Later {
        at: Timestamp,
        because: String,
    },
}

/// An epoch a rotation retired: its service key is scheduled for deletion.
#[derive(Debug, Clone, Serialize)]
pub struct Retired {
    pub epoch: String,
    pub service_key: String,
    /// When the service deletes the key for good; unusable already.
    pub deleted_by: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RotationReport {
    /// The epoch that wraps every kept tenant key now.
    pub epoch: String,
    /// Whether this run made that epoch (or finished an earlier run's).
    pub made: bool,
    /// Tenants rewrapped, per target.
    pub rewrapped: BTreeMap<String, Vec<String>>,
    /// Tenants whose key was wrapped by the master key (format version 1):
    /// copies of that key made before this rotation still open with the key
    /// file or a passphrase, until those copies are gone.
    pub from_master_key: BTreeSet<String>,
    /// Tenants whose key destruction was recorded since the last rotation:
    /// every copy of their keys wrapped by an epoch is unreadable from now
    /// on.
    pub shredded: BTreeSet<String>,
    /// Of `shredded`, those whose key was once wrapped by the master key
    /// (before the repository had epochs): copies from that time still open
    /// with the key file until they are gone.
    pub shredded_once_master_wrapped: BTreeSet<String>,
    /// Tenants the lifecycle no longer keeps whose key object is still on a
    /// target (its deletion failed there): not rewrapped, so it opens no
    /// more either.
    pub left_unwrapped: BTreeMap<String, Vec<String>>,
    pub retired: Vec<Retired>,
    /// Why the rotation is not complete; empty when it is.
    pub pending: Vec<String>,
}

impl RotationReport {
    pub fn complete(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Tenants whose key was destroyed since the last rotation, on any target.
pub fn shred_due(repos: &[Repository]) -> Result<BTreeSet<String>> {
    Ok(shred_marks(repos)?.into_keys().collect())
}

/// As `shred_due`, with the latest time each destruction was recorded (a
/// mark that does not parse counts as made now: it may be the newest).
fn shred_marks(repos: &[Repository]) -> Result<BTreeMap<String, i64>> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for repo in deleting(repos) {
        for obj in repo.store.list(layout::SHRED_DUE_FOLDER)? {
            let name = obj.path.rsplit('/').next().unwrap_or("");
            let Some(t) = crate::tenant_name::from_component(name) else {
                continue;
            };
            let at = match repo.store.get_limited(&obj.path, ReadLimit::Lock) {
                Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["destroyed"].as_i64())
                    .unwrap_or(i64::MAX),
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let e = out.entry(t).or_insert(at);
            *e = (*e).max(at);
        }
    }
    Ok(out)
}

/// Tenants whose key was wrapped by the master key until a rotation
/// rewrapped it (`key-epochs-v1/<t>` on any target): copies from before
/// that still open with the key file.
fn wrapped_by_master_once(repos: &[Repository]) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for repo in repos {
        for obj in repo.store.list(layout::ONCE_MASTER_WRAPPED_FOLDER)? {
            let name = obj.path.rsplit('/').next().unwrap_or("");
            if let Some(t) = crate::tenant_name::from_component(name) {
                out.insert(t);
            }
        }
    }
    Ok(out)
}

/// Records, before a tenant's key is destroyed on `repo`'s target, that a
/// rotation is due: until it runs, copies of the key open with its epoch.
pub fn mark_shred_due(repo: &Repository, tenant: &str, now: Timestamp) -> Result<()> {
    let body = serde_json::json!({"tenant": tenant, "destroyed": now.as_second()});
    repo.store.put(
        &layout::shred_due_path(tenant),
        Bytes::from(body.to_string()),
    )
}

/// Whether `repos` (primary first) need a rotation at `now`.
pub fn due(repos: &[Repository], now: Timestamp) -> Result<Due> {
    due_with(repos, &all_epochs(repos)?, now)
}

/// As `due`, with the epochs of `repos` already read (`all_epochs`).
pub fn due_with(repos: &[Repository], epochs: &[Epoch], now: Timestamp) -> Result<Due> {
    let primary = &repos[0];
    let Some(settings) = &primary.keys().service else {
        return Ok(Due::No {
            because: "no [key_service]: tenant keys are wrapped by the master key".into(),
        });
    };
    let Some(current) = epochs.last() else {
        return Ok(Due::Yes {
            because: "no key epoch yet: tenant keys are wrapped by the master key".into(),
        });
    };
    if epochs.len() > 1 {
        return Ok(Due::Yes {
            because: format!(
                "{} key epochs: an earlier rotation did not finish",
                epochs.len()
            ),
        });
    }
    let shred = shred_due(repos)?;
    if shred.is_empty() {
        return Ok(Due::No {
            because: format!(
                "no tenant key destroyed since key epoch {} was made",
                current.short()
            ),
        });
    }
    let names: Vec<&str> = shred.iter().map(String::as_str).collect();
    let because = format!(
        "tenant keys destroyed since the last rotation: {}",
        names.join(", ")
    );
    // A daily lifecycle run that finds the last rotation a few seconds
    // short of a day old would otherwise wait a second day: a twenty-fourth
    // of the interval (at most an hour) is close enough.
    let slack = (settings.rotate_after / 24).min(std::time::Duration::from_secs(3600));
    let after = jiff::SignedDuration::try_from(settings.rotate_after - slack).unwrap_or_default();
    let at = Timestamp::from_second(current.body.created)
        .ok()
        .and_then(|t| t.checked_add(after).ok())
        .unwrap_or(now);
    Ok(match at <= now {
        true => Due::Yes { because },
        false => Due::Later { at, because },
    })
}

/// The targets this agent deletes on. A target whose deletions are a
/// lifecycle host's receives every new epoch and rewrapped key, but keeps
/// the retired epochs' objects (its host removes them): what it holds says
/// nothing of whether a rotation finished.
fn deleting(repos: &[Repository]) -> impl Iterator<Item = &Repository> {
    repos.iter().filter(|r| r.store.deletes_here())
}

/// Every epoch on any target this agent deletes on, by id, oldest first.
pub fn all_epochs(repos: &[Repository]) -> Result<Vec<Epoch>> {
    let mut by_id: BTreeMap<[u8; 16], Epoch> = BTreeMap::new();
    for repo in deleting(repos) {
        for e in repo.epochs()? {
            by_id.entry(e.id).or_insert(e);
        }
    }
    let mut out: Vec<Epoch> = by_id.into_values().collect();
    out.sort_by_key(Epoch::order);
    Ok(out)
}

/// Rotates the key epoch of `repos` (primary first; every target of the
/// repository must be there). `keep` says which tenants the lifecycle
/// keeps: the others are not rewrapped. Never fails half-way silently: an
/// incomplete rotation says why in `pending` and leaves every old epoch
/// valid.
pub fn rotate(
    repos: &[Repository],
    keep: &dyn Fn(&str) -> bool,
    holder: &Holder,
) -> Result<RotationReport> {
    let mut report = RotationReport::default();
    let marks = shred_marks(repos)?;
    let shred_seen: BTreeSet<String> = marks.keys().cloned().collect();
    let epochs = all_epochs(repos)?;
    // An unfinished rotation's epoch is finished rather than replaced, but
    // only if no key was destroyed since it was made: it may have wrapped
    // that key (the tenant was still kept then), and must die with it.
    let newest_mark = marks.values().copied().max();
    let finish = match (epochs.len(), epochs.last()) {
        (2.., Some(newest)) => newest_mark.is_none_or(|m| m < newest.body.created - CLOCK_SKEW),
        _ => false,
    };
    let (target, made) = match finish {
        true => (epochs.last().expect("two or more").clone(), false),
        false => {
            let (epoch, _) = repos[0].make_epoch(epochs.last())?;
            (epoch, true)
        }
    };
    report.epoch = target.short();
    report.made = made;
    for repo in repos {
        repo.write_epoch(&target)
            .map_err(|e| e.in_target(repo.store.name()))?;
    }
    for pass in 0..PASSES {
        report.pending.clear();
        let mut changed = false;
        for repo in repos {
            changed |= rewrap_target(repo, &target, keep, holder, pass, &mut report)?;
        }
        if !changed && report.pending.is_empty() {
            break;
        }
    }
    if !report.pending.is_empty() {
        return Ok(report);
    }
    let older: Vec<&Epoch> = epochs
        .iter()
        .filter(|e| e.order() < target.order())
        .collect();
    let client = repos[0].keys().client()?;
    for old in older {
        let deleted_by = match client.schedule_key_deletion(&old.body.key_id) {
            Ok(at) => at,
            // Scheduled by an earlier run that stopped before it removed
            // the epoch object, or deleted by the service since (its wait
            // ran out): what the service says is the truth.
            Err(e) => match client.describe_key(&old.body.key_id) {
                Ok(ServiceKeyState::PendingDeletion { deletion }) => deletion,
                Ok(ServiceKeyState::Other(state)) if state == "PendingReplicaDeletion" => None,
                Err(gone) if gone.is_key_service_not_found() => None,
                _ => return Err(e),
            },
        };
        for repo in repos {
            repo.keys().forget(&old.id);
        }
        for repo in deleting(repos) {
            repo.store
                .delete(&old.path())
                .map_err(|e| e.in_target(repo.store.name()))?;
        }
        report.retired.push(Retired {
            epoch: old.short(),
            service_key: old.body.key_id.clone(),
            deleted_by,
        });
    }
    let once_master = wrapped_by_master_once(repos)?;
    report.shredded_once_master_wrapped = shred_seen.intersection(&once_master).cloned().collect();
    for repo in deleting(repos) {
        for tenant in &shred_seen {
            repo.store.delete(&layout::shred_due_path(tenant))?;
        }
    }
    report.shredded = shred_seen;
    Ok(report)
}

/// On a lifecycle host, which never rotates: deletes from its targets the
/// epoch objects its fleet server's rotations retired (the service key is
/// pending deletion or gone), which that server leaves on a target it does
/// not delete on. The newest epoch always stays, and so does an older one
/// whose key is still enabled (a rotation under way). Returns the epochs
/// removed.
pub fn remove_retired(repos: &[Repository]) -> Result<Vec<String>> {
    let epochs = all_epochs(repos)?;
    let Some((_, older)) = epochs.split_last() else {
        return Ok(Vec::new());
    };
    if older.is_empty() {
        return Ok(Vec::new());
    }
    let client = repos[0].keys().client()?;
    let mut removed = Vec::new();
    for old in older {
        let retired = match client.describe_key(&old.body.key_id) {
            Ok(ServiceKeyState::PendingDeletion { .. }) => true,
            Ok(ServiceKeyState::Other(state)) => state == "PendingReplicaDeletion",
            Ok(ServiceKeyState::Enabled) => false,
            Err(e) if e.is_key_service_not_found() => true,
            Err(e) => return Err(e),
        };
        if !retired {
            continue;
        }
        for repo in deleting(repos) {
            repo.keys().forget(&old.id);
            repo.store
                .delete(&old.path())
                .map_err(|e| e.in_target(repo.store.name()))?;
        }
        removed.push(old.short());
    }
    Ok(removed)
}

/// One pass over one target: every kept tenant's key wrapped by `target`
/// (or a newer epoch). True if it rewrapped any.
fn rewrap_target(
    repo: &Repository,
    target: &Epoch,
    keep: &dyn Fn(&str) -> bool,
    holder: &Holder,
    pass: usize,
    report: &mut RotationReport,
) -> Result<bool> {
    let name = repo.store.name().to_string();
    let newer_or_same = all_ids_at_or_after(repo, target)?;
    let mut changed = false;
    for tenant in tenant_names_on(&repo.store)? {
        let path = layout::tenant_key_path(&tenant);
        let wrap = match repo.store.get_limited(&path, ReadLimit::TenantKey) {
            Ok(bytes) => tenant_key::wrapped_by(&bytes, &path)?,
            // Only locks. Taken by a live first backup, which may write
            // its key by an epoch this rotation retires and be killed
            // before it follows the rotation: wait for it. Left by a dead
            // one, or by a key destruction: nothing to wrap.
            Err(Error::NotFound { .. }) => {
                if lock::any_live(&repo.store, &tenant)? {
                    report.pending.push(format!(
                        "tenant {tenant} on target {name}: a first backup holds its lock and has not written its key yet"
                    ));
                }
                continue;
            }
            Err(e) => return Err(e.in_target(&name)),
        };
        if matches!(wrap, Wrap::Epoch(id) if newer_or_same.contains(&id)) {
            continue;
        }
        if !keep(&tenant) {
            let left = report.left_unwrapped.entry(name.clone()).or_default();
            if !left.contains(&tenant) {
                left.push(tenant);
            }
            continue;
        }
        let lock = match lock::acquire(&repo.store, &tenant, LockKind::Exclusive, holder) {
            Ok(l) => l,
            Err(e @ Error::Locked { .. }) => {
                report.pending.push(format!(
                    "{e} (pass {}: its key is rewrapped when the lock is free)",
                    pass + 1
                ));
                continue;
            }
            Err(e) => return Err(e),
        };
        // Read again under the lock: what was read before may be stale.
        let bytes = match repo.store.get_limited(&path, ReadLimit::TenantKey) {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.in_target(&name)),
        };
        let wrap = tenant_key::wrapped_by(&bytes, &path)?;
        if matches!(wrap, Wrap::Epoch(id) if newer_or_same.contains(&id)) {
            continue;
        }
        let body = repo
            .open_tenant_key_body(&tenant, &bytes)
            .map_err(|e| e.in_target(&name).for_tenant(&tenant))?;
        if wrap == Wrap::Master {
            // Before the rewrap: its old copies open with the key file,
            // and an erasure of the tenant must say so, whenever it comes.
            let mark = serde_json::json!({"tenant": tenant, "rewrapped": jiff::Timestamp::now().as_second()});
            repo.store.put(
                &layout::once_master_wrapped_path(&tenant),
                Bytes::from(mark.to_string()),
            )?;
        }
        let sealed = repo.wrap_tenant_key(&body, &tenant, Some(target))?;
        lock.check()?;
        repo.store.put(&path, Bytes::from(sealed))?;
        let back = repo.store.get_limited(&path, ReadLimit::TenantKey)?;
        let reread = repo
            .open_tenant_key_body(&tenant, &back)
            .map_err(|e| e.in_target(&name).for_tenant(&tenant))?;
        if reread.key != body.key || tenant_key::wrapped_by(&back, &path)? != Wrap::Epoch(target.id)
        {
            return Err(Error::corrupt(
                format!("target {name}: {path}"),
                "the rewrapped tenant key did not read back as written",
            ));
        }
        drop(lock);
        if wrap == Wrap::Master {
            report.from_master_key.insert(tenant.clone());
        }
        report
            .rewrapped
            .entry(name.clone())
            .or_default()
            .push(tenant);
        changed = true;
    }
    Ok(changed)
}

/// The ids of `target` and of every epoch on `repo` newer than it: a key
/// wrapped by one of them is left as it is.
fn all_ids_at_or_after(repo: &Repository, target: &Epoch) -> Result<BTreeSet<[u8; 16]>> {
    let mut ids: BTreeSet<[u8; 16]> = repo
        .epochs()?
        .into_iter()
        .filter(|e| e.order() > target.order())
        .map(|e| e.id)
        .collect();
    ids.insert(target.id);
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::ChunkerParams;
    use crate::crypto::KeySource;
    use crate::format::key_epoch::KeyEpochBody;
    use crate::keyservice::KeyServiceSettings;
    use crate::repo::RepoKeys;
    use std::time::Duration;

    /// A repository in memory whose config names a key service that is
    /// never called: `due` reads the store only.
    fn repo(dir: &std::path::Path) -> Repository {
        let key = dir.join("key");
        crate::crypto::generate_key_file(&key).unwrap();
        let service = KeyServiceSettings {
            endpoint: "http://127.0.0.1:9".into(),
            region: "eu-north-1".into(),
            credentials_file: None,
            deletion_wait_days: 7,
            rotate_after: Duration::from_secs(86_400),
            timeout: Duration::from_secs(1),
        };
        Repository::init(
            crate::store::memory(),
            &RepoKeys::new(KeySource::File(key), Some(service)),
            ChunkerParams::default(),
        )
        .unwrap()
    }

    fn epoch(repo: &Repository, id: u8, created: Timestamp) {
        repo.write_epoch(&Epoch {
            id: [id; 16],
            body: KeyEpochBody {
                service: "aws-kms".into(),
                key_id: format!("key-{id}"),
                wrapped: vec![id; 8],
                created: created.as_second(),
            },
        })
        .unwrap();
    }

    fn hours(h: i64) -> jiff::SignedDuration {
        jiff::SignedDuration::from_hours(h)
    }

    #[test]
    fn a_rotation_is_due_after_a_destruction_once_about_a_day_has_passed() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        // Epochs keep whole seconds.
        let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
        let repos = [repo];
        assert!(
            matches!(due(&repos, now).unwrap(), Due::Yes { .. }),
            "no epoch yet"
        );

        epoch(&repos[0], 1, now - hours(22));
        assert!(
            matches!(due(&repos, now).unwrap(), Due::No { .. }),
            "nothing destroyed"
        );

        mark_shred_due(&repos[0], "b", now).unwrap();
        match due(&repos, now).unwrap() {
            Due::Later { at, because } => {
                assert!(because.contains('b'), "{because}");
                assert_eq!(
                    at,
                    now - hours(22) + hours(23),
                    "a day less an hour of slack"
                );
            }
            other => panic!("22 hours after the last rotation: {other:?}"),
        }
        // A daily run that comes seconds early still rotates.
        let daily = now - hours(22) + hours(24) - jiff::SignedDuration::from_secs(5);
        assert!(matches!(due(&repos, daily).unwrap(), Due::Yes { .. }));

        epoch(&repos[0], 2, now);
        assert!(
            matches!(due(&repos, now).unwrap(), Due::Yes { because } if because.contains("did not finish")),
            "two epochs: an unfinished rotation"
        );
    }
}
