//! What is read before any key opens: envelope prefixes, key slot headers,
//! the config's repository id, what wraps a tenant key, a key epoch's id,
//! and envelopes (both versions) under a fixed key.
#![no_main]
use gallra_format::{Kind, key_epoch, keyslot::KeySlotHeader, open_object, repo_config, tenant_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = KeySlotHeader::decode(data, "fuzz");
    let _ = repo_config::repo_id(data, "fuzz");
    let cipher = gallra_format::crypto::SecretKey::from_bytes([7; 32]).cipher();
    for kind in [
        Kind::Config,
        Kind::KeySlot,
        Kind::TenantKey,
        Kind::PackHeader,
        Kind::Index,
        Kind::Snapshot,
    ] {
        let _ = open_object(&cipher, kind, 0, b"fuzz", data, "fuzz");
    }
    let key = gallra_format::crypto::SecretKey::from_bytes([7; 32]);
    let _ = tenant_key::wrapped_by(data, "fuzz");
    let _ = tenant_key::open_under_epoch(data, &key, &[1; 16], "fuzz", "fuzz");
    let _ = key_epoch::epoch_id(data, "fuzz");
    let _ = key_epoch::open(data, &key, &[1; 16], "fuzz");
});
