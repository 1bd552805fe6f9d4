//! Shipping: copying a repository's objects from one target to another that
//! lacks them, unchanged (no decryption, no re-encryption).
//!
//! Every object but the config and key slots is named by the SHA-256 of its
//! bytes, so "present" means "an object of that name and size is there", and a
//! copy can be proved by hashing. Order is what keeps a half-done ship safe:
//! key slots before the config (a target is a repository once it has a
//! config), a tenant's key before its packs, packs before index, index before
//! snapshots, so a snapshot never appears on a target before everything it
//! names. Every store write is atomic, so a ship killed at any instant leaves
//! only whole objects, and the next run copies what is still missing.
//!
//! Hashing proves only that a copy is faithful. So that a target never
//! receives what its readers would refuse, every object but a pack is also
//! opened on the source, with the code that reads it, before it is copied;
//! one that does not open stays behind, named in the report.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::failure::Failure;
use crate::format::Id;
use crate::format::tenant_key::{self, Wrap};
use crate::layout::{self, CONFIG_PATH, id_of_path, is_content_path};
use crate::limits::ReadLimit;
use crate::lock::{self, Holder, LockKind};
use crate::repo::RepoKeys;
use crate::repo::{self, Repository};
use crate::store::{Listed, Store, StoreStats, TargetSettings};

/// Objects copied at once. Each holds one object (a pack: 16 MiB by
/// default) in memory.
const PARALLEL_COPIES: usize = 4;

/// When a snapshot's retention ends on a target: (tenant, category,
/// created, target) → expiry, from the configured rules. Ship locks what it
/// writes for a snapshot to a target with `lock` until then.
#[derive(Clone)]
pub struct RetentionExpiry(
    #[allow(clippy::type_complexity)]
    pub  std::sync::Arc<dyn Fn(&str, &str, jiff::Timestamp, &str) -> jiff::Timestamp + Send + Sync>,
);

impl std::fmt::Debug for RetentionExpiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetentionExpiry")
    }
}

#[derive(Debug, Clone, Default)]
pub struct ShipOptions {
    /// Only these tenants (all if empty).
    pub tenants: Vec<String>,
    /// Read every copied object back from the destination and check its hash.
    pub verify: bool,
    pub progress: bool,
    /// This agent's host name, written into the locks it takes.
    pub host: String,
    /// Also read every object the destination already holds and copy again
    /// any whose bytes do not match its name (a repair).
    pub replace_damaged: bool,
    /// Stops between objects: what was copied is whole, and a snapshot is
    /// copied only after the packs and index it needs.
    pub cancel: crate::cancel::Cancel,
    /// Make the destination a repository if it holds none (its key slots
    /// and config). Only `init` and `repair-target` set it: a target that
    /// held the repository and now lacks its config is an unmounted or
    /// emptied folder, or a wrong bucket, and filling it would hide that.
    pub initialise: bool,
    /// The rules' expiry of a snapshot, for a destination with `lock`:
    /// what a snapshot brings there is locked until its retention ends
    /// (at least the `lock` period from the write). `None`: the period.
    pub retention: Option<RetentionExpiry>,
    /// The state folder, where what each pack is locked until on a
    /// locked destination is remembered (`pack_locks`); `None`: the store
    /// is asked.
    pub state_dir: Option<std::path::PathBuf>,
    /// This server's retention rules, shipped to a destination whose
    /// deletions are a lifecycle host's, which compares them with its own
    /// (`lifecycle/rules`). `None`: not shipped.
    pub rules: Option<crate::format::rules::RulesBody>,
}

/// What one tenant lacks on the destination, in the order it must be copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantPlan {
    pub packs: Vec<Listed>,
    pub index: Vec<Listed>,
    pub snapshots: Vec<Listed>,
    /// Objects the destination already holds.
    pub present: usize,
    /// Objects on the destination that the source does not have (left alone:
    /// deleting is the lifecycle's job).
    pub extra: usize,
}

impl TenantPlan {
    pub fn missing(&self) -> usize {
        self.packs.len() + self.index.len() + self.snapshots.len()
    }
    pub fn missing_bytes(&self) -> u64 {
        self.packs
            .iter()
            .chain(&self.index)
            .chain(&self.snapshots)
            .map(|o| o.size)
            .sum()
    }
}

