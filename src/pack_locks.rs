//! The Object Lock of the packs a snapshot needs on a locked target.
//!
//! A pack is locked, when a ship brings it, until the latest retention
//! expiry of the snapshots that ship brings (docs/IMMUTABLE.md). A later
//! snapshot that reuses it (deduplication) may expire later: before that
//! snapshot lands, each pack it needs whose lock ends sooner is lengthened
//! (PutObjectRetention) to its expiry and `SLACK` more, so that an
//! unchanged pack is lengthened about once per `SLACK`, not every night,
//! and a pack no snapshot needs any more stays locked at most `SLACK`
//! past the last one's expiry.
//!
//! What each pack is locked until is remembered per target and tenant in
//! the state folder (`pack-locks/<target>/<tenant>`), so that a night asks
//! the store nothing for the packs it knows; a pack it does not know (a new
//! machine, a lost file) is asked once (a HEAD). The store's word is the
//! truth: the file only saves requests.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};

use crate::error::{Error, Result};
use crate::format::Id;
use crate::repo::index::Index;
use crate::repo::{Repository, Tenant};
use crate::store::Store;

/// How much longer than needed a lengthened lock is made.
pub const SLACK: SignedDuration = SignedDuration::from_hours(7 * 24);

/// Each pack the snapshots with these roots need, with the latest expiry
/// among the snapshots that need it. Trees are walked once each: the
/// snapshots go latest expiry first, and a tree already walked has had its
/// packs given an expiry at least as late.
pub fn packs_needed(
    repo: &Repository,
    tenant: &Tenant,
    index: &Index,
    roots: &[(Id, Timestamp)],
) -> Result<HashMap<Id, Timestamp>> {
    let mut roots = roots.to_vec();
    roots.sort_by_key(|r| std::cmp::Reverse(r.1));
    let mut needed: HashMap<Id, Timestamp> = HashMap::new();
    let mut walked: HashSet<Id> = HashSet::new();
    let need = |blob: &Id, until: Timestamp, needed: &mut HashMap<Id, Timestamp>| {
        if let Some(loc) = index.get(blob) {
            needed.entry(index.pack_id(loc)).or_insert(until);
        }
    };
    for (root, until) in roots {
        let mut stack = vec![root];
        while let Some(tree_id) = stack.pop() {
            if !walked.insert(tree_id) {
                continue;
            }
            need(&tree_id, until, &mut needed);
            for node in repo.read_tree(tenant, index, &tree_id)?.nodes {
                stack.extend(node.subtree);
                for blob in &node.content {
                    need(blob, until, &mut needed);
                }
            }
        }
    }
    Ok(needed)
}

/// The packs whose lock must be lengthened, and to when: those `needed`
/// until a time after what `known` says of them. Sorted by pack.
pub fn lengthen(
    needed: &HashMap<Id, Timestamp>,
    known: &HashMap<Id, Timestamp>,
) -> Vec<(Id, Timestamp)> {
    let mut out: Vec<(Id, Timestamp)> = needed
        .iter()
        .filter(|(id, until)| known.get(id).is_none_or(|k| k < until))
        .map(|(id, until)| (*id, until.saturating_add(SLACK).unwrap_or(*until)))
        .collect();
    out.sort();
    out
}

/// What this server knows of the locks of one tenant's packs on one
/// target.
pub struct Known {
    path: Option<PathBuf>,
    pub packs: HashMap<Id, Timestamp>,
}

