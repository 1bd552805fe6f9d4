//! `config`: the repository's id and parameters.
//!
//! Clear header: repository id [16] (needed before any key is open, since it
//! is part of every slot's associated data). Body (postcard): [`RepoConfig`].
//! Sealed with HKDF(master, repo id, "gallra config v1"); context empty.

use serde::{Deserialize, Serialize};

use super::{Kind, from_body, open_object, seal_object, split_envelope, to_body};
use crate::crypto::SecretKey;
use crate::error::Result;

pub const HEADER_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    pub chunk_min: u32,
    pub chunk_avg: u32,
    pub chunk_max: u32,
    /// Unix seconds.
    pub created: i64,
}

pub fn config_key(master: &SecretKey, repo_id: &[u8; 16]) -> SecretKey {
    master.derive(repo_id, b"gallra config v1")
}

pub fn seal(config: &RepoConfig, master: &SecretKey, repo_id: &[u8; 16]) -> Vec<u8> {
    seal_object(
        &config_key(master, repo_id).cipher(),
        Kind::Config,
        repo_id,
        b"",
        &to_body(config),
    )
}

/// The repository id, readable without a key.
pub fn repo_id(bytes: &[u8], name: &str) -> Result<[u8; 16]> {
    let (h, _) = split_envelope(bytes, Kind::Config, HEADER_LEN, name)?;
    Ok(h.try_into().expect("16 bytes"))
}

pub fn open(bytes: &[u8], master: &SecretKey, name: &str) -> Result<RepoConfig> {
    let id = repo_id(bytes, name)?;
    let body = open_object(
        &config_key(master, &id).cipher(),
        Kind::Config,
        HEADER_LEN,
        b"",
        bytes,
        name,
    )?;
    from_body(&body, name, Kind::Config)
}