/// Compares a tenant's objects on the source with the destination's. Source
/// lists are taken snapshots first, then index, then packs, so that every
/// snapshot listed has its index and packs in the later lists even while a
/// backup writes. An object of the right name but the wrong size on the
/// destination is copied again.
pub fn plan_tenant(
    src_snapshots: &[Listed],
    src_index: &[Listed],
    src_packs: &[Listed],
    dst: &[Listed],
) -> TenantPlan {
    let dst_sizes: HashMap<&str, u64> = dst.iter().map(|o| (o.path.as_str(), o.size)).collect();
    let mut plan = TenantPlan::default();
    let mut src_paths = BTreeSet::new();
    let mut lacking = |objects: &[Listed], plan: &mut TenantPlan| -> Vec<Listed> {
        let mut out = Vec::new();
        for o in objects {
            src_paths.insert(o.path.clone());
            if dst_sizes.get(o.path.as_str()) == Some(&o.size) {
                plan.present += 1;
            } else {
                out.push(o.clone());
            }
        }
        out
    };
    plan.packs = lacking(src_packs, &mut plan);
    plan.index = lacking(src_index, &mut plan);
    plan.snapshots = lacking(src_snapshots, &mut plan);
    plan.extra = dst
        .iter()
        .filter(|o| !src_paths.contains(&o.path) && is_content_path(&o.path))
        .count();
    plan
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TenantReport {
    pub tenant: String,
    pub copied: usize,
    pub copied_bytes: u64,
    pub present: usize,
    pub extra: usize,
    pub snapshots_copied: usize,
    /// Snapshots not copied in this run because one of the tenant's index
    /// objects was not: a snapshot never lands before the index it needs.
    pub snapshots_held_back: usize,
    /// Packs already on a locked destination whose lock was lengthened to
    /// the retention of a new snapshot that reuses them.
    pub locks_lengthened: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShipReport {
    pub from: String,
    pub target: String,
    /// Key slots and config copied (a target receiving its first ship).
    pub repository_objects: usize,
    pub tenants: Vec<TenantReport>,
    pub copied: usize,
    pub copied_bytes: u64,
    pub verified: usize,
    pub seconds: f64,
    /// Requests, retries and bytes of the destination target.
    pub store: StoreStats,
    /// Tenants that could not be shipped, and why.
    pub failed: Vec<TenantFailure>,
    /// Objects of the source that do not authenticate there, left uncopied.
    pub rejected: Vec<Rejected>,
}

/// An object not shipped because it does not open as its kind on the
/// source (see `Error::NotShipped`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejected {
    pub object: String,
    pub error: String,
}

impl Rejected {
    fn new(src: &Store, object: &str, e: Error) -> Rejected {
        let message = match e {
            Error::Corrupt { message, .. } => message,
            e => e.to_string(),
        };
        let e = Error::NotShipped {
            target: src.name().to_string(),
            object: object.to_string(),
            message,
        };
        Rejected {
            object: object.to_string(),
            error: e.to_string(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantFailure {
    pub tenant: String,
    pub error: String,
    /// The error said of the tenant ("tenant NAME: ..." unless it names
    /// it already), for a line about the whole ship.
    #[serde(skip)]
    pub of_tenant: String,
}

impl TenantFailure {
    fn new(tenant: &str, error: String) -> TenantFailure {
        TenantFailure {
            tenant: tenant.to_string(),
            of_tenant: format!("tenant {tenant}: {error}"),
            error,
        }
    }

    fn of(tenant: String, e: &Error) -> TenantFailure {
        TenantFailure {
            error: e.to_string(),
            of_tenant: e.text_for_tenant(&tenant),
            tenant,
        }
    }
}

impl ShipReport {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.rejected.is_empty()
    }
}

/// Copies to `dst` every object of the repository `source` that it lacks
/// and that authenticates in `source`, opened the way its readers open it;
/// the others are named in `ShipReport::rejected` and left behind.
pub fn ship(source: &Repository, dst: &Store, opts: &ShipOptions) -> Result<ShipReport> {
    let started = Instant::now();
    let src = &source.store;
    let mut report = ShipReport {
        from: src.name().to_string(),
        target: dst.name().to_string(),
        ..Default::default()
    };
    dst.check_reachable()?;
    report.repository_objects = ship_repository(src, dst, opts.initialise, &mut report.rejected)?;
    report.repository_objects += ship_records(source, dst, &mut report.rejected)?;
    if let Some(rules) = opts.rules.as_ref().filter(|_| !dst.deletes_here())
        && repo::rules::ship_rules(
            source,
            dst,
            rules,
            opts.state_dir.as_deref(),
            opts.replace_damaged,
        )?
    {
        report.repository_objects += 1;
    }
    let tenants = repo::tenant_names_on(src)?;
    // A tenant asked for and absent is its own failure: the others asked
    // for with it (every tenant a backup just wrote) are shipped all the same.
    for name in &opts.tenants {
        if !tenants.contains(name) {
            report.failed.push(TenantFailure::new(
                name,
                format!("no backups on target {}", src.name()),
            ));
        }
    }
    for tenant in tenants {
        if !opts.tenants.is_empty() && !opts.tenants.contains(&tenant) {
            continue;
        }
        opts.cancel.check()?;
        // One tenant's trouble (a lock, a damaged pack) does not hold back
        // the others; it is reported and the ship as a whole fails.
        let (verified, rejected) = (&mut report.verified, &mut report.rejected);
        match ship_tenant(source, dst, &tenant, opts, verified, rejected) {
            Ok(Some(t)) => {
                if t.snapshots_held_back > 0 {
                    report.failed.push(TenantFailure::new(
                        &tenant,
                        format!(
                            "{} snapshot(s) held back until every index of the tenant ships",
                            t.snapshots_held_back
                        ),
                    ));
                }
                report.copied += t.copied;
                report.copied_bytes += t.copied_bytes;
                report.tenants.push(t);
            }
            Ok(None) => {}
            Err(e) => report.failed.push(TenantFailure::of(tenant, &e)),
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.store = dst.stats();
    Ok(report)
}

/// Ships from the primary, opened with `key`, to each of `targets`; every
/// target is tried even when one fails. Returns the reports and the failures,
/// one per target or tenant that failed, each naming its target; the error
/// leaves the target out and names the tenant when one tenant failed.
pub fn ship_to(
    primary: &TargetSettings,
    key: &RepoKeys,
    targets: &[impl AsRef<TargetSettings>],
    opts: &ShipOptions,
) -> Result<(Vec<ShipReport>, Vec<Failure>)> {
    let src = Repository::open(Store::open(primary)?, key)?;
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for t in targets.iter().map(AsRef::as_ref) {
        // Never create a missing file:// folder: it is an unmounted mount
        // point, not a new target (see `ShipOptions::initialise`).
        let opened = Store::open(t).map_err(|e| match e {
            Error::NotInitialised { target } => Error::NoRepository { target },
            e => e,
        });
        match opened.and_then(|dst| ship(&src, &dst, opts)) {
            Ok(r) => {
                for rejected in &r.rejected {
                    failed.push(Failure::on_target(&t.name, &rejected.error));
                }
                for f in &r.failed {
                    failed.push(Failure::on_target(&t.name, f.of_tenant.replace('\n', " ")));
                }
                reports.push(r);
            }
            Err(e) => failed.push(Failure::on_target(
                &t.name,
                e.text_within_target(&t.name).replace('\n', " "),
            )),
        }
    }
    Ok((reports, failed))
}

/// Makes `dst` hold the same repository as `src`: key slots, then config.
/// A slot removed on the source is removed here too, since removing a slot
/// revokes a key. Refuses a destination that holds another repository, and
/// unless `initialise`, one that holds none.
fn ship_repository(
    src: &Store,
    dst: &Store,
    initialise: bool,
    rejected: &mut Vec<Rejected>,
) -> Result<usize> {
    let config = match src.get_limited(CONFIG_PATH, ReadLimit::Config) {
        Ok(b) => b,
        Err(Error::NotFound { .. }) => {
            return Err(Error::NotInitialised {
                target: src.name().to_string(),
            });
        }
        Err(e) => return Err(e),
    };
    let dst_config = match dst.get_limited(CONFIG_PATH, ReadLimit::Config) {
        Ok(b) => Some(b),
        Err(Error::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    if dst_config.is_none() && !initialise {
        return Err(Error::NoRepository {
            target: dst.name().to_string(),
        });
    }
    if let Some(existing) = &dst_config
        && existing != &config
    {
        let id = |b: &[u8]| {
            repo_config_id(b).map_or_else(|| "unreadable".to_string(), |id| hex_short(&id))
        };
        return Err(Error::DifferentRepository {
            target: dst.name().to_string(),
            message: format!(
                "it holds repository {} while target {} holds repository {}; refusing to mix them",
                id(existing),
                src.name(),
                id(&config)
            ),
        });
    }
    let mut copied = 0;
    let src_slots = src.list(layout::KEYS_FOLDER)?;
    if src_slots.is_empty() {
        return Err(Error::corrupt(
            format!("{}: keys/", src.name()),
            "no key slots (the repository cannot be opened)",
        ));
    }
    let dst_slots = dst.list(layout::KEYS_FOLDER)?;
    let dst_sizes: HashMap<&str, u64> = dst_slots
        .iter()
        .map(|o| (o.path.as_str(), o.size))
        .collect();
    for slot in &src_slots {
        if dst_sizes.get(slot.path.as_str()) != Some(&slot.size) {
            let Some(bytes) = read_or_reject(src, &slot.path, ReadLimit::KeySlot, rejected)? else {
                continue;
            };
            // A slot is sealed with its own key holder's key, which we do
            // not have: the most we can check is that it is a key slot
            // every reader would try (`keys::unlock` skips the others).
            if let Err(e) = usable_slot(&slot.path, &bytes) {
                rejected.push(Rejected::new(src, &slot.path, e));
                continue;
            }
            dst.put(&slot.path, bytes)?;
            copied += 1;
        }
    }
    for slot in &dst_slots {
        if !src_slots.iter().any(|s| s.path == slot.path) {
            if dst.deletes_here() {
                dst.delete(&slot.path)?;
            } else {
                // `status` counts it in `key_slots_extra`: a revoked key
                // that still opens the target until its host removes it.
                tracing::warn!(
                    "target {}: key slot {} was removed on the primary but stays there, where deletions are a lifecycle host's: remove it with `gallra --fleet NAME key remove` on the host",
                    dst.name(),
                    slot.path
                );
            }
        }
    }
    if dst_config.is_none() {
        dst.put_new(CONFIG_PATH, config)?;
        copied += 1;
    }
    Ok(copied)
}

/// Reads a source object of a kind with a size limit. One larger than its
/// kind may be is no such object: it is rejected like one that does not
/// open, rather than failing the whole ship (every tenant, every run).
fn read_or_reject(
    src: &Store,
    path: &str,
    limit: ReadLimit,
    rejected: &mut Vec<Rejected>,
) -> Result<Option<Bytes>> {
    match src.get_limited(path, limit) {
        Ok(b) => Ok(Some(b)),
        Err(e @ Error::TooLarge { .. }) => {
            rejected.push(Rejected::new(src, path, e));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn usable_slot(path: &str, bytes: &[u8]) -> Result<()> {
    let header = crate::format::keyslot::KeySlotHeader::decode(bytes, path)?;
    if header.kind == crate::format::keyslot::SlotKind::Passphrase && !header.argon.is_reasonable()
    {
        return Err(Error::corrupt(
            path,
            format!("Argon2id costs {:?} exceed the limits", header.argon),
        ));
    }
    Ok(())
}

/// Key epochs, lifecycle events and audit records: written once, never
/// changed (an epoch is removed from every target by the rotation that
/// retires it), so an
/// object the destination lacks is copied and one it has is left alone.
/// They go before any tenant's data, so an erasure recorded on the source is
/// on the destination before the next backup's objects are. Then audit
/// heads, after the records they name.
fn ship_records(source: &Repository, dst: &Store, rejected: &mut Vec<Rejected>) -> Result<usize> {
    type Open = fn(&Repository, &str, &[u8]) -> Result<()>;
    let event: Open = |r, path, b| {
        crate::format::event::open(
            b,
            r.master(),
            &r.repo_id,
            path,
            layout::event_id_of_path(path),
        )
        .map(drop)
        .map_err(Error::from)
    };
    let record: Open = |r, path, b| crate::audit::open_record(r, path, b).map(drop);
    // Key epochs first: a tenant key wrapped by one must find it there.
    let epoch: Open = |r, path, b| r.open_epoch(path, b).map(drop);
    let src = &source.store;
    let mut copied = 0;
    for (prefix, limit, open) in [
        (layout::KEY_EPOCHS_FOLDER, ReadLimit::TenantKey, epoch),
        (layout::EVENTS_PREFIX, ReadLimit::Event, event),
        (layout::AUDIT_FOLDER, ReadLimit::AuditRecord, record),
    ] {
        let have: BTreeSet<String> = dst.list(prefix)?.into_iter().map(|o| o.path).collect();
        for o in src.list(prefix)? {
            if !have.contains(&o.path) {
                let Some(bytes) = read_or_reject(src, &o.path, limit, rejected)? else {
                    continue;
                };
                if let Err(e) = open(source, &o.path, &bytes) {
                    rejected.push(Rejected::new(src, &o.path, e));
                    continue;
                }
                dst.put_new(&o.path, bytes)?;
                copied += 1;
            }
        }
    }
    copied += ship_heads(source, dst, rejected)?;
    Ok(copied)
}

/// Heads are overwritten in place (`audit-heads/<host>`), so "lacks" is by
/// seq: a destination whose head is behind the source's (it was down for
/// an append) gets the source's; one ahead is left alone.
fn ship_heads(source: &Repository, dst: &Store, rejected: &mut Vec<Rejected>) -> Result<usize> {
    let src = &source.store;
    let mut copied = 0;
    for o in src.list(layout::AUDIT_HEADS_FOLDER)? {
        let Some(bytes) = read_or_reject(src, &o.path, ReadLimit::AuditRecord, rejected)? else {
            continue;
        };
        let head = match crate::audit::open_head(source, &o.path, &bytes) {
            Ok(h) => h,
            Err(e) => {
                rejected.push(Rejected::new(src, &o.path, e));
                continue;
            }
        };
        let behind = match dst.get_limited(&o.path, ReadLimit::AuditRecord) {
            Err(Error::NotFound { .. }) => true,
            Err(e) => return Err(e),
            // One repository: the source's key opens the destination's head.
            Ok(there) => match crate::audit::open_head(source, &o.path, &there) {
                Ok(h) => h.seq < head.seq,
                Err(e) => {
                    // A head that does not open is no head: replacing it
                    // restores the check of that chain's tail there.
                    tracing::warn!("target {}: {e}; replacing it", dst.name());
                    true
                }
            },
        };
        if behind {
            dst.put(&o.path, bytes)?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Whether the destination's tenant key, which differs from the source's,
/// is the same key wrapped by an older key epoch, so that the source's
/// replaces it: a rotation rewrapped the source and not yet this target, or
/// the destination's copy was written (by an earlier ship) under an epoch a
/// rotation has since destroyed, so that it opens no more. A key with
/// another root is another tenant's: ship refuses.
fn rewrapped_since(
    source: &Repository,
    dst: &Store,
    tenant: &str,
    key: &[u8],
    there: &[u8],
) -> Result<bool> {
    let path = layout::tenant_key_path(tenant);
    let ours = source.open_tenant_key_body(tenant, key)?;
    let differs = || Error::DifferentRepository {
        target: dst.name().to_string(),
        message: format!(
            "{path} differs from target {}'s: two tenant keys for one tenant; refusing to ship",
            source.store.name()
        ),
    };
    let ours_current = match source.current_epoch()? {
        Some(c) => tenant_key::wrapped_by(key, &path)? == Wrap::Epoch(c.id),
        None => false,
    };
    match source.open_tenant_key_body(tenant, there) {
        Ok(theirs) if theirs.key != ours.key => Err(differs()),
        Ok(_) => Ok(ours_current),
        // Wrapped by an epoch that is gone, or damaged: the source's opens.
        Err(Error::EpochGone { .. } | Error::EpochUnusable { .. } | Error::Corrupt { .. })
            if ours_current =>
        {
            Ok(true)
        }
        Err(_) => Err(differs()),
    }
}

fn repo_config_id(bytes: &[u8]) -> Option<[u8; 16]> {
    crate::format::repo_config::repo_id(bytes, CONFIG_PATH).ok()
}

fn hex_short(id: &[u8; 16]) -> String {
    id[..4].iter().map(|b| format!("{b:02x}")).collect()
}

fn ship_tenant(
    source: &Repository,
    dst: &Store,
    tenant: &str,
    opts: &ShipOptions,
    verified: &mut usize,
    rejected: &mut Vec<Rejected>,
) -> Result<Option<TenantReport>> {
    let src = &source.store;
    // Shared locks on both sides: no prune deletes what is being copied, and
    // none runs on the destination while objects arrive.
    let holder = Holder {
        host: opts.host.clone(),
        command: format!("ship {} → {}", src.name(), dst.name()),
    };
    let _src_lock = lock::acquire(src, tenant, LockKind::Shared, &holder)?;
    let dst_lock = lock::acquire(dst, tenant, LockKind::Shared, &holder)?;
    let prefix = layout::tenant_prefix(tenant);
    let key_path = layout::tenant_key_path(tenant);
    let key = match src.get_limited(&key_path, ReadLimit::TenantKey) {
        Ok(key) => key,
        // A folder holding only locks: a first backup of the tenant is
        // taking its lock and has not written the key yet, or was killed
        // right then. There is nothing to ship.
        Err(Error::NotFound { .. }) if !has_content(src, tenant)? => return Ok(None),
        Err(e @ Error::TooLarge { .. }) => {
            rejected.push(Rejected::new(src, &key_path, e));
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    // Nothing of a tenant whose key does not open can be checked, nor read
    // on the destination: none of it ships.
    let opened = match source.open_tenant_key(tenant, &key) {
        Ok(t) => t,
        Err(e) => {
            rejected.push(Rejected::new(src, &key_path, e));
            return Ok(None);
        }
    };
    // Source lists in reverse write order: see `plan_tenant`.
    let snapshots = src.list(&layout::snapshots_folder(tenant))?;
    let index = src.list(&layout::index_folder(tenant))?;
    let packs = src.list(&layout::packs_folder(tenant))?;
    let on_dst = dst.list(&prefix)?;
    let mut plan = plan_tenant(&snapshots, &index, &packs, &on_dst);
    if opts.replace_damaged {
        let damaged = [
            damaged_on(dst, &packs, &plan.packs)?,
            damaged_on(dst, &index, &plan.index)?,
            damaged_on(dst, &snapshots, &plan.snapshots)?,
        ];
        let [p, i, s] = damaged;
        plan.present -= p.len() + i.len() + s.len();
        plan.packs.extend(p);
        plan.index.extend(i);
        plan.snapshots.extend(s);
    }
    let dst_key = match dst.get_limited(&key_path, ReadLimit::TenantKey) {
        Ok(existing) => Some(existing),
        Err(Error::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let key_changes = dst_key.as_ref() != Some(&key);
    // Before anything of the tenant is written to a locked target: until
    // when each object is locked (the key too).
    let locks_lengthened = if let (Some(lock), Some(expiry)) = (dst.object_lock(), &opts.retention)
    {
        let shipped: &[Listed] =
            match (plan.snapshots.is_empty(), plan.missing() > 0 || key_changes) {
                (false, _) => &plan.snapshots,
                // A prune's repacked packs or a rewrapped key: they hold or
                // open every snapshot the tenant keeps.
                (true, true) => &snapshots,
                (true, false) => &[],
            };
        let roots = lock_until_expiry(source, &opened, dst, tenant, shipped, expiry)?;
        let mut lengthened = 0;
        // Packs already there that the new snapshots reuse: locked until
        // these snapshots' retention ends too.
        if !plan.snapshots.is_empty() {
            let shipping: std::collections::HashSet<crate::format::Id> = plan
                .packs
                .iter()
                .filter_map(|o| layout::id_of_path(&o.path))
                .collect();
            // What the packs it brings are locked until (`lock_until_expiry`).
            let floor = roots
                .iter()
                .map(|r| r.1)
                .max()
                .map(|u| u.saturating_add(crate::pack_locks::SLACK).unwrap_or(u))
                .unwrap_or_default()
                .max(lock.until(jiff::Timestamp::now()));
            lengthened = crate::pack_locks::lengthen_on(
                dst,
                source,
                &opened,
                &roots,
                &shipping,
                floor,
                opts.state_dir.as_deref(),
            )?;
        }
        lengthened
    } else {
        0
    };
    match dst_key {
        Some(existing) if existing == key => {}
        Some(existing) => {
            if rewrapped_since(source, dst, tenant, &key, &existing)? {
                dst.put(&key_path, key)?;
            }
        }
        None => {
            dst.put_new(&key_path, key)?;
        }
    }
    let mut report = TenantReport {
        tenant: tenant.to_string(),
        present: plan.present,
        extra: plan.extra,
        snapshots_copied: plan.snapshots.len(),
        locks_lengthened,
        ..Default::default()
    };
    // A lifecycle host prunes this target to what the primary holds.
    let holdings_path = layout::holdings_path(tenant);
    let write_holdings = !dst.deletes_here()
        && (plan.missing() > 0
            || plan.extra > 0
            || !on_dst.iter().any(|o| o.path == holdings_path));
    let ship_holdings = || -> Result<()> {
        if write_holdings {
            dst.put(&holdings_path, source.seal_holdings(tenant, &packs, &index))?;
        }
        Ok(())
    };
    if plan.missing() == 0 {
        ship_holdings()?;
        return Ok(Some(report));
    }
    let bar = if opts.progress {
        let label = format!("ship {tenant} → {}", dst.name());
        crate::progress::bytes_bar(label, plan.missing_bytes())
    } else {
        indicatif::ProgressBar::hidden()
    };
    let open_index: &Authenticate =
        &|path, bytes| source.open_index(&opened, path, bytes).map(drop);
    let open_snapshot: &Authenticate =
        &|path, bytes| source.open_snapshot(&opened, path, bytes).map(drop);
    let mut index_refused = false;
    for (kind, folder, group, authenticate) in [
        ("packs", layout::packs_folder(tenant), &plan.packs, None),
        (
            "index",
            layout::index_folder(tenant),
            &plan.index,
            Some(open_index),
        ),
        (
            "snapshots",
            layout::snapshots_folder(tenant),
            &plan.snapshots,
            Some(open_snapshot),
        ),
    ] {
        if group.is_empty() {
            continue;
        }
        if kind == "snapshots" {
            // The index left behind may be the one these snapshots need.
            if index_refused {
                report.snapshots_held_back = group.len();
                report.snapshots_copied = 0;
                break;
            }
            dst_lock.check()?;
        }
        let refused = copy_all(
            src,
            dst,
            group,
            opts.verify,
            &opts.cancel,
            &bar,
            authenticate,
        )?;
        let left: BTreeSet<&str> = refused.iter().map(|r| r.object.as_str()).collect();
        let group: Vec<&Listed> = group
            .iter()
            .filter(|o| !left.contains(o.path.as_str()))
            .collect();
        match kind {
            "index" => index_refused = !refused.is_empty(),
            "snapshots" => report.snapshots_copied = group.len(),
            _ => {}
        }
        rejected.extend(refused);
        // Sizes as the destination lists them, before anything that names
        // these objects is copied.
        let now: HashMap<String, u64> = dst
            .list(&folder)?
            .into_iter()
            .map(|o| (o.path, o.size))
            .collect();
        for o in &group {
            match now.get(&o.path) {
                Some(size) if *size == o.size => {}
                other => {
                    return Err(Error::Store {
                        target: dst.name().to_string(),
                        object: o.path.clone(),
                        message: format!(
                            "after copying, the target lists {} instead of {} bytes",
                            other.map_or("no object".to_string(), |s| s.to_string()),
                            o.size
                        ),
                    });
                }
            }
        }
        report.copied += group.len();
        report.copied_bytes += group.iter().map(|o| o.size).sum::<u64>();
        if opts.verify {
            *verified += group.len();
        }
    }
    bar.finish_and_clear();
    ship_holdings()?;
    Ok(Some(report))
}

/// Before a tenant's objects are written to a locked target: each
/// snapshot object is locked until its own retention ends, and the rest
/// (packs, index, key) until the latest of `snapshots`' (one GET of each,
/// small), so that the lock of what a snapshot brings ends when its
/// retention does (docs/IMMUTABLE.md), and a week more for the rest, which
/// later snapshots may reuse. A snapshot that does not open is left to the
/// copy, which refuses it. Returns each snapshot's root tree with its
/// expiry.
fn lock_until_expiry(
    source: &Repository,
    opened: &crate::repo::Tenant,
    dst: &Store,
    tenant: &str,
    snapshots: &[Listed],
    expiry: &RetentionExpiry,
) -> Result<Vec<(crate::format::Id, jiff::Timestamp)>> {
    let mut latest: Option<jiff::Timestamp> = None;
    let mut roots = Vec::with_capacity(snapshots.len());
    for s in snapshots {
        let bytes = source.store.get_limited(&s.path, ReadLimit::Snapshot)?;
        let snap = match source.open_snapshot(opened, &s.path, &bytes) {
            Ok(snap) => snap,
            Err(e) => {
                tracing::warn!("{e}: its lock is not known");
                continue;
            }
        };
        let Ok(created) = jiff::Timestamp::new(snap.time_secs, snap.time_nanos as i32) else {
            continue;
        };
        let until = (expiry.0)(&snap.tenant, &snap.category, created, dst.name());
        dst.lock_at_least(&s.path, until);
        latest = Some(latest.map_or(until, |l| l.max(until)));
        roots.push((snap.root, until));
    }
    if let Some(until) = latest {
        // A week more for what later snapshots reuse (`pack_locks`).
        let until = until
            .saturating_add(crate::pack_locks::SLACK)
            .unwrap_or(until);
        dst.lock_at_least(&layout::tenant_prefix(tenant), until);
    }
    Ok(roots)
}

/// Whether a tenant's folder holds anything but locks.
pub fn has_content(store: &Store, tenant: &str) -> Result<bool> {
    let locks = layout::locks_folder(tenant);
    Ok(store
        .list(&layout::tenant_prefix(tenant))?
        .iter()
        .any(|o| !layout::is_under(&o.path, &locks)))
}

/// Runs `work` on every object, a few at a time; stops at the first error.
fn each_parallel(objects: &[Listed], work: impl Fn(&Listed) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_COPIES.min(objects.len()) {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(o) = objects.get(i) else { break };
                    if let Err(e) = work(o) {
                        stop.store(true, Ordering::Relaxed);
                        first_error.lock().expect("not poisoned").get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner().expect("not poisoned") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Opens an object's bytes as its readers do: `Ok` if it authenticates.
type Authenticate<'a> = dyn Fn(&str, &[u8]) -> Result<()> + Sync + 'a;

/// Copies objects in parallel and, with `verify`, reads each back from the
/// destination. Before writing, an object is checked: with `authenticate`,
/// opened, and one that does not open is left behind and returned; without
/// (packs), checked against its name, and one that does not match stops
/// the copy (a damaged source object is never shipped). Packs are not
/// opened: a forged pack that matches its name is referenced by no index
/// that authenticates, so no reader uses it and prune collects it.
fn copy_all(
    src: &Store,
    dst: &Store,
    objects: &[Listed],
    verify: bool,
    cancel: &crate::cancel::Cancel,
    bar: &indicatif::ProgressBar,
    authenticate: Option<&Authenticate>,
) -> Result<Vec<Rejected>> {
    let refused = Mutex::new(Vec::new());
    each_parallel(objects, |o| {
        cancel.check()?;
        let bytes = src.get(&o.path)?;
        match authenticate {
            None => check_named(src.name(), &o.path, &bytes)?,
            Some(open) => {
                if let Err(e) = open(&o.path, &bytes) {
                    let mut refused = refused.lock().expect("not poisoned");
                    refused.push(Rejected::new(src, &o.path, e));
                    bar.inc(bytes.len() as u64);
                    return Ok(());
                }
            }
        }
        let len = bytes.len() as u64;
        dst.put(&o.path, bytes)?;
        if verify {
            let back = dst.get(&o.path)?;
            check_named(dst.name(), &o.path, &back)?;
        }
        bar.inc(len);
        Ok(())
    })?;
    let mut refused = refused.into_inner().expect("not poisoned");
    refused.sort_by(|a, b| a.object.cmp(&b.object));
    Ok(refused)
}

/// The objects of `all` that `dst` holds (those not in `lacking`) but whose
/// bytes there do not match their name: damage a repair must replace.
fn damaged_on(dst: &Store, all: &[Listed], lacking: &[Listed]) -> Result<Vec<Listed>> {
    let lacking: BTreeSet<&str> = lacking.iter().map(|o| o.path.as_str()).collect();
    let present: Vec<Listed> = all
        .iter()
        .filter(|o| !lacking.contains(o.path.as_str()))
        .cloned()
        .collect();
    let damaged = Mutex::new(Vec::new());
    each_parallel(&present, |o| {
        let bytes = dst.get(&o.path)?;
        if id_of_path(&o.path) != Some(Id::of_bytes(&bytes)) {
            tracing::warn!(
                "target {}: {} is damaged; copying it again",
                dst.name(),
                o.path
            );
            damaged.lock().expect("not poisoned").push(o.clone());
        }
        Ok(())
    })?;
    Ok(damaged.into_inner().expect("not poisoned"))
}

fn check_named(target: &str, path: &str, bytes: &Bytes) -> Result<()> {
    if id_of_path(path) == Some(Id::of_bytes(bytes)) {
        Ok(())
    } else {
        Err(Error::corrupt(
            format!("target {target}: {path}"),
            "content does not match its name (damaged object); not shipped",
        ))
    }
}

/// One tenant's objects on a target compared with the primary's.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TenantStatus {
    pub tenant: String,
    pub snapshots: usize,
    pub objects: usize,
    pub bytes: u64,
    /// Objects on the reference target that this one lacks.
    pub missing: usize,
    pub missing_bytes: u64,
}

/// Snapshots, objects and bytes per tenant on `target`, and what it lacks
/// compared with `reference` (the primary).
pub fn status(reference: &Store, target: &Store) -> Result<Vec<TenantStatus>> {
    let mut names: BTreeSet<String> = repo::tenant_names_on(target)?.into_iter().collect();
    let reference_names = repo::tenant_names_on(reference)?;
    names.extend(reference_names.iter().cloned());
    let mut out = Vec::new();
    for tenant in names {
        let prefix = layout::tenant_prefix(&tenant);
        let here = target.list(&prefix)?;
        let mut st = TenantStatus {
            tenant: tenant.clone(),
            ..Default::default()
        };
        let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
        for o in here.iter().filter(|o| is_content_path(&o.path)) {
            st.objects += 1;
            st.bytes += o.size;
            let kind = o.path.split('/').nth(2).unwrap_or_default();
            *by_kind.entry(kind).or_default() += 1;
        }
        st.snapshots = by_kind.get("snapshots").copied().unwrap_or(0);
        if reference.name() != target.name() && reference_names.contains(&tenant) {
            let theirs = reference.list(&prefix)?;
            let split = |kind: &str| -> Vec<Listed> {
                theirs
                    .iter()
                    .filter(|o| is_content_path(&o.path) && o.path.split('/').nth(2) == Some(kind))
                    .cloned()
                    .collect()
            };
            let plan = plan_tenant(&split("snapshots"), &split("index"), &split("packs"), &here);
            st.missing = plan.missing();
            st.missing_bytes = plan.missing_bytes();
        }
        out.push(st);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(path: &str, size: u64) -> Listed {
        Listed {
            path: path.to_string(),
            size,
        }
    }

    #[test]
    fn plan_copies_what_is_missing_or_the_wrong_size_in_dependency_order() {
        let id = |c: char| c.to_string().repeat(64);
        let pack = |c| obj(&format!("tenants/a/packs/{0}{0}/{1}", c, id(c)), 100);
        let snaps = vec![obj(&format!("tenants/a/snapshots/{}", id('1')), 10)];
        let index = vec![obj(&format!("tenants/a/index/{}", id('2')), 20)];
        let packs = vec![pack('a'), pack('b'), pack('c')];
        let mut dst = vec![pack('a'), obj(&pack('b').path, 7)];
        dst.push(obj(&format!("tenants/a/snapshots/{}", id('9')), 10));
        dst.push(obj("tenants/a/locks/x", 1));
        let plan = plan_tenant(&snaps, &index, &packs, &dst);
        assert_eq!(plan.packs, vec![pack('b'), pack('c')]);
        assert_eq!(plan.index, index);
        assert_eq!(plan.snapshots, snaps);
        assert_eq!(plan.present, 1);
        assert_eq!(plan.extra, 1, "the foreign snapshot, not the lock");
        assert_eq!(plan.missing(), 4);
        assert_eq!(plan.missing_bytes(), 230);
        let all: Vec<Listed> = snaps.iter().chain(&index).chain(&packs).cloned().collect();
        let done = plan_tenant(&snaps, &index, &packs, &all);
        assert_eq!(done.missing(), 0);
        assert_eq!(done.present, 5);
    }
}
