//! Content-defined chunking over readers, with FastCDC (the `fastcdc` crate's
//! 2020 cut-point search) and a reusable buffer.
//!
//! `fastcdc::v2020::StreamCDC` allocates and zeroes a `max_size` buffer per
//! stream and a fresh `Vec` per chunk; across 64,000 small files that costs
//! more than the hashing. This chunker keeps one buffer of twice the maximum
//! chunk per worker thread, hands out chunks as slices into it, and moves the
//! tail to the front at most once per `max` bytes, so each byte is copied at
//! most once after it is read.

use std::io::{self, Read};

/// Chunk size bounds. Stored in the repository's config at `init`: changing
/// them would defeat dedup against earlier snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for ChunkerParams {
    /// 128 KiB / 512 KiB / 2 MiB: see docs/DESIGN.md "Chunk sizes" for the
    /// measurement behind this choice.
    fn default() -> Self {
        ChunkerParams {
            min: 128 << 10,
            avg: 512 << 10,
            max: 2 << 20,
        }
    }
}

impl ChunkerParams {
    /// Whether the fastcdc crate accepts these bounds.
    pub fn is_valid(&self) -> bool {
        use fastcdc::v2020::*;
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0
    }
}

pub struct Chunker {
    params: ChunkerParams,
    buf: Vec<u8>,
}

impl Chunker {
    pub fn new(params: ChunkerParams) -> Self {
        assert!(params.is_valid(), "invalid chunker parameters {params:?}");
        Chunker {
            params,
            buf: Vec::new(),
        }
    }

    /// Reads `reader` to its end, calling `sink` with each chunk in order.
    /// Returns the number of bytes read. An empty input yields no chunk.
    pub fn chunk<R: Read, E: From<io::Error>>(
        &mut self,
        mut reader: R,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let max = self.params.max as usize;
        if self.buf.len() < 2 * max {
            self.buf.resize(2 * max, 0);
        }
        let (mut start, mut end) = (0usize, 0usize);
        let mut eof = false;
        let mut total = 0u64;
        loop {
            // Keep at least `max` bytes ahead of `start` unless the input ended,
            // so that every cut point FastCDC finds is a final one.
            if !eof && end - start < max {
                if start > 0 {
                    self.buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                }
                while end < self.buf.len() {
                    match reader.read(&mut self.buf[end..]) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => {
                            end += n;
                            total += n as u64;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if start == end {
                return Ok(total);
            }
            let window = &self.buf[start..end];
            let cut = fastcdc::v2020::FastCDC::new(
                window,
                self.params.min as usize,
                self.params.avg as usize,
                max,
            )
            .cut(0, window.len())
            .1;
            sink(&window[..cut])?;
            start += cut;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 1024,
            avg: 4096,
            max: 16384,
        }
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn chunks(params: ChunkerParams, data: &[u8], read_size: usize) -> Vec<Vec<u8>> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(out.len()).min(self.1);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        let n = Chunker::new(params)
            .chunk::<_, io::Error>(Trickle(data, read_size), |c| {
                out.push(c.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(n as usize, data.len());
        out
    }

    #[test]
    fn same_cut_points_as_fastcdc_on_whole_buffer() {
        let data = pseudo_random(300_000, 7);
        let p = small();
        let expected: Vec<usize> = fastcdc::v2020::FastCDC::new(&data, 1024, 4096, 16384)
            .map(|c| c.length)
            .collect();
        let got: Vec<usize> = chunks(p, &data, 1000).iter().map(Vec::len).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn insertion_only_changes_nearby_chunks() {
        let data = pseudo_random(400_000, 3);
        let mut edited = data[..200_000].to_vec();
        edited.extend_from_slice(b"an insertion in the middle");
        edited.extend_from_slice(&data[200_000..]);
        let a = chunks(small(), &data, 65536);
        let b = chunks(small(), &edited, 65536);
        let shared = b.iter().filter(|c| a.contains(c)).count();
        assert!(
            shared + 3 >= b.len(),
            "{shared} of {} chunks shared",
            b.len()
        );
    }

    proptest! {
        #[test]
        fn chunks_concatenate_to_input_and_respect_bounds(
            len in 0usize..80_000, seed in any::<u64>(), read_size in 1usize..20_000
        ) {
            let data = pseudo_random(len, seed);
            let got = chunks(small(), &data, read_size);
            prop_assert_eq!(got.concat(), data);
            for (i, c) in got.iter().enumerate() {
                prop_assert!(c.len() <= 16384);
                if i + 1 < got.len() {
                    prop_assert!(c.len() >= 1024);
                }
            }
        }
    }
}
