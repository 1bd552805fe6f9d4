//! Restore drills: restore a snapshot into scratch space, verify every
//! file's bytes and metadata against the snapshot, time it, check that the
//! tenant's backups are fresh, and leave evidence in the audit trail.
//!
//! A drill reads only the target it is given, so that drilling the offsite
//! copy proves what a disaster that takes the server leaves. Each tenant is
//! drilled under a shared lock, so a prune cannot remove what is being read
//! and make it look lost. The scratch folder holds customers' data while a
//! drill runs: it is created 0700, and what a drill restored is removed when
//! the drill ends, failed or not; what a killed drill left is removed by the
//! next one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use jiff::{Span, Timestamp, tz::TimeZone};
use serde::Serialize;

use crate::audit::{Action, Entry, Record, TargetCounts};
use crate::error::{Error, Result};
use crate::format::Id;
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::repo::{Repository, Tenant};
use crate::restore::{OpenSnapshot, Planned, RestoreOptions, RestoreReport};
use crate::text::{html_escape, human_age, md_cell, short_hex};

/// What to drill.
#[derive(Debug, Clone)]
pub enum Selection {
    /// One snapshot, by id or unique prefix.
    Snapshot(String),
    /// The latest snapshot of each source of these tenants.
    Tenants(Vec<String>),
    /// The latest snapshot of each source of `count` tenants drawn at random
    /// with `seed`, from those with a snapshot on the target.
    Sample { count: usize, seed: u64 },
}

impl Selection {
    /// For the audit trail and the report: how the drilled snapshots were chosen.
    pub fn describe(&self) -> String {
        match self {
            Selection::Snapshot(id) => format!("snapshot {id}"),
            Selection::Tenants(t) => format!("tenants {}", t.join(", ")),
            Selection::Sample { count, seed } => {
                format!("{count} tenants at random, seed {seed}")
            }
        }
    }
}

pub struct DrillOptions {
    /// Where drills restore to (created 0700 if absent).
    pub scratch: PathBuf,
    /// The latest snapshot of each drilled source must be younger than this.
    pub max_age: Span,
    pub time_zone: TimeZone,
    /// Tenants whose freshness is not expected, with why (a contract that
    /// has ended stops its backups).
    pub not_expected_fresh: BTreeMap<String, String>,
    /// Goes into the locks the drill takes.
    pub host: String,
    pub now: Timestamp,
}

/// One thing that failed, named down to the file, blob and pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file's path in the snapshot (a directory's, when its tree could
    /// not be read); `None` for the snapshot as a whole.
    pub file: Option<String>,
    /// The blob whose read failed, when that was the cause.
    pub blob: Option<String>,
    /// The store object (a pack, the index, the snapshot) involved.
    pub object: Option<String>,
    /// What went wrong; never names the file.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if let Some(blob) = &self.blob {
            write!(f, "blob {}: ", short_hex(blob, 16))?;
        }
        // Store errors name their object already; the others get it here.
        if let Some(object) = &self.object
            && !self.message.contains(object.as_str())
        {
            write!(f, "{object}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl Problem {
    fn whole(e: Error) -> Problem {
        let object = e.object().map(str::to_string);
        match e {
            Error::Tree { dir, tree, source } => Problem {
                file: Some(dir),
                blob: Some(tree),
                object,
                message: source.to_string(),
            },
            e => Problem {
                file: None,
                blob: None,
                object,
                message: e.to_string(),
            },
        }
    }

    fn of_snapshot(message: String) -> Problem {
        Problem {
            file: None,
            blob: None,
            object: None,
            message,
        }
    }

    /// As `Display`, without the file: for the audit trail, which names no file.
    pub fn without_file(&self) -> String {
        let named = Problem {
            file: None,
            ..self.clone()
        };
        match &self.file {
            Some(_) => format!("a file: {named}"),
            None => named.to_string(),
        }
    }
}

/// The result of one drilled snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct DrillResult {
    pub tenant: String,
    /// Hex id; empty when the tenant had no snapshot to drill.
    pub snapshot: String,
    pub source: String,
    pub target: String,
    /// When the snapshot was taken (RFC 3339).
    pub taken: Option<String>,
    /// Files restored and verified, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// What the snapshot records it holds.
    pub expected_files: u64,
    pub expected_bytes: u64,
    /// Time to restore and verify, from opening the snapshot.
    pub seconds: f64,
    pub first_byte_seconds: Option<f64>,
    pub mb_per_s: f64,
    /// Entries whose mode, times, size, link target and hard links matched.
    pub metadata_checked: u64,
    /// Entries recorded with another owner than the one a drill without
    /// root could give them (compared, not failed).
    pub ownership_not_restored: u64,
    /// The latest snapshot of this tenant's source, and whether it is
    /// younger than the maximum age (`None`: not expected, see `freshness`).
    pub latest: Option<String>,
    pub fresh: Option<bool>,
    pub freshness: String,
    pub ok: bool,
    /// The first problem, in one line; `None` when ok.
    pub error: Option<String>,
    pub problems: Vec<Problem>,
}

