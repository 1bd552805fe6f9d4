//! The library's error type. Every variant names the object, file, line or key
//! involved, so that a one-line message is enough to act on at three in the
//! morning.
//!
//! An error's text holds its cause's: a variant with a source (`Io`,
//! `Tree`, `InTarget`, `ForTenant`) prints it after its own words, so the
//! first `Error` of a chain is the whole story and a printer stops there.
//! Which target or tenant an error names is in its structure
//! (`Error::target`, `Error::tenant`), so context is added only where it
//! is missing, never found by searching the text.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Serialises an error as its text, as reports have always printed it.
pub fn serialize_text<S: serde::Serializer>(
    error: &Option<Error>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match error {
        Some(e) => s.collect_str(e),
        None => s.serialize_none(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// agent.toml is malformed or inconsistent. Exit status 2.
    #[error("config {file}: {message}")]
    Config { file: PathBuf, message: String },

    /// The command line asked for something that cannot be done. Exit status 2.
    #[error("{0}")]
    Usage(String),

    #[error("key file {file}: {message}")]
    KeyFile { file: PathBuf, message: String },

    #[error(
        "no key slot of repository on target {target} opens with {source_desc}: wrong key or passphrase"
    )]
    WrongKey { target: String, source_desc: String },

    #[error("passphrase: environment variable {var} is not set or empty")]
    PassphraseEnv { var: String },

    /// A target's URL, options or credentials are wrong. Exit status 2.
    #[error("target {target}: {message}")]
    TargetConfig { target: String, message: String },

    /// `[key_service]` or its credentials are wrong. Exit status 2.
    #[error("[key_service]: {message}")]
    KeyServiceConfig { message: String },

    /// The key service refused or failed an operation.
    #[error("{service}: {operation}: {message}")]
    KeyService {
        service: String,
        operation: String,
        message: String,
    },

    /// A tenant key names a key epoch that is no longer in the repository:
    /// a rotation destroyed it, so whatever it wrapped opens no more.
    #[error(
        "target {target}: key epoch {epoch} is not in the repository: a rotation destroyed it, and the tenant keys it wrapped open no more (a copy from before the rotation opens with the current tenant keys of a live target: docs/SECURITY.md)"
    )]
    EpochGone { target: String, epoch: String },

    /// The key service would not give an epoch's key.
    #[error("target {target}: key epoch {epoch}: {source}")]
    EpochUnusable {
        target: String,
        epoch: String,
        #[source]
        source: Box<Error>,
    },

    /// A store operation failed. `object` is the object's path in the store.
    #[error("target {target}: {object}: {message}")]
    Store {
        target: String,
        object: String,
        message: String,
    },

    #[error("target {target}: {object} not found")]
    NotFound { target: String, object: String },

    /// An object exists but cannot be decoded or authenticated.
    #[error("{object}: {message}")]
    Corrupt { object: String, message: String },

    /// An object on the shipping target that does not open as its kind
    /// there (damaged, forged, or sealed with another key): it is left
    /// where it is and not copied. `message` says why.
    #[error("target {target}: {object} does not authenticate and is not shipped: {message}")]
    NotShipped {
        target: String,
        object: String,
        message: String,
    },

    /// An object or file larger than its kind may be (see `crate::limits`).
    #[error("{object}: {}", .limit.refusal())]
    TooLarge {
        object: String,
        limit: crate::limits::ReadLimit,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "repository on target {target} is not initialised (no config object): `gallra init` starts a new one; if another target holds it, `gallra repair-target {target}` rebuilds it from there"
    )]
    NotInitialised { target: String },

    /// A secondary without the repository's config: ship refuses to start
    /// one there (see `ShipOptions::initialise`).
    #[error(
        "target {target} holds no repository (no config object): if it held one, its folder, mount or bucket is missing or empty (an unmounted disk?); ship never starts a repository there, check it, then `gallra repair-target {target}` fills it (as for a new target)"
    )]
    NoRepository { target: String },

    #[error("repository on target {target} already exists")]
    AlreadyInitialised { target: String },

    /// A target holds objects of another repository than the one shipped.
    #[error("target {target}: {message}")]
    DifferentRepository { target: String, message: String },

    #[error("tenant {tenant} on target {target} is locked: {holder}{hint}")]
    Locked {
        tenant: String,
        target: String,
        holder: String,
        hint: String,
    },

    #[error(
        "target {target}: lock {object} could not be renewed before its lease ran out; stopped without committing"
    )]
    LockLost { target: String, object: String },

    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),

    #[error("snapshot prefix {prefix} is ambiguous: {candidates}")]
    AmbiguousSnapshot { prefix: String, candidates: String },

    #[error("source {source_name} (tenant {tenant}): {message}")]
    Source {
        source_name: String,
        tenant: String,
        message: String,
    },

    /// A configured source path that cannot be opened safely.
    #[error(transparent)]
    SourcePath(#[from] crate::beneath::SourcePathError),

    #[error("restore: {0}")]
    Restore(String),

    /// A directory's tree blob could not be read; `dir` is its path in the
    /// snapshot.
    #[error("directory {dir} (tree {}): {source}", &tree[..16])]
    Tree {
        dir: String,
        tree: String,
        source: Box<Error>,
    },

    /// The agent is stopping: the job stopped before committing anything.
    #[error("stopped before committing: the agent is shutting down")]
    Cancelled,

    /// Another agent holds the state folder's lock.
    #[error(
        "another gallra agent (pid {pid}) runs on state folder {}; one agent per state folder",
        .state_dir.display()
    )]
    AgentRunning { state_dir: PathBuf, pid: String },

    /// An action the lifecycle refuses, such as erasing a tenant under a
    /// legal hold.
    #[error("{0}")]
    Refused(String),

    /// The cause happened on this target; see `Error::in_target`.
    #[error("target {target}: {source}")]
    InTarget { target: String, source: Box<Error> },

    /// The cause happened to this tenant; see `Error::for_tenant`.
    #[error("tenant {tenant}: {source}")]
    ForTenant { tenant: String, source: Box<Error> },
}

