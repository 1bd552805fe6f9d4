//! An S3 target's versions, and the choice among them: the version of each
//! name that was current at a time (the view `Store::as_of` reads), and
//! the plan that puts a target's objects back as they were at a time
//! (`Store::revert_plan`, after an attack; docs/IMMUTABLE.md). Choosing is
//! pure; listing and writing are the store's.

use bytes::Bytes;
use futures::StreamExt;
use jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

use super::s3api::{ObjectVersion, S3Api};
use super::settings::LockMode;
use super::{Store, runtime};
use crate::error::{Error, Result};
use crate::layout;

/// How many put-backs and hidings are in flight at once.
const REVERT_PARALLEL: usize = 8;

/// For each name, the newest version or delete marker written at or before
/// `at`. A version and a delete marker of the same second (the stores'
/// times are whole seconds) cannot be ordered: the version wins, as
/// recovery would rather bring an object back than lose it.
pub(super) fn newest_at(
    versions: &[ObjectVersion],
    at: Timestamp,
) -> BTreeMap<&str, &ObjectVersion> {
    let mut newest: BTreeMap<&str, &ObjectVersion> = BTreeMap::new();
    for v in versions.iter().filter(|v| v.modified <= at) {
        match newest.get(v.key.as_str()) {
            Some(seen) if seen.modified > v.modified => {}
            Some(seen) if seen.modified == v.modified && !seen.deleted => {}
            _ => {
                newest.insert(&v.key, v);
            }
        }
    }
    newest
}

/// What puts a target back as it was at a time: each name's version of
/// that time made current again, what was made since hidden under a
/// delete marker (its versions stay), the trail kept.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RevertPlan {
    pub target: String,
    pub as_of: Timestamp,
    /// Overwritten or deleted since: the version of the time is copied
    /// back as the current one.
    pub put_back: Vec<PutBack>,
    /// Made since (forged events, garbage, and anything written after the
    /// time): hidden, its versions kept.
    pub hidden: Vec<Hidden>,
    /// Tenant keys and key epochs that changed since: which version is
    /// kept is decided by which one opens (`repair::revert_target`).
    pub keys: Vec<KeyChoice>,
    /// The heads of audit chains that changed since: overwritten at every
    /// record, so the newest version that opens is kept
    /// (`repair::revert_target`).
    pub heads: Vec<KeyChoice>,
    /// Audit records written since: kept, each in its first version
    /// (put back if it was overwritten); they are the trail of what
    /// happened, the attack's included.
    pub kept: Vec<String>,
    /// Names whose current version is their version of the time.
    pub unchanged: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PutBack {
    pub path: String,
    pub version: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Hidden {
    pub path: String,
    /// Its versions written since the time, newest (the current one)
    /// first; they stay as old ones.
    pub versions: Vec<String>,
}

/// A key object whose current version is not the one of the time. A
/// rotation since the time rewrapped each tenant key under a new epoch and
/// destroyed the old epoch's key: the key of the time then opens no more,
/// and its rewrapped version does (as in the view of the past).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyChoice {
    pub path: String,
    /// Its version at the time (`None`: made since).
    pub at_time: Option<String>,
    /// The versions written since, newest first.
    pub later: Vec<String>,
    /// The current version (`None`: deleted).
    pub current: Option<String>,
}

impl KeyChoice {
    /// The versions to try, in order: the one of the time, then the
    /// later ones, newest first.
    pub fn candidates(&self) -> impl Iterator<Item = &str> {
        self.at_time
            .iter()
            .chain(self.later.iter())
            .map(String::as_str)
    }
}

/// Objects a revert leaves as they are: the locks and lock probes every
/// job deletes when done, and the deletion probe's name.
fn left_alone(path: &str) -> bool {
    layout::is_lock_object(path) || layout::is_under(path, layout::DELETION_PROBE_FOLDER)
}

/// Whether two versions of a name hold the same bytes: the same version,
/// or a copy of it (a revert's put-back) by its ETag and size.
fn same_bytes(a: &ObjectVersion, b: &ObjectVersion) -> bool {
    a.version == b.version || (a.etag.is_some() && a.etag == b.etag && a.size == b.size)
}

