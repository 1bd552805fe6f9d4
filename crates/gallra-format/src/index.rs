//! `tenants/<t>/index/<id>`: which blob lives in which pack, at which offset.
//!
//! Envelope kind 5, no clear header, context repo id | tenant, sealed with the
//! tenant's data key. Body (postcard): [`IndexBody`]. The object's name is the
//! SHA-256 of its bytes. One index object is written per snapshot run, after
//! its packs and before its snapshot.

use aes_gcm::Aes256Gcm;
use serde::{Deserialize, Serialize};

use super::pack::PackEntry;
use super::{Id, Kind, from_body, open_object, seal_object, to_body};
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    pub id: Id,
    /// The pack object's size in bytes.
    pub size: u64,
    pub blobs: Vec<PackEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexBody {
    pub packs: Vec<IndexPack>,
}

pub fn seal(body: &IndexBody, cipher: &Aes256Gcm, context: &[u8]) -> Vec<u8> {
    seal_object(cipher, Kind::Index, b"", context, &to_body(body))
}

pub fn open(bytes: &[u8], cipher: &Aes256Gcm, context: &[u8], name: &str) -> Result<IndexBody> {
    let body = open_object(cipher, Kind::Index, 0, context, bytes, name)?;
    from_body(&body, name, Kind::Index)
}
