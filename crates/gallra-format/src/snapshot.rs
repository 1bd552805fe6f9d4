//! `tenants/<t>/snapshots/<id>`: the commit point of a backup.
//!
//! Envelope kind 6, no clear header, context repo id | tenant, sealed with the
//! tenant's data key. Body (postcard): [`Snapshot`]. The object's name (the
//! snapshot id) is the SHA-256 of its bytes. It is written only after every
//! pack and index it references.

use aes_gcm::Aes256Gcm;
use serde::{Deserialize, Serialize};

use super::{Id, Kind, from_body, open_object, seal_object, to_body};
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Creation time: Unix seconds and nanoseconds.
    pub time_secs: i64,
    pub time_nanos: u32,
    pub host: String,
    pub tenant: String,
    /// The source's `name` in agent.toml.
    pub source: String,
    pub category: String,
    /// The source paths, or for a command source the stored file's path.
    pub paths: Vec<String>,
    pub tags: Vec<(String, String)>,
    /// Tree blob of "/".
    pub root: Id,
    pub parent: Option<Id>,
    pub files: u64,
    pub dirs: u64,
    /// Bytes of all regular files in the snapshot.
    pub bytes: u64,
    pub bytes_read: u64,
    /// New plaintext bytes this snapshot added to the repository.
    pub bytes_added: u64,
    /// What those bytes became after compression and encryption.
    pub bytes_stored: u64,
    pub warnings: Vec<String>,
    /// The gallra version that wrote it.
    pub program: String,
}

impl Snapshot {
    pub fn timestamp(&self) -> jiff::Timestamp {
        jiff::Timestamp::new(self.time_secs, self.time_nanos as i32)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}

pub fn seal(snapshot: &Snapshot, cipher: &Aes256Gcm, context: &[u8]) -> Vec<u8> {
    seal_object(cipher, Kind::Snapshot, b"", context, &to_body(snapshot))
}

pub fn open(bytes: &[u8], cipher: &Aes256Gcm, context: &[u8], name: &str) -> Result<Snapshot> {
    let body = open_object(cipher, Kind::Snapshot, 0, context, bytes, name)?;
    from_body(&body, name, Kind::Snapshot)
}
