//! Blob sealing and opening throughput on 1 MiB chunks (a default-sized
//! chunk): AES-256-GCM alone, zstd level 3 + AES-256-GCM on compressible text
//! and on random data (which `seal_blob` ends up storing raw, so this measures
//! what judging it incompressible costs), and the HMAC-SHA256 blob id.
//!
//! Run with `cargo bench --bench seal`; criterion prints MB/s of plaintext.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gallra::crypto::{SecretKey, keyed_id};
use gallra::format::pack::{open_blob, seal_blob};
use gallra::format::{Id, Kind};

const CHUNK_LEN: usize = 1 << 20;
const ZSTD_LEVEL: i32 = 3;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Deterministic incompressible bytes.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed | 1);
    let mut out = vec![0u8; len];
    for word in out.chunks_mut(8) {
        word.copy_from_slice(&rng.next().to_le_bytes()[..word.len()]);
    }
    out
}

/// Deterministic log-like text: words from a small vocabulary and numbers,
/// which zstd level 3 compresses several times over.
fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "tenant",
        "backup",
        "snapshot",
        "request",
        "GET",
        "POST",
        "/index.html",
        "200",
        "404",
        "user",
        "session",
        "expired",
        "the",
        "and",
        "of",
        "to",
        "in",
        "database",
        "row",
        "INSERT",
        "INTO",
        "VALUES",
        "ok",
        "warning",
        "error",
        "latency_ms",
    ];
    let mut rng = XorShift(seed | 1);
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        let r = rng.next();
        if r.is_multiple_of(11) {
            out.extend_from_slice(format!("{}", (r >> 8) % 100_000).as_bytes());
        } else {
            out.extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()].as_bytes());
        }
        out.push(if r.is_multiple_of(13) { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn seal(c: &mut Criterion) {
    let key = SecretKey::random();
    let cipher = key.cipher();
    let mac = SecretKey::random();
    let random = random_bytes(CHUNK_LEN, 0x2545_f491_4f6c_dd1d);
    let text = text_bytes(CHUNK_LEN, 0x9e37_79b9_7f4a_7c15);
    let random_id = Id(keyed_id(&mac, &random));
    let text_id = Id(keyed_id(&mac, &text));
    let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd level 3");

    let cases: [(&str, &[u8], Id, bool); 3] = [
        ("raw_random", &random, random_id, false),
        ("zstd3_text", &text, text_id, true),
        ("zstd3_random", &random, random_id, true),
    ];

    let mut group = c.benchmark_group("seal_blob_1MiB");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(CHUNK_LEN as u64));
    for (name, data, id, compress) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                let c = if compress {
                    Some(&mut compressor)
                } else {
                    None
                };
                seal_blob(&cipher, Kind::DataBlob, &id, black_box(data), c)
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("open_blob_1MiB");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(CHUNK_LEN as u64));
    for (name, data, id, compress) in cases {
        let c = if compress {
            Some(&mut compressor)
        } else {
            None
        };
        let sealed = seal_blob(&cipher, Kind::DataBlob, &id, data, c);
        // Nonce, codec byte, tag: only the text shrinks; random data is stored raw.
        let raw_len = data.len() + 1 + 12 + 16;
        if name == "zstd3_text" {
            assert!(sealed.len() < raw_len / 2, "text compresses");
        } else {
            assert_eq!(sealed.len(), raw_len, "{name} is stored raw");
        }
        let opened = open_blob(&cipher, Kind::DataBlob, &id, &sealed, "bench").expect("opens");
        assert_eq!(opened, data, "round trip of {name}");
        group.bench_function(name, |b| {
            b.iter(|| {
                open_blob(&cipher, Kind::DataBlob, &id, black_box(&sealed), "bench").expect("opens")
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("keyed_id_1MiB");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(CHUNK_LEN as u64));
    group.bench_function("hmac_sha256", |b| {
        b.iter(|| keyed_id(&mac, black_box(&random)));
    });
    group.finish();
}

criterion_group!(benches, seal);
criterion_main!(benches);
