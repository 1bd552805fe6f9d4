//! agent.toml: typed, validated; errors name the line and key.
//!
//! One module per table (`[agent]`, `[key]`, `[repository]`, `[[target]]`,
//! `[[source]]`, `[retention]`, `[drill]`), each with the table as written
//! (`Raw*`, deserialised with unknown keys refused) and its parsing into the
//! settings the rest of gallra reads. `Config::parse` composes them in the
//! order of the file's dependencies: the agent's time zone and state folder
//! come first, the targets before the rules and drills that name them.
//! Units (sizes, rates, durations, periods) are read by `crate::units`.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audit::AuditLog;
use crate::error::{Error, Result};
use crate::lifecycle::apply::{Lifecycle, TargetRepositories};
use crate::repo::RepoKeys;
use crate::schedule::Schedule;

mod agent;
mod drill;
mod fleet;
mod key;
mod key_service;
mod repository;
mod retention;
mod source;
mod target;

// The types the tables parse into that live with their readers, where a
// reader of the config looks for them too.
pub use crate::lifecycle::rules::{Retention, Rule};
pub use crate::store::{Locking, StoreLimits, TargetSettings};
pub use agent::{
    Agent, DEFAULT_LIFECYCLE_SCHEDULE, DEFAULT_SCHEDULE, DEFAULT_TIME_ZONE, IoClass, LogFormat,
};
pub use drill::{
    DEFAULT_DRILL_MAX_AGE, DEFAULT_DRILL_SAMPLE, DEFAULT_DRILL_SCHEDULE, DrillSettings,
};
pub use fleet::FleetRepository;
pub use repository::RepositorySettings;
pub use source::{Source, SourceKind};
pub use target::Target;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/gallra/agent.toml";

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub agent: Agent,
    /// The master key's source (`[key]`) and the key service that holds
    /// the epoch keys (`[key_service]`): with one, the erasure of a tenant
    /// holds against every surviving copy (docs/SECURITY.md).
    pub key: RepoKeys,
    pub repository: RepositorySettings,
    pub targets: Vec<Target>,
    pub sources: Vec<Source>,
    pub retention: Retention,
    /// The retention rules, parsed; in `agent.time_zone`.
    pub policy: crate::lifecycle::Policy,
    pub drill: DrillSettings,
    /// On a lifecycle host: the fleet servers' repositories it applies the
    /// lifecycle of (`[[fleet]]`).
    pub fleet: Vec<FleetRepository>,
    /// Set in the config `for_fleet` makes: the fleet repository it is of.
    pub fleet_repository: Option<String>,
}

/// agent.toml as written, one field per table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    agent: agent::RawAgent,
    key: Option<key::RawKey>,
    key_service: Option<key_service::RawKeyService>,
    #[serde(default)]
    repository: repository::RawRepository,
    #[serde(default)]
    target: Vec<target::RawTarget>,
    #[serde(default)]
    source: Vec<source::RawSource>,
    #[serde(default)]
    retention: Retention,
    #[serde(default)]
    drill: drill::RawDrill,
    #[serde(default)]
    fleet: Vec<fleet::RawFleet>,
}

/// The file being parsed: errors name it, relative paths are resolved
/// against its folder, and offsets into its text become line numbers.
struct ConfigFile<'a> {
    path: &'a Path,
    text: &'a str,
}

