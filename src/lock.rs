//! Per-tenant locks in a target, so that agents on many servers can share a
//! bucket: shared for backup and ship, exclusive for prune, lifecycle and
//! erase.
//!
//! The exclusive lock is one object per tenant, `tenants/<t>/locks/exclusive`,
//! created with a conditional put: of two agents, one wins. Shared locks are
//! objects with random names. Each side writes its own lock first and then
//! looks for the other kind, so whatever the interleaving, at least one of two
//! conflicting agents sees the other and backs out (both may, and retry).
//! Locks carry a lease that a thread of the holder renews; a lock whose lease
//! ran out is stale: its holder is gone or cut off. A stale lock of a process
//! of this host that no longer runs is removed on sight; any other stale lock
//! blocks until an operator runs `gallra unlock --tenant T`, since its holder
//! may only be paused.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::layout::{exclusive_lock_path, locks_folder, shared_lock_path};
use crate::store::{Locking, Store};

/// How long a lock stays valid without renewal.
pub const LEASE: Duration = Duration::from_secs(10 * 60);

/// How far another host's clock may be ahead of ours. A holder writes its
/// lease at most `LEASE` past its own clock, so a lease that ends later than
/// `LEASE + CLOCK_SKEW` from now was not written by the protocol: a bug, a
/// hand-made object or an attack. It would block its tenant for as long as
/// it claims, so it counts as invalid and `unlock` removes it.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    Shared,
    Exclusive,
}

/// A lock object's content: plain JSON (it holds no secret, and an operator
/// reading it at three in the morning should not need a key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    pub kind: LockKind,
    pub tenant: String,
    pub host: String,
    pub pid: u32,
    /// What the holder is doing, e.g. "backup".
    pub command: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds; renewed by the holder.
    pub expires: i64,
    /// When the holder process started, in clock ticks since boot (field
    /// 22 of `/proc/<pid>/stat`): with `pid`, it names the process, so a
    /// later process that got the same pid is not taken for the holder.
    /// Absent in locks of versions before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// The holder's pid namespace (the inode of `/proc/self/ns/pid`): a pid
    /// and a start time mean the same process only within one namespace (a
    /// container that shares the host's name has a pid 1 of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
}

/// This process's pid namespace, from `/proc/self/ns/pid` ("pid:[N]").
fn pid_namespace() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let text = link.to_str()?;
    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// The start time of process `pid` (ticks since boot), if it runs.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // fields after its closing parenthesis.
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); a zombie has ended.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(22 - 3)?.parse().ok()
}

impl LockRecord {
    pub fn is_stale(&self, now: i64) -> bool {
        self.expires < now
    }

    /// Whether its lease ends later than any holder may claim (see
    /// `CLOCK_SKEW`).
    pub fn is_invalid(&self, now: i64) -> bool {
        self.expires > now.saturating_add((LEASE + CLOCK_SKEW).as_secs() as i64)
    }

    /// Stale or invalid: it blocks until `gallra unlock` removes it.
    fn is_dead(&self, now: i64) -> bool {
        self.is_stale(now) || self.is_invalid(now)
    }

    fn describe(&self, now: i64) -> String {
        let at = |secs: i64| {
            jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
        };
        format!(
            "{} lock of host {} (pid {}, {}) since {}, {}",
            match self.kind {
                LockKind::Shared => "a shared",
                LockKind::Exclusive => "an exclusive",
            },
            self.host,
            self.pid,
            self.command,
            at(self.created),
            if self.is_stale(now) {
                format!("stale since {}", at(self.expires))
            } else if self.is_invalid(now) {
                format!(
                    "invalid: its lease until {} is longer than the {} minutes a holder may claim",
                    at(self.expires),
                    LEASE.as_secs() / 60
                )
            } else {
                format!("lease until {}", at(self.expires))
            }
        )
    }
}

