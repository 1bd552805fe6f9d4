//! Stores that keep old versions of what gallra overwrites or deletes
//! (issue 17): moto's S3 with bucket versioning on and off, started by
//! tests/servers/start.sh.

use crate::common::remote::{Remote, unique_prefix};

#[test]
fn a_versioned_bucket_is_found_to_keep_old_versions() {
    let Some(remote) = Remote::moto("GALLRA_TEST_MOTO_VERSIONED_BUCKET") else {
        return;
    };
    let store = remote.store(&unique_prefix("versions"));
    assert!(
        store
            .keeps_old_versions()
            .expect("probe the versioned bucket"),
        "a bucket with versioning on answers a write with a version id"
    );
    assert!(
        store
            .list(gallra::layout::LOCKS_SELFTEST_FOLDER)
            .unwrap()
            .is_empty(),
        "the probe is deleted (what stays is a noncurrent version, not listed)"
    );
}

#[test]
fn a_bucket_without_versioning_is_found_to_keep_none() {
    let Some(remote) = Remote::moto("GALLRA_TEST_MOTO_PLAIN_BUCKET") else {
        return;
    };
    let store = remote.store(&unique_prefix("versions"));
    assert!(!store.keeps_old_versions().expect("probe the plain bucket"));
}
