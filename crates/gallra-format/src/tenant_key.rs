//! `tenants/<t>/key`: a tenant's 32-byte root key, wrapped.
//!
//! Version 1: wrapped by the master key. No clear header. Sealed with
//! HKDF(master, repo id, "gallra tenant wrap v1"); context: repo id | tenant.
//! Destroying this object (and every copy) is crypto-shredding: the tenant's
//! chunk-id and data keys derive from it alone.
//!
//! Version 2: wrapped by a key epoch (`key_epoch`), whose key only a key
//! service holds. Clear header: the epoch id (16 bytes). Sealed with
//! HKDF(epoch key, repo id, "gallra tenant wrap v2"); context: repo id |
//! tenant. Destroying the epoch in the service is crypto-shredding of every
//! copy of every tenant key it wrapped, wherever the copies are.
//!
//! Body (postcard), both versions: [`TenantKeyBody`].

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{
    FORMAT_VERSION, FORMAT_VERSION_2, Kind, envelope_version, from_body, open_object_version,
    seal_object_version, split_envelope_version, tenant_context, to_body,
};
use crate::crypto::SecretKey;
use crate::error::{Error, Result};

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct TenantKeyBody {
    pub key: [u8; 32],
    /// Unix seconds.
    pub created: i64,
}

fn wrap_key(master: &SecretKey, repo_id: &[u8; 16]) -> SecretKey {
    master.derive(repo_id, b"gallra tenant wrap v1")
}

/// Either version: `body` under `wrap`, with `header` in the clear.
fn seal_version(
    version: u8,
    body: &TenantKeyBody,
    wrap: &SecretKey,
    header: &[u8],
    repo_id: &[u8; 16],
    tenant: &str,
) -> Vec<u8> {
    let plain = zeroize::Zeroizing::new(to_body(body));
    seal_object_version(
        version,
        &wrap.cipher(),
        Kind::TenantKey,
        header,
        &tenant_context(repo_id, tenant),
        &plain,
    )
}

/// Either version: the body under `wrap`, past a clear header of
/// `header_len` bytes.
fn open_version(
    version: u8,
    bytes: &[u8],
    wrap: &SecretKey,
    header_len: usize,
    repo_id: &[u8; 16],
    tenant: &str,
    name: &str,
) -> Result<TenantKeyBody> {
    let plain = zeroize::Zeroizing::new(open_object_version(
        version,
        &wrap.cipher(),
        Kind::TenantKey,
        header_len,
        &tenant_context(repo_id, tenant),
        bytes,
        name,
    )?);
    from_body(&plain, name, Kind::TenantKey)
        .map_err(|_| Error::corrupt(name, "undecodable tenant key"))
}

pub fn seal(body: &TenantKeyBody, master: &SecretKey, repo_id: &[u8; 16], tenant: &str) -> Vec<u8> {
    let wrap = wrap_key(master, repo_id);
    seal_version(FORMAT_VERSION, body, &wrap, b"", repo_id, tenant)
}

pub fn open(
    bytes: &[u8],
    master: &SecretKey,
    repo_id: &[u8; 16],
    tenant: &str,
    name: &str,
) -> Result<TenantKeyBody> {
    if envelope_version(bytes, Kind::TenantKey, name)? != FORMAT_VERSION {
        return Err(Error::corrupt(
            name,
            "a version 2 tenant key is wrapped by a key epoch, not the master key",
        ));
    }
    let wrap = wrap_key(master, repo_id);
    open_version(FORMAT_VERSION, bytes, &wrap, 0, repo_id, tenant, name)
}

/// Bytes of a version 2 tenant key's clear header: the epoch id.
pub const EPOCH_HEADER_LEN: usize = 16;

/// What wraps a tenant key object, read without any key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wrap {
    /// Version 1: the master key.
    Master,
    /// Version 2: the key epoch with this id.
    Epoch([u8; 16]),
}

pub fn wrapped_by(bytes: &[u8], name: &str) -> Result<Wrap> {
    match envelope_version(bytes, Kind::TenantKey, name)? {
        FORMAT_VERSION => Ok(Wrap::Master),
        _ => {
            let (header, _) = split_envelope_version(
                FORMAT_VERSION_2,
                bytes,
                Kind::TenantKey,
                EPOCH_HEADER_LEN,
                name,
            )?;
            Ok(Wrap::Epoch(header.try_into().expect("16 bytes")))
        }
    }
}

fn epoch_wrap_key(epoch_key: &SecretKey, repo_id: &[u8; 16]) -> SecretKey {
    epoch_key.derive(repo_id, b"gallra tenant wrap v2")
}

/// A version 2 tenant key: `body` wrapped by the key of epoch `epoch_id`.
pub fn seal_under_epoch(
    body: &TenantKeyBody,
    epoch_id: &[u8; 16],
    epoch_key: &SecretKey,
    repo_id: &[u8; 16],
    tenant: &str,
) -> Vec<u8> {
    let wrap = epoch_wrap_key(epoch_key, repo_id);
    seal_version(FORMAT_VERSION_2, body, &wrap, epoch_id, repo_id, tenant)
}

/// Opens a version 2 tenant key with the key of the epoch its header names.
pub fn open_under_epoch(
    bytes: &[u8],
    epoch_key: &SecretKey,
    repo_id: &[u8; 16],
    tenant: &str,
    name: &str,
) -> Result<TenantKeyBody> {
    let wrap = epoch_wrap_key(epoch_key, repo_id);
    let version = FORMAT_VERSION_2;
    open_version(
        version,
        bytes,
        &wrap,
        EPOCH_HEADER_LEN,
        repo_id,
        tenant,
        name,
    )
}

/// The keys a tenant's data is written with, derived from its root key.
pub struct TenantKeys {
    /// HMAC-SHA256 key for data blob ids: dedup within the tenant only.
    pub mac: SecretKey,
    /// HMAC-SHA256 key for tree blob ids: a separate key, so that a tree and
    /// a file chunk with the same bytes never share an id.
    pub tree_mac: SecretKey,
    /// AES-256-GCM key for blobs, pack headers, indexes and snapshots.
    pub data: SecretKey,
}

impl TenantKeys {
    pub fn derive(root: &[u8; 32], repo_id: &[u8; 16]) -> TenantKeys {
        let root = SecretKey::from_bytes(*root);
        TenantKeys {
            mac: root.derive(repo_id, b"gallra chunk id v1"),
            tree_mac: root.derive(repo_id, b"gallra tree id v1"),
            data: root.derive(repo_id, b"gallra data v1"),
        }
    }
}
