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
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{Kind, record};
use crate::repo::Repository;

const FILE_NAME: &str = "audit.jsonl";
const LOCK_NAME: &str = "audit.lock";
const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Backup,
    Delete,
    Prune,
    Erase,
    KeyDestroyed,
    LegalKept,
    ContractEnded,
    ContractReinstated,
    HoldSet,
    HoldReleased,
    ErasureRequested,
    Drill,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Backup => "backup",
            Action::Delete => "delete",
            Action::Prune => "prune",
            Action::Erase => "erase",
            Action::KeyDestroyed => "key-destroyed",
            Action::LegalKept => "legal-kept",
            Action::ContractEnded => "contract-ended",
            Action::ContractReinstated => "contract-reinstated",
            Action::HoldSet => "hold-set",
            Action::HoldReleased => "hold-released",
            Action::ErasureRequested => "erasure-requested",
            Action::Drill => "drill",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCounts {
    pub target: String,
    pub objects: u64,
    pub bytes: u64,
}

/// What a caller records; the log adds seq, time (if None: now), host,
/// prev_hash, hash.
#[derive(Debug, Clone)]
pub struct Entry {
    pub action: Action,
    pub tenant: Option<String>,
    /// Snapshot ids (hex).
    pub snapshots: Vec<String>,
    /// Objects and bytes deleted (or written) per target.
    pub targets: Vec<TargetCounts>,
    pub rule: Option<String>,
    pub legal_basis: Option<String>,
    /// The operator's text, e.g. the erasure reason.
    pub reason: Option<String>,
    /// The lifecycle event id that caused it.
    pub event: Option<String>,
    /// Short free text, never file names.
    pub detail: Option<String>,
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
            time: None,
        }
    }
}

/// One record as stored. Field order is the serialisation order, and so part
/// of the format: the hash is taken over this serialisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// 1, 2, 3 ... per host chain.
    pub seq: u64,
    /// RFC 3339 UTC.
    pub time: String,
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
    /// Hex SHA-256 of the previous record; 64 '0's for seq 1.
    pub prev_hash: String,
    /// Hex SHA-256 of the JSON of this record with `hash` set to "".
    pub hash: String,
}

impl Record {
    pub fn compute_hash(&self) -> String {
        let mut blank = self.clone();
        blank.hash = String::new();
        let json = serde_json::to_vec(&blank).expect("records serialise to JSON");
        hex::encode(crate::crypto::sha256(&json))
    }

    /// `audit/<host>/<seq:012>-<hash[..16]>`: names sort in seq order.
    pub fn object_path(&self) -> String {
        let short = self.hash.get(..16).unwrap_or(&self.hash);
        format!("audit/{}/{:012}-{short}", self.host, self.seq)
    }
}

pub struct AuditLog {
    dir: PathBuf,
    path: PathBuf,
    host: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub local_records: u64,
    /// One per target.
    pub targets: Vec<TargetVerify>,
    /// Empty: the chains are intact everywhere.
    pub problems: Vec<Problem>,
}

/// `records` counts the records of every host's chain that opened.
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

/// Records of one chain, each with where it was found.
type Placed = Vec<(String, Record)>;

