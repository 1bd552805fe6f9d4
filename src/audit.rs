//! The audit trail: every deletion, erasure, hold, contract event, backup and
//! drill, as a hash chain per host.
//!
//! Each record holds the SHA-256 of the one before it, so removing, editing or
//! reordering a record breaks the chain where it happened. The chain lives in
//! `<state_dir>/audit.jsonl` and, sealed with a key derived from the
//! repository's master key, under `audit/<host>/` in every target: someone
//! who can rewrite the local file cannot forge the targets' copies, and
//! someone who can delete objects in a target cannot make the local file
//! forget. Records hold ids, counts and operators' words, never file names.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{Kind, record};
use crate::layout;
use crate::limits::ReadLimit;
use crate::repo::Repository;
use crate::text::{human_bytes, md_cell as cell, short_hex as short};

const FILE_NAME: &str = "audit.jsonl";
/// The local head: the last record appended (FORMAT.md, audit heads).
const HEAD_FILE: &str = "audit.head";
const HEAD_VERSION: u32 = 1;
const LOCK_NAME: &str = "audit.lock";
const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Backup,
    Delete,
    Prune,
    KeyDestroyed,
    LegalKept,
    ContractEnded,
    ContractReinstated,
    HoldSet,
    HoldReleased,
    ErasureRequested,
    Drill,
    KeyRotated,
    TargetReverted,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Backup => "backup",
            Action::Delete => "delete",
            Action::Prune => "prune",
            Action::KeyDestroyed => "key-destroyed",
            Action::LegalKept => "legal-kept",
            Action::ContractEnded => "contract-ended",
            Action::ContractReinstated => "contract-reinstated",
            Action::HoldSet => "hold-set",
            Action::HoldReleased => "hold-released",
            Action::ErasureRequested => "erasure-requested",
            Action::Drill => "drill",
            Action::KeyRotated => "key-rotated",
            Action::TargetReverted => "target-reverted",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCounts {
    pub target: String,
    pub objects: u64,
    pub bytes: u64,
}

/// What survives a deletion on one target, as the record keeps it (the
/// survival module's `Leftovers` says it; the record holds its line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Survives {
    pub target: String,
    /// "kept", "not-kept" or "unknown": the store's old versions.
    pub old_versions: String,
    /// RFC 3339: the earliest the store's rule removes them, if stated.
    pub until: Option<String>,
    pub words: String,
}

/// What a caller records; the log adds seq, time (if None: now), host,
/// prev_hash and hash.
#[derive(Debug, Clone)]
pub struct Entry {
    pub action: Action,
    pub tenant: Option<String>,
    pub snapshots: Vec<String>,     // snapshot ids (hex)
    pub targets: Vec<TargetCounts>, // objects and bytes deleted (or written) per target
    pub rule: Option<String>,
    pub legal_basis: Option<String>,
    pub reason: Option<String>, // the operator's text, e.g. the erasure reason
    pub event: Option<String>,  // the lifecycle event id that caused it
    pub detail: Option<String>, // short free text, never file names
    /// Per target, what the deletion leaves behind (deletions only).
    pub survives: Vec<Survives>,
    pub time: Option<jiff::Timestamp>,
}

impl Entry {
    pub fn new(action: Action, tenant: Option<&str>) -> Entry {
        Entry {
            action,
            tenant: tenant.map(str::to_string),
            snapshots: Vec::new(),
            targets: Vec::new(),
            rule: None,
            legal_basis: None,
            reason: None,
            event: None,
            detail: None,
            survives: Vec::new(),
            time: None,
        }
    }
}

/// One record as stored. Field order is the serialisation order, and so part
/// of the format: the hash is taken over this serialisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,     // 1, 2, 3 ... per host chain
    pub time: String, // RFC 3339 UTC
    pub host: String,
    pub action: Action,
    pub tenant: Option<String>,
    pub snapshots: Vec<String>,
    pub targets: Vec<TargetCounts>,
    pub rule: Option<String>,
    pub legal_basis: Option<String>,
    pub reason: Option<String>,
    pub event: Option<String>,
    pub detail: Option<String>,
    /// Added for issue 17: absent from older records, and never written
    /// empty, so an older record serialises (and hashes) as it was written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub survives: Vec<Survives>,
    pub prev_hash: String, // hex SHA-256 of the previous record; 64 '0's for seq 1
    pub hash: String,      // hex SHA-256 of the JSON of this record with `hash` ""
}

impl Record {
    pub fn compute_hash(&self) -> String {
        let mut blank = self.clone();
        blank.hash.clear();
        let json = serde_json::to_vec(&blank).expect("records serialise to JSON");
        hex::encode(crate::crypto::sha256(&json))
    }

    /// `audit/<host>/<seq:012>-<hash[..16]>`: names sort in seq order.
    pub fn object_path(&self) -> String {
        let (host, seq, hash) = (&self.host, self.seq, short(&self.hash, 16));
        layout::audit_record_path(host, seq, hash)
    }
}

