//! What a fleet server's primary holds of a tenant, shipped beside the
//! tenant's objects to a target whose deletions are a lifecycle host's
//! (`tenants/<t>/holdings`, docs/FORMAT.md section 17.12), so that the host
//! prunes that target as a secondary of the primary it cannot see.

use bytes::Bytes;
use std::collections::HashSet;

use super::Repository;
use crate::error::{Error, Result};
use crate::format::Id;
use crate::format::holdings::{self, Holdings};
use crate::layout;
use crate::limits::ReadLimit;
use crate::store::{Listed, Store};

/// The packs and index objects a target holds of a tenant. The primary's,
/// as its prune leaves them, are what each secondary prunes to: it keeps
/// those packs and does not replace those index objects.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TenantHoldings {
    pub packs: HashSet<Id>,
    /// Paths of index objects.
    pub index: HashSet<String>,
}

/// How old the shipped holdings may be and still be pruned to: a fleet
/// server ships nightly. Older ones (a server gone, or not shipping) are
/// not, so that what they name does not stay past its retention.
pub const HOLDINGS_FRESH: jiff::SignedDuration = jiff::SignedDuration::from_hours(3 * 24);

impl Repository {
    /// The object that tells `dst` what this repository's primary holds of
    /// `tenant`: the packs and index objects listed by the ship that
    /// writes it.
    pub fn seal_holdings(&self, tenant: &str, packs: &[Listed], index: &[Listed]) -> Bytes {
        let ids = |objects: &[Listed]| -> Vec<Id> {
            objects
                .iter()
                .filter_map(|o| layout::id_of_path(&o.path))
                .collect()
        };
        let path = layout::holdings_path(tenant);
        let body = Holdings {
            tenant: tenant.to_string(),
            written: jiff::Timestamp::now(),
            packs: ids(packs),
            index: ids(index),
        };
        Bytes::from(holdings::seal(&body, self.master(), &self.repo_id, &path))
    }

    /// The holdings a fleet server shipped for `tenant`, as the secondary
    /// prune takes them, if there are any written within
    /// `HOLDINGS_FRESH` of `now` (and not after it).
    pub fn shipped_holdings(
        &self,
        tenant: &str,
        now: jiff::Timestamp,
    ) -> Result<Option<TenantHoldings>> {
        // A damaged or forged object delays no deletion: the prune goes
        // on without it.
        let h = match self.read_holdings(&self.store, tenant) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(e @ (Error::Corrupt { .. } | Error::TooLarge { .. })) => {
                tracing::warn!("{e}; pruned without it");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let tolerance = crate::format::event::CLOCK_TOLERANCE;
        if h.written > now + tolerance || now.duration_since(h.written) > HOLDINGS_FRESH {
            tracing::warn!(
                "target {}: the holdings of tenant {tenant} were written at {}: not pruned to",
                self.store.name(),
                h.written
            );
            return Ok(None);
        }
        Ok(Some(TenantHoldings {
            packs: h.packs.into_iter().collect(),
            index: h
                .index
                .iter()
                .map(|id| layout::index_path(tenant, id))
                .collect(),
        }))
    }

    /// Opens `tenant`'s holdings object on `store`; `None` if it has none.
    pub fn read_holdings(&self, store: &Store, tenant: &str) -> Result<Option<Holdings>> {
        let path = layout::holdings_path(tenant);
        let bytes = match store.get_limited(&path, ReadLimit::Holdings) {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let name = format!("target {}: {path}", store.name());
        Ok(Some(
            holdings::open(&bytes, self.master(), &self.repo_id, &path, tenant)
                .map_err(|e| Error::corrupt(name, e.to_string()))?,
        ))
    }
}