/// Whether `path` is an audit record: written once, so that one made
/// since the time is kept, in its first version (later ones overwrote it
/// or deleted it).
fn is_audit_record(path: &str) -> bool {
    layout::is_under(path, layout::AUDIT_FOLDER)
}

fn is_audit_head(path: &str) -> bool {
    layout::is_under(path, layout::AUDIT_HEADS_FOLDER)
}

/// Whether `path` is a key slot: one removed since the time stays removed
/// (a revoked key must not come back), one added since stays; only one
/// overwritten since gets its version of the time back.
fn is_key_slot(path: &str) -> bool {
    layout::is_under(path, layout::KEYS_FOLDER)
}

/// The plan that puts `target` (its `versions`, every one under its
/// prefix) back as it was at `at`.
pub(super) fn plan_revert(target: &str, versions: &[ObjectVersion], at: Timestamp) -> RevertPlan {
    let then = newest_at(versions, at);
    let mut by_name: BTreeMap<&str, Vec<&ObjectVersion>> = BTreeMap::new();
    for v in versions {
        by_name.entry(&v.key).or_default().push(v);
    }
    let mut plan = RevertPlan {
        target: target.to_string(),
        as_of: at,
        put_back: Vec::new(),
        hidden: Vec::new(),
        keys: Vec::new(),
        heads: Vec::new(),
        kept: Vec::new(),
        unchanged: 0,
    };
    for (name, mut all) in by_name {
        if left_alone(name) {
            continue;
        }
        // Newest first; the store's own word on which is current, else
        // the newest, a delete marker winning a tie (then the version of
        // the time is copied back, which at worst repeats it).
        all.sort_by(|a, b| {
            b.modified
                .cmp(&a.modified)
                .then(a.deleted.cmp(&b.deleted).reverse())
        });
        let current = all.iter().find(|v| v.latest).or(all.first()).copied();
        let current = current.filter(|v| !v.deleted);
        let at_time = then.get(name).copied().filter(|v| !v.deleted);
        let first_since = all.iter().rev().find(|v| v.modified > at && !v.deleted);
        let put_back = |v: &ObjectVersion| PutBack {
            path: name.to_string(),
            version: v.version.clone(),
            size: v.size,
        };
        match (at_time, current) {
            (Some(a), Some(c)) if same_bytes(a, c) => plan.unchanged += 1,
            (None, _) if is_audit_record(name) => {
                if let Some(first) = first_since {
                    plan.kept.push(name.to_string());
                    if !current.is_some_and(|c| same_bytes(first, c)) {
                        plan.put_back.push(put_back(first));
                    }
                }
            }
            (Some(a), Some(_)) if is_key_slot(name) => plan.put_back.push(put_back(a)),
            _ if is_key_slot(name) => {}
            (None, None) => {}
            _ if layout::is_key_object(name) || is_audit_head(name) => {
                let choice = KeyChoice {
                    path: name.to_string(),
                    at_time: at_time.map(|v| v.version.clone()),
                    later: all
                        .iter()
                        .filter(|v| v.modified > at && !v.deleted)
                        .map(|v| v.version.clone())
                        .collect(),
                    current: current.map(|v| v.version.clone()),
                };
                match is_audit_head(name) {
                    true => plan.heads.push(choice),
                    false => plan.keys.push(choice),
                }
            }
            (Some(a), _) => plan.put_back.push(put_back(a)),
            (None, Some(_)) => plan.hidden.push(Hidden {
                path: name.to_string(),
                versions: all
                    .iter()
                    .filter(|v| v.modified > at && !v.deleted)
                    .map(|v| v.version.clone())
                    .collect(),
            }),
        }
    }
    plan
}

/// The lock a put-back copy gets: the old version's, if it has not ended.
/// The revert brings back the time's objects as they were, their locks
/// included; it lengthens none (the old version itself stays locked as
/// long as it was), so that a copy whose retention is due is deleted on
/// time.
fn put_back_lock(
    old: Option<(LockMode, Timestamp)>,
    now: Timestamp,
) -> Option<(LockMode, Timestamp)> {
    // A lock that ends within minutes may have ended when the copy
    // arrives, and S3 refuses a retain-until in the past.
    old.filter(|(_, until)| *until > now + COPY_MARGIN)
}

