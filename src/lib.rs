//! gallra: an encrypted backup lifecycle agent.
//!
//! The pure format (codecs, chunker, crypto primitives, tenant names) is
//! the `gallra-format` crate, which knows nothing of tokio, the network or
//! files, and is re-exported here under its old paths; I/O lives in `store`
//! and the command modules.

pub mod agent;
pub mod agent_state;
pub mod audit;
pub mod backup;
pub mod beneath;
pub mod cancel;
pub mod check;
pub mod config;
pub mod crypto;
pub mod drill;
pub mod error;
pub mod failure;
pub mod files;
pub mod init;
pub mod job;
pub mod keyservice;
#[cfg(test)]
mod layers;
pub mod layout;
pub mod lifecycle;
pub mod limits;
pub mod lock;
pub mod metrics;
pub mod pace;
pub mod pack_locks;
pub mod parallel;
pub mod progress;
pub mod protection;
pub mod quickstart;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod schedule;
pub mod ship;
pub mod sigv4;
pub mod status;
pub mod store;
pub mod survival;
pub mod text;
pub mod units;

pub use error::{Error, Result};
pub use gallra_format as format;
pub use gallra_format::{chunker, tenant_name};