/// Where a chain ends, written after each append to the state folder and
/// to every target (`audit-heads/<host>`, overwritten, sealed and bound to
/// its name): records removed from the end of the chain leave a head that
/// names a later record than any the chain holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub version: u32,
    pub host: String,
    pub seq: u64,
    pub hash: String,
}

impl Head {
    fn of(rec: &Record) -> Head {
        Head {
            version: HEAD_VERSION,
            host: rec.host.clone(),
            seq: rec.seq,
            hash: rec.hash.clone(),
        }
    }
}

pub struct AuditLog {
    dir: PathBuf,
    path: PathBuf,
    host: String,
}

/// `problems` empty: the chains are intact everywhere.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub local_records: u64,
    /// The latest head of this host's chain found (local file or a target),
    /// and where; `None`: no head recorded yet (a repository from before
    /// heads), so a removed tail cannot be told from a chain's end.
    pub head: Option<u64>,
    pub head_place: Option<String>,
    pub targets: Vec<TargetVerify>,
    pub problems: Vec<Problem>,
}

/// `records`: every host's records on the target that opened.
#[derive(Debug, Clone, Serialize)]
pub struct TargetVerify {
    pub target: String,
    pub records: u64,
}

/// `place`: "audit.jsonl line 7" or "target offsite: audit/web01/000000000007-1a2b...".
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub place: String,
    pub message: String,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn report(out: &mut Vec<Problem>, place: impl Into<String>, message: impl Into<String>) {
    let (place, message) = (place.into(), message.into());
    out.push(Problem { place, message });
}

/// Records of one chain, each with where it was found, in stored order.
type Placed = Vec<(String, Record)>;