impl DrillResult {
    fn new(tenant: &str, target: &str) -> DrillResult {
        DrillResult {
            tenant: tenant.to_string(),
            snapshot: String::new(),
            source: String::new(),
            target: target.to_string(),
            taken: None,
            files: 0,
            bytes: 0,
            expected_files: 0,
            expected_bytes: 0,
            seconds: 0.0,
            first_byte_seconds: None,
            mb_per_s: 0.0,
            metadata_checked: 0,
            ownership_not_restored: 0,
            latest: None,
            fresh: None,
            freshness: String::new(),
            ok: false,
            error: None,
            problems: Vec::new(),
        }
    }

    fn failed(tenant: &str, target: &str, problem: Problem) -> DrillResult {
        let mut result = DrillResult::new(tenant, target);
        result.problems.push(problem);
        result.finish()
    }

    fn finish(mut self) -> DrillResult {
        self.ok = self.problems.is_empty();
        self.error = match self.problems.as_slice() {
            [] => None,
            [one] => Some(one.to_string()),
            [first, rest @ ..] => Some(format!("{first} (and {} more problems)", rest.len())),
        };
        self
    }

    /// The audit trail's record of this drill: ids, counts and times, never
    /// a file name.
    pub fn audit_entry(&self, selection: &str) -> Entry {
        let mut entry = Entry::new(Action::Drill, Some(&self.tenant));
        if !self.snapshot.is_empty() {
            entry.snapshots.push(self.snapshot.clone());
        }
        entry.targets.push(TargetCounts {
            target: self.target.clone(),
            objects: self.files,
            bytes: self.bytes,
        });
        entry.reason = Some(selection.to_string());
        let mut detail = format!(
            "source={} seconds={:.3} first_byte={} fresh={} result={}",
            if self.source.is_empty() {
                "-".to_string()
            } else {
                escape_value(&self.source)
            },
            self.seconds,
            self.first_byte_seconds
                .map_or("-".into(), |s| format!("{s:.3}")),
            match self.fresh {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            },
            if self.ok { "ok" } else { "failed" },
        );
        if !self.ok {
            let first = self.problems.first().map(Problem::without_file);
            detail.push_str(" error=");
            detail.push_str(&first.unwrap_or_default());
            if self.problems.len() > 1 {
                detail.push_str(&format!(" (and {} more)", self.problems.len() - 1));
            }
        }
        entry.detail = Some(detail);
        entry
    }
}

/// A past drill, read back from the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct PastDrill {
    pub seq: u64,
    pub time: String,
    pub host: String,
    pub tenant: String,
    pub snapshot: String,
    pub source: String,
    pub target: String,
    pub files: u64,
    pub bytes: u64,
    pub seconds: Option<f64>,
    pub first_byte_seconds: Option<f64>,
    pub fresh: Option<bool>,
    pub ok: bool,
    pub error: Option<String>,
    pub selection: Option<String>,
}

/// The drills among audit records, oldest first; of one tenant if given.
pub fn history(records: &[Record], tenant: Option<&str>) -> Vec<PastDrill> {
    records
        .iter()
        .filter(|r| r.action == Action::Drill)
        .filter(|r| tenant.is_none() || r.tenant.as_deref() == tenant)
        .map(|r| {
            let detail = r.detail.as_deref().unwrap_or("");
            let (fields, error) = match detail.split_once(" error=") {
                Some((f, e)) => (f, Some(e.to_string())),
                None => (detail, None),
            };
            let kv: HashMap<&str, &str> = fields
                .split(' ')
                .filter_map(|t| t.split_once('='))
                .collect();
            let num = |k: &str| kv.get(k).and_then(|v| v.parse::<f64>().ok());
            let counts = r.targets.first().cloned().unwrap_or_default();
            PastDrill {
                seq: r.seq,
                time: r.time.clone(),
                host: r.host.clone(),
                tenant: r.tenant.clone().unwrap_or_default(),
                snapshot: r.snapshots.first().cloned().unwrap_or_default(),
                source: kv.get("source").map_or("-".into(), |v| unescape_value(v)),
                target: counts.target,
                files: counts.objects,
                bytes: counts.bytes,
                seconds: num("seconds"),
                first_byte_seconds: num("first_byte"),
                fresh: match kv.get("fresh") {
                    Some(&"yes") => Some(true),
                    Some(&"no") => Some(false),
                    _ => None,
                },
                ok: kv.get("result") == Some(&"ok"),
                error,
                selection: r.reason.clone(),
            }
        })
        .collect()
}

