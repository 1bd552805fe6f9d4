//! `tenants/<t>/key`: a tenant's 32-byte root key, wrapped by the master key.
//!
//! No clear header. Body (postcard): [`TenantKeyBody`]. Sealed with
//! HKDF(master, repo id, "gallra tenant wrap v1"); context: repo id | tenant.
//! Destroying this object (and every copy) is crypto-shredding: the tenant's
//! chunk-id and data keys derive from it alone.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{Kind, from_body, open_object, seal_object, tenant_context, to_body};
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

pub fn seal(body: &TenantKeyBody, master: &SecretKey, repo_id: &[u8; 16], tenant: &str) -> Vec<u8> {
    let plain = zeroize::Zeroizing::new(to_body(body));
    seal_object(
        &wrap_key(master, repo_id).cipher(),
        Kind::TenantKey,
        b"",
        &tenant_context(repo_id, tenant),
        &plain,
    )
}

pub fn open(
    bytes: &[u8],
    master: &SecretKey,
    repo_id: &[u8; 16],
    tenant: &str,
    name: &str,
) -> Result<TenantKeyBody> {
    let plain = zeroize::Zeroizing::new(open_object(
        &wrap_key(master, repo_id).cipher(),
        Kind::TenantKey,
        0,
        &tenant_context(repo_id, tenant),
        bytes,
        name,
    )?);
    from_body(&plain, name, Kind::TenantKey)
        .map_err(|_| Error::corrupt(name, "undecodable tenant key"))
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
