//! `tenants/<t>/holdings`: what a fleet server's primary target holds of a
//! tenant (its packs and index objects), as its last ship to a target whose
//! deletions are a lifecycle host's found them (docs/FORMAT.md section
//! 17.12). The host prunes that target as a secondary of this primary: it
//! keeps these packs and index objects and removes what the fleet server's
//! own prune replaced, so that the next ship brings nothing back.
//!
//! A record (`format::record`, envelope kind 12) whose body is a
//! [`HoldingsBody`] as JSON, bound to its path. It decides nothing about
//! what is live: a prune reads that from the snapshots, so a forged body
//! can at most keep garbage, never lose a blob a snapshot needs.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Id, Kind, record};
use crate::crypto::SecretKey;
use crate::error::{Error, Result};

/// The body's own version.
pub const HOLDINGS_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldingsBody {
    pub version: u32,
    pub tenant: String,
    /// When the ship that wrote it listed the primary.
    pub written: Timestamp,
    /// Pack ids (lowercase hex), sorted.
    pub packs: Vec<String>,
    /// Index object ids (lowercase hex), sorted.
    pub index: Vec<String>,
}

/// The primary's holdings of a tenant, checked: every id well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holdings {
    pub tenant: String,
    pub written: Timestamp,
    pub packs: Vec<Id>,
    pub index: Vec<Id>,
}

pub fn seal(holdings: &Holdings, master: &SecretKey, repo_id: &[u8; 16], path: &str) -> Vec<u8> {
    let hex = |ids: &[Id]| {
        let mut out: Vec<String> = ids.iter().map(Id::to_hex).collect();
        out.sort();
        out
    };
    let body = HoldingsBody {
        version: HOLDINGS_VERSION,
        tenant: holdings.tenant.clone(),
        written: holdings.written,
        packs: hex(&holdings.packs),
        index: hex(&holdings.index),
    };
    record::seal(&body, Kind::Holdings, master, repo_id, path)
}

/// Opens the holdings object found at `path`, which must be `tenant`'s.
pub fn open(
    bytes: &[u8],
    master: &SecretKey,
    repo_id: &[u8; 16],
    path: &str,
    tenant: &str,
) -> Result<Holdings> {
    let body: HoldingsBody = record::open(bytes, Kind::Holdings, master, repo_id, path)?;
    from_body(body, path, tenant)
}

/// Checks a decoded body: its version, its tenant, every id.
pub fn from_body(body: HoldingsBody, path: &str, tenant: &str) -> Result<Holdings> {
    if body.version != HOLDINGS_VERSION {
        return Err(Error::corrupt(
            path,
            format!(
                "holdings version {} is not one this build reads",
                body.version
            ),
        ));
    }
    if body.tenant != tenant {
        return Err(Error::corrupt(
            path,
            format!("holds the holdings of tenant {:?}", body.tenant),
        ));
    }
    let ids = |hex: &[String]| -> Result<Vec<Id>> {
        hex.iter()
            .map(|h| {
                Id::from_hex(h).ok_or_else(|| Error::corrupt(path, format!("{h:?} is not an id")))
            })
            .collect()
    };
    Ok(Holdings {
        packs: ids(&body.packs)?,
        index: ids(&body.index)?,
        tenant: body.tenant,
        written: body.written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Holdings {
        Holdings {
            tenant: "acme".into(),
            written: "2026-12-03T04:00:00Z".parse().unwrap(),
            packs: vec![Id([2; 32]), Id([1; 32])],
            index: vec![Id([3; 32])],
        }
    }

    #[test]
    fn round_trip_sorted_and_bound_to_its_path_and_tenant() {
        let master = SecretKey::random();
        let repo = [9u8; 16];
        let path = "tenants/acme/holdings";
        let sealed = seal(&sample(), &master, &repo, path);
        assert_eq!(sealed[5], Kind::Holdings as u8);
        let back = open(&sealed, &master, &repo, path, "acme").unwrap();
        assert_eq!(back.packs, vec![Id([1; 32]), Id([2; 32])]);
        assert_eq!(back.index, sample().index);
        assert!(open(&sealed, &master, &repo, "tenants/beta/holdings", "beta").is_err());
        assert!(open(&sealed, &master, &repo, path, "beta").is_err());
        assert!(open(&sealed, &SecretKey::random(), &repo, path, "acme").is_err());
    }

    #[test]
    fn a_body_of_another_version_or_with_a_bad_id_is_refused() {
        let body = |version, pack: &str| HoldingsBody {
            version,
            tenant: "acme".into(),
            written: "2026-12-03T04:00:00Z".parse().unwrap(),
            packs: vec![pack.into()],
            index: vec![],
        };
        let good = "01".repeat(32);
        assert!(from_body(body(1, &good), "p", "acme").is_ok());
        let e = from_body(body(2, &good), "p", "acme")
            .unwrap_err()
            .to_string();
        assert!(e.contains("holdings version 2"), "{e}");
        let e = from_body(body(1, "zz"), "p", "acme")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an id"), "{e}");
    }
}