impl AuditLog {
    /// Creates `state_dir` (0700) if absent; the file itself comes with the
    /// first append.
    pub fn open(state_dir: &Path, host: &str) -> Result<AuditLog> {
        // The host is a folder name in every target: nothing that could
        // climb out of `audit/` or split into two folders.
        let valid = !host.is_empty()
            && host.len() <= 253
            && !host.starts_with('.')
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            return Err(Error::Usage(format!(
                "host name {host:?} cannot name an audit chain (letters, digits, '.', '-', '_', not starting with '.')"
            )));
        }
        if !state_dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(|e| Error::io(state_dir, e))?;
        }
        Ok(AuditLog {
            dir: state_dir.to_path_buf(),
            path: state_dir.join(FILE_NAME),
            host: host.to_string(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record locally, then to every target. A target that
    /// cannot take it is returned, not fatal: the next ship copies audit
    /// objects. A seq already used on a target by a different record is not
    /// looked for here (that costs a listing per record); `verify` finds it.
    pub fn append(
        &self,
        entry: Entry,
        targets: &[&Repository],
    ) -> Result<(Record, Vec<(String, Error)>)> {
        let lock_path = self.dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        lock.lock().map_err(|e| Error::io(&lock_path, e))?;

        let mut last = self.last_record()?;
        if last.is_none()
            && let Some(first) = targets.first()
        {
            // A fresh machine restoring from offsite: continue the chain the
            // targets hold rather than start a second seq 1.
            let chain = recover(first, &self.host)?;
            if let Some(l) = chain.last() {
                last = Some((l.seq, l.hash.clone()));
                self.write_lines(&chain)?;
            }
        }
        let (seq, prev_hash) = match last {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, ZERO_HASH.to_string()),
        };
        let time = entry.time.unwrap_or_else(|| {
            let now = jiff::Timestamp::now();
            jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
        });
        let mut rec = Record {
            seq,
            time: time.to_string(),
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
            prev_hash,
            hash: String::new(),
        };
        rec.hash = rec.compute_hash();
        self.write_lines(std::slice::from_ref(&rec))?;

        let mut failed = Vec::new();
        for repo in targets {
            if let Err(e) = put_record(repo, &rec) {
                failed.push((repo.store.name().to_string(), e));
            }
        }
        drop(lock);
        Ok((rec, failed))
    }

    /// Every record of the local file, in order.
    pub fn records(&self) -> Result<Vec<Record>> {
        let Some(text) = self.read_local()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            out.push(self.parse_line(line, i + 1)?);
        }
        Ok(out)
    }

    /// Checks the local file and every target.
    pub fn verify(&self, targets: &[&Repository]) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut local: Placed = Vec::new();
        for (i, line) in self.read_local()?.unwrap_or_default().lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let place = format!("{FILE_NAME} line {}", i + 1);
            match serde_json::from_str::<Record>(line) {
                Ok(r) => local.push((place, r)),
                Err(e) => report.problems.push(Problem {
                    place,
                    message: format!("not a valid audit record: {e}"),
                }),
            }
        }
        report.local_records = local.len() as u64;
        check_chain(&local, &self.host, &mut report.problems);
        let mut local_by_seq: BTreeMap<u64, &Record> = BTreeMap::new();
        for (_, r) in &local {
            local_by_seq.entry(r.seq).or_insert(r);
        }

        for repo in targets {
            let name = repo.store.name().to_string();
            let problems = &mut report.problems;
            let listed = match repo.store.list("audit") {
                Ok(l) => l,
                Err(e) => {
                    problems.push(Problem {
                        place: format!("target {name}"),
                        message: format!("cannot list audit/: {e}"),
                    });
                    report.targets.push(TargetVerify {
                        target: name,
                        records: 0,
                    });
                    continue;
                }
            };
            let paths: Vec<String> = listed.into_iter().map(|l| l.path).collect();
            let chains = load_objects(repo, &paths, problems);
            for (host, items) in &chains {
                check_chain(items, host, problems);
            }
            let records = chains.values().map(|c| c.len() as u64).sum();
            report.targets.push(TargetVerify {
                target: name.clone(),
                records,
            });

            let mut remote: BTreeMap<u64, &(String, Record)> = BTreeMap::new();
            for item in chains.get(&self.host).into_iter().flatten() {
                remote.entry(item.1.seq).or_insert(item);
            }
            for (seq, rec) in &local_by_seq {
                match remote.get(seq) {
                    None => problems.push(Problem {
                        place: format!("target {name}: {}", rec.object_path()),
                        message: format!(
                            "record seq {seq} is missing on target {name} (removed, or not yet shipped: run `gallra ship`)"
                        ),
                    }),
                    Some((place, r)) if r.hash != rec.hash => problems.push(Problem {
                        place: place.clone(),
                        message: format!(
                            "record seq {seq} conflicts with the local {FILE_NAME}'s (hash {} here, {} locally): one of them was rewritten",
                            short(&r.hash),
                            short(&rec.hash)
                        ),
                    }),
                    Some(_) => {}
                }
            }
            // A tail on the target that the local file lacks: the local file
            // lost its last records, or another machine writes as this host.
            let local_max = local_by_seq.keys().next_back().copied().unwrap_or(0);
            let extra: Vec<u64> = remote.keys().copied().filter(|s| *s > local_max).collect();
            if let (Some(from), Some(to)) = (extra.first(), extra.last()) {
                problems.push(Problem {
                    place: format!("target {name}: audit/{}", self.host),
                    message: format!(
                        "{} on target {name} but not in the local {FILE_NAME} (the local file lost records, or another machine writes as host {})",
                        seq_range(*from, *to, "is", "are"),
                        self.host
                    ),
                });
            }
        }
        Ok(report)
    }

    fn read_local(&self) -> Result<Option<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    fn parse_line(&self, line: &str, number: usize) -> Result<Record> {
        serde_json::from_str(line).map_err(|e| {
            Error::corrupt(
                format!("{} line {number}", self.path.display()),
                format!("not a valid audit record: {e}"),
            )
        })
    }

    /// The seq and hash of the last record, `None` if there is none. Only the
    /// last line is read as a record: an append need not vouch for the
    /// whole file, which is what `verify` is for.
    fn last_record(&self) -> Result<Option<(u64, String)>> {
        let Some(text) = self.read_local()? else {
            return Ok(None);
        };
        let last = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .last();
        match last {
            None => Ok(None),
            Some((i, line)) => {
                let r = self.parse_line(line, i + 1)?;
                Ok(Some((r.seq, r.hash)))
            }
        }
    }

    /// Appends whole lines in one write, then fsyncs, so a crash leaves
    /// either the record or nothing of it.
    fn write_lines(&self, records: &[Record]) -> Result<()> {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).expect("records serialise to JSON");
            buf.push(b'\n');
        }
        let created = !self.path.exists();
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        file.write_all(&buf)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(&self.path, e))?;
        if created {
            // The new name must survive a crash too.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(&self.dir, e))?;
        }
        Ok(())
    }
}