impl ConfigFile<'_> {
    fn error(&self, message: String) -> Error {
        Error::Config {
            file: self.path.to_path_buf(),
            message,
        }
    }

    fn resolve(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The schedule at `key`, or `default` when the key is not given.
    fn schedule(&self, key: &str, text: Option<&str>, default: &str) -> Result<Schedule> {
        text.unwrap_or(default)
            .parse::<Schedule>()
            .map_err(|m| self.error(format!("{key}: {m}")))
    }

    /// The positive duration at `key`, or `default` when it is not given.
    fn duration(&self, key: &str, text: Option<&str>, default: &str) -> Result<Duration> {
        let text = text.unwrap_or(default);
        crate::units::parse_positive_duration(text).ok_or_else(|| {
            self.error(format!(
                "{key}: {text:?} is not a duration like \"30s\" or \"10m\""
            ))
        })
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let file = ConfigFile { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!("line {}: ", file.line_of(s.start)))
                .unwrap_or_default();
            file.error(format!("{at}{}", e.message().trim().replace('\n', " ")))
        })?;
        let time_zone = agent::time_zone(&raw.agent, &file)?;
        let agent = agent::parse(raw.agent, &file)?;
        let fleet = fleet::parse(raw.fleet, &file)?;
        // A lifecycle host opens each repository with its [[fleet]] key
        // file; its own config is never opened as a repository.
        let master = match (fleet.first(), raw.key) {
            (None, key) => key::parse(key, &file)?,
            (Some(f), None) => crate::crypto::KeySource::File(f.key_file.clone()),
            (Some(_), Some(_)) => {
                return Err(file.error(
                    "[key] and [[fleet]]: a lifecycle host's config names each repository's key as its [[fleet]] key_file; remove [key]".into(),
                ));
            }
        };
        let key = RepoKeys::new(master, key_service::parse(raw.key_service, &file)?);
        let repository = repository::parse(raw.repository, &file)?;
        let targets = target::parse(raw.target, &file)?;
        let policy = retention::policy(&raw.retention, &targets, time_zone, &file)?;
        let sources = source::parse(raw.source, &agent, &file)?;
        let drill = drill::parse(raw.drill, &targets, &agent, &file)?;
        Ok(Config {
            path: path.to_path_buf(),
            agent,
            key,
            repository,
            targets,
            sources,
            retention: raw.retention,
            policy,
            drill,
            fleet,
            fleet_repository: None,
        })
    }

    /// The names of the `[[fleet]]` repositories, for messages: "web01, web02".
    pub fn fleet_names(&self) -> String {
        let names: Vec<&str> = self.fleet.iter().map(|f| f.name.as_str()).collect();
        names.join(", ")
    }

    /// On a lifecycle host, the config of the fleet repository `name`: the
    /// host's targets with the repository's folder added to each URL, its
    /// key file (and the host's key service), the host's rules and agent
    /// name (its audit chain in that repository is the host's), and a
    /// state folder of its own. No sources: a lifecycle host backs up
    /// nothing.
    pub fn for_fleet(&self, name: &str) -> Result<Config> {
        let f = self.fleet.iter().find(|f| f.name == name).ok_or_else(|| {
            Error::Usage(format!(
                "no [[fleet]] named {name:?} in {} (fleet: {})",
                self.path.display(),
                self.fleet_names()
            ))
        })?;
        let mut c = self.clone();
        for t in &mut c.targets {
            t.store.url = format!("{}/{}", t.store.url.trim_end_matches('/'), f.prefix);
        }
        c.key = RepoKeys::new(
            crate::crypto::KeySource::File(f.key_file.clone()),
            self.key.service.clone(),
        );
        c.agent.state_dir = self.agent.state_dir.join("fleet").join(&f.name);
        c.sources.clear();
        c.fleet.clear();
        c.fleet_repository = Some(f.name.clone());
        Ok(c)
    }

    /// Opens every target's repository with the configured key, the
    /// primary first (which must open).
    pub fn open_repositories(&self) -> Result<TargetRepositories> {
        TargetRepositories::open(
            self.primary(),
            self.secondaries().map(|t| &t.store),
            &self.key,
        )
    }

    /// The lifecycle of `targets` under this config's rules and agent.
    pub fn lifecycle<'a>(
        &'a self,
        targets: &'a TargetRepositories,
        audit: &'a AuditLog,
    ) -> Lifecycle<'a> {
        Lifecycle {
            policy: &self.policy,
            repos: &targets.repos,
            unopened: targets.failures.clone(),
            host: self.agent.host.clone(),
            state_dir: self.agent.state_dir.clone(),
            pack_size: self.repository.pack_size,
            audit,
            // The key epoch is the fleet server's: it makes and destroys it.
            rotates: self.fleet_repository.is_none(),
            prunes_to_fleet: self.fleet_repository.is_some(),
            checks_fleet_rules: self.fleet_repository.is_some(),
            retention: Some(self.retention_expiry()),
        }
    }

    /// What every ship of this agent runs with: its host name in the
    /// locks, the rules' expiry for locked targets, and the state folder,
    /// where what their packs are locked until is remembered.
    pub fn ship_options(&self) -> crate::ship::ShipOptions {
        crate::ship::ShipOptions {
            host: self.agent.host.clone(),
            retention: Some(self.retention_expiry()),
            state_dir: Some(self.agent.state_dir.clone()),
            rules: Some(self.retention.to_body(
                &self.agent.host,
                &self.agent.time_zone,
                jiff::Timestamp::now(),
            )),
            ..Default::default()
        }
    }

    /// When a snapshot's retention ends on a target under these rules (not
    /// counting contract ends or erasures, which do not wait for a lock):
    /// what ship locks a snapshot's objects on a `lock` target until.
    pub fn retention_expiry(&self) -> crate::ship::RetentionExpiry {
        let policy = self.policy.clone();
        crate::ship::RetentionExpiry(std::sync::Arc::new(
            move |tenant: &str, category: &str, created: jiff::Timestamp, target: &str| {
                let facts = crate::lifecycle::plan::SnapshotFacts {
                    tenant: tenant.to_string(),
                    id: crate::format::Id([0; 32]),
                    target: target.to_string(),
                    created,
                    category: category.to_string(),
                    source: String::new(),
                };
                crate::lifecycle::plan::expiry(&policy, None, &facts).at
            },
        ))
    }

    pub fn primary(&self) -> &Target {
        self.targets
            .iter()
            .find(|t| t.primary)
            .expect("validated: one primary")
    }

    /// The targets that receive ships.
    pub fn secondaries(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter().filter(|t| !t.primary)
    }

    /// The target of this name, or an error listing the names there are.
    pub fn target(&self, name: &str) -> Result<&Target> {
        self.targets.iter().find(|t| t.name == name).ok_or_else(|| {
            Error::Usage(format!(
                "no target named {name:?} in {} (targets: {})",
                self.path.display(),
                self.targets
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

/// What the tables' tests share: a minimal config and ways to vary it.
#[cfg(test)]
mod testing {
    use super::*;

    pub fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/gallra/agent.toml"))
    }

    pub const MINIMAL: &str = r#"
[key]
file = "key"

[[target]]
name = "local"
url = "file:///srv/gallra"

[[source]]
name = "www"
category = "site"
paths = ["/var/www/{tenant}"]
"#;

    /// The config error of `text`: exit code 2, one line, naming every needle.
    pub fn refused(text: &str, needles: &[&str]) {
        let e = parse(text).expect_err(text);
        let msg = e.to_string();
        assert_eq!(e.exit_code(), 2, "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        for n in needles {
            assert!(
                msg.contains(n),
                "{text}\nmessage {msg:?} does not name {n:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;

    #[test]
    fn the_example_config_parses() {
        let c = parse(include_str!("../../agent.toml.example")).unwrap();
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.primary().name, "local");
        assert_eq!(c.sources.len(), 3);
        assert!(c.retention.category["bookkeeping"].legal_obligation);
        assert_eq!((c.drill.target.as_str(), c.drill.sample), ("offsite", 2));
    }

    #[test]
    fn minimal_config_has_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c.key.master,
            crate::crypto::KeySource::File("/etc/gallra/key".into())
        );
        assert!(c.primary().primary);
        assert_eq!(c.repository.compression, 3);
        assert_eq!(c.repository.pack_size, 16 << 20);
        assert_eq!(c.agent.time_zone, "Europe/Stockholm");
        assert!(c.sources[0].one_file_system);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = MINIMAL.replace("[key]", "[repository]\ncompresion = 3\n\n[key]");
        let e = parse(&text).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("line 3") && msg.contains("compresion"),
            "{msg}"
        );
        assert_eq!(e.exit_code(), 2);
        assert!(!msg.contains('\n'));
    }
}
