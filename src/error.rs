//! The library's error type. Every variant names the object, file, line or key
//! involved, so that a one-line message is enough to act on at three in the
//! morning.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// Exit status the binary should use: 2 for bad usage or config, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. } | Error::Usage(_) | Error::TargetConfig { .. } => 2,
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
            Error::Tree { source, .. } => source.object(),
            _ => None,
        }
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
