//! check: is every snapshot restorable from this target?
//!
//! Damage (a missing, truncated or corrupted object, a blob that no index
//! holds) is an error that names the object. Leftovers that nothing
//! references (after a killed backup) are information: the next prune
//! collects them.

use rayon::prelude::*;
use serde::{Serialize, Serializer};
use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::format::pack::{open_blob, read_header};
use crate::format::{Id, Kind};
use crate::layout::{self, id_of_path};
use crate::repo::{Index, Repository, Tenant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    None,
    All,
    /// Percent of packs, chosen at random.
    Subset(f64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub object: String,
    pub message: String,
}

/// What a check found, as `check --json` prints it (with `ok` beside it).
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    #[serde(serialize_with = "findings_as_errors")]
    pub errors: Vec<Finding>,
    #[serde(serialize_with = "findings_as_information")]
    pub unreferenced: Vec<Finding>,
    pub snapshots: u64,
    pub packs: u64,
    pub blobs: u64,
    pub blobs_read: u64,
}

/// A finding in `check --json` names its object and, under a key that
/// says which list it is in, `error` or `info`, the message: scripts have
/// always read it so.
fn findings_labelled<S: Serializer>(
    findings: &[Finding],
    label: &'static str,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(
        findings.iter().map(|f| {
            std::collections::BTreeMap::from([("object", &f.object), (label, &f.message)])
        }),
    )
}

fn findings_as_errors<S: Serializer>(
    findings: &[Finding],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    findings_labelled(findings, "error", s)
}

fn findings_as_information<S: Serializer>(
    findings: &[Finding],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    findings_labelled(findings, "info", s)
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    fn error(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Finding {
            object: object.into(),
            message: message.into(),
        });
    }

    fn error_from(&mut self, e: Error) {
        match e {
            Error::Corrupt { object, message } => self.error(object, message),
            Error::NotFound { object, .. } => self.error(object, "missing"),
            other => self.error("", other.to_string()),
        }
    }
}

/// Checks every tenant, each under a shared lock, so that a prune (which
/// takes the exclusive one) cannot remove objects while they are checked
/// and make them look lost. `host` goes into the locks.
pub fn run(repo: &Repository, read_data: ReadData, host: &str) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let holder = crate::lock::Holder {
        host: host.to_string(),
        command: "check".into(),
    };
    for name in repo.tenant_names()? {
        let _lock = match crate::lock::acquire(
            &repo.store,
            &name,
            crate::lock::LockKind::Shared,
            &holder,
        ) {
            Ok(l) => l,
            Err(e @ Error::Locked { .. }) => {
                report.error(layout::tenant_prefix(&name), format!("not checked: {e}"));
                continue;
            }
            Err(e) => return Err(e),
        };
        let tenant = match repo.tenant(&name) {
            Ok(t) => t,
            // Only locks: a first backup of the tenant is starting (or was
            // killed before writing the key); nothing to check.
            Err(Error::NotFound { .. }) if !crate::ship::has_content(&repo.store, &name)? => {
                continue;
            }
            Err(Error::NotFound { object, .. }) => {
                // Data without its key: an erased tenant's leftover (a copy
                // put back), or a lost key. Either way nothing can read it;
                // each object is named so it can be found and removed.
                report.error(
                    object,
                    "missing: the tenant's other objects cannot be read by any key",
                );
                let locks = layout::locks_folder(&name);
                for o in repo.store.list(&layout::tenant_prefix(&name))? {
                    if !layout::is_under(&o.path, &locks) {
                        report.unreferenced.push(Finding {
                            object: o.path,
                            message: "unreadable: its tenant has no key (left after an erasure, or the key was lost)".into(),
                        });
                    }
                }
                continue;
            }
            Err(e) => {
                report.error_from(e);
                continue;
            }
        };
        check_tenant(repo, &tenant, read_data, &mut report)?;
    }
    // The rules a fleet server ships for its lifecycle host: they must
    // open, or the host deletes nothing of the repository.
    if let Err(e) = repo.read_rules(&repo.store) {
        report.error_from(e);
    }
    Ok(report)
}