/// Who takes a lock.
#[derive(Debug, Clone)]
pub struct Holder {
    pub host: String,
    pub command: String,
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A held lock: renewed until dropped, then deleted.
pub struct TenantLock {
    store: Store,
    path: Option<String>,
    /// Expiry of the last lease written (0 for no lock object).
    valid_until: Arc<AtomicI64>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl TenantLock {
    /// Fails if the lease ran out without renewal (the store was unreachable
    /// too long): another agent may since have broken the lock, so work
    /// done under it must not be committed.
    pub fn check(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if self.valid_until.load(Ordering::Relaxed) < now() {
            return Err(Error::LockLost {
                target: self.store.name().to_string(),
                object: path.clone(),
            });
        }
        Ok(())
    }
}

impl Drop for TenantLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        if let Some(path) = &self.path
            && let Err(e) = self.store.delete(path)
        {
            tracing::warn!(
                "could not remove lock {path} on target {}: {e}",
                self.store.name()
            );
        }
    }
}

fn read_record(store: &Store, path: &str) -> Result<Option<LockRecord>> {
    match store.get_limited(path, crate::limits::ReadLimit::Lock) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::corrupt(format!("target {}: {path}", store.name()), e.to_string())),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn encode(record: &LockRecord) -> Bytes {
    Bytes::from(serde_json::to_vec(record).expect("serialisable"))
}