impl Known {
    /// Reads `<state_dir>/pack-locks/<target>/<tenant>`; nothing known
    /// when there is no state folder or no file. A file that does not
    /// parse is started again (it only saves requests).
    pub fn load(state_dir: Option<&Path>, target: &str, tenant: &str) -> Known {
        let path = state_dir.map(|d| {
            d.join("pack-locks")
                .join(target)
                .join(crate::tenant_name::component(tenant).as_ref())
        });
        let packs = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice::<HashMap<String, i64>>(&bytes).ok())
            .map(|m| {
                m.into_iter()
                    .filter_map(|(hex, secs)| {
                        Some((Id::from_hex(&hex)?, Timestamp::from_second(secs).ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Known { path, packs }
    }

    /// Writes what is known back (by rename, so a crash leaves the old
    /// file or the new one).
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let dir = path.parent().expect("a file in a folder");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let map: std::collections::BTreeMap<String, i64> = self
            .packs
            .iter()
            .map(|(id, t)| (id.to_hex(), t.as_second()))
            .collect();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&map).expect("serialisable"))
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }
}

/// Lengthens, on `dst`, the lock of every pack of `tenant` that the
/// snapshots with `roots` (each with its expiry) need and whose lock ends
/// sooner; `shipping` are packs this ship brings, locked as they are
/// written until `floor` (remembered as such). Returns how many locks
/// were lengthened.
pub fn lengthen_on(
    dst: &Store,
    source: &Repository,
    tenant: &Tenant,
    roots: &[(Id, Timestamp)],
    shipping: &HashSet<Id>,
    floor: Timestamp,
    state_dir: Option<&Path>,
) -> Result<usize> {
    if roots.is_empty() {
        return Ok(0);
    }
    let index = source.load_index(tenant)?;
    let mut needed = packs_needed(source, tenant, &index, roots)?;
    needed.retain(|id, _| !shipping.contains(id));
    let mut known = Known::load(state_dir, dst.name(), &tenant.name);
    for id in shipping {
        known.packs.insert(*id, floor);
    }
    // A pack not known here: the store says what it is locked until.
    for id in needed.keys() {
        if !known.packs.contains_key(id) {
            let path = crate::layout::pack_path(&tenant.name, id);
            let until = match dst.lock_of(&path) {
                Ok(lock) => lock.map(|(_, until)| until).unwrap_or_default(),
                // Not there (yet): the ship brings it, locked.
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            known.packs.insert(*id, until);
        }
    }
    let due = lengthen(&needed, &known.packs);
    for (id, until) in &due {
        dst.extend_lock(&crate::layout::pack_path(&tenant.name, id), *until)?;
        known.packs.insert(*id, *until);
    }
    known.save()?;
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(day: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + day * 86_400).unwrap()
    }

    #[test]
    fn a_lock_is_lengthened_past_the_need_by_the_slack_and_only_when_short() {
        let needed = HashMap::from([
            (Id([1; 32]), t(10)),
            (Id([2; 32]), t(10)),
            (Id([3; 32]), t(10)),
        ]);
        let known = HashMap::from([(Id([1; 32]), t(12)), (Id([2; 32]), t(9))]);
        assert_eq!(
            lengthen(&needed, &known),
            vec![(Id([2; 32]), t(17)), (Id([3; 32]), t(17))]
        );
    }

    #[test]
    fn what_is_known_survives_a_save_and_a_damaged_file_is_started_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = Known::load(Some(dir.path()), "offsite", "kundå");
        assert!(k.packs.is_empty());
        k.packs.insert(Id([4; 32]), t(3));
        k.save().unwrap();
        let back = Known::load(Some(dir.path()), "offsite", "kundå");
        assert_eq!(back.packs, k.packs);
        let file = dir.path().join("pack-locks/offsite/kund%C3%A5");
        std::fs::write(&file, b"{not json").unwrap();
        assert!(
            Known::load(Some(dir.path()), "offsite", "kundå")
                .packs
                .is_empty()
        );
        assert!(Known::load(None, "offsite", "a").packs.is_empty());
        Known::load(None, "offsite", "a").save().unwrap();
    }

    proptest! {
        /// After the lengthening, every needed pack is locked at least as
        /// long as needed, and none was touched that already was.
        #[test]
        fn every_needed_pack_ends_up_locked_long_enough(
            needed in prop::collection::hash_map(0u8..20, 0i64..100, 0..20),
            known in prop::collection::hash_map(0u8..20, 0i64..100, 0..20),
        ) {
            let needed: HashMap<Id, Timestamp> = needed.into_iter().map(|(k, d)| (Id([k; 32]), t(d))).collect();
            let mut known: HashMap<Id, Timestamp> = known.into_iter().map(|(k, d)| (Id([k; 32]), t(d))).collect();
            let before = known.clone();
            for (id, until) in lengthen(&needed, &known) {
                prop_assert!(before.get(&id).is_none_or(|k| *k < needed[&id]));
                known.insert(id, until);
            }
            for (id, until) in &needed {
                prop_assert!(known[id] >= *until);
            }
        }
    }
}