/// A value of the audit detail's `key=value` fields, which spaces separate:
/// `%` and space as `%25` and `%20`.
fn escape_value(v: &str) -> String {
    v.replace('%', "%25").replace(' ', "%20")
}

fn unescape_value(v: &str) -> String {
    v.replace("%20", " ").replace("%25", "%")
}

/// The tenants a drill visits, each with the snapshot named (if one was).
pub struct Chosen {
    pub tenants: Vec<(String, Option<Id>)>,
    /// Named tenants the target has no snapshot of.
    pub absent: Vec<String>,
}

/// Resolves a selection against what the target holds.
pub fn choose(repo: &Repository, selection: &Selection) -> Result<Chosen> {
    match selection {
        Selection::Snapshot(prefix) => {
            let (tenant, id) = repo.find_snapshot(prefix)?;
            Ok(Chosen {
                tenants: vec![(tenant.name.clone(), Some(id))],
                absent: Vec::new(),
            })
        }
        Selection::Tenants(names) => {
            let present = repo.tenant_names()?;
            let (mut tenants, mut absent) = (Vec::new(), Vec::new());
            for name in names {
                if present.contains(name) && has_snapshots(repo, name)? {
                    if !tenants.iter().any(|(t, _)| t == name) {
                        tenants.push((name.clone(), None));
                    }
                } else {
                    absent.push(name.clone());
                }
            }
            Ok(Chosen { tenants, absent })
        }
        Selection::Sample { count, seed } => {
            use rand::SeedableRng;
            use rand::seq::SliceRandom;
            let mut pool = Vec::new();
            for name in repo.tenant_names()? {
                if has_snapshots(repo, &name)? {
                    pool.push(name);
                }
            }
            // Sorted before shuffling: the same seed over the same tenants
            // draws the same ones, whatever order the store lists them in.
            pool.sort();
            pool.shuffle(&mut rand::rngs::StdRng::seed_from_u64(*seed));
            pool.truncate(*count);
            pool.sort();
            Ok(Chosen {
                tenants: pool.into_iter().map(|t| (t, None)).collect(),
                absent: Vec::new(),
            })
        }
    }
}

fn has_snapshots(repo: &Repository, tenant: &str) -> Result<bool> {
    let prefix = format!("{}/snapshots", crate::repo::tenant_prefix(tenant));
    Ok(!repo.store.list(&prefix)?.is_empty())
}

/// A drill run from the configuration, and its evidence.
pub struct DrillRun {
    pub results: Vec<DrillResult>,
    /// The audit record of each result, in order.
    pub records: Vec<Option<Record>>,
    /// How many tenants were chosen.
    pub tenants: usize,
    pub now: jiff::Timestamp,
    /// What went wrong beside the drills themselves (events unread, a
    /// target the audit record did not reach).
    pub warnings: Vec<String>,
}

/// Chooses, drills from `target`, and records one audit record per drilled
/// snapshot on every target that takes it, the drilled one first (a fresh
/// machine continues the chain it holds).
pub fn drill_and_record(
    config: &crate::config::Config,
    target: &crate::config::Target,
    selection: &Selection,
    scratch: PathBuf,
    max_age: jiff::Span,
) -> Result<DrillRun> {
    let repo = Repository::open_target(target, &config.key)?;
    let now = jiff::Timestamp::now();
    let time_zone = config.policy.time_zone.clone();
    let mut warnings = Vec::new();
    let not_expected_fresh = not_expected_fresh(&repo, now, &time_zone).unwrap_or_else(|e| {
        warnings.push(format!(
            "lifecycle events not read, every tenant must be fresh: {e}"
        ));
        Default::default()
    });
    let chosen = choose(&repo, selection)?;
    let opts = DrillOptions {
        scratch,
        max_age,
        time_zone,
        not_expected_fresh,
        host: config.agent.host.clone(),
        now,
    };
    let results = run(&repo, &chosen, &opts)?;

    let mut audit_targets = vec![repo];
    for t in config.targets.iter().filter(|t| t.name != target.name) {
        match Repository::open_target(t, &config.key) {
            Ok(r) => audit_targets.push(r),
            Err(e) => warnings.push(format!(
                "audit records not written to target {}: {e}",
                t.name
            )),
        }
    }
    let refs: Vec<&Repository> = audit_targets.iter().collect();
    let audit = crate::audit::AuditLog::open(&config.agent.state_dir, &config.agent.host)?;
    let described = selection.describe();
    let mut records = Vec::new();
    for r in &results {
        let (record, failed) = audit.append(r.audit_entry(&described), &refs)?;
        for (t, e) in failed {
            warnings.push(format!(
                "audit record #{} not written to target {t} (the next ship copies it): {e}",
                record.seq
            ));
        }
        records.push(Some(record));
    }
    Ok(DrillRun {
        results,
        records,
        tenants: chosen.tenants.len(),
        now,
        warnings,
    })
}