/// See `put_back_lock`.
const COPY_MARGIN: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

impl Store {
    /// Every version and delete marker under the target's prefix, a page
    /// per request (each with its own timeout and retries).
    pub(super) fn all_versions(&self, what: &str) -> Result<(&S3Api, Vec<ObjectVersion>)> {
        let Some(api) = self.s3.as_deref() else {
            return Err(Error::TargetConfig {
                target: self.name.clone(),
                message: format!(
                    "{what} reads old versions, which gallra reads only from S3 targets"
                ),
            });
        };
        let mut versions = Vec::new();
        let mut marker = None;
        loop {
            let (page, next) = runtime()
                .block_on(self.call(0, || api.versions_page(marker.as_ref())))
                .map_err(|f| self.fail("(versions)", f))?;
            versions.extend(page);
            match next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        Ok((api, versions))
    }

    /// What would put this target back as it was at `at` (one version
    /// listing; nothing is changed).
    pub fn revert_plan(&self, at: Timestamp) -> Result<RevertPlan> {
        self.writable("(revert)")?;
        let (_, versions) = self.all_versions("--revert-to")?;
        Ok(plan_revert(&self.name, &versions, at))
    }

    /// Makes `version` of `path` its current version again, by a copy on
    /// the store, locked as long as that version still is.
    pub fn put_back(&self, path: &str, version: &str) -> Result<()> {
        runtime().block_on(self.put_back_async(path, version))
    }

    async fn put_back_async(&self, path: &str, version: &str) -> Result<()> {
        self.writable(path)?;
        let Some(api) = self.s3.as_deref() else {
            return Err(self.not_versioned(path));
        };
        let old = self
            .call(0, || api.retention_of(path, version))
            .await
            .map_err(|f| self.fail(path, f))?;
        let lock = put_back_lock(old, Timestamp::now());
        self.call(0, || api.copy_version(path, version, lock))
            .await
            .map_err(|f| self.fail(path, f))
    }

    fn not_versioned(&self, path: &str) -> Error {
        Error::Store {
            target: self.name.clone(),
            object: path.to_string(),
            message: "only an S3 target's versions can be put back".into(),
        }
    }

    /// Reads version `version` of `path`, current or not.
    pub fn get_version(&self, path: &str, version: &str) -> Result<Bytes> {
        self.writable(path)?;
        let bytes = self.get_remote(path, Some(version.to_string()))?;
        self.count_download(bytes.len());
        Ok(bytes)
    }

    /// Carries out the put-backs and hidings of a plan, several at a
    /// time; what failed is returned, each with its error (the others are
    /// done, and running the revert again finishes the rest).
    pub fn apply_revert(&self, put_back: &[PutBack], hidden: &[Hidden]) -> Vec<Error> {
        let puts = put_back.iter().map(|p| {
            let store = self.clone();
            let (path, version) = (p.path.clone(), p.version.clone());
            async move { store.put_back_async(&path, &version).await }
        });
        let hides = hidden.iter().map(|h| {
            let store = self.clone();
            let path = h.path.clone();
            async move { store.delete_async(&path).await }
        });
        let results: Vec<Result<()>> = runtime().block_on(async {
            let mut all = futures::stream::iter(puts)
                .buffer_unordered(REVERT_PARALLEL)
                .collect::<Vec<_>>()
                .await;
            all.extend(
                futures::stream::iter(hides)
                    .buffer_unordered(REVERT_PARALLEL)
                    .collect::<Vec<_>>()
                    .await,
            );
            all
        });
        results.into_iter().filter_map(|r| r.err()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn v(key: &str, version: &str, second: i64, deleted: bool) -> ObjectVersion {
        ObjectVersion {
            key: key.into(),
            version: version.into(),
            modified: t(second),
            size: 10,
            deleted,
            latest: false,
            etag: (!deleted).then(|| format!("\"{version}\"")),
        }
    }

    /// Marks the newest of each name as the store does.
    fn latest(mut versions: Vec<ObjectVersion>) -> Vec<ObjectVersion> {
        let mut newest: BTreeMap<String, (Timestamp, usize)> = BTreeMap::new();
        for (i, x) in versions.iter().enumerate() {
            let e = newest.entry(x.key.clone()).or_insert((x.modified, i));
            if x.modified >= e.0 {
                *e = (x.modified, i);
            }
        }
        for (_, i) in newest.values() {
            versions[*i].latest = true;
        }
        versions
    }

    #[test]
    fn an_attack_is_undone_and_what_it_made_is_hidden() {
        let versions = latest(vec![
            v("config", "c1", 0, false),
            v("config", "c2", 20, false),
            v("tenants/a/packs/ab/ab01", "p1", 5, false),
            v("tenants/a/packs/ab/ab01", "p2", 21, true),
            v("tenants/a/snapshots/s1", "s1", 6, false),
            v("lifecycle/events/forged", "e1", 22, false),
            v("audit/web01/000007", "a7", 23, false),
            v("audit/lifecycle01/000001", "r1", 22, false),
            v("audit/lifecycle01/000001", "r2", 28, false),
            v("audit-heads/web01", "h1", 2, false),
            v("audit-heads/web01", "h2", 23, false),
            v("audit-heads/lifecycle01", "h3", 23, false),
            v("audit/web01/000009", "r9", 24, false),
            v("audit/web01/000009", "r9x", 25, true),
            v("keys/revoked", "s1", 0, false),
            v("keys/revoked", "s1x", 21, true),
            v("keys/added", "s2", 21, false),
            v("keys/overwritten", "s3", 0, false),
            v("keys/overwritten", "s3x", 22, false),
            v("tenants/a/locks/x", "l1", 24, false),
            v("deletion-probe/00ff", "d1", 25, true),
            v("tenants/a/key", "k1", 1, false),
            v("tenants/a/key", "k2", 26, false),
            v("tenants/a/key", "k3", 27, false),
            v("key-epochs/e2", "ep2", 26, false),
            v("tenants/b/snapshots/old", "o1", 2, false),
            v("tenants/b/snapshots/old", "o2", 3, true),
        ]);
        let plan = plan_revert("offsite", &versions, t(10));
        let put: Vec<(&str, &str)> = plan
            .put_back
            .iter()
            .map(|p| (p.path.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            put,
            vec![
                ("audit/lifecycle01/000001", "r1"),
                ("audit/web01/000009", "r9"),
                ("config", "c1"),
                ("keys/overwritten", "s3"),
                ("tenants/a/packs/ab/ab01", "p1")
            ]
        );
        assert_eq!(
            plan.hidden,
            vec![Hidden {
                path: "lifecycle/events/forged".into(),
                versions: vec!["e1".into()]
            }]
        );
        assert_eq!(
            plan.kept,
            vec![
                "audit/lifecycle01/000001",
                "audit/web01/000007",
                "audit/web01/000009"
            ]
        );
        assert_eq!(plan.unchanged, 1, "the snapshot of tenant a");
        assert_eq!(
            plan.keys,
            vec![
                KeyChoice {
                    path: "key-epochs/e2".into(),
                    at_time: None,
                    later: vec!["ep2".into()],
                    current: Some("ep2".into()),
                },
                KeyChoice {
                    path: "tenants/a/key".into(),
                    at_time: Some("k1".into()),
                    later: vec!["k3".into(), "k2".into()],
                    current: Some("k3".into()),
                },
            ]
        );
        let heads: Vec<&str> = plan.heads.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(heads, vec!["audit-heads/lifecycle01", "audit-heads/web01"]);
        assert_eq!(
            plan.keys[1].candidates().collect::<Vec<_>>(),
            vec!["k1", "k3", "k2"]
        );
    }

    #[test]
    fn a_copy_put_back_is_the_version_it_copies() {
        let mut copy = v("config", "c3", 30, false);
        copy.etag = Some("\"c1\"".into());
        let versions = latest(vec![
            v("config", "c1", 0, false),
            v("config", "c2", 20, false),
            copy,
        ]);
        let plan = plan_revert("offsite", &versions, t(10));
        assert_eq!((plan.unchanged, plan.put_back.len()), (1, 0), "{plan:?}");
    }

    #[test]
    fn the_stores_word_on_the_current_version_is_taken() {
        // Same second: only IsLatest orders them.
        let mut a = v("config", "c1", 0, false);
        let mut b = v("config", "c2", 0, true);
        a.latest = false;
        b.latest = true;
        let plan = plan_revert("offsite", &[a.clone(), b], t(0));
        assert_eq!(
            plan.put_back.len(),
            1,
            "c1 was current at the time: {plan:?}"
        );
        a.latest = true;
        let plan = plan_revert("offsite", &[a], t(0));
        assert_eq!(plan.unchanged, 1);
    }

    #[test]
    fn a_put_back_keeps_the_lock_the_old_version_has_left() {
        let now = t(0);
        let c = |s| (LockMode::Compliance, t(s));
        assert_eq!(put_back_lock(None, now), None);
        assert_eq!(put_back_lock(Some(c(-5)), now), None, "ended");
        let soon = (
            LockMode::Compliance,
            now + jiff::SignedDuration::from_mins(2),
        );
        assert_eq!(
            put_back_lock(Some(soon), now),
            None,
            "ends before the copy lands"
        );
        assert_eq!(put_back_lock(Some(c(3600)), now), Some(c(3600)));
    }

    fn arb_versions() -> impl Strategy<Value = Vec<ObjectVersion>> {
        let names = prop::sample::select(vec![
            "config",
            "tenants/a/packs/ab/ab01",
            "tenants/a/key",
            "lifecycle/events/e",
            "audit/h/000001",
        ]);
        prop::collection::vec((names, 0i64..40, any::<bool>()), 0..30).prop_map(|mut raw| {
            // One version a second per name: the order within a second is
            // the store's listing's (tested above), not the generator's.
            let mut seen = std::collections::BTreeSet::new();
            raw.retain(|(k, s, _)| seen.insert((*k, *s)));
            let versions = raw
                .into_iter()
                .enumerate()
                .map(|(i, (k, s, d))| v(k, &format!("v{i}"), s, d))
                .collect();
            latest(versions)
        })
    }

    proptest! {
        /// Applied to the store, the plan leaves every name as the view of
        /// the past reads it: each key object aside (chosen by what opens)
        /// and the trail kept.
        #[test]
        fn after_the_plan_the_current_objects_are_those_of_the_time(
            versions in arb_versions(),
            at in 0i64..40,
        ) {
            let at = t(at);
            let plan = plan_revert("t", &versions, at);
            let then: BTreeMap<&str, &str> = newest_at(&versions, at)
                .into_iter()
                .filter(|(_, v)| !v.deleted)
                .map(|(k, v)| (k, v.version.as_str()))
                .collect();
            let mut by_name: BTreeMap<&str, Vec<&ObjectVersion>> = BTreeMap::new();
            for x in &versions {
                by_name.entry(&x.key).or_default().push(x);
            }
            for (name, all) in by_name {
                let current = all.iter().find(|x| x.latest).filter(|x| !x.deleted).map(|x| x.version.as_str());
                let mut after = current;
                if let Some(p) = plan.put_back.iter().find(|p| p.path == name) {
                    after = Some(p.version.as_str());
                }
                if plan.hidden.iter().any(|h| h.path == name) {
                    after = None;
                }
                if layout::is_key_object(name) {
                    prop_assert!(
                        after == then.get(name).copied() || plan.keys.iter().any(|k| k.path == name),
                        "{name}"
                    );
                } else if is_audit_record(name) && !then.contains_key(name) {
                    let first = all
                        .iter()
                        .filter(|x| x.modified > at && !x.deleted)
                        .min_by_key(|x| x.modified)
                        .map(|x| x.version.as_str());
                    prop_assert_eq!(after, first, "{}", name);
                } else {
                    prop_assert_eq!(after, then.get(name).copied(), "{}", name);
                }
            }
        }
    }
}