impl AuditLog {
    /// Creates `state_dir` (0700) if absent; the file comes with the first
    /// append.
    pub fn open(state_dir: &Path, host: &str) -> Result<AuditLog> {
        // The host names a folder in every target: nothing that could climb
        // out of `audit/` or split into two folders.
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
        if host.is_empty() || host.starts_with('.') || !host.bytes().all(allowed) {
            let rule = "letters, digits, '.', '-', '_', not starting with '.'";
            let why = format!("host name {host:?} cannot name an audit chain ({rule})");
            return Err(Error::Usage(why));
        }
        if !state_dir.is_dir() {
            let mut builder = std::fs::DirBuilder::new();
            let made = builder.recursive(true).mode(0o700).create(state_dir);
            made.map_err(|e| Error::io(state_dir, e))?;
        }
        let (dir, path) = (state_dir.to_path_buf(), state_dir.join(FILE_NAME));
        let host = host.to_string();
        Ok(AuditLog { dir, path, host })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record locally, then to every target. A target that
    /// cannot take it is returned, not fatal: the next ship copies audit
    /// objects. A seq used on a target by a different record is not looked
    /// for here (that would cost a listing per record); `verify` finds it.
    pub fn append(
        &self,
        entry: Entry,
        targets: &[&Repository],
    ) -> Result<(Record, Vec<(String, Error)>)> {
        let lock_path = self.dir.join(LOCK_NAME);
        let lock = open_private(&lock_path).and_then(|f| f.lock().map(|()| f));
        let lock = lock.map_err(|e| Error::io(&lock_path, e))?;

        // A log that does not parse is not extended: the error names the line.
        let mut last = self.records()?.pop();
        if last.is_none()
            && let Some(first) = targets.first()
        {
            // A fresh machine restoring from offsite continues the chain the
            // targets hold rather than start a second seq 1.
            let chain = recover(first, &self.host)?;
            self.write_lines(&chain)?;
            last = chain.into_iter().last();
        }
        let (seq, prev_hash) = match last {
            Some(r) => (r.seq + 1, r.hash),
            None => (1, ZERO_HASH.to_string()),
        };
        let now = jiff::Timestamp::now();
        let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
        let mut rec = Record {
            seq,
            time: entry.time.unwrap_or(now).to_string(),
            host: self.host.clone(),
            action: entry.action,
            tenant: entry.tenant,
            snapshots: entry.snapshots,
            targets: entry.targets,
            rule: entry.rule,
            legal_basis: entry.legal_basis,
            reason: entry.reason,
            event: entry.event,
            detail: entry.detail,
            survives: entry.survives,
            prev_hash,
            hash: String::new(),
        };
        rec.hash = rec.compute_hash();
        self.write_lines(std::slice::from_ref(&rec))?;
        // Each head after its record: a crash between them leaves a head
        // behind its chain, never ahead of it, so only a removal puts a
        // head past the chain's end.
        let head = Head::of(&rec);
        let head_file = self.dir.join(HEAD_FILE);
        let json = serde_json::to_vec(&head).expect("heads serialise to JSON");
        crate::files::replace_file(&head_file, &json).map_err(|e| Error::io(&head_file, e))?;
        let mut failed = Vec::new();
        for repo in targets {
            if let Err(e) = put_record(repo, &rec).and_then(|()| put_head(repo, &head)) {
                failed.push((repo.store.name().to_string(), e));
            }
        }
        drop(lock);
        Ok((rec, failed))
    }

    /// Every record of the local file, in order.
    pub fn records(&self) -> Result<Vec<Record>> {
        let (placed, bad) = self.read_local()?;
        if let Some(p) = bad.into_iter().next() {
            let place = format!("{}/{}", self.dir.display(), p.place);
            return Err(Error::corrupt(place, p.message));
        }
        Ok(placed.into_iter().map(|(_, r)| r).collect())
    }

    /// Checks the local file and every target.
    pub fn verify(&self, targets: &[&Repository]) -> Result<VerifyReport> {
        let (local, mut problems) = self.read_local()?;
        check_chain(&local, &self.host, &mut problems);
        let mut report = VerifyReport::default();
        // Every chain's end (local file, each target) and every head.
        let mut ends: Vec<(String, u64)> = vec![(FILE_NAME.to_string(), last_seq(&local))];
        let mut heads: Vec<(String, Head)> = Vec::new();
        match self.read_head() {
            Ok(Some(h)) => heads.push((HEAD_FILE.to_string(), h)),
            Ok(None) => {}
            Err(e) => self::report(&mut problems, HEAD_FILE, e.to_string()),
        }
        let mut headless = Vec::new();
        for repo in targets {
            let (records, end) = self.verify_target(repo, &local, &mut problems);
            let target = repo.store.name().to_string();
            report.targets.push(TargetVerify {
                target: target.clone(),
                records,
            });
            let place = format!("target {target}: {}", layout::audit_head_path(&self.host));
            if let Some(end) = end {
                ends.push((
                    format!(
                        "target {target}: {}",
                        layout::audit_chain_folder(&self.host)
                    ),
                    end,
                ));
            }
            match read_head(repo, &self.host) {
                Ok(Some(h)) => heads.push((place, h)),
                Ok(None) if end.is_some_and(|e| e > 0) => headless.push(place),
                Ok(None) => {}
                Err(e) => self::report(&mut problems, place, e.to_string()),
            }
        }
        check_heads(&ends, &heads, &headless, &self.host, &mut problems);
        if let Some((place, h)) = heads.iter().max_by_key(|(_, h)| h.seq) {
            report.head = Some(h.seq);
            report.head_place = Some(place.clone());
        }
        report.local_records = local.len() as u64;
        report.problems = problems;
        Ok(report)
    }

    /// The sequence of the local head: what `status` and the metrics show.
    pub fn head_sequence(&self) -> Result<Option<u64>> {
        Ok(self.read_head()?.map(|h| h.seq))
    }

    /// The local head file; `None` before the first append that wrote one.
    fn read_head(&self) -> Result<Option<Head>> {
        let path = self.dir.join(HEAD_FILE);
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path);
        let mut file = match opened {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            other => other.map_err(|e| Error::io(&path, e))?,
        };
        let text = crate::files::read_capped(&mut file, 4096)
            .map_err(|e| Error::io(&path, e))?
            .ok_or_else(|| Error::corrupt(HEAD_FILE, "larger than an audit head can be"))?;
        let head: Head = serde_json::from_slice(&text)
            .map_err(|e| Error::corrupt(HEAD_FILE, format!("not a valid audit head: {e}")))?;
        Ok(Some(head))
    }

    /// Checks every chain on one target, and this host's against `local`.
    /// Returns how many records opened.
    fn verify_target(
        &self,
        repo: &Repository,
        local: &Placed,
        out: &mut Vec<Problem>,
    ) -> (u64, Option<u64>) {
        let (name, host) = (repo.store.name(), &self.host);
        let chains = match repo.store.list(layout::AUDIT_FOLDER) {
            Ok(listed) => load_objects(repo, listed.into_iter().map(|l| l.path), out),
            Err(e) => {
                report(out, format!("target {name}"), format!("cannot list: {e}"));
                return (0, None);
            }
        };
        let end = last_seq(chains.get(host).map_or(&[][..], |c| c.as_slice()));
        for (host, items) in &chains {
            check_chain(items, host, out);
        }
        // Reversed, so that the first of a duplicated seq is the one kept.
        let ours = chains.get(host).into_iter().flatten().rev();
        let ours: BTreeMap<u64, &(String, Record)> = ours.map(|i| (i.1.seq, i)).collect();
        let mut local_max = 0;
        for (_, rec) in local {
            let seq = rec.seq;
            local_max = local_max.max(seq);
            match ours.get(&seq) {
                Some((_, r)) if r.hash == rec.hash => {}
                None => {
                    let why = "removed, or not yet shipped: run `gallra ship`";
                    let message = format!("record seq {seq} is missing on target {name} ({why})");
                    let place = format!("target {name}: {}", rec.object_path());
                    report(out, place, message);
                }
                Some((place, r)) => {
                    let (there, here) = (short(&r.hash, 16), short(&rec.hash, 16));
                    let why = format!("hash {there} there, {here} in {FILE_NAME}");
                    let message = format!("record seq {seq} conflicts with the local one ({why})");
                    report(out, place, message);
                }
            }
        }
        // A tail the local file lacks: it lost its last records, or another
        // machine writes as this host.
        let mut tail = ours.range(local_max + 1..).map(|(s, _)| *s);
        if let Some(from) = tail.next() {
            let records = seq_range(from, tail.next_back().unwrap_or(from));
            let why = format!("lost by the local file, or another machine writes as host {host}");
            let message = format!("{records} on target {name} but not in {FILE_NAME} ({why})");
            report(
                out,
                format!("target {name}: {}", layout::audit_chain_folder(host)),
                message,
            );
        }
        (chains.values().map(|c| c.len() as u64).sum(), Some(end))
    }

