//! `lifecycle/rules`: the retention rules a fleet server ships to a target
//! whose deletions are a lifecycle host's, which the host compares with its
//! own (docs/FORMAT.md section 17.13, docs/IMMUTABLE.md).

use bytes::Bytes;

use super::Repository;
use crate::error::{Error, Result};
use crate::format::rules::{self, RulesBody};
use crate::layout::RULES_PATH;
use crate::limits::ReadLimit;
use crate::store::Store;

impl Repository {
    /// The object that tells a lifecycle host these rules.
    pub fn seal_rules(&self, body: &RulesBody) -> Bytes {
        Bytes::from(rules::seal(body, self.master(), &self.repo_id, RULES_PATH))
    }

    /// Opens the rules a fleet server shipped to `store`; `None` if it has
    /// shipped none.
    pub fn read_rules(&self, store: &Store) -> Result<Option<RulesBody>> {
        let bytes = match store.get_limited(RULES_PATH, ReadLimit::Rules) {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let name = format!("target {}: {RULES_PATH}", store.name());
        Ok(Some(
            rules::open(&bytes, self.master(), &self.repo_id, RULES_PATH).map_err(|e| {
                let text = e.to_string();
                let why = text
                    .strip_prefix(&format!("{RULES_PATH}: "))
                    .unwrap_or(&text);
                Error::corrupt(name, why)
            })?,
        ))
    }
}

/// How long a fleet server trusts that what it shipped is still there:
/// after this, the next ship writes the rules again, so that an object
/// damaged or overwritten on the store is mended within a day.
const RULES_REWRITTEN_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Writes `body` to `dst` as `lifecycle/rules` unless the same rules were
/// written there within a day, as remembered in
/// `<state_dir>/rules-shipped/<target>` (a digest of the rules, without
/// the time they were written), and not `always` (a repair, which mends
/// a damaged or forged object at once). Returns whether it wrote.
pub fn ship_rules(
    source: &Repository,
    dst: &Store,
    body: &RulesBody,
    state_dir: Option<&std::path::Path>,
    always: bool,
) -> Result<bool> {
    use sha2::Digest;
    let digest = {
        let timeless = RulesBody {
            written: jiff::Timestamp::UNIX_EPOCH,
            ..body.clone()
        };
        hex::encode(sha2::Sha256::digest(
            serde_json::to_vec(&timeless).expect("serialisable"),
        ))
    };
    let memo = state_dir.map(|d| d.join("rules-shipped").join(dst.name()));
    let fresh = !always
        && memo.as_ref().is_some_and(|m| {
            let recent = std::fs::metadata(m)
                .and_then(|md| md.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age < RULES_REWRITTEN_AFTER);
            recent && std::fs::read_to_string(m).is_ok_and(|s| s.trim() == digest)
        });
    if fresh {
        return Ok(false);
    }
    dst.put(RULES_PATH, source.seal_rules(body))?;
    if let Some(m) = &memo {
        let dir = m.parent().expect("a file in a folder");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tmp = m.with_extension("tmp");
        std::fs::write(&tmp, &digest).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, m).map_err(|e| Error::io(m, e))?;
    }
    Ok(true)
}
