//! A pack as read from a store: its trailer, header and blobs.
#![no_main]
use gallra_format::pack::{open_blob, read_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cipher = gallra_format::crypto::SecretKey::from_bytes([7; 32]).cipher();
    if let Ok(entries) = read_header(data, &cipher, b"fuzz", "fuzz") {
        for e in entries {
            let kind = e.blob_kind().expect("read_header checks kinds");
            let sealed = &data[e.offset as usize..e.offset as usize + e.length as usize];
            let _ = open_blob(&cipher, kind, &e.id, sealed, "fuzz");
        }
    }
});