/// Writes one record to a target, sealed and immutable. An object already
/// there is fine if it holds the same record (sealing is randomised, so the
/// bytes cannot be compared).
pub fn put_record(repo: &Repository, rec: &Record) -> Result<()> {
    let path = rec.object_path();
    let sealed = record::seal(rec, Kind::AuditRecord, repo.master(), &repo.repo_id, &path);
    if repo.store.put_new(&path, Bytes::from(sealed))? {
        return Ok(());
    }
    let bytes = repo.store.get(&path)?;
    let there: Record = record::open(
        &bytes,
        Kind::AuditRecord,
        repo.master(),
        &repo.repo_id,
        &path,
    )?;
    if there == *rec {
        Ok(())
    } else {
        Err(Error::corrupt(
            format!("target {}: {path}", repo.store.name()),
            "another audit record already has this name",
        ))
    }
}

/// This host's chain as `target` holds it, checked, in seq order.
fn recover(repo: &Repository, host: &str) -> Result<Vec<Record>> {
    let paths: Vec<String> = repo
        .store
        .list(&format!("audit/{host}"))?
        .into_iter()
        .map(|l| l.path)
        .collect();
    let mut problems = Vec::new();
    let mut chains = load_objects(repo, &paths, &mut problems);
    let chain = chains.remove(host).unwrap_or_default();
    check_chain(&chain, host, &mut problems);
    if !problems.is_empty() {
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.place, p.message))
            .collect();
        return Err(Error::corrupt(
            format!("target {}: audit/{host}", repo.store.name()),
            format!(
                "cannot recover this host's audit chain: {}",
                text.join("; ")
            ),
        ));
    }
    Ok(chain.into_iter().map(|(_, r)| r).collect())
}

