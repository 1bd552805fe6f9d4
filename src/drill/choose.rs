//! Which tenants a drill visits, and which of their snapshots.

use crate::error::Result;
use crate::format::Id;
use crate::repo::Repository;

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
    let prefix = crate::layout::snapshots_folder(tenant);
    Ok(!repo.store.list(&prefix)?.is_empty())
}