/// The format's only error is a corrupt object, the same words as ours.
impl From<gallra_format::Error> for Error {
    fn from(e: gallra_format::Error) -> Self {
        match e {
            gallra_format::Error::Corrupt { object, message } => Error::Corrupt { object, message },
        }
    }
}

impl Error {
    /// The key service says the key does not exist (any more).
    pub fn is_key_service_not_found(&self) -> bool {
        matches!(self, Error::KeyService { message, .. } if message.starts_with("NotFoundException"))
    }

    /// Exit status the binary should use: 2 for bad usage or config, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. }
            | Error::Usage(_)
            | Error::TargetConfig { .. }
            | Error::KeyServiceConfig { .. } => 2,
            _ => 1,
        }
    }

    /// The store object a store, not-found or corruption error names.
    pub fn object(&self) -> Option<&str> {
        match self {
            Error::NotFound { object, .. }
            | Error::Corrupt { object, .. }
            | Error::TooLarge { object, .. }
            | Error::NotShipped { object, .. }
            | Error::Store { object, .. } => Some(object),
            Error::Tree { source, .. }
            | Error::InTarget { source, .. }
            | Error::ForTenant { source, .. } => source.object(),
            _ => None,
        }
    }

    /// The target the error's text names already, looking through the
    /// wrappers.
    pub fn target(&self) -> Option<&str> {
        match self {
            Error::WrongKey { target, .. }
            | Error::TargetConfig { target, .. }
            | Error::Store { target, .. }
            | Error::NotFound { target, .. }
            | Error::NotShipped { target, .. }
            | Error::NotInitialised { target }
            | Error::NoRepository { target }
            | Error::AlreadyInitialised { target }
            | Error::DifferentRepository { target, .. }
            | Error::Locked { target, .. }
            | Error::LockLost { target, .. }
            | Error::InTarget { target, .. } => Some(target),
            Error::ForTenant { source, .. } | Error::Tree { source, .. } => source.target(),
            // These two are shared with objects that belong to no target
            // (a file, a blob), so where a store or a lock read them, the
            // object is written "target NAME: PATH" (see `Store::get_limited`
            // and `lock::read_record`).
            Error::Corrupt { object, .. } | Error::TooLarge { object, .. } => object
                .strip_prefix("target ")
                .and_then(|rest| rest.split_once(": "))
                .map(|(target, _)| target),
            _ => None,
        }
    }

    /// The tenant the error's text names already, looking through the
    /// wrappers.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Error::Locked { tenant, .. }
            | Error::Source { tenant, .. }
            | Error::ForTenant { tenant, .. } => Some(tenant),
            Error::InTarget { source, .. } | Error::Tree { source, .. } => source.tenant(),
            _ => None,
        }
    }

    /// Whether the text begins with "target NAME: ", the words
    /// `Error::InTarget` would add.
    fn leads_with_target(&self) -> bool {
        match self {
            Error::TargetConfig { .. }
            | Error::Store { .. }
            | Error::NotFound { .. }
            | Error::NotShipped { .. }
            | Error::DifferentRepository { .. }
            | Error::LockLost { .. }
            | Error::InTarget { .. } => true,
            Error::Corrupt { .. } | Error::TooLarge { .. } => self.target().is_some(),
            _ => false,
        }
    }

    /// The error, said to have happened on `target` unless it says so.
    pub fn in_target(self, target: &str) -> Error {
        if self.target() == Some(target) {
            self
        } else {
            Error::InTarget {
                target: target.to_string(),
                source: Box::new(self),
            }
        }
    }

    /// The error, said to have happened to `tenant` unless it says so.
    pub fn for_tenant(self, tenant: &str) -> Error {
        if self.tenant() == Some(tenant) {
            self
        } else {
            Error::ForTenant {
                tenant: tenant.to_string(),
                source: Box::new(self),
            }
        }
    }

    /// The text of `self.in_target(target)`, without taking the error.
    pub fn text_in_target(&self, target: &str) -> String {
        if self.target() == Some(target) {
            self.to_string()
        } else {
            format!("target {target}: {self}")
        }
    }

    /// The text of `self.for_tenant(tenant)`, without taking the error.
    pub fn text_for_tenant(&self, tenant: &str) -> String {
        if self.tenant() == Some(tenant) {
            self.to_string()
        } else {
            format!("tenant {tenant}: {self}")
        }
    }

    /// The text as said within `target`: without the leading
    /// "target NAME: " when the error begins with it.
    pub fn text_within_target(&self, target: &str) -> String {
        let text = self.to_string();
        if self.target() == Some(target) && self.leads_with_target() {
            let named = format!("target {target}: ");
            debug_assert!(text.starts_with(&named), "{text}");
            if let Some(rest) = text.strip_prefix(&named) {
                return rest.to_string();
            }
        }
        text
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(object: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_error() -> Error {
        Error::Store {
            target: "offsite".into(),
            object: "tenants/acme/key".into(),
            message: "503".into(),
        }
    }

    #[test]
    fn the_wrappers_say_what_they_said_as_text() {
        let e = Error::Usage("no such snapshot".into()).for_tenant("acme");
        assert_eq!(e.to_string(), "tenant acme: no such snapshot");
        let e = e.in_target("offsite");
        assert_eq!(
            e.to_string(),
            "target offsite: tenant acme: no such snapshot"
        );
        assert_eq!((e.target(), e.tenant()), (Some("offsite"), Some("acme")));
    }

    #[test]
    fn context_is_added_only_where_the_error_does_not_name_it() {
        let e = store_error().in_target("offsite");
        assert_eq!(e.to_string(), "target offsite: tenants/acme/key: 503");
        let e = store_error().in_target("local");
        assert_eq!(
            e.to_string(),
            "target local: target offsite: tenants/acme/key: 503"
        );
        let locked = Error::Locked {
            tenant: "acme".into(),
            target: "local".into(),
            holder: "web01".into(),
            hint: String::new(),
        };
        assert_eq!(locked.text_for_tenant("acme"), locked.to_string());
        assert_eq!(
            locked.text_for_tenant("beta"),
            format!("tenant beta: {locked}")
        );
        assert_eq!(locked.text_in_target("local"), locked.to_string());
        assert_eq!(locked.for_tenant("acme").tenant(), Some("acme"));
    }

    #[test]
    fn target_and_object_are_seen_through_the_wrappers() {
        let e = store_error().for_tenant("acme");
        assert_eq!(e.target(), Some("offsite"));
        assert_eq!(e.object(), Some("tenants/acme/key"));
        let tree = Error::Tree {
            dir: "/srv".into(),
            tree: "ab".repeat(32),
            source: Box::new(Error::NotFound {
                target: "offsite".into(),
                object: "tenants/acme/index/ab".into(),
            }),
        };
        assert_eq!(tree.target(), Some("offsite"));
        let read = Error::corrupt("target local: locks/l1", "not JSON");
        assert_eq!(read.target(), Some("local"));
        assert_eq!(Error::corrupt("snapshot ab", "bad").target(), None);
    }

    #[test]
    fn within_its_target_an_error_leaves_the_target_out() {
        assert_eq!(
            store_error().text_within_target("offsite"),
            "tenants/acme/key: 503"
        );
        assert_eq!(
            store_error().text_within_target("local"),
            "target offsite: tenants/acme/key: 503"
        );
        let gone = Error::NoRepository {
            target: "offsite".into(),
        };
        assert_eq!(gone.text_within_target("offsite"), gone.to_string());
        let wrapped = Error::Cancelled.in_target("offsite");
        assert_eq!(
            wrapped.text_within_target("offsite"),
            Error::Cancelled.to_string()
        );
        let damaged = Error::corrupt("target offsite: tenants/a/packs/ab/ab", "damaged");
        assert_eq!(
            damaged.text_within_target("offsite"),
            "tenants/a/packs/ab/ab: damaged"
        );
    }

    /// Every variant that leads with its target does so in its text, so
    /// `text_within_target` takes exactly those words off.
    #[test]
    fn the_variants_that_lead_with_the_target_do() {
        let t = || "offsite".to_string();
        let errors = [
            Error::TargetConfig {
                target: t(),
                message: "m".into(),
            },
            store_error(),
            Error::NotFound {
                target: t(),
                object: "o".into(),
            },
            Error::NotShipped {
                target: t(),
                object: "o".into(),
                message: "m".into(),
            },
            Error::DifferentRepository {
                target: t(),
                message: "m".into(),
            },
            Error::LockLost {
                target: t(),
                object: "o".into(),
            },
            Error::Cancelled.in_target("offsite"),
        ];
        for e in errors {
            assert!(e.leads_with_target(), "{e}");
            assert!(e.to_string().starts_with("target offsite: "), "{e}");
        }
    }
}