/// Reads and opens audit objects, grouped by host folder, in name order
/// (which is seq order). Objects that cannot be read, opened or whose name
/// does not match their record become problems and are left out.
fn load_objects(
    repo: &Repository,
    paths: &[String],
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Placed> {
    let target = repo.store.name();
    let mut chains: BTreeMap<String, Placed> = BTreeMap::new();
    for path in paths {
        let place = format!("target {target}: {path}");
        let mut problem = |message: String| {
            problems.push(Problem {
                place: place.clone(),
                message,
            })
        };
        let Some((host, seq, hash16)) = parse_object_name(path) else {
            problem("not an audit record's name (audit/<host>/<seq>-<hash>)".into());
            continue;
        };
        let bytes = match repo.store.get(path) {
            Ok(b) => b,
            Err(e) => {
                problem(format!("cannot be read: {e}"));
                continue;
            }
        };
        let opened = record::open::<Record>(
            &bytes,
            Kind::AuditRecord,
            repo.master(),
            &repo.repo_id,
            path,
        );
        let rec = match opened {
            Ok(r) => r,
            Err(e) => {
                let why = match e {
                    Error::Corrupt { message, .. } => message,
                    other => other.to_string(),
                };
                problem(format!(
                    "forged or damaged: does not open with this repository's key ({why})"
                ));
                continue;
            }
        };
        if rec.seq != seq || !rec.hash.starts_with(hash16) || rec.host != host {
            problem(format!(
                "its name does not match the record it holds (host {}, seq {}, hash {})",
                rec.host,
                rec.seq,
                short(&rec.hash)
            ));
            continue;
        }
        chains
            .entry(host.to_string())
            .or_default()
            .push((place, rec));
    }
    chains
}

/// `audit/<host>/<seq:012>-<16 hex>` into its parts.
fn parse_object_name(path: &str) -> Option<(&str, u64, &str)> {
    let mut parts = path.split('/');
    let (Some("audit"), Some(host), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let (seq, hash16) = name.split_once('-')?;
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if seq.len() != 12
        || !seq.bytes().all(|b| b.is_ascii_digit())
        || hash16.len() != 16
        || !hash16.bytes().all(hex)
    {
        return None;
    }
    Some((host, seq.parse().ok()?, hash16))
}

/// Checks one host's chain, `items` in the order they are stored.
fn check_chain(items: &[(String, Record)], host: &str, problems: &mut Vec<Problem>) {
    let mut push = |place: &str, message: String| {
        problems.push(Problem {
            place: place.to_string(),
            message,
        })
    };
    let mut first_place: HashMap<u64, &str> = HashMap::new();
    for (i, (place, r)) in items.iter().enumerate() {
        if r.compute_hash() != r.hash {
            push(
                place,
                format!(
                    "record seq {} was changed after it was written (its hash does not match its contents)",
                    r.seq
                ),
            );
        }
        if r.host != host {
            push(
                place,
                format!(
                    "record seq {} names host {}, not {host}: it belongs to another chain",
                    r.seq, r.host
                ),
            );
        }
        if let Some(seen) = first_place.get(&r.seq) {
            push(
                place,
                format!("seq {} appears twice (also at {seen})", r.seq),
            );
        } else {
            first_place.insert(r.seq, place);
        }
        if i > 0 && items[i - 1].1.seq > r.seq {
            push(
                &items[i - 1].0,
                format!("seq {} comes before seq {}", items[i - 1].1.seq, r.seq),
            );
        }
    }

    // Gaps and links are judged in seq order, so that a reordering is
    // reported once as such and not also as gaps.
    let mut sorted: Vec<&(String, Record)> = items.iter().collect();
    sorted.sort_by_key(|(_, r)| r.seq);
    sorted.dedup_by_key(|(_, r)| r.seq);
    let mut prev: Option<&Record> = None;
    for (place, r) in sorted {
        let expected = prev.map_or(1, |p| p.seq + 1);
        if r.seq > expected {
            let missing = seq_range(expected, r.seq - 1, "is", "are");
            let message = match prev {
                Some(p) => format!("{missing} missing (seq {} follows seq {})", r.seq, p.seq),
                None => format!("{missing} missing (the chain starts at seq {})", r.seq),
            };
            push(place, message);
        } else if r.seq == 1 && r.prev_hash != ZERO_HASH {
            push(
                place,
                "record seq 1 does not start a chain (its prev_hash is not zero)".into(),
            );
        } else if let Some(p) = prev
            && r.prev_hash != p.hash
        {
            push(
                place,
                format!(
                    "record seq {} does not follow seq {} (its prev_hash is not seq {}'s hash): seq {} was replaced",
                    r.seq, p.seq, p.seq, p.seq
                ),
            );
        }
        prev = Some(r);
    }
}

/// "record seq 4 is" or "records seq 4 to 6 are".
fn seq_range(from: u64, to: u64, one: &str, many: &str) -> String {
    if from == to {
        format!("record seq {from} {one}")
    } else {
        format!("records seq {from} to {to} {many}")
    }
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

/// Evidence for one tenant, for an auditor: every record about it, in order.
pub fn export_markdown(records: &[Record], tenant: &str) -> String {
    let mine: Vec<&Record> = records
        .iter()
        .filter(|r| r.tenant.as_deref() == Some(tenant))
        .collect();
    let mut out = format!("# Audit trail for tenant {}\n\n", cell(tenant));
    if mine.is_empty() {
        out.push_str("No audit record concerns this tenant.\n\n");
    } else {
        out.push_str(&format!(
            "{} records from gallra's audit log, where each record carries the hash of the one before it.\n\n",
            mine.len()
        ));
        out.push_str(
            "| Time | Action | Snapshots | Targets | Rule | Legal basis | Reason | Record |\n",
        );
        out.push_str("|---|---|---|---|---|---|---|---|\n");
        for r in &mine {
            let snapshots: Vec<&str> = r
                .snapshots
                .iter()
                .map(|s| s.get(..12).unwrap_or(s))
                .collect();
            let targets: Vec<String> = r
                .targets
                .iter()
                .map(|t| {
                    let noun = if t.objects == 1 { "object" } else { "objects" };
                    format!(
                        "{} {} {noun} / {}",
                        t.target,
                        t.objects,
                        human_bytes(t.bytes)
                    )
                })
                .collect();
            let opt = |o: &Option<String>| o.as_deref().map_or("-".to_string(), cell);
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} #{} |\n",
                cell(&r.time),
                r.action.as_str(),
                or_dash(&snapshots.join(", ")),
                or_dash(&cell(&targets.join("; "))),
                opt(&r.rule),
                opt(&r.legal_basis),
                opt(&r.reason),
                cell(&r.host),
                r.seq
            ));
        }
        out.push('\n');
    }
    match mine.iter().find(|r| r.action == Action::KeyDestroyed) {
        Some(r) => out.push_str(&format!(
            "The tenant key was destroyed at {}: any copy that survives anywhere is unreadable.\n",
            r.time
        )),
        None => out.push_str("The tenant key has not been destroyed.\n"),
    }
    out
}