fn check_tenant(
    repo: &Repository,
    tenant: &Tenant,
    read_data: ReadData,
    report: &mut CheckReport,
) -> Result<()> {
    let prefix = layout::tenant_prefix(&tenant.name);
    let listed = repo.store.list(&prefix)?;
    let mut pack_sizes: HashMap<Id, (String, u64)> = HashMap::new();
    let mut index = Index::default();
    let mut snapshot_ids = Vec::new();
    for obj in &listed {
        let rel = &obj.path[prefix.len() + 1..];
        let kind = rel.split('/').next().unwrap_or_default();
        match (kind, id_of_path(&obj.path)) {
            ("packs", Some(id)) => {
                if obj.path != layout::pack_path(&tenant.name, &id) {
                    report.error(
                        &obj.path,
                        "pack is in the wrong folder (restore would not find it)",
                    );
                }
                pack_sizes.insert(id, (obj.path.clone(), obj.size));
            }
            ("index", Some(_)) => {
                let loaded = repo.store.get(&obj.path).and_then(|bytes| {
                    if Some(Id::of_bytes(&bytes)) != id_of_path(&obj.path) {
                        return Err(Error::corrupt(
                            &obj.path,
                            "content does not match its name (damaged object)",
                        ));
                    }
                    crate::format::index::open(&bytes, &tenant.cipher, &tenant.context, &obj.path)
                        .map_err(Error::from)
                });
                match loaded {
                    Ok(body) => index.add_body(&body),
                    Err(e) => report.error_from(e),
                }
            }
            ("snapshots", Some(id)) => snapshot_ids.push(id),
            ("key" | "locks", _) => {}
            // What a fleet server's primary holds, for its lifecycle host:
            // it must open; what it names is not checked (a prune takes
            // what lives from the snapshots).
            ("holdings", None) if rel == "holdings" => {
                if let Err(e) = repo.read_holdings(&repo.store, &tenant.name) {
                    report.error_from(e);
                }
            }
            _ => report.unreferenced.push(Finding {
                object: obj.path.clone(),
                message: "unknown object".into(),
            }),
        }
    }

    // Every indexed pack must exist with the size the index gives.
    let indexed: HashSet<Id> = index.packs().iter().map(|(id, _)| *id).collect();
    for (id, size) in index.packs() {
        let path = layout::pack_path(&tenant.name, id);
        match pack_sizes.get(id) {
            None => report.error(&path, "missing pack"),
            Some((_, actual)) if actual != size => report.error(
                &path,
                format!("pack is {actual} bytes, the index says {size} (truncated or damaged)"),
            ),
            Some(_) => {}
        }
    }
    for (id, (path, _)) in &pack_sizes {
        if !indexed.contains(id) {
            report.unreferenced.push(Finding {
                object: path.clone(),
                message: "pack in no index (left by an interrupted backup; reclaimable)".into(),
            });
        }
    }
    report.packs += pack_sizes.len() as u64;
    report.blobs += index.blob_count() as u64;

    // Every snapshot's trees and data blobs must be indexed.
    let mut seen_trees: HashSet<Id> = HashSet::new();
    let mut referenced: HashSet<Id> = HashSet::new();
    for id in snapshot_ids {
        let path = layout::snapshot_path(&tenant.name, &id);
        let snap = match repo.read_snapshot(tenant, &id) {
            Ok(s) => s,
            Err(e) => {
                report.error_from(e);
                continue;
            }
        };
        report.snapshots += 1;
        let mut stack = vec![snap.root];
        while let Some(tree_id) = stack.pop() {
            if !seen_trees.insert(tree_id) {
                continue;
            }
            referenced.insert(tree_id);
            let tree = match repo.read_tree(tenant, &index, &tree_id) {
                Ok(t) => t,
                Err(e) => {
                    report.error_from(e);
                    report.error(
                        &path,
                        format!("snapshot cannot be read fully (tree {})", tree_id.short()),
                    );
                    continue;
                }
            };
            for node in tree.nodes {
                if let Some(sub) = node.subtree {
                    stack.push(sub);
                }
                for &blob in &node.content {
                    if referenced.insert(blob) && !index.contains(&blob) {
                        report.error(
                            &path,
                            format!(
                                "data blob {} of {:?} is in no index (missing)",
                                blob.to_hex(),
                                node.name_lossy()
                            ),
                        );
                    }
                }
            }
        }
    }
    let unused = index
        .blobs()
        .filter(|(id, _)| !referenced.contains(id))
        .count();
    if unused > 0 {
        report.unreferenced.push(Finding {
            object: prefix.clone(),
            message: format!("{unused} blobs no snapshot references (reclaimable)"),
        });
    }

    // Read data: every pack (or a share), whole, against its name and index.
    let to_read: Vec<(Id, String)> = {
        let mut all: Vec<(Id, String)> = index
            .packs()
            .iter()
            .filter_map(|(id, _)| pack_sizes.get(id).map(|(p, _)| (*id, p.clone())))
            .collect();
        match read_data {
            ReadData::None => all.clear(),
            ReadData::All => {}
            ReadData::Subset(pct) => {
                use rand::seq::SliceRandom;
                all.shuffle(&mut rand::rng());
                let n = ((all.len() as f64) * pct / 100.0).ceil() as usize;
                all.truncate(n.min(all.len()));
            }
        }
        all
    };
    let expected: HashMap<Id, Vec<(Id, Kind, u64, u32)>> = {
        let mut m: HashMap<Id, Vec<(Id, Kind, u64, u32)>> = HashMap::new();
        for (blob, loc) in index.blobs() {
            m.entry(index.pack_id(loc))
                .or_default()
                .push((*blob, loc.kind, loc.offset, loc.length));
        }
        m
    };
    let results: Vec<(u64, Vec<Finding>)> = to_read
        .par_iter()
        .map(|(id, path)| read_pack(repo, tenant, path, expected.get(id)))
        .collect();
    for (n, findings) in results {
        report.blobs_read += n;
        report.errors.extend(findings);
    }
    Ok(())
}

