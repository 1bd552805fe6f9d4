//! `lifecycle/events/<id>` and `audit/<host>/<seq>-<hash>`: repository-wide
//! records, sealed with a key derived from the master key.
//!
//! Envelope kind 9 (event) or 10 (audit record), no clear header, sealed with
//! HKDF(master, repo id, "gallra records v1"); context: repository id, then
//! the object's path, so a record moved to another name fails to open. Body:
//! the record as one UTF-8 JSON object. Only holders of a repository key can
//! read or forge them; anyone with the store can delete them, which the
//! audit chain and the local copies detect.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Kind, open_object, seal_object};
use crate::crypto::SecretKey;
use crate::error::{Error, Result};

fn record_key(master: &SecretKey, repo_id: &[u8; 16]) -> SecretKey {
    master.derive(repo_id, b"gallra records v1")
}

fn context(repo_id: &[u8; 16], path: &str) -> Vec<u8> {
    let mut c = Vec::with_capacity(16 + path.len());
    c.extend_from_slice(repo_id);
    c.extend_from_slice(path.as_bytes());
    c
}

pub fn seal<T: Serialize>(
    value: &T,
    kind: Kind,
    master: &SecretKey,
    repo_id: &[u8; 16],
    path: &str,
) -> Vec<u8> {
    let body = serde_json::to_vec(value).expect("records serialise to JSON");
    seal_object(
        &record_key(master, repo_id).cipher(),
        kind,
        b"",
        &context(repo_id, path),
        &body,
    )
}

pub fn open<T: DeserializeOwned>(
    bytes: &[u8],
    kind: Kind,
    master: &SecretKey,
    repo_id: &[u8; 16],
    path: &str,
) -> Result<T> {
    let body = open_object(
        &record_key(master, repo_id).cipher(),
        kind,
        0,
        &context(repo_id, path),
        bytes,
        path,
    )?;
    serde_json::from_slice(&body)
        .map_err(|e| Error::corrupt(path, format!("undecodable {}: {e}", kind.name())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding_to_path() {
        let master = SecretKey::random();
        let repo = [7u8; 16];
        let v = serde_json::json!({"id": "e1", "type": "hold_set"});
        let sealed = seal(&v, Kind::Event, &master, &repo, "lifecycle/events/e1");
        let back: serde_json::Value =
            open(&sealed, Kind::Event, &master, &repo, "lifecycle/events/e1").unwrap();
        assert_eq!(back, v);
        let moved: Result<serde_json::Value> =
            open(&sealed, Kind::Event, &master, &repo, "lifecycle/events/e2");
        assert!(moved.is_err());
        let as_audit: Result<serde_json::Value> = open(
            &sealed,
            Kind::AuditRecord,
            &master,
            &repo,
            "lifecycle/events/e1",
        );
        assert!(as_audit.is_err());
    }
}