    /// The local file's records with their lines, and the lines that are
    /// not records. No file yet: no records.
    fn read_local(&self) -> Result<(Placed, Vec<Problem>)> {
        let text = match std::fs::read_to_string(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            other => other.map_err(|e| Error::io(&self.path, e))?,
        };
        let (mut records, mut bad) = (Vec::new(), Vec::new());
        for (i, line) in text.lines().enumerate() {
            let place = format!("{FILE_NAME} line {}", i + 1);
            match serde_json::from_str(line) {
                _ if line.trim().is_empty() => {}
                Ok(r) => records.push((place, r)),
                Err(e) => report(&mut bad, place, format!("not a valid audit record: {e}")),
            }
        }
        Ok((records, bad))
    }

    /// Appends whole lines in one write, then fsyncs, so that a crash leaves
    /// each record whole or absent.
    fn write_lines(&self, records: &[Record]) -> Result<()> {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).expect("records serialise to JSON");
            buf.push(b'\n');
        }
        let file = open_private(&self.path);
        file.and_then(|mut f| f.write_all(&buf).and_then(|()| f.sync_all()))
            .map_err(|e| Error::io(&self.path, e))
    }
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    // Never through a link planted in the state folder.
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Writes one record to a target, sealed and immutable. An object already
/// there is fine if it holds the same record (sealing is randomised, so the
/// bytes cannot be compared).
pub fn put_record(repo: &Repository, rec: &Record) -> Result<()> {
    let path = rec.object_path();
    let (master, id, kind) = (repo.master(), &repo.repo_id, Kind::AuditRecord);
    let sealed = record::seal(rec, kind, master, id, &path);
    if repo.store.put_new(&path, Bytes::from(sealed))? {
        return Ok(());
    }
    let there = repo.store.get_limited(&path, ReadLimit::AuditRecord)?;
    let there: Record = record::open(&there, kind, master, id, &path)?;
    if there == *rec {
        return Ok(());
    }
    let place = format!("target {}: {path}", repo.store.name());
    Err(Error::corrupt(place, "another audit record has this name"))
}

/// Overwrites this host's head on a target.
fn put_head(repo: &Repository, head: &Head) -> Result<()> {
    let path = layout::audit_head_path(&head.host);
    let sealed = record::seal(head, Kind::AuditRecord, repo.master(), &repo.repo_id, &path);
    repo.store.put(&path, Bytes::from(sealed))
}

