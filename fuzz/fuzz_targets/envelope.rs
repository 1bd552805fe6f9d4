//! What is read before any key opens: envelope prefixes, key slot headers,
//! the config's repository id, and envelopes under a fixed key.
#![no_main]
use gallra_format::{Kind, keyslot::KeySlotHeader, open_object, repo_config};
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
});