/// Text made safe for one Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.into()
    }
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::ChunkerParams;
    use crate::crypto::{self, KeySource};

    fn memory_repo(dir: &Path) -> Repository {
        let key = dir.join("key");
        crypto::generate_key_file(&key).unwrap();
        Repository::init(
            crate::store::memory(),
            &KeySource::File(key),
            ChunkerParams::default(),
        )
        .unwrap()
    }

    fn entry(action: Action, n: u64) -> Entry {
        let mut e = Entry::new(action, Some("acme"));
        e.snapshots = vec![format!("{n:064x}")];
        e.targets = vec![TargetCounts {
            target: "mem".into(),
            objects: n,
            bytes: n * 3 << 20,
        }];
        e.rule = Some("keep 30 days".into());
        e
    }

    fn problems(report: &VerifyReport) -> String {
        report
            .problems
            .iter()
            .map(|p| format!("{}: {}\n", p.place, p.message))
            .collect()
    }

    /// Rewrites the local file's lines with `f`, verifies, then restores it.
    fn tampered(log: &AuditLog, repo: &Repository, f: impl Fn(&mut Vec<String>)) -> String {
        let original = std::fs::read_to_string(log.path()).unwrap();
        let mut lines: Vec<String> = original.lines().map(str::to_string).collect();
        f(&mut lines);
        std::fs::write(log.path(), lines.join("\n") + "\n").unwrap();
        let report = log.verify(&[repo]).unwrap();
        std::fs::write(log.path(), &original).unwrap();
        assert!(!report.ok());
        problems(&report)
    }

    #[test]
    fn chain_verify_tampering_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let repo = memory_repo(dir.path());
        let state = dir.path().join("state");
        let log = AuditLog::open(&state, "web01").unwrap();
        for (i, action) in [Action::Backup, Action::Delete, Action::Erase]
            .into_iter()
            .enumerate()
        {
            let (_, failed) = log.append(entry(action, i as u64 + 1), &[&repo]).unwrap();
            assert!(failed.is_empty());
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let recs = log.records().unwrap();
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(recs[0].prev_hash, ZERO_HASH);
        for r in &recs {
            assert_eq!(r.hash, r.compute_hash());
            assert_eq!(r.host, "web01");
        }
        assert_eq!(recs[1].prev_hash, recs[0].hash);
        assert_eq!(recs[2].prev_hash, recs[1].hash);
        let report = log.verify(&[&repo]).unwrap();
        assert!(report.ok(), "{}", problems(&report));
        assert_eq!(report.local_records, 3);
        assert_eq!(report.targets[0].records, 3);

        // Putting a record again is idempotent.
        put_record(&repo, &recs[1]).unwrap();

        let p = tampered(&log, &repo, |l| {
            l[1] = l[1].replace("\"tenant\":\"acme\"", "\"tenant\":\"other\"")
        });
        assert!(
            p.contains("audit.jsonl line 2: record seq 2 was changed after it was written"),
            "{p}"
        );
        let p = tampered(&log, &repo, |l| {
            l.remove(1);
        });
        assert!(
            p.contains("audit.jsonl line 2: record seq 2 is missing (seq 3 follows seq 1)"),
            "{p}"
        );
        let p = tampered(&log, &repo, |l| l.swap(1, 2));
        assert!(
            p.contains("audit.jsonl line 2: seq 3 comes before seq 2"),
            "{p}"
        );
        assert!(!p.contains("missing"), "{p}");
        let p = tampered(&log, &repo, |l| l.push(l[2].clone()));
        assert!(p.contains("audit.jsonl line 4: seq 3 appears twice"), "{p}");
        let p = tampered(&log, &repo, |l| {
            l[2] = l[2].replace("\"seq\":3", "\"seq\":3,\"extra\":1")
        });
        assert!(
            p.contains("audit.jsonl line 3: not a valid audit record") && p.contains("extra"),
            "{p}"
        );
        let p = tampered(&log, &repo, |l| {
            l.pop();
        });
        assert!(
            p.contains("record seq 3 is on target mem but not in the local audit.jsonl"),
            "{p}"
        );

        // On the target: a removed object, then a forged one in its place.
        let gone = recs[1].object_path();
        let sealed = repo.store.get(&gone).unwrap();
        repo.store.delete(&gone).unwrap();
        let p = problems(&log.verify(&[&repo]).unwrap());
        assert!(
            p.contains(&format!(
                "target mem: {gone}: record seq 2 is missing on target mem"
            )),
            "{p}"
        );
        assert!(
            p.contains("record seq 2 is missing (seq 3 follows seq 1)"),
            "{p}"
        );
        repo.store
            .put(&gone, Bytes::from_static(b"GLRA\x01\x0aforged"))
            .unwrap();
        let p = problems(&log.verify(&[&repo]).unwrap());
        assert!(p.contains(&format!("{gone}: forged or damaged")), "{p}");
        repo.store.put(&gone, sealed).unwrap();
        assert!(log.verify(&[&repo]).unwrap().ok());

        // A fresh machine continues the chain it finds on the target.
        let fresh = AuditLog::open(&dir.path().join("fresh"), "web01").unwrap();
        let (rec, failed) = fresh.append(entry(Action::Prune, 4), &[&repo]).unwrap();
        assert!(failed.is_empty());
        assert_eq!(rec.seq, 4);
        assert_eq!(rec.prev_hash, recs[2].hash);
        let all = fresh.records().unwrap();
        assert_eq!(&all[..3], &recs[..]);
        assert!(fresh.verify(&[&repo]).unwrap().ok());
        // The old machine now lags behind the target's chain.
        let p = problems(&log.verify(&[&repo]).unwrap());
        assert!(p.contains("record seq 4 is on target mem"), "{p}");

        // Another host's chain shares the repository without interfering.
        let other = AuditLog::open(&dir.path().join("other"), "db01").unwrap();
        let (rec, _) = other.append(entry(Action::Drill, 1), &[&repo]).unwrap();
        assert_eq!(rec.seq, 1);
        let report = fresh.verify(&[&repo]).unwrap();
        assert!(report.ok(), "{}", problems(&report));
        assert_eq!(report.targets[0].records, 5);
    }

    #[test]
    fn a_host_name_cannot_leave_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "..", "a/b", "web 01"] {
            assert!(AuditLog::open(dir.path(), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn action_text_is_its_serialisation() {
        use Action::*;
        for a in [
            Backup,
            Delete,
            Prune,
            Erase,
            KeyDestroyed,
            LegalKept,
            ContractEnded,
            ContractReinstated,
            HoldSet,
            HoldReleased,
            ErasureRequested,
            Drill,
        ] {
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.as_str())
            );
        }
    }

    #[test]
    fn export_names_the_tenant_and_the_key_destruction() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), "web01").unwrap();
        let mut e = entry(Action::Erase, 12);
        e.reason = Some("Art. 17 request | ticket 4".into());
        e.time = Some("2026-11-23T10:00:00Z".parse().unwrap());
        log.append(e, &[]).unwrap();
        log.append(Entry::new(Action::Backup, Some("beta")), &[])
            .unwrap();
        let recs = log.records().unwrap();
        let md = export_markdown(&recs, "acme");
        assert!(md.starts_with("# Audit trail for tenant acme"), "{md}");
        assert!(
            md.contains("| 2026-11-23T10:00:00Z | erase | 00000000000c |"),
            "{md}"
        );
        assert!(md.contains("mem 12 objects / 36.0 MiB"), "{md}");
        assert!(md.contains("Art. 17 request \\| ticket 4"), "{md}");
        assert!(!md.contains("backup"), "{md}");
        assert!(
            md.ends_with("The tenant key has not been destroyed.\n"),
            "{md}"
        );

        let mut e = Entry::new(Action::KeyDestroyed, Some("acme"));
        e.time = Some("2026-11-24T08:00:00Z".parse().unwrap());
        log.append(e, &[]).unwrap();
        let md = export_markdown(&log.records().unwrap(), "acme");
        assert!(
            md.contains("The tenant key was destroyed at 2026-11-24T08:00:00Z: any copy"),
            "{md}"
        );
    }
}