/// Runs the drills of `chosen` against `repo`, one tenant at a time.
pub fn run(repo: &Repository, chosen: &Chosen, opts: &DrillOptions) -> Result<Vec<DrillResult>> {
    let target = repo.store.name().to_string();
    let scratch = Scratch::open(&opts.scratch)?;
    let mut results = Vec::new();
    for name in &chosen.absent {
        let message = format!("tenant {name} has no snapshot on target {target}");
        results.push(DrillResult::failed(
            name,
            &target,
            Problem::of_snapshot(message),
        ));
    }
    let holder = crate::lock::Holder {
        host: opts.host.clone(),
        command: "drill".into(),
    };
    for (name, named) in &chosen.tenants {
        let lock = crate::lock::acquire(&repo.store, name, crate::lock::LockKind::Shared, &holder);
        let _lock = match lock {
            Ok(l) => l,
            Err(e) => {
                let why = Problem::of_snapshot(format!("not drilled: {e}"));
                results.push(DrillResult::failed(name, &target, why));
                continue;
            }
        };
        match drill_tenant(repo, name, *named, opts, &scratch) {
            Ok(mut r) => results.append(&mut r),
            Err(e) => results.push(DrillResult::failed(name, &target, Problem::whole(e))),
        }
    }
    scratch.close();
    Ok(results)
}

/// Drills the named snapshot, or the latest of each of the tenant's sources.
fn drill_tenant(
    repo: &Repository,
    name: &str,
    named: Option<Id>,
    opts: &DrillOptions,
    scratch: &Scratch,
) -> Result<Vec<DrillResult>> {
    let tenant = repo.tenant(name, false)?;
    let snapshots = repo.snapshots(&tenant)?;
    let mut latest: BTreeMap<&str, (Id, &Snapshot)> = BTreeMap::new();
    for (id, snap) in &snapshots {
        // Oldest first: the last one seen per source is its latest.
        latest.insert(&snap.source, (*id, snap));
    }
    let picks: Vec<(Id, &Snapshot)> = match named {
        Some(id) => {
            let snap = snapshots
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, s)| s)
                .ok_or_else(|| Error::SnapshotNotFound(id.to_hex()))?;
            vec![(id, snap)]
        }
        None => latest.values().copied().collect(),
    };
    let mut results = Vec::new();
    for (id, snap) in picks {
        let newest = latest.get(snap.source.as_str()).map_or(snap, |(_, s)| *s);
        results.push(drill_one(repo, &tenant, id, snap, newest, opts, scratch));
    }
    Ok(results)
}

fn drill_one(
    repo: &Repository,
    tenant: &Arc<Tenant>,
    id: Id,
    snap: &Snapshot,
    newest: &Snapshot,
    opts: &DrillOptions,
    scratch: &Scratch,
) -> DrillResult {
    let mut result = DrillResult::new(&tenant.name, repo.store.name());
    result.snapshot = id.to_hex();
    result.source = snap.source.clone();
    result.taken = Some(snap.timestamp().to_string());
    result.latest = Some(newest.timestamp().to_string());
    result.expected_files = snap.files;
    result.expected_bytes = snap.bytes;
    freshness(&mut result, newest, opts);

    if let Err(p) = scratch.has_room_for(snap.bytes) {
        result.problems.push(p);
        return result.finish();
    }
    let dir = match scratch.make_dir() {
        Ok(d) => d,
        Err(e) => {
            result.problems.push(Problem::whole(e));
            return result.finish();
        }
    };
    let started = Instant::now();
    let restored = restore_into(repo, tenant, id, snap, dir.path(), started);
    match restored {
        Ok((open, planned, report)) => {
            result.seconds = started.elapsed().as_secs_f64();
            result.first_byte_seconds = report.first_byte;
            examine(&mut result, &open, &planned, &report, dir.path());
        }
        Err(e) => {
            result.seconds = started.elapsed().as_secs_f64();
            result.problems.push(Problem::whole(e));
        }
    }
    if result.seconds > 0.0 {
        result.mb_per_s = result.bytes as f64 / 1e6 / result.seconds;
    }
    if let Err(e) = dir.remove() {
        result.problems.push(Problem::whole(e));
    }
    result.finish()
}

type Restored<'a> = (OpenSnapshot<'a>, Vec<Planned>, RestoreReport);

fn restore_into<'a>(
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