/// A host's head on a target; `None` when it has none (yet).
fn read_head(repo: &Repository, host: &str) -> Result<Option<Head>> {
    let path = layout::audit_head_path(host);
    match repo.store.get_limited(&path, ReadLimit::AuditRecord) {
        Ok(bytes) => open_head(repo, &path, &bytes).map(Some),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens the bytes of a head found at `path` (`audit-heads/<host>`): sealed
/// with the repository key, bound to that name, of that host. What `verify`
/// accepts, and so what ship copies.
pub fn open_head(repo: &Repository, path: &str, bytes: &[u8]) -> Result<Head> {
    let host = layout::host_of_audit_head_path(path);
    let head: Head = record::open(bytes, Kind::AuditRecord, repo.master(), &repo.repo_id, path)
        .map_err(|e| Error::corrupt(path, format!("forged or damaged audit head: {e}")))?;
    if head.host != host {
        return Err(Error::corrupt(
            path,
            format!("head of host {}, not {host}", head.host),
        ));
    }
    Ok(head)
}

/// Opens the bytes of an audit record found at `path`: sealed with the
/// repository key and bound to that name, which must be the record's own
/// (`Record::object_path`). What `verify` and `recover` accept, and so what
/// ship copies; whether the chain holds is `verify`'s to judge.
pub fn open_record(repo: &Repository, path: &str, bytes: &[u8]) -> Result<Record> {
    let (master, id, kind) = (repo.master(), &repo.repo_id, Kind::AuditRecord);
    let rec: Record = record::open(bytes, kind, master, id, path).map_err(|e| match e {
        crate::format::Error::Corrupt { message, .. } => Error::corrupt(
            path,
            format!("forged or damaged: does not open with the repository key ({message})"),
        ),
    })?;
    if rec.object_path() != path {
        // Sealing binds a record to its name: only a key holder could have
        // put one under another.
        let why = format!("its name does not match its record (seq {})", rec.seq);
        return Err(Error::corrupt(path, why));
    }
    Ok(rec)
}

fn last_seq(chain: &[(String, Record)]) -> u64 {
    chain.iter().map(|(_, r)| r.seq).max().unwrap_or(0)
}

/// A chain that ends before a head names a later record lost its tail;
/// two heads of one seq must name one record; once any head exists, a
/// target holding records and no head had it removed.
fn check_heads(
    ends: &[(String, u64)],
    heads: &[(String, Head)],
    headless: &[String],
    host: &str,
    out: &mut Vec<Problem>,
) {
    let Some((head_place, top)) = heads.iter().max_by_key(|(_, h)| h.seq) else {
        return;
    };
    for (place, end) in ends {
        if *end < top.seq {
            let removed = seq_range(end + 1, top.seq);
            let message = format!(
                "truncated tail: the chain ends at seq {end}, but the head in {head_place} records seq {}; {removed} removed from its end (or not yet shipped to a target)",
                top.seq
            );
            report(out, place, message);
        }
    }
    for (i, (place, h)) in heads.iter().enumerate() {
        if let Some((other, _)) = heads[..i]
            .iter()
            .find(|(_, o)| o.seq == h.seq && o.hash != h.hash)
        {
            let message = format!("head seq {} names another record than {other}'s", h.seq);
            report(out, place, message);
        }
    }
    for place in headless {
        let message = format!(
            "no head of host {host}, while {head_place} has one: removed (the chain's tail cannot be checked there)"
        );
        report(out, place, message);
    }
}

/// This host's chain as `repo` holds it, checked, in seq order.
fn recover(repo: &Repository, host: &str) -> Result<Vec<Record>> {
    let listed = repo.store.list(&layout::audit_chain_folder(host))?;
    let mut problems = Vec::new();
    let mut chains = load_objects(repo, listed.into_iter().map(|l| l.path), &mut problems);
    let chain = chains.remove(host).unwrap_or_default();
    check_chain(&chain, host, &mut problems);
    if problems.is_empty() {
        return Ok(chain.into_iter().map(|(_, r)| r).collect());
    }
    let mut why = String::from("cannot recover this host's chain:");
    for p in problems {
        why += &format!(" {}: {};", p.place, p.message);
    }
    Err(Error::corrupt(
        format!(
            "target {}: {}",
            repo.store.name(),
            layout::audit_chain_folder(host)
        ),
        why,
    ))
}

/// Reads and opens audit objects, grouped by host, in name order (which is
/// seq order). Objects that cannot be read or opened, or whose name does not
/// match their record, become problems and are left out.
fn load_objects(
    repo: &Repository,
    paths: impl Iterator<Item = String>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Placed> {
    let mut chains: BTreeMap<String, Placed> = BTreeMap::new();
    for path in paths {
        let place = format!("target {}: {path}", repo.store.name());
        let opened = repo.store.get_limited(&path, ReadLimit::AuditRecord);
        let message = match opened.and_then(|b| open_record(repo, &path, &b)) {
            Ok(rec) => {
                let chain = chains.entry(rec.host.clone()).or_default();
                chain.push((place, rec));
                continue;
            }
            Err(Error::Corrupt { message, .. }) => message,
            Err(e) => format!("cannot be read: {e}"),
        };
        report(problems, place, message);
    }
    chains
}

/// Checks one host's chain, `items` in the order they are stored.
fn check_chain(items: &[(String, Record)], host: &str, problems: &mut Vec<Problem>) {
    let mut push = |place: &str, message: String| report(problems, place, message);
    let mut first_place: HashMap<u64, &str> = HashMap::new();
    for (i, (place, r)) in items.iter().enumerate() {
        let seq = r.seq;
        if r.compute_hash() != r.hash {
            let what = "was changed after it was written (its hash does not match its contents)";
            push(place, format!("record seq {seq} {what}"));
        }
        if r.host != host {
            let message = format!("record seq {seq} is of host {}, not {host}", r.host);
            push(place, message);
        }
        match first_place.get(&seq) {
            Some(seen) => push(place, format!("seq {seq} appears twice (also at {seen})")),
            None => _ = first_place.insert(seq, place),
        }
        if let Some((before_place, before)) = i.checked_sub(1).map(|j| &items[j])
            && before.seq > seq
        {
            let message = format!("seq {} comes before seq {seq}", before.seq);
            push(before_place, message);
        }
    }

    // Gaps and links are judged in seq order, so that a reordering is
    // reported once as such and not also as gaps.
    let mut sorted: Vec<&(String, Record)> = items.iter().collect();
    sorted.sort_by_key(|(_, r)| r.seq);
    sorted.dedup_by_key(|(_, r)| r.seq);
    let mut prev: Option<&Record> = None;
    for (place, r) in sorted {
        let (seq, expected) = (r.seq, prev.map_or(1, |p| p.seq + 1));
        if seq > expected {
            let missing = seq_range(expected, seq - 1);
            let why = match prev {
                Some(p) => format!("seq {seq} follows seq {}", p.seq),
                None => format!("the chain starts at seq {seq}"),
            };
            push(place, format!("{missing} missing ({why})"));
        } else if prev.map_or(ZERO_HASH, |p| &p.hash) != r.prev_hash {
            let of = prev.map_or("64 zeros".into(), |p| format!("seq {}'s hash", p.seq));
            let message = format!("record seq {seq} is not chained: its prev_hash is not {of}");
            push(place, message);
        }
        prev = Some(r);
    }
}

/// "record seq 4 is" or "records seq 4 to 6 are".
fn seq_range(from: u64, to: u64) -> String {
    match from == to {
        true => format!("record seq {from} is"),
        false => format!("records seq {from} to {to} are"),
    }
}

/// Evidence for one tenant, for an auditor: every record about it, in order.
pub fn export_markdown(records: &[Record], tenant: &str) -> String {
    let about = |r: &&Record| r.tenant.as_deref() == Some(tenant);
    let mine: Vec<&Record> = records.iter().filter(about).collect();
    let mut out = format!("# Audit trail for tenant {}\n\n", cell(tenant));
    let count = mine.len();
    out += &format!("{count} record(s) about this tenant in gallra's hash-chained audit log.\n\n");
    out += "| Time | Action | Snapshots | Targets | Rule | Legal basis | Reason | Details | Record |\n";
    out += "|---|---|---|---|---|---|---|---|---|\n";
    for r in &mine {
        let snapshots: Vec<&str> = r.snapshots.iter().map(|s| short(s, 12)).collect();
        let mut targets = Vec::new();
        // A drill record counts the files it restored in `objects`
        // (FORMAT.md 17.10); an auditor reads "files", not store objects.
        let unit = if r.action == Action::Drill {
            "file"
        } else {
            "object"
        };
        for t in &r.targets {
            let (s, size) = (if t.objects == 1 { "" } else { "s" }, human_bytes(t.bytes));
            targets.push(format!("{} {} {unit}{s} / {size}", t.target, t.objects));
        }
        let text = |o: &Option<String>| o.clone().unwrap_or_default();
        let record = format!("{} #{}", r.host, r.seq);
        let (rule, basis, reason) = (text(&r.rule), text(&r.legal_basis), text(&r.reason));
        let (snapshots, targets) = (snapshots.join(", "), targets.join("; "));
        let (time, action) = (&r.time, r.action.as_str());
        // The event and its detail carry what an auditor asks of a contract
        // end or a hold: the effective date, the CRM reference, the hold id.
        let details = [
            r.event.as_ref().map(|e| format!("event {e}")),
            r.detail.clone(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ");
        for c in [
            time, action, &snapshots, &targets, &rule, &basis, &reason, &details, &record,
        ] {
            out += &format!("| {} ", if c.is_empty() { "-".into() } else { cell(c) });
        }
        out += "|\n";
    }
    // Say only what gallra checked, target by target, when it checked: a
    // copy outside the targets was never looked at, and data backed up
    // after the key's destruction exists again under a new key.
    let destroyed = mine.iter().position(|r| r.action == Action::KeyDestroyed);
    out += &match destroyed {
        Some(i) => {
            let r = mine[i];
            let mut s = format!(
                "\nThe tenant key was destroyed at {}: gallra deleted it",
                r.time
            );
            let on: Vec<String> = r
                .targets
                .iter()
                .map(|t| format!("{} ({} objects)", t.target, t.objects))
                .collect();
            s += &if on.is_empty() {
                // Records written before they named their targets.
                "; the record does not say on which targets.".to_string()
            } else {
                format!(
                    " and every remaining object of the tenant on {}; a listing of each target then showed none left.",
                    on.join(", ")
                )
            };
            let rotated = mine[i + 1..]
                .iter()
                .find(|r| r.action == Action::KeyRotated);
            s += match (rotated, r.survives.is_empty()) {
                (Some(_), _) => {
                    " gallra did not check copies outside these targets (store versions, replicas, copies of a store), and none of them opens any more (below).\n"
                }
                // Records written before issue 17 said nothing of it.
                (None, true) => {
                    " gallra did not check copies outside these targets (store versions, replicas, copies of a store): a surviving copy of the key object still opens with the repository's master key.\n"
                }
                (None, false) => {
                    " gallra did not check copies outside these targets (store versions, replicas, copies of a store); what opens a surviving copy is said below.\n"
                }
            };
            // What the record says survives, target by target (records
            // written before issue 17 say nothing of it).
            if !r.survives.is_empty() {
                s += "\nWhat survives, per target, as gallra knew it then:\n\n";
                for line in &r.survives {
                    s += &format!("- {}\n", line.words);
                }
            }
            if let Some(k) = rotated {
                s += &format!(
                    "\nAt {} a key rotation destroyed, in the key service, the key epoch that wrapped the tenant's key: no copy of the key that survives anywhere opens with anything gallra or the operator holds. {}\n",
                    k.time,
                    k.detail.as_deref().unwrap_or("")
                );
            }
            if let Some(b) = mine[i + 1..].iter().find(|r| r.action == Action::Backup) {
                s += &format!(
                    "\nAfter that, the tenant was backed up again (first at {}): its data exists again, under a new key.\n",
                    b.time
                );
            }
            s
        }
        None => "\nThe tenant key has not been destroyed.\n".into(),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::ChunkerParams;
    use crate::crypto::{self, KeySource};

    fn memory_repo(dir: &Path) -> Repository {
        let key = dir.join("key");
        crypto::generate_key_file(&key).unwrap();
        let store = crate::store::memory();
        Repository::init(
            store,
            &KeySource::File(key).into(),
            ChunkerParams::default(),
        )
        .unwrap()
    }

    fn entry(action: Action, n: u64) -> Entry {
        let mut e = Entry::new(action, Some("acme"));
        e.snapshots = vec!["1a2b3c4d5e6f7081".repeat(4)];
        let (target, objects, bytes) = ("mem".to_string(), n, (n * 3) << 20);
        e.targets.push(TargetCounts {
            target,
            objects,
            bytes,
        });
        e.rule = Some("keep 30 days".into());
        e
    }

    /// What a verify finds, one problem a line; it must find something.
    fn problems(log: &AuditLog, repo: &Repository) -> String {
        let report = log.verify(&[repo]).unwrap();
        assert!(!report.ok());
        let line = |p: &Problem| format!("{}: {}\n", p.place, p.message);
        report.problems.iter().map(line).collect()
    }

    fn has(found: &str, needle: &str) {
        assert!(found.contains(needle), "{needle:?} not in:\n{found}");
    }

    #[test]
    fn chain_verify_tampering_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let repo = memory_repo(dir.path());
        let log = AuditLog::open(&dir.path().join("state"), "web01").unwrap();
        for bad_host in ["", "..", "a/b", "web 01"] {
            assert!(AuditLog::open(dir.path(), bad_host).is_err());
        }
        for (n, action) in [
            (1, Action::Backup),
            (2, Action::Delete),
            (3, Action::KeyDestroyed),
        ] {
            assert!(log.append(entry(action, n), &[&repo]).unwrap().1.is_empty());
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let recs = log.records().unwrap();
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(recs[0].prev_hash, ZERO_HASH);
        assert!((recs.iter()).all(|r| r.hash == r.compute_hash() && r.host == "web01"));
        let links = [&recs[1].prev_hash, &recs[2].prev_hash];
        assert_eq!(links, [&recs[0].hash, &recs[1].hash]);
        let report = log.verify(&[&repo]).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!((report.local_records, report.targets[0].records), (3, 3));
        put_record(&repo, &recs[1]).unwrap();

        let original = std::fs::read_to_string(log.path()).unwrap();
        let changed = "line 2: record seq 2 was changed after it was written";
        let gap = "line 2: record seq 2 is missing (seq 3 follows seq 1)";
        let tail = "audit/web01: record seq 3 is on target mem but not in audit.jsonl";
        type Edit = fn(&mut Vec<String>);
        let cases: [(Edit, &str); 6] = [
            (|l| l[1] = l[1].replace(r#""acme""#, r#""x""#), changed),
            (|l| drop(l.remove(1)), gap),
            (|l| l.swap(1, 2), "line 2: seq 3 comes before seq 2"),
            (|l| l.push(l[2].clone()), "line 4: seq 3 appears twice"),
            (
                |l| l[2] = l[2].replace("{", r#"{"x":1,"#),
                "line 3: not a valid audit record",
            ),
            (|l| drop(l.pop()), tail),
        ];
        for (edit, needle) in cases {
            let mut lines: Vec<String> = original.lines().map(str::to_string).collect();
            edit(&mut lines);
            std::fs::write(log.path(), lines.join("\n") + "\n").unwrap();
            has(&problems(&log, &repo), needle);
        }
        std::fs::write(log.path(), original.clone() + "{\"seq\":\n").unwrap();
        let e = log.records().unwrap_err().to_string();
        assert!(
            e.contains("state/audit.jsonl line 4: not a valid audit record"),
            "{e}"
        );
        assert!(log.append(entry(Action::Drill, 9), &[&repo]).is_err());
        std::fs::write(log.path(), &original).unwrap();

        // On the target: a removed object, then a forged one in its place.
        let gone = recs[1].object_path();
        let sealed = repo.store.get(&gone).unwrap();
        repo.store.delete(&gone).unwrap();
        let found = problems(&log, &repo);
        has(
            &found,
            &format!("{gone}: record seq 2 is missing on target mem (removed"),
        );
        has(&found, "record seq 2 is missing (seq 3 follows seq 1)");
        let forged = Bytes::from_static(b"GLRA\x01\x0aforged");
        repo.store.put(&gone, forged).unwrap();
        let found = problems(&log, &repo);
        has(&found, &format!("target mem: {gone}: forged or damaged"));
        repo.store.put(&gone, sealed).unwrap();
        assert!(log.verify(&[&repo]).unwrap().ok());

        // A fresh machine continues the chain it finds on the target.
        let fresh = AuditLog::open(&dir.path().join("fresh"), "web01").unwrap();
        let (rec, failed) = fresh.append(entry(Action::Prune, 4), &[&repo]).unwrap();
        assert!(failed.is_empty());
        assert_eq!((rec.seq, &rec.prev_hash), (4, &recs[2].hash));
        assert_eq!(&fresh.records().unwrap()[..3], &recs[..]);
        let found = problems(&log, &repo);
        has(&found, "record seq 4 is on target mem but not in");

        // Another host's chain shares the repository.
        let other = AuditLog::open(&dir.path().join("other"), "db01").unwrap();
        let (rec, _) = other.append(entry(Action::Drill, 1), &[&repo]).unwrap();
        let name = format!("audit/db01/000000000001-{}", &rec.hash[..16]);
        assert_eq!(rec.object_path(), name);
        let report = fresh.verify(&[&repo]).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.targets[0].records, 5);
    }

    #[test]
    fn export_names_the_tenant_and_the_key_destruction() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), "web01").unwrap();
        let mut e = entry(Action::ErasureRequested, 12);
        e.reason = Some("Art. 17 request | ticket 4".into());
        e.event = Some("crm-2026-000123".into());
        e.detail = Some("ref=CRM 4711".into());
        e.time = Some("2026-11-23T10:00:00Z".parse().unwrap());
        log.append(e, &[]).unwrap();
        let other = Entry::new(Action::Backup, Some("beta"));
        log.append(other, &[]).unwrap();
        let md = export_markdown(&log.records().unwrap(), "acme");
        assert!(md.starts_with("# Audit trail for tenant acme\n"), "{md}");
        let row = "| 2026-11-23T10:00:00Z | erasure-requested | 1a2b3c4d5e6f | mem 12 objects / 36.0 MiB |";
        has(&md, row);
        has(
            &md,
            "| keep 30 days | - | Art. 17 request \\| ticket 4 | event crm-2026-000123; ref=CRM 4711 | web01 #1 |",
        );
        let end = "\nThe tenant key has not been destroyed.\n";
        assert!(!md.contains("backup") && md.ends_with(end), "{md}");

        let mut e = Entry::new(Action::KeyDestroyed, Some("acme"));
        e.time = Some("2026-11-24T08:00:00Z".parse().unwrap());
        log.append(e, &[]).unwrap();
        let md = export_markdown(&log.records().unwrap(), "acme");
        let end = "The tenant key was destroyed at 2026-11-24T08:00:00Z: gallra deleted it";
        has(&md, end);
        has(&md, "did not check copies outside these targets");

        log.append(entry(Action::Drill, 3), &[]).unwrap();
        let md = export_markdown(&log.records().unwrap(), "acme");
        has(&md, "| drill | 1a2b3c4d5e6f | mem 3 files / ");
        assert!(
            !md.contains("unreadable"),
            "it claims no more than it checked: {md}"
        );
    }

    #[test]
    fn what_survives_is_kept_in_the_record_and_an_older_record_hashes_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), "web01").unwrap();
        log.append(Entry::new(Action::Backup, Some("acme")), &[])
            .unwrap();
        let mut e = Entry::new(Action::KeyDestroyed, Some("acme"));
        e.survives = vec![Survives {
            target: "offsite".into(),
            old_versions: "kept".into(),
            until: Some("2027-01-02T14:30:00Z".into()),
            words: "target offsite: the bucket keeps old versions: ...".into(),
        }];
        log.append(e, &[]).unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // The record without survivors was written without the field, as
        // every record before it was: its hash is over the same bytes.
        assert!(!lines[0].contains("survives"), "{}", lines[0]);
        assert!(
            lines[1].contains("\"survives\":[{\"target\":\"offsite\""),
            "{}",
            lines[1]
        );
        let records = log.records().unwrap();
        for r in &records {
            assert_eq!(r.compute_hash(), r.hash);
        }
        assert_eq!(
            records[1].survives[0].until.as_deref(),
            Some("2027-01-02T14:30:00Z")
        );
        assert!(log.verify(&[]).unwrap().ok());
        let md = export_markdown(&records, "acme");
        has(
            &md,
            "What survives, per target, as gallra knew it then:\n\n- target offsite: the bucket keeps old versions: ...\n",
        );
    }
}
