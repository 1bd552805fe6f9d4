//! gallra: an encrypted backup lifecycle agent.
//!
//! The pure parts (format codecs, chunker, index) know nothing of tokio or the
//! network; I/O lives in `store` and the command modules.

pub mod agent;
pub mod audit;
pub mod backup;
pub mod beneath;
pub mod cancel;
pub mod check;
pub mod chunker;
pub mod config;
pub mod crypto;
pub mod drill;
pub mod error;
pub mod files;
pub mod format;
pub mod layout;
pub mod lifecycle;
pub mod limits;
pub mod lock;
pub mod metrics;
pub mod pace;
pub mod parallel;
pub mod quickstart;
pub mod repo;
pub mod restore;
pub mod schedule;
pub mod ship;
pub mod status;
pub mod store;
pub mod tenant_name;
pub mod text;

pub use error::{Error, Result};