fn freshness(result: &mut DrillResult, newest: &Snapshot, opts: &DrillOptions) {
    if let Some(why) = opts.not_expected_fresh.get(&result.tenant) {
        result.freshness = format!("not checked: {why}");
        return;
    }
    let taken = newest.timestamp();
    let limit = taken
        .to_zoned(opts.time_zone.clone())
        .checked_add(opts.max_age)
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MAX);
    let age = human_age(opts.now.duration_since(taken));
    if opts.now < limit {
        result.fresh = Some(true);
        result.freshness = format!("latest {age} old, under {:#}", opts.max_age);
    } else {
        result.fresh = Some(false);
        result.freshness = format!("latest {age} old, over {:#}", opts.max_age);
        result.problems.push(Problem::of_snapshot(format!(
            "stale: the latest snapshot of {}/{} was taken {} ({age} ago), longer ago than the maximum age {:#}",
            result.tenant,
            newest.source,
            taken.strftime("%Y-%m-%d %H:%M:%S UTC"),
            opts.max_age
        )));
    }
}

/// Turns the restore's failures into problems named by file, blob and pack,
/// then checks every restored entry's metadata against the snapshot.
fn examine(
    result: &mut DrillResult,
    open: &OpenSnapshot<'_>,
    planned: &[Planned],
    report: &RestoreReport,
    root: &Path,
) {
    let in_snapshot = |path: &Path| -> String {
        let rel = path.strip_prefix(root).unwrap_or(path);
        format!("/{}", rel.display())
    };
    // A set, and each entry's ancestors looked up in it: a badly damaged
    // tenant has as many failures as files.
    let failed: HashSet<&Path> = report.errors.iter().map(|f| f.path.as_path()).collect();
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
            file: Some(in_snapshot(&f.path)),
            blob: blob.map(|b| b.to_hex()),
            object: f.object.clone(),
            message: f.message.clone(),
        });
    }
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid, is_root) = unsafe { (libc::geteuid(), libc::getegid(), libc::geteuid() == 0) };
    let mut first_of_inode: HashMap<(u64, u64), u64> = HashMap::new();
    for p in planned {
        if p.path.ancestors().any(|a| failed.contains(a)) {
            continue;
        }
        let node = &p.node;
        match check_entry(p, is_root, &mut first_of_inode).err() {
            None => {
                result.metadata_checked += 1;
                if node.kind == NodeKind::File {
                    result.files += 1;
                    result.bytes += node.size;
                }
                if !is_root && (node.uid != uid || node.gid != gid) {
                    result.ownership_not_restored += 1;
                }
            }
            Some(message) => result.problems.push(Problem {
                file: Some(in_snapshot(&p.path)),
                blob: None,
                object: None,
                message,
            }),
        }
    }
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
    is_root: bool,
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
    if is_root && (meta.uid(), meta.gid()) != (node.uid, node.gid) {
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

/// The scratch folder: created 0700 if absent (and then removed again if
/// the drills leave it empty); each drill restores into its own
/// `drill-<pid>-<n>` folder in it, removed when the drill ends.
struct Scratch {
    root: PathBuf,
    created: bool,
    next: std::cell::Cell<u64>,
}

const DIR_PREFIX: &str = "drill-";

impl Scratch {
    fn open(root: &Path) -> Result<Scratch> {
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
    fn has_room_for(&self, bytes: u64) -> std::result::Result<(), Problem> {
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

    fn make_dir(&self) -> Result<ScratchDir> {
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

    fn close(self) {
        if self.created {
            // Only if empty: someone may have put something there meanwhile.
            let _ = std::fs::remove_dir(&self.root);
        }
    }
}

/// One drill's folder; removed by `remove`, or when dropped (a panic).
struct ScratchDir {
    path: Option<PathBuf>,
}

impl ScratchDir {
    fn path(&self) -> &Path {
        self.path.as_deref().expect("present until removed")
    }

    fn remove(mut self) -> Result<()> {
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

/// Tenants whose backups are not expected to be fresh, with why: a
/// contract whose last day has passed, or an erasure requested. Read from
/// the lifecycle events on `repo`.
pub fn not_expected_fresh(
    repo: &Repository,
    now: Timestamp,
    tz: &TimeZone,
) -> Result<BTreeMap<String, String>> {
    let events = crate::lifecycle::journal::load(repo)?;
    let today = now.to_zoned(tz.clone()).date();
    let mut out = BTreeMap::new();
    for (tenant, state) in crate::lifecycle::events::fold(&events) {
        if let Some(end) = &state.contract_end
            && end.last_day < today
        {
            out.insert(tenant, format!("contract ended {}", end.last_day));
        } else if let Some(e) = state.erasures.last() {
            let day = e.at.to_zoned(tz.clone()).date();
            out.insert(tenant, format!("erasure requested {day}"));
        }
    }
    Ok(out)
}

/// What a report says about the run as a whole.
pub struct ReportHeader<'a> {
    pub host: &'a str,
    pub target: &'a str,
    pub time: Timestamp,
    pub time_zone: &'a TimeZone,
    pub selection: &'a str,
    pub max_age: Span,
    /// The audit record written for each result, in the same order.
    pub records: &'a [Option<Record>],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Markdown,
    Html,
}

impl ReportFormat {
    /// HTML for a `.html` or `.htm` file, else Markdown.
    pub fn for_path(path: &Path) -> ReportFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm") => {
                ReportFormat::Html
            }
            _ => ReportFormat::Markdown,
        }
    }
}

/// A report a person can hand to an auditor: what was restored from where,
/// what was checked, how long it took, what failed and where the evidence
/// is in the audit trail.
pub fn report(results: &[DrillResult], head: &ReportHeader<'_>, format: ReportFormat) -> String {
    let failed = results.iter().filter(|r| !r.ok).count();
    let verdict = if results.is_empty() {
        "No snapshot was drilled.".to_string()
    } else if failed == 0 {
        format!("All {} drills passed.", results.len())
    } else {
        format!("{failed} of {} drills FAILED.", results.len())
    };
    let local = head.time.to_zoned(head.time_zone.clone());
    let facts: Vec<(&str, String)> = vec![
        ("Result", verdict),
        ("Host", head.host.to_string()),
        ("Restored from target", head.target.to_string()),
        (
            "Time",
            format!("{} ({})", local.strftime("%Y-%m-%d %H:%M:%S %Z"), head.time),
        ),
        ("Chosen", head.selection.to_string()),
        (
            "Maximum age of the latest backup",
            format!("{:#}", head.max_age),
        ),
        ("Program", format!("gallra {}", env!("CARGO_PKG_VERSION"))),
    ];
    let columns = [
        "Tenant",
        "Source",
        "Snapshot",
        "Taken",
        "Files",
        "Bytes",
        "First byte",
        "Seconds",
        "MB/s",
        "Freshness",
        "Result",
        "Audit record",
    ];
    let rows: Vec<Vec<String>> = results
        .iter()
        .zip(head.records.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(r, rec)| {
            vec![
                r.tenant.clone(),
                r.source.clone(),
                short_hex(&r.snapshot, 12).to_string(),
                r.taken.clone().unwrap_or_default(),
                format!("{} of {}", r.files, r.expected_files),
                format!("{} of {}", r.bytes, r.expected_bytes),
                r.first_byte_seconds
                    .map_or(String::new(), |s| format!("{s:.3} s")),
                format!("{:.3}", r.seconds),
                format!("{:.1}", r.mb_per_s),
                r.freshness.clone(),
                if r.ok { "passed" } else { "FAILED" }.to_string(),
                rec.and_then(|r| r.as_ref()).map_or(String::new(), |r| {
                    format!("{} #{} ({})", r.host, r.seq, short_hex(&r.hash, 16))
                }),
            ]
        })
        .collect();
    let checks = [
        "Every file was restored from the target named above into an empty scratch folder, on this host, with nothing read from any other copy.",
        "Every file's bytes were hashed as they were written and read back from disk, and both SHA-256 sums compared with the one the snapshot recorded at backup time.",
        "Every file, directory and symlink was compared with the snapshot: kind, size, permission bits, modification time, symlink target, hard links, and owner when the drill ran as root.",
        "The number of files and their bytes were compared with what the snapshot records.",
        "The latest snapshot of each drilled source was checked to be younger than the maximum age.",
        "The scratch folder was emptied afterwards, and each drill was written to the hash-chained audit trail (without file names).",
    ];
    let problems: Vec<(&DrillResult, &Problem)> = results
        .iter()
        .flat_map(|r| r.problems.iter().map(move |p| (r, p)))
        .collect();
    match format {
        ReportFormat::Markdown => {
            let mut out = String::from("# Restore drill report\n\n");
            for (k, v) in &facts {
                out += &format!("- **{k}:** {}\n", md_cell(v));
            }
            out += "\n## Drills\n\n|";
            for c in columns {
                out += &format!(" {c} |");
            }
            out += "\n|";
            out += &"---|".repeat(columns.len());
            out += "\n";
            for row in &rows {
                out += "|";
                for c in row {
                    out += &format!(" {} |", if c.is_empty() { "-".into() } else { md_cell(c) });
                }
                out += "\n";
            }
            if !problems.is_empty() {
                out += "\n## Problems\n\n";
                for (r, p) in &problems {
                    out += &format!(
                        "- {} {}: {}\n",
                        md_cell(&r.tenant),
                        short_hex(&r.snapshot, 12),
                        md_cell(&p.to_string())
                    );
                }
            }
            out += "\n## What was checked\n\n";
            for c in checks {
                out += &format!("- {c}\n");
            }
            out
        }
        ReportFormat::Html => {
            let e = html_escape;
            let mut out = String::from(
                "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Restore drill report</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3em .6em;text-align:left}.failed{color:#a00;font-weight:bold}</style>\n</head>\n<body>\n<h1>Restore drill report</h1>\n<dl>\n",
            );
            for (k, v) in &facts {
                out += &format!("<dt>{}</dt><dd>{}</dd>\n", e(k), e(v));
            }
            out += "</dl>\n<h2>Drills</h2>\n<table>\n<tr>";
            for c in columns {
                out += &format!("<th>{}</th>", e(c));
            }
            out += "</tr>\n";
            for row in &rows {
                out += "<tr>";
                for c in row {
                    let class = if c == "FAILED" {
                        " class=\"failed\""
                    } else {
                        ""
                    };
                    out += &format!("<td{class}>{}</td>", e(c));
                }
                out += "</tr>\n";
            }
            out += "</table>\n";
            if !problems.is_empty() {
                out += "<h2>Problems</h2>\n<ul>\n";
                for (r, p) in &problems {
                    out += &format!(
                        "<li>{} {}: {}</li>\n",
                        e(&r.tenant),
                        short_hex(&r.snapshot, 12),
                        e(&p.to_string())
                    );
                }
                out += "</ul>\n";
            }
            out += "<h2>What was checked</h2>\n<ul>\n";
            for c in checks {
                out += &format!("<li>{}</li>\n", e(c));
            }
            out += "</ul>\n</body>\n</html>\n";
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::format::tree::Node;
    use filetime::FileTime;

    /// The modification time every fixture is given, and nodes record.
    const MTIME: (i64, u32) = (1_700_000_000, 123_456_789);
    const BLOB: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const PACK: &str =
        "tenants/acme/packs/ab/abababababababababababababababababababababababababababababababab";
    const SECRET: &str = "/var/www/acme/secret-ledger.txt";

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
        check_entry(&p, false, &mut HashMap::new())
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
        let e = check_entry(&p, true, &mut HashMap::new()).unwrap_err();
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
                check_entry(&p, false, &mut seen)
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

    fn passing() -> DrillResult {
        let mut r = DrillResult::new("beta", "offsite");
        r.snapshot = "5e".repeat(32);
        r.source = "www".into();
        r.files = 3;
        r.bytes = 4096;
        r.seconds = 1.25;
        r.first_byte_seconds = Some(0.5);
        r.fresh = Some(true);
        r.freshness = "latest 2h 0m old, under 2 days".into();
        r.finish()
    }

    fn failing() -> DrillResult {
        let mut r = DrillResult::new("acme", "offsite");
        r.snapshot = "c0".repeat(32);
        r.source = "www".into();
        r.files = 1;
        r.bytes = 10;
        r.seconds = 2.5;
        r.fresh = Some(false);
        r.problems.push(Problem {
            file: Some(SECRET.into()),
            blob: Some(BLOB.into()),
            object: Some(PACK.into()),
            message: "authentication failed".into(),
        });
        r.problems.push(Problem::of_snapshot("stale".into()));
        r.finish()
    }

    #[test]
    fn drills_round_trip_through_the_audit_trail_without_file_names() {
        let (pass, fail) = (passing(), failing());
        assert!(pass.ok && pass.error.is_none());
        assert!(!fail.ok);
        // The report's error names the file; the audit trail's must not.
        assert!(fail.error.as_deref().unwrap().starts_with(SECRET));

        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), "web01").unwrap();
        let selection = Selection::Tenants(vec!["acme".into(), "beta".into()]).describe();
        log.append(pass.audit_entry(&selection), &[]).unwrap();
        log.append(Entry::new(Action::Backup, Some("acme")), &[])
            .unwrap();
        log.append(fail.audit_entry(&selection), &[]).unwrap();
        let records = log.records().unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(!text.contains("secret-ledger"), "{text}");

        let all = history(&records, None);
        assert_eq!(all.len(), 2, "the backup record is no drill");
        let p = &all[0];
        assert_eq!((p.seq, p.host.as_str()), (1, "web01"));
        assert_eq!(
            (p.tenant.as_str(), p.snapshot.as_str()),
            ("beta", &*pass.snapshot)
        );
        assert_eq!((p.source.as_str(), p.target.as_str()), ("www", "offsite"));
        assert_eq!((p.files, p.bytes), (3, 4096));
        assert_eq!((p.seconds, p.first_byte_seconds), (Some(1.25), Some(0.5)));
        assert_eq!(
            (p.fresh, p.ok, p.error.as_deref()),
            (Some(true), true, None)
        );
        assert_eq!(p.selection.as_deref(), Some("tenants acme, beta"));

        let acme = history(&records, Some("acme"));
        assert_eq!(acme.len(), 1);
        let f = &acme[0];
        assert_eq!((f.seq, f.tenant.as_str()), (3, "acme"));
        assert_eq!(f.snapshot, fail.snapshot);
        assert_eq!((f.target.as_str(), f.files, f.bytes), ("offsite", 1, 10));
        assert_eq!((f.seconds, f.first_byte_seconds), (Some(2.5), None));
        assert_eq!((f.fresh, f.ok), (Some(false), false));
        let error = f.error.as_deref().unwrap();
        let want =
            format!("a file: blob 0123456789abcdef: {PACK}: authentication failed (and 1 more)");
        assert_eq!(error, want);
        assert_eq!(f.selection.as_deref(), Some("tenants acme, beta"));
        assert!(history(&records, Some("gamma")).is_empty());
    }

    #[test]
    fn history_keeps_a_source_name_with_a_space() {
        let mut r = passing();
        r.source = "mail archive".into();
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), "web01").unwrap();
        log.append(r.audit_entry("x"), &[]).unwrap();
        let past = history(&log.records().unwrap(), None);
        assert_eq!(past[0].source, "mail archive");
    }

    #[test]
    fn problem_names_file_blob_and_object_once() {
        let p = Problem {
            file: Some(SECRET.into()),
            blob: Some(BLOB.into()),
            object: Some(PACK.into()),
            message: "authentication failed".into(),
        };
        let want = format!("{SECRET}: blob 0123456789abcdef: {PACK}: authentication failed");
        assert_eq!(p.to_string(), want);
        let without = p.without_file();
        assert_eq!(
            without,
            format!("a file: blob 0123456789abcdef: {PACK}: authentication failed")
        );
        assert!(!without.contains("/var/www"));

        let inside = Problem {
            message: format!("reading {PACK}: not found"),
            ..p.clone()
        };
        let shown = inside.to_string();
        assert_eq!(shown.matches(PACK).count(), 1, "{shown}");
        assert!(shown.ends_with(&format!("blob 0123456789abcdef: reading {PACK}: not found")));

        let whole = Problem::of_snapshot("stale".into());
        assert_eq!(
            (whole.to_string(), whole.without_file()),
            ("stale".into(), "stale".into())
        );
    }

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

    fn head<'a>(records: &'a [Option<Record>], tz: &'a TimeZone) -> ReportHeader<'a> {
        ReportHeader {
            host: "web01",
            target: "offsite",
            time: "2026-03-01T12:00:00Z".parse().unwrap(),
            time_zone: tz,
            selection: "tenants acme, <b>|x",
            max_age: jiff::Span::new().days(2),
            records,
        }
    }

    #[test]
    fn report_escapes_names_and_gives_the_verdict() {
        let mut odd = passing();
        odd.tenant = "<b>|x".into();
        let results = [odd, failing()];
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), "web01").unwrap();
        let (rec, _) = log.append(results[0].audit_entry("x"), &[]).unwrap();
        let records = [Some(rec.clone()), None];
        let tz = TimeZone::UTC;
        let head = head(&records, &tz);

        let md = report(&results, &head, ReportFormat::Markdown);
        assert!(md.contains("- **Result:** 1 of 2 drills FAILED.\n"), "{md}");
        assert!(md.contains("\n| <b>\\|x | www | 5e5e5e5e5e5e |"), "{md}");
        assert!(
            !md.contains("<b>|x"),
            "an unescaped | splits the table: {md}"
        );
        assert!(
            md.contains(&format!("| web01 #1 ({}) |", &rec.hash[..16])),
            "{md}"
        );
        assert!(
            md.contains(&format!("- acme c0c0c0c0c0c0: {SECRET}: blob")),
            "{md}"
        );

        let html = report(&results, &head, ReportFormat::Html);
        assert!(html.contains("<dd>1 of 2 drills FAILED.</dd>"), "{html}");
        assert!(html.contains("<tr><td>&lt;b&gt;|x</td>"), "{html}");
        assert!(!html.contains("<b>"), "markup from a name: {html}");
        assert!(html.contains("<td class=\"failed\">FAILED</td>"), "{html}");

        let verdict = |r: &[DrillResult]| report(r, &head, ReportFormat::Markdown);
        assert!(verdict(&[passing()]).contains("All 1 drills passed."));
        assert!(verdict(&[]).contains("No snapshot was drilled."));
    }

    #[test]
    fn report_format_follows_the_extension() {
        let of = |p: &str| ReportFormat::for_path(Path::new(p));
        assert_eq!(of("r.HTML"), ReportFormat::Html);
        assert_eq!(of("r.htm"), ReportFormat::Html);
        assert_eq!(of("r.md"), ReportFormat::Markdown);
        assert_eq!(of("html"), ReportFormat::Markdown);
        assert_eq!(of("r.html.txt"), ReportFormat::Markdown);
    }
}