/// Whether a lock was left by a process of this host that no longer runs.
fn is_dead_local(record: &LockRecord, host: &str) -> bool {
    if record.host != host {
        return false;
    }
    // A visible process with that pid that started at another time is not
    // the holder: the holder died and its pid was given again (it may even
    // be ours). A process /proc does not show us (ProtectProc=invisible,
    // another user's) is judged by kill(0) below, which calls it alive.
    let same_namespace = record.pid_ns.is_some() && record.pid_ns == pid_namespace();
    if same_namespace && let (Some(then), Some(now)) = (record.started, process_start(record.pid)) {
        return then != now;
    }
    if record.pid == std::process::id() {
        return false;
    }
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = unsafe { libc::kill(record.pid as libc::pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    !alive
}

/// Whether some lock of `tenant` in `store` is held by a live holder (a
/// lease not run out, and not longer than the protocol allows): a first
/// backup that has taken its lock and not yet written the tenant's key.
pub fn any_live(store: &Store, tenant: &str) -> Result<bool> {
    for obj in store.list(&locks_folder(tenant))? {
        match read_record(store, &obj.path) {
            Ok(Some(r)) if !r.is_dead(now()) => return Ok(true),
            Ok(_) => {}
            // An unreadable lock may be anyone's: counted as live.
            Err(_) => return Ok(true),
        }
    }
    Ok(false)
}

/// Takes a lock of `kind` on `tenant` in `store`, with the default lease.
pub fn acquire(store: &Store, tenant: &str, kind: LockKind, holder: &Holder) -> Result<TenantLock> {
    acquire_with_lease(store, tenant, kind, holder, LEASE)
}

/// As `acquire`, with a chosen lease (renewed every quarter of it). A
/// conflict seen while both sides back out is retried a few times.
pub fn acquire_with_lease(
    store: &Store,
    tenant: &str,
    kind: LockKind,
    holder: &Holder,
    lease: Duration,
) -> Result<TenantLock> {
    if store.locking() == Locking::None {
        return Ok(TenantLock {
            store: store.clone(),
            path: None,
            valid_until: Arc::new(AtomicI64::new(0)),
            stop: None,
            renewer: None,
        });
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_acquire(store, tenant, kind, holder, lease)? {
            Ok(lock) => return Ok(lock),
            // Only a lock taken in the last moments may be the other half of
            // a race in which both sides backed out; an older one is not
            // going away by waiting a second.
            Err(conflict)
                if attempt >= 4 || conflict.is_dead(now()) || conflict.created < now() - 5 =>
            {
                let stale = conflict.is_dead(now());
                return Err(Error::Locked {
                    tenant: tenant.to_string(),
                    target: store.name().to_string(),
                    holder: conflict.describe(now()),
                    hint: if stale {
                        format!("; if that process is gone, run `gallra unlock --tenant {tenant}`")
                    } else {
                        String::new()
                    },
                });
            }
            Err(_) => {
                use rand::RngExt;
                let wait = Duration::from_millis(rand::rng().random_range(200..1200));
                std::thread::sleep(wait);
            }
        }
    }
}

/// One attempt: the lock, or the conflicting lock's record.
fn try_acquire(
    store: &Store,
    tenant: &str,
    kind: LockKind,
    holder: &Holder,
    lease: Duration,
) -> Result<std::result::Result<TenantLock, LockRecord>> {
    let created = now();
    let record = LockRecord {
        kind,
        tenant: tenant.to_string(),
        host: holder.host.clone(),
        pid: std::process::id(),
        command: holder.command.clone(),
        created,
        expires: created + lease.as_secs() as i64,
        started: process_start(std::process::id()),
        pid_ns: pid_namespace(),
    };
    let exclusive = exclusive_lock_path(tenant);
    // A conflicting lock, after removing it if its process died on this host.
    let blocking = |path: &str, other: Option<LockRecord>| -> Result<Option<LockRecord>> {
        match other {
            Some(other) if is_dead_local(&other, &holder.host) => {
                tracing::warn!(
                    "removing lock {path} on target {}: its process {} on this host is gone",
                    store.name(),
                    other.pid
                );
                store.delete(path)?;
                Ok(None)
            }
            other => Ok(other),
        }
    };
    let path = match kind {
        LockKind::Shared => {
            if let Some(other) = blocking(&exclusive, read_record(store, &exclusive)?)? {
                return Ok(Err(other));
            }
            let path = shared_lock_path(
                tenant,
                // 16 hex digits, as FORMAT.md 17.6 says.
                crate::text::short_hex(
                    &crate::format::Id(crate::crypto::random_bytes()).to_hex(),
                    16,
                ),
            );
            store.put_new(&path, encode(&record))?;
            if let Some(other) = read_record(store, &exclusive)? {
                store.delete(&path)?;
                return Ok(Err(other));
            }
            path
        }
        LockKind::Exclusive => {
            if !store.put_new(&exclusive, encode(&record))? {
                let other = read_record(store, &exclusive)?;
                return match blocking(&exclusive, other)? {
                    Some(other) => Ok(Err(other)),
                    // Removed a dead process's lock, or it went away: retry.
                    None => try_acquire(store, tenant, kind, holder, lease),
                };
            }
            for obj in store.list(&locks_folder(tenant))? {
                if obj.path == exclusive {
                    continue;
                }
                let other = match read_record(store, &obj.path) {
                    Ok(r) => r,
                    Err(e) => {
                        store.delete(&exclusive)?;
                        return Err(e);
                    }
                };
                if let Some(other) = blocking(&obj.path, other)? {
                    store.delete(&exclusive)?;
                    return Ok(Err(other));
                }
            }
            exclusive
        }
    };
    let valid_until = Arc::new(AtomicI64::new(record.expires));
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let renewer = {
        let store = store.clone();
        let path = path.clone();
        let valid_until = valid_until.clone();
        std::thread::Builder::new()
            .name("gallra-lock".into())
            .spawn(move || renew(&store, &path, record, lease, &valid_until, &stopped))
            .map_err(|e| Error::io("lock renewal thread", e))?
    };
    Ok(Ok(TenantLock {
        store: store.clone(),
        path: Some(path),
        valid_until,
        stop: Some(stop),
        renewer: Some(renewer),
    }))
}

/// Rewrites the lock with a fresh lease every quarter lease until stopped;
/// stops for good if the lock was broken and taken by someone else.
fn renew(
    store: &Store,
    path: &str,
    mut record: LockRecord,
    lease: Duration,
    valid_until: &AtomicI64,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(lease / 4) {
        match read_record(store, path) {
            Ok(Some(current)) if current.pid == record.pid && current.host == record.host => {}
            Ok(_) => {
                tracing::warn!(
                    "lock {path} on target {} was removed or taken over; no longer renewing it",
                    store.name()
                );
                valid_until.store(0, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::warn!("could not renew lock {path}: {e}");
                continue;
            }
        }
        record.expires = now() + lease.as_secs() as i64;
        match store.put(path, encode(&record)) {
            Ok(()) => valid_until.store(record.expires, Ordering::Relaxed),
            Err(e) => tracing::warn!("could not renew lock {path}: {e}"),
        }
    }
}

/// What `unlock` found on one target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnlockReport {
    pub target: String,
    pub tenant: String,
    /// Stale or unreadable locks that were removed.
    pub removed: Vec<String>,
    /// Live locks, left in place.
    pub live: Vec<String>,
}

/// Removes the stale, invalid and unreadable locks of a tenant, and those of
/// processes of this host (`host`) that no longer run; live ones stay.
pub fn unlock(store: &Store, tenant: &str, host: &str) -> Result<UnlockReport> {
    let mut report = UnlockReport {
        target: store.name().to_string(),
        tenant: tenant.to_string(),
        ..Default::default()
    };
    let now = now();
    for obj in store.list(&locks_folder(tenant))? {
        match read_record(store, &obj.path) {
            Ok(None) => {}
            Ok(Some(r)) if !r.is_dead(now) && !is_dead_local(&r, host) => {
                report.live.push(r.describe(now));
            }
            Ok(Some(r)) => {
                store.delete(&obj.path)?;
                report.removed.push(r.describe(now));
            }
            Err(e) => {
                store.delete(&obj.path)?;
                report
                    .removed
                    .push(format!("an unreadable lock object ({e})"));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(host: &str) -> Holder {
        Holder {
            host: host.into(),
            command: "test".into(),
        }
    }

    fn plant(store: &Store, path: &str, kind: LockKind, host: &str, expires_in: i64) {
        let r = LockRecord {
            kind,
            tenant: "acme".into(),
            host: host.into(),
            pid: 1,
            command: "backup".into(),
            created: now() - 3600,
            expires: now() + expires_in,
            started: None,
            pid_ns: None,
        };
        store.put(path, encode(&r)).unwrap();
    }

    #[test]
    fn shared_locks_coexist_and_exclusive_excludes_everything() {
        let store = crate::store::memory();
        let a = acquire(&store, "acme", LockKind::Shared, &holder("web01")).unwrap();
        let b = acquire(&store, "acme", LockKind::Shared, &holder("web02")).unwrap();
        assert_eq!(store.list("tenants/acme/locks").unwrap().len(), 2);
        let other_tenant = acquire(&store, "beta", LockKind::Exclusive, &holder("web02")).unwrap();
        let e = acquire(&store, "acme", LockKind::Exclusive, &holder("web03"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("acme") && e.contains("a shared lock of host"),
            "{e}"
        );
        assert!(
            read_record(&store, &exclusive_lock_path("acme"))
                .unwrap()
                .is_none(),
            "the loser removed its exclusive lock"
        );
        drop((a, b));
        assert!(store.list("tenants/acme/locks").unwrap().is_empty());
        let x = acquire(&store, "acme", LockKind::Exclusive, &holder("web03")).unwrap();
        let e = acquire(&store, "acme", LockKind::Shared, &holder("web01"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("an exclusive lock of host web03"), "{e}");
        assert!(
            store.list("tenants/acme/locks").unwrap().len() == 1,
            "the loser removed its shared lock"
        );
        x.check().unwrap();
        drop((x, other_tenant));
        assert!(store.list("tenants").unwrap().is_empty());
    }

    #[test]
    fn a_stale_lock_blocks_until_unlock_and_a_live_one_survives_unlock() {
        let store = crate::store::memory();
        plant(
            &store,
            "tenants/acme/locks/exclusive",
            LockKind::Exclusive,
            "web09",
            -60,
        );
        plant(
            &store,
            "tenants/acme/locks/shared-live",
            LockKind::Shared,
            "web08",
            600,
        );
        let e = acquire(&store, "acme", LockKind::Shared, &holder("web01"))
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("web09")
                && msg.contains("stale since")
                && msg.contains("gallra unlock --tenant acme"),
            "{msg}"
        );
        let report = unlock(&store, "acme", "web01").unwrap();
        assert_eq!(report.removed.len(), 1, "{report:?}");
        assert!(report.removed[0].contains("web09"));
        assert_eq!(report.live.len(), 1);
        acquire(&store, "acme", LockKind::Shared, &holder("web01")).unwrap();
    }

    #[test]
    fn a_lease_longer_than_the_protocol_allows_is_invalid_and_unlock_removes_it() {
        let store = crate::store::memory();
        let far = 10 * 365 * 86_400;
        plant(
            &store,
            "tenants/acme/locks/exclusive",
            LockKind::Exclusive,
            "web09",
            far,
        );
        let e = acquire(&store, "acme", LockKind::Shared, &holder("web01"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("invalid") && e.contains("gallra unlock --tenant acme"),
            "{e}"
        );
        // A lease as long as the protocol's, with another host's clock a
        // few minutes ahead, is live.
        let skewed = LEASE.as_secs() as i64 + 120;
        plant(
            &store,
            "tenants/acme/locks/shared-skewed",
            LockKind::Shared,
            "web08",
            skewed,
        );
        let report = unlock(&store, "acme", "web01").unwrap();
        assert_eq!(report.removed.len(), 1, "{report:?}");
        assert!(report.removed[0].contains("invalid"), "{report:?}");
        assert_eq!(report.live.len(), 1, "{report:?}");
    }

    #[test]
    fn a_reused_pid_is_not_taken_for_the_holder() {
        let me = std::process::id();
        let started = process_start(me).expect("this process is in /proc");
        let mut r = LockRecord {
            kind: LockKind::Shared,
            tenant: "acme".into(),
            host: "web01".into(),
            pid: me,
            command: "backup".into(),
            created: now(),
            expires: now() + 600,
            started: Some(started),
            pid_ns: pid_namespace(),
        };
        assert!(!is_dead_local(&r, "web01"), "the holder itself runs");
        // The same pid, but a process that started at another time: the
        // holder died and its pid went to this process.
        r.started = Some(started.wrapping_sub(1));
        assert!(is_dead_local(&r, "web01"));
        // Another host's lock is never judged by this host's processes.
        assert!(!is_dead_local(&r, "db01"));
        // Recorded in another pid namespace: its pid means another process
        // here, so the start times say nothing (and this pid runs).
        r.pid_ns = pid_namespace().map(|n| n + 1);
        assert!(!is_dead_local(&r, "web01"));
        // A lock of a version that recorded no start time: as before.
        r.pid_ns = pid_namespace();
        r.started = None;
        assert!(!is_dead_local(&r, "web01"));
    }

    #[test]
    fn a_dead_process_of_this_host_does_not_block() {
        let store = crate::store::memory();
        // pid 1 never belongs to a test process: pick a pid that is surely free.
        let mut r = LockRecord {
            kind: LockKind::Exclusive,
            tenant: "acme".into(),
            host: "web01".into(),
            pid: u32::MAX / 2,
            command: "lifecycle".into(),
            created: now(),
            expires: now() + 600,
            started: None,
            pid_ns: None,
        };
        store
            .put("tenants/acme/locks/exclusive", encode(&r))
            .unwrap();
        let lock = acquire(&store, "acme", LockKind::Shared, &holder("web01")).unwrap();
        drop(lock);
        // A live-looking shared lock of a dead process here: unlock takes it.
        let mut dead = r.clone();
        dead.kind = LockKind::Shared;
        store
            .put("tenants/acme/locks/shared-dead", encode(&dead))
            .unwrap();
        let report = unlock(&store, "acme", "web01").unwrap();
        assert_eq!(report.removed.len(), 1, "{report:?}");
        assert!(report.live.is_empty(), "{report:?}");
        r.host = "web02".into();
        store
            .put("tenants/acme/locks/exclusive", encode(&r))
            .unwrap();
        assert!(acquire(&store, "acme", LockKind::Shared, &holder("web01")).is_err());
    }

    #[test]
    fn the_holder_renews_its_lease() {
        let store = crate::store::memory();
        let lock = acquire_with_lease(
            &store,
            "acme",
            LockKind::Exclusive,
            &holder("web01"),
            Duration::from_secs(2),
        )
        .unwrap();
        let first = read_record(&store, "tenants/acme/locks/exclusive")
            .unwrap()
            .unwrap();
        std::thread::sleep(Duration::from_millis(2600));
        let later = read_record(&store, "tenants/acme/locks/exclusive")
            .unwrap()
            .unwrap();
        assert!(later.expires > first.expires, "{first:?} then {later:?}");
        lock.check().unwrap();
    }

    #[test]
    fn no_lock_objects_when_locking_is_none() {
        let mut t = crate::store::TargetSettings::new("nolock", "memory://");
        t.locking = Locking::None;
        let store = Store::open_or_create(&t).unwrap();
        let a = acquire(&store, "acme", LockKind::Exclusive, &holder("web01")).unwrap();
        let b = acquire(&store, "acme", LockKind::Exclusive, &holder("web01")).unwrap();
        assert!(store.list("tenants").unwrap().is_empty());
        drop((a, b));
    }
}
