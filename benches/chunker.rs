//! Content-defined chunking throughput: the FastCDC chunker with the default
//! parameters (256 KiB / 1 MiB / 4 MiB) over 64 MiB of pseudo-random data.
//!
//! Run with `cargo bench --bench chunker`; criterion prints MB/s.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gallra::chunker::{Chunker, ChunkerParams};

const INPUT_LEN: usize = 64 << 20;

/// Deterministic xorshift64 bytes, so every run chunks the same input.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = vec![0u8; len];
    for word in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
    }
    out
}

fn chunker(c: &mut Criterion) {
    let data = pseudo_random(INPUT_LEN, 0x9e37_79b9_7f4a_7c15);
    let params = ChunkerParams::default();
    let mut group = c.benchmark_group("chunker");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(INPUT_LEN as u64));
    // One chunker for all iterations, as a backup worker reuses its buffer.
    let mut chunker = Chunker::new(params);
    group.bench_function("fastcdc_default_64MiB", |b| {
        b.iter(|| {
            let mut chunks = 0u64;
            let read = chunker
                .chunk::<_, std::io::Error>(black_box(&data[..]), |chunk| {
                    black_box(chunk);
                    chunks += 1;
                    Ok(())
                })
                .expect("reading a slice cannot fail");
            assert_eq!(read, INPUT_LEN as u64);
            chunks
        });
    });
    group.finish();
}

criterion_group!(benches, chunker);
criterion_main!(benches);
