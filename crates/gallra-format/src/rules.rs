//! `lifecycle/rules`: a fleet server's retention rules (its `[retention]`
//! table as written, and its time zone), shipped to a target whose
//! deletions are a lifecycle host's (docs/FORMAT.md section 17.13). The host
//! applies its own rules, never these: it compares them, and while the two
//! would decide a deletion differently it deletes nothing of that
//! repository and says why. A forged body can therefore delay deletions
//! (an alert), never bring one forward.
//!
//! A record (`format::record`, envelope kind 13) whose body is a
//! [`RulesBody`] as JSON, bound to its path.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{Kind, record};
use crate::crypto::SecretKey;
use crate::error::{Error, Result};

/// The body's own version.
pub const RULES_VERSION: u32 = 1;

/// One rule as written in the fleet server's config; each key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_contract: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    #[serde(default)]
    pub legal_obligation: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesBody {
    pub version: u32,
    /// The fleet server's `[agent] host`.
    pub host: String,
    /// When the ship that wrote it ran.
    pub written: Timestamp,
    /// `[agent] time_zone`: the zone calendar periods are counted in.
    pub time_zone: String,
    pub default: RuleBody,
    pub category: BTreeMap<String, RuleBody>,
    pub tenant: BTreeMap<String, RuleBody>,
}

pub fn seal(rules: &RulesBody, master: &SecretKey, repo_id: &[u8; 16], path: &str) -> Vec<u8> {
    record::seal(rules, Kind::Rules, master, repo_id, path)
}

pub fn open(bytes: &[u8], master: &SecretKey, repo_id: &[u8; 16], path: &str) -> Result<RulesBody> {
    let body: RulesBody = record::open(bytes, Kind::Rules, master, repo_id, path)?;
    from_body(body, path)
}

/// Checks a decoded body's version (its periods are parsed by the reader,
/// which names the one that does not parse).
pub fn from_body(body: RulesBody, path: &str) -> Result<RulesBody> {
    if body.version != RULES_VERSION {
        return Err(Error::corrupt(
            path,
            format!("rules version {} is not one this build reads", body.version),
        ));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(version: u32) -> RulesBody {
        let mut tenant = BTreeMap::new();
        tenant.insert(
            "acme".to_string(),
            RuleBody {
                keep: Some("12 months".into()),
                legal_basis: Some("agreement 2026-04".into()),
                ..RuleBody::default()
            },
        );
        RulesBody {
            version,
            host: "web01".into(),
            written: "2026-12-04T04:00:00Z".parse().unwrap(),
            time_zone: "Europe/Stockholm".into(),
            default: RuleBody::default(),
            category: BTreeMap::new(),
            tenant,
        }
    }

    #[test]
    fn round_trip_bound_to_its_path_and_repository() {
        let master = SecretKey::random();
        let repo = [9u8; 16];
        let path = "lifecycle/rules";
        let sealed = seal(&sample(1), &master, &repo, path);
        assert_eq!(sealed[5], Kind::Rules as u8);
        assert_eq!(open(&sealed, &master, &repo, path).unwrap(), sample(1));
        assert!(open(&sealed, &master, &repo, "lifecycle/other").is_err());
        assert!(open(&sealed, &master, &[8u8; 16], path).is_err());
        assert!(open(&sealed, &SecretKey::random(), &repo, path).is_err());
    }

    #[test]
    fn a_body_of_another_version_is_refused() {
        let e = from_body(sample(2), "p").unwrap_err().to_string();
        assert!(e.contains("rules version 2"), "{e}");
    }
}
