//! Chunks always concatenate to the input and respect the bounds.
#![no_main]
use gallra_format::chunker::{Chunker, ChunkerParams};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let params = ChunkerParams {
        min: 64,
        avg: 256,
        max: 1024,
    };
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    Chunker::new(params)
        .chunk::<_, std::io::Error>(data, |c| {
            out.extend_from_slice(c);
            sizes.push(c.len());
            Ok(())
        })
        .unwrap();
    assert_eq!(out, data);
    assert!(sizes.iter().all(|&s| s <= 1024));
});
