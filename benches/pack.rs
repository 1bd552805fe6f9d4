//! Pack assembly throughput: a [`PackBuilder`] filled to 16 MiB (the default
//! pack size) from sixteen sealed 1 MiB blobs, then `finish()`, which seals
//! the pack header and hashes the whole pack with SHA-256 to name it.
//!
//! Run with `cargo bench --bench pack`; criterion prints MB/s of pack bytes.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gallra::crypto::{SecretKey, keyed_id};
use gallra::format::pack::{PackBuilder, seal_blob};
use gallra::format::{Id, Kind};

const BLOB_LEN: usize = 1 << 20;
const PACK_LEN: usize = 16 << 20;

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

fn pack(c: &mut Criterion) {
    let cipher = SecretKey::random().cipher();
    let mac = SecretKey::random();
    // The associated-data context of a tenant's objects: repo id | tenant.
    let mut context = vec![7u8; 16];
    context.extend_from_slice(b"acme");
    let blobs: Vec<(Id, Vec<u8>)> = (0..PACK_LEN / BLOB_LEN)
        .map(|i| {
            let data = pseudo_random(BLOB_LEN, 0x9e37_79b9_7f4a_7c15 ^ i as u64);
            let id = Id(keyed_id(&mac, &data));
            (id, seal_blob(&cipher, Kind::DataBlob, &id, &data, None))
        })
        .collect();
    let (bytes, _, entries) = fill(&blobs, &cipher, &context);
    assert_eq!(entries.len(), blobs.len());

    let mut group = c.benchmark_group("pack");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("build_16MiB_from_1MiB_blobs", |b| {
        b.iter(|| fill(black_box(&blobs), &cipher, &context));
    });
    group.finish();
}

fn fill(
    blobs: &[(Id, Vec<u8>)],
    cipher: &aes_gcm::Aes256Gcm,
    context: &[u8],
) -> (Vec<u8>, Id, Vec<gallra::format::pack::PackEntry>) {
    let mut builder = PackBuilder::with_capacity(PACK_LEN + (1 << 20));
    for (id, sealed) in blobs {
        builder.add(Kind::DataBlob, *id, sealed);
    }
    builder.finish(cipher, context)
}

criterion_group!(benches, pack);
criterion_main!(benches);
