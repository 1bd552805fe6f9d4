//! What a store is opened with: a target's URL, options, credentials and
//! request limits, as `[[target]]` in agent.toml gives them (the config
//! parses them into this type; the store knows nothing of the config).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `Store::open` needs to reach one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSettings {
    pub name: String,
    pub url: String,
    /// object_store's own option keys for the scheme (`region`, ...).
    pub options: BTreeMap<String, String>,
    /// `KEY=value` lines read when the store is opened (an absolute path).
    pub credentials_file: Option<PathBuf>,
    pub limits: StoreLimits,
    pub locking: Locking,
}

impl TargetSettings {
    /// A target from a URL, with every setting at its default.
    pub fn new(name: &str, url: &str) -> TargetSettings {
        TargetSettings {
            name: name.to_string(),
            url: url.to_string(),
            options: BTreeMap::new(),
            credentials_file: None,
            limits: StoreLimits::default(),
            locking: Locking::Lease,
        }
    }
}

impl AsRef<TargetSettings> for TargetSettings {
    fn as_ref(&self) -> &TargetSettings {
        self
    }
}

/// Whether a target's locks can be trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locking {
    /// Per-tenant lock objects, created with a conditional put.
    #[default]
    Lease,
    /// No lock objects: for a store that cannot do conditional creates, where
    /// the operator guarantees that one agent at a time uses each tenant.
    None,
}

/// A target's request limits, from its `max_upload`, `timeout` and
/// `concurrency` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Bytes per second, if capped.
    pub upload_rate: Option<u64>,
    pub timeout: Duration,
    pub concurrency: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            upload_rate: None,
            timeout: Duration::from_secs(120),
            concurrency: 8,
        }
    }
}
