//! `gallra init`: the repository on the primary, then the same repository
//! on every secondary by shipping it there, which proves each secondary's
//! settings at once.

use serde::Serialize;

use crate::config::{Config, Locking, Target};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::ship::{self, ShipOptions};
use crate::store::Store;
use crate::survival::OldVersions;

/// What init did on each target, the primary first.
#[derive(Debug, Default)]
pub struct InitReport {
    pub targets: Vec<TargetInit>,
    /// The first key epoch, made in the key service (with `[key_service]`).
    pub key_epoch: Option<String>,
    /// Why it could not be made.
    pub key_epoch_error: Option<Error>,
}

impl InitReport {
    /// Every target was initialised.
    pub fn ok(&self) -> bool {
        self.targets.iter().all(|t| t.created)
    }
}

/// One target's outcome; `--json` prints these as they are.
#[derive(Debug, Serialize)]
pub struct TargetInit {
    pub target: String,
    /// The repository is on it now; when not, `error` says why.
    pub created: bool,
    /// The key slot the repository was created with (primary only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_slot: Option<String>,
    /// Whether a second create of one object fails there, as lease locks
    /// need; absent when the target was not initialised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditional_create: Option<bool>,
    /// Whether the store keeps old versions of what gallra deletes, as
    /// probed (and recorded) now; absent when the target was not
    /// initialised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_versions: Option<OldVersions>,
    /// What protects it against this server, as probed now; absent when
    /// the target was not initialised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protection: Option<crate::protection::Protection>,
    /// Why it is not; printed as its text.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::error::serialize_text"
    )]
    pub error: Option<Error>,
    /// It takes lease locks but does not honour conditional create: its
    /// locks cannot be trusted and lifecycle deletes there are refused.
    #[serde(skip)]
    pub locks_untrustworthy: bool,
}

fn holds_repository(t: &Target) -> Result<Option<u64>> {
    Store::open(t).and_then(|s| s.size_of(crate::layout::CONFIG_PATH))
}

/// Creates the repository on the primary with a key slot from `[key]`,
/// then ships it to each secondary. A secondary that cannot be reached is
/// reported and the others are still tried; refusing to start at all is
/// an error.
pub fn init_targets(config: &Config) -> Result<InitReport> {
    // A second init is harmless, and says so; it must not send the
    // operator to rebuild a healthy primary.
    let primary = config.primary();
    if holds_repository(primary).is_ok_and(|held| held.is_some()) {
        return Err(Error::Usage(format!(
            "target {} already holds this server's repository: nothing to initialise (`gallra check` tells whether it is healthy; `gallra repair-target NAME` fills a secondary that lacks it)",
            primary.name
        )));
    }
    // A secondary that already holds a repository means the primary
    // was lost: a new repository there could never ship to it.
    for t in config.secondaries() {
        let held = holds_repository(t).unwrap_or(None);
        if held.is_some() {
            return Err(Error::Usage(format!(
                "target {} already holds a repository; to rebuild the primary from it run `gallra repair-target {}` (init would start a second, different repository)",
                t.name,
                config.primary().name
            )));
        }
    }
    let t = config.primary();
    let store = Store::open_or_create(t)?;
    let repo = Repository::init(store.clone(), &config.key, config.repository.chunker)?;
    let mut report = InitReport::default();
    // With a key service, tenant keys are wrapped by epochs from the
    // start: none is ever wrapped by the master key (docs/SECURITY.md).
    // A failure here leaves a repository without an epoch, which the first
    // backup (or `gallra key rotate`) gives one: init cannot run twice.
    if config.key.service.is_some() {
        match repo
            .make_epoch(None)
            .and_then(|(e, _)| repo.write_epoch(&e).map(|()| e))
        {
            Ok(epoch) => report.key_epoch = Some(epoch.short()),
            Err(e) => report.key_epoch_error = Some(e),
        }
    }
    report
        .targets
        .push(created(config, &store, t, Some(repo.slot_in_use.clone()))?);
    // Secondaries receive the same repository (config and key slots)
    // by shipping.
    for t in config.secondaries() {
        let outcome = Store::open_or_create(t).and_then(|dst| {
            ship::ship(
                &repo,
                &dst,
                &ShipOptions {
                    initialise: true,
                    ..config.ship_options()
                },
            )?;
            Ok(dst)
        });
        match outcome {
            Ok(dst) => report.targets.push(created(config, &dst, t, None)?),
            Err(e) => report.targets.push(TargetInit {
                target: t.name.clone(),
                created: false,
                key_slot: None,
                conditional_create: None,
                old_versions: None,
                protection: None,
                error: Some(e),
                locks_untrustworthy: false,
            }),
        }
    }
    Ok(report)
}

/// A target just initialised, with its conditional-create and
/// old-versions probes (the latter recorded in the state folder).
fn created(
    config: &Config,
    store: &Store,
    t: &Target,
    key_slot: Option<String>,
) -> Result<TargetInit> {
    let conditional = store.honours_conditional_create()?;
    let versioning = crate::survival::probe_store(&config.agent.state_dir, t, store);
    Ok(TargetInit {
        target: t.name.clone(),
        created: true,
        key_slot,
        conditional_create: Some(conditional),
        old_versions: Some(versioning.old_versions),
        protection: Some(crate::protection::recorded(&config.agent.state_dir, t)),
        error: None,
        locks_untrustworthy: !conditional && t.locking == Locking::Lease,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gallra init --json` prints these: a field that does not apply is
    /// absent, never null, as scripts have always read them.
    #[test]
    fn each_target_prints_only_the_fields_that_apply_to_it() {
        let primary = TargetInit {
            target: "local".into(),
            created: true,
            key_slot: Some("0123456789abcdef".into()),
            conditional_create: Some(false),
            old_versions: Some(OldVersions::Kept),
            protection: None,
            error: None,
            locks_untrustworthy: true,
        };
        let failed = TargetInit {
            target: "offsite".into(),
            created: false,
            key_slot: None,
            conditional_create: None,
            old_versions: None,
            protection: None,
            error: Some(Error::TargetConfig {
                target: "offsite".into(),
                message: "unreachable".into(),
            }),
            locks_untrustworthy: false,
        };
        assert_eq!(
            serde_json::to_value([primary, failed]).unwrap(),
            serde_json::json!([
                {"target": "local", "created": true, "key_slot": "0123456789abcdef", "conditional_create": false, "old_versions": "kept"},
                {"target": "offsite", "created": false, "error": "target offsite: unreachable"},
            ])
        );
    }
}
