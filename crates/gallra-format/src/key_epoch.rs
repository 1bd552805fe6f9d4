//! `key-epochs/<epoch id>`: one key epoch of a repository (format version 2).
//!
//! An epoch key wraps tenant keys (`tenant_key`, version 2). Its plaintext
//! is never stored: the object holds the key service's ciphertext of it
//! (the `CiphertextBlob` of `GenerateDataKey`) and the id of the service key
//! that made it, so that destroying that service key makes every copy of
//! this object, and of every tenant key it wrapped, useless.
//!
//! Clear header: the epoch id (16 random bytes, also the object's name in
//! hex). Sealed with HKDF(master, repo id, "gallra key epoch v2"), context:
//! repo id. Body (postcard): [`KeyEpochBody`].

use serde::{Deserialize, Serialize};

use super::{
    FORMAT_VERSION_2, Kind, from_body, open_object_version, seal_object_version,
    split_envelope_version, to_body,
};
use crate::crypto::SecretKey;
use crate::error::{Error, Result};

pub const HEADER_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEpochBody {
    /// The kind of key service: "aws-kms".
    pub service: String,
    /// The service key (ARN or id) the epoch key was made under.
    pub key_id: String,
    /// The service's ciphertext of the 32-byte epoch key.
    pub wrapped: Vec<u8>,
    /// Unix seconds.
    pub created: i64,
}

fn epoch_object_key(master: &SecretKey, repo_id: &[u8; 16]) -> SecretKey {
    master.derive(repo_id, b"gallra key epoch v2")
}

/// The encryption context the key service binds the epoch key to: the
/// service refuses to decrypt it for another repository or epoch.
pub fn service_context(repo_id: &[u8; 16], epoch_id: &[u8; 16]) -> [(String, String); 2] {
    [
        ("gallra-repository".to_string(), hex::encode(repo_id)),
        ("gallra-key-epoch".to_string(), hex::encode(epoch_id)),
    ]
}

pub fn seal(
    body: &KeyEpochBody,
    epoch_id: &[u8; 16],
    master: &SecretKey,
    repo_id: &[u8; 16],
) -> Vec<u8> {
    seal_object_version(
        FORMAT_VERSION_2,
        &epoch_object_key(master, repo_id).cipher(),
        Kind::KeyEpoch,
        epoch_id,
        repo_id,
        &to_body(body),
    )
}

/// The epoch id in an epoch object's clear header, read without any key.
pub fn epoch_id(bytes: &[u8], name: &str) -> Result<[u8; 16]> {
    let (header, _) =
        split_envelope_version(FORMAT_VERSION_2, bytes, Kind::KeyEpoch, HEADER_LEN, name)?;
    Ok(header.try_into().expect("16 bytes"))
}

pub fn open(
    bytes: &[u8],
    master: &SecretKey,
    repo_id: &[u8; 16],
    name: &str,
) -> Result<([u8; 16], KeyEpochBody)> {
    let id = epoch_id(bytes, name)?;
    let plain = open_object_version(
        FORMAT_VERSION_2,
        &epoch_object_key(master, repo_id).cipher(),
        Kind::KeyEpoch,
        HEADER_LEN,
        repo_id,
        bytes,
        name,
    )?;
    let body: KeyEpochBody = from_body(&plain, name, Kind::KeyEpoch)?;
    if body.wrapped.is_empty() || body.key_id.is_empty() {
        return Err(Error::corrupt(name, "key epoch names no service key"));
    }
    Ok((id, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant_key::{self, TenantKeyBody, Wrap};

    fn body() -> KeyEpochBody {
        KeyEpochBody {
            service: "aws-kms".into(),
            key_id: "arn:aws:kms:eu-north-1:123456789012:key/x".into(),
            wrapped: vec![7; 184],
            created: 1_780_000_000,
        }
    }

    #[test]
    fn an_epoch_opens_with_its_master_key_only_and_names_its_id() {
        let (master, repo) = (SecretKey::random(), [3u8; 16]);
        let id = [9u8; 16];
        let bytes = seal(&body(), &id, &master, &repo);
        assert_eq!(&bytes[..6], b"GLRA\x02\x0b");
        assert_eq!(&bytes[6..22], &id);
        assert_eq!(epoch_id(&bytes, "e").unwrap(), id);
        assert_eq!(open(&bytes, &master, &repo, "e").unwrap(), (id, body()));
        assert!(open(&bytes, &SecretKey::random(), &repo, "e").is_err());
        assert!(open(&bytes, &master, &[4u8; 16], "e").is_err());
        let mut moved = bytes.clone();
        moved[6] ^= 1;
        assert!(open(&moved, &master, &repo, "e").is_err());
    }

    #[test]
    fn a_version_2_tenant_key_opens_with_its_epoch_key_and_never_the_master_key() {
        let (master, repo, epoch) = (SecretKey::random(), [3u8; 16], SecretKey::random());
        let id = [5u8; 16];
        let k = TenantKeyBody {
            key: [1; 32],
            created: 5,
        };
        let bytes = tenant_key::seal_under_epoch(&k, &id, &epoch, &repo, "acme");
        assert_eq!(&bytes[..6], b"GLRA\x02\x03");
        assert_eq!(
            tenant_key::wrapped_by(&bytes, "k").unwrap(),
            Wrap::Epoch(id)
        );
        let opened = tenant_key::open_under_epoch(&bytes, &epoch, &repo, "acme", "k").unwrap();
        assert_eq!(opened.key, [1; 32]);
        let e = tenant_key::open(&bytes, &master, &repo, "acme", "k")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("key epoch"), "{e}");
        assert!(tenant_key::open_under_epoch(&bytes, &epoch, &repo, "beta", "k").is_err());
        assert!(
            tenant_key::open_under_epoch(&bytes, &SecretKey::random(), &repo, "acme", "k").is_err()
        );
        let v1 = tenant_key::seal(&k, &master, &repo, "acme");
        assert_eq!(tenant_key::wrapped_by(&v1, "k").unwrap(), Wrap::Master);
        assert!(tenant_key::open_under_epoch(&v1, &epoch, &repo, "acme", "k").is_err());
    }

    #[test]
    fn a_key_epoch_of_an_unknown_version_is_refused_by_name() {
        let mut bytes = seal(&body(), &[1; 16], &SecretKey::random(), &[2; 16]);
        bytes[4] = 1;
        let e = epoch_id(&bytes, "key-epochs/x").err().unwrap().to_string();
        assert!(e.contains("key-epochs/x") && e.contains("version 1"), "{e}");
    }
}