/// Reads one pack whole and authenticates every byte of it: the header
/// (AES-GCM), every blob the header lists (AES-GCM, then its id recomputed
/// from the plaintext), and the tiling of blobs, header and trailer. That
/// covers the whole pack, so its SHA-256 name need not be hashed again.
/// Then every index entry placing a blob here must match the header.
fn read_pack(
    repo: &Repository,
    tenant: &Tenant,
    path: &str,
    expected: Option<&Vec<(Id, Kind, u64, u32)>>,
) -> (u64, Vec<Finding>) {
    let finding = |m: String| Finding {
        object: path.to_string(),
        message: m,
    };
    let bytes = match repo.store.get(path) {
        Ok(b) => b,
        Err(e) => return (0, vec![finding(e.to_string())]),
    };
    let entries = match read_header(&bytes, &tenant.cipher, &tenant.context, path) {
        Ok(e) => e,
        Err(e) => return (0, vec![finding(format!("{e} (damaged pack)"))]),
    };
    let mut out = Vec::new();
    let mut read = 0;
    let mut bad_blobs = 0;
    for e in &entries {
        let kind = e.blob_kind().expect("read_header checks kinds");
        let sealed = &bytes[e.offset as usize..e.offset as usize + e.length as usize];
        match open_blob(&tenant.cipher, kind, &e.id, sealed, path) {
            Ok(plain) => {
                read += 1;
                if tenant.blob_id(kind, &plain) != e.id {
                    out.push(finding(format!(
                        "{} {} does not match its id",
                        kind.name(),
                        e.id.to_hex()
                    )));
                }
            }
            Err(_) => bad_blobs += 1,
        }
    }
    if bad_blobs > 0 {
        out.push(finding(format!(
            "{bad_blobs} blobs failed authentication (damaged pack)"
        )));
    }
    let by_id: HashMap<Id, &crate::format::pack::PackEntry> =
        entries.iter().map(|e| (e.id, e)).collect();
    for (blob, kind, offset, length) in expected.into_iter().flatten() {
        let listed = by_id.get(blob).is_some_and(|e| {
            e.blob_kind() == Some(*kind) && e.offset == *offset && e.length == *length
        });
        if !listed {
            out.push(finding(format!(
                "the index places {} {} here, the pack header does not",
                kind.name(),
                blob.to_hex()
            )));
        }
    }
    (read, out)
}
