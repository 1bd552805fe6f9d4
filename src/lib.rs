//! gallra: an encrypted backup lifecycle agent.
//!
//! The pure parts (format codecs, chunker, index) know nothing of tokio or the
//! network; I/O lives in `store` and the command modules.

pub mod audit;
pub mod backup;
pub mod check;
pub mod chunker;
pub mod config;
pub mod crypto;
pub mod drill;
pub mod error;
pub mod format;
pub mod lifecycle;
pub mod lock;
pub mod parallel;
pub mod quickstart;
pub mod repo;
pub mod restore;
pub mod ship;
pub mod store;
pub mod text;

pub use error::{Error, Result};
