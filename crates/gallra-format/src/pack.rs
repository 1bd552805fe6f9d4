//! Blobs and packs.
//!
//! A sealed blob is `nonce(12) | AES-256-GCM(codec u8 | payload) | tag(16)`
//! with associated data `"gallra" | version | kind (7 data, 8 tree) | blob
//! id(32)`. Codec 0: payload is the plaintext; codec 1: payload is one zstd
//! frame with its content size. A blob that does not shrink is stored raw.
//!
//! A pack is `blob | blob | ... | header envelope | header length u32 LE`. The
//! header envelope (kind 4, no clear header, context repo id | tenant) holds
//! the postcard list of [`PackEntry`], so a pack can be read, checked and
//! re-indexed without any index. A pack's name is the SHA-256 of its bytes.

use aes_gcm::Aes256Gcm;
use serde::{Deserialize, Serialize};

use super::{FORMAT_VERSION, Id, Kind, from_body, open_object, seal_object, to_body};
use crate::crypto::{self, NONCE_LEN};
use crate::error::{Error, Result};

pub const CODEC_RAW: u8 = 0;
pub const CODEC_ZSTD: u8 = 1;
/// Largest plaintext a blob may decompress to; guards against a forged
/// frame asking for gigabytes. Chunks are at most a few MiB, trees likewise.
pub const MAX_BLOB_PLAINTEXT: u64 = 256 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// [`Kind::DataBlob`] or [`Kind::TreeBlob`] as a byte.
    pub kind: u8,
    pub id: Id,
    pub offset: u64,
    pub length: u32,
}

impl PackEntry {
    pub fn blob_kind(&self) -> Option<Kind> {
        match Kind::from_byte(self.kind) {
            Some(k @ (Kind::DataBlob | Kind::TreeBlob)) => Some(k),
            _ => None,
        }
    }
}

fn blob_aad(kind: Kind, id: &Id) -> [u8; 40] {
    let mut aad = [0u8; 40];
    aad[..6].copy_from_slice(b"gallra");
    aad[6] = FORMAT_VERSION;
    aad[7] = kind as u8;
    aad[8..].copy_from_slice(&id.0);
    aad
}

/// Compresses (when a compressor is given and it helps) and seals one blob.
pub fn seal_blob(
    cipher: &Aes256Gcm,
    kind: Kind,
    id: &Id,
    data: &[u8],
    compressor: Option<&mut zstd::bulk::Compressor<'_>>,
) -> Vec<u8> {
    let compressed = compressor
        .and_then(|c| (!looks_incompressible(data, c)).then_some(c))
        .and_then(|c| c.compress(data).ok())
        .filter(|z| z.len() < data.len());
    let (codec, payload) = match &compressed {
        Some(z) => (CODEC_ZSTD, z.as_slice()),
        None => (CODEC_RAW, data),
    };
    let mut buf = Vec::with_capacity(NONCE_LEN + 1 + payload.len() + crypto::TAG_LEN);
    buf.resize(NONCE_LEN, 0);
    buf.push(codec);
    buf.extend_from_slice(payload);
    crypto::seal_reserved(cipher, &blob_aad(kind, id), &mut buf, 0);
    buf
}

/// Blobs at least this large are first judged by a sample.
const SAMPLE_ABOVE: usize = 128 << 10;
const SAMPLE_WINDOW: usize = 4 << 10;

/// Whether three 4 KiB windows (start, middle, end) of a large blob shrink by
/// less than 3%: images, archives, video and encrypted files. Skipping them
/// saves a third of a backup's zstd time on a hosting tree, and a blob so
/// judged is stored raw, which it would nearly have been anyway.
fn looks_incompressible(data: &[u8], compressor: &mut zstd::bulk::Compressor<'_>) -> bool {
    if data.len() < SAMPLE_ABOVE {
        return false;
    }
    let mid = data.len() / 2 - SAMPLE_WINDOW / 2;
    let mut sample = Vec::with_capacity(3 * SAMPLE_WINDOW);
    sample.extend_from_slice(&data[..SAMPLE_WINDOW]);
    sample.extend_from_slice(&data[mid..mid + SAMPLE_WINDOW]);
    sample.extend_from_slice(&data[data.len() - SAMPLE_WINDOW..]);
    compressor
        .compress(&sample)
        .is_ok_and(|z| z.len() * 100 > sample.len() * 97)
}

/// Authenticates and decompresses one blob. `name` (the pack) goes in errors.
pub fn open_blob(
    cipher: &Aes256Gcm,
    kind: Kind,
    id: &Id,
    sealed: &[u8],
    name: &str,
) -> Result<Vec<u8>> {
    let plain = crypto::open(cipher, &blob_aad(kind, id), sealed).map_err(|_| {
        Error::corrupt(
            name,
            format!("{} {} failed authentication", kind.name(), id.to_hex()),
        )
    })?;
    let (&codec, payload) = plain
        .split_first()
        .ok_or_else(|| Error::corrupt(name, format!("blob {} is empty", id.to_hex())))?;
    match codec {
        CODEC_RAW => Ok(payload.to_vec()),
        CODEC_ZSTD => {
            let size = zstd::zstd_safe::get_frame_content_size(payload)
                .ok()
                .flatten()
                .filter(|&s| s <= MAX_BLOB_PLAINTEXT)
                .ok_or_else(|| {
                    Error::corrupt(name, format!("blob {}: bad zstd frame", id.to_hex()))
                })?;
            thread_local! {
                // A decompression context costs more to make than a small
                // blob costs to decompress: keep one per thread.
                static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                    const { std::cell::RefCell::new(None) };
            }
            DCTX.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| Error::corrupt(name, format!("zstd context: {e}")))?,
                    );
                }
                slot.as_mut()
                    .expect("set above")
                    .decompress(payload, size as usize)
                    .map_err(|e| Error::corrupt(name, format!("blob {}: zstd: {e}", id.to_hex())))
            })
        }
        c => Err(Error::corrupt(
            name,
            format!("blob {}: unknown codec {c}", id.to_hex()),
        )),
    }
}

/// Accumulates sealed blobs into one pack.
#[derive(Default)]
pub struct PackBuilder {
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    pub fn with_capacity(cap: usize) -> Self {
        PackBuilder {
            bytes: Vec::with_capacity(cap),
            entries: Vec::new(),
        }
    }

    pub fn add(&mut self, kind: Kind, id: Id, sealed: &[u8]) {
        self.entries.push(PackEntry {
            kind: kind as u8,
            id,
            offset: self.bytes.len() as u64,
            length: u32::try_from(sealed.len()).expect("a sealed blob is far below 4 GiB"),
        });
        self.bytes.extend_from_slice(sealed);
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the sealed header; returns the pack's bytes, id and entries.
    pub fn finish(mut self, cipher: &Aes256Gcm, context: &[u8]) -> (Vec<u8>, Id, Vec<PackEntry>) {
        let header = seal_object(
            cipher,
            Kind::PackHeader,
            b"",
            context,
            &to_body(&self.entries),
        );
        self.bytes.extend_from_slice(&header);
        self.bytes
            .extend_from_slice(&(header.len() as u32).to_le_bytes());
        let id = Id::of_bytes(&self.bytes);
        (self.bytes, id, self.entries)
    }
}

/// Reads a whole pack's header and checks that its entries tile the blob area.
pub fn read_header(
    pack: &[u8],
    cipher: &Aes256Gcm,
    context: &[u8],
    name: &str,
) -> Result<Vec<PackEntry>> {
    if pack.len() < 4 {
        return Err(Error::corrupt(name, "truncated pack"));
    }
    let len_at = pack.len() - 4;
    let header_len = u32::from_le_bytes(pack[len_at..].try_into().expect("4 bytes")) as usize;
    if header_len > len_at {
        return Err(Error::corrupt(
            name,
            "truncated pack (header length exceeds pack)",
        ));
    }
    let header_start = len_at - header_len;
    let body = open_object(
        cipher,
        Kind::PackHeader,
        0,
        context,
        &pack[header_start..len_at],
        name,
    )?;
    let entries: Vec<PackEntry> = from_body(&body, name, Kind::PackHeader)?;
    let mut expected = 0u64;
    for e in &entries {
        if e.offset != expected || e.blob_kind().is_none() {
            return Err(Error::corrupt(name, "pack header entries are inconsistent"));
        }
        expected += u64::from(e.length);
    }
    if expected != header_start as u64 {
        return Err(Error::corrupt(name, "pack header does not cover the pack"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use proptest::prelude::*;

    #[test]
    fn sampling_keeps_compressible_blobs_compressed() {
        let cipher = SecretKey::random().cipher();
        let id = Id([9; 32]);
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        let text: Vec<u8> = (0..400_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let random: Vec<u8> = (0..400_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(!looks_incompressible(&text, &mut c));
        assert!(looks_incompressible(&random, &mut c));
        let sealed = seal_blob(&cipher, Kind::DataBlob, &id, &text, Some(&mut c));
        assert!(sealed.len() < text.len() / 3);
        assert_eq!(
            open_blob(&cipher, Kind::DataBlob, &id, &sealed, "p").unwrap(),
            text
        );
    }

    #[test]
    fn incompressible_blob_is_stored_raw() {
        let cipher = SecretKey::random().cipher();
        let data: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let id = Id([9; 32]);
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        let sealed = seal_blob(&cipher, Kind::DataBlob, &id, &data, Some(&mut c));
        let text = vec![b'a'; 4096];
        let sealed_text = seal_blob(&cipher, Kind::DataBlob, &id, &text, Some(&mut c));
        assert!(sealed_text.len() < 200);
        assert!(sealed.len() <= data.len() + 1 + crypto::SEAL_OVERHEAD);
        assert_eq!(
            open_blob(&cipher, Kind::DataBlob, &id, &sealed, "p").unwrap(),
            data
        );
        assert_eq!(
            open_blob(&cipher, Kind::DataBlob, &id, &sealed_text, "p").unwrap(),
            text
        );
        assert!(open_blob(&cipher, Kind::TreeBlob, &id, &sealed, "p").is_err());
        assert!(open_blob(&cipher, Kind::DataBlob, &Id([8; 32]), &sealed, "p").is_err());
    }

    proptest! {
        #[test]
        fn blob_round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), compress in any::<bool>()) {
            let cipher = SecretKey::from_bytes([1; 32]).cipher();
            let id = Id([2; 32]);
            let mut c = zstd::bulk::Compressor::new(3).unwrap();
            let sealed = seal_blob(&cipher, Kind::DataBlob, &id, &data, if compress { Some(&mut c) } else { None });
            prop_assert_eq!(open_blob(&cipher, Kind::DataBlob, &id, &sealed, "p").unwrap(), data);
        }

        #[test]
        fn pack_round_trip(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let cipher = SecretKey::from_bytes([1; 32]).cipher();
            let mut b = PackBuilder::default();
            for (i, data) in blobs.iter().enumerate() {
                let id = Id([i as u8; 32]);
                b.add(Kind::DataBlob, id, &seal_blob(&cipher, Kind::DataBlob, &id, data, None));
            }
            let (bytes, id, entries) = b.finish(&cipher, b"ctx");
            prop_assert_eq!(id, Id::of_bytes(&bytes));
            let read = read_header(&bytes, &cipher, b"ctx", "p").unwrap();
            prop_assert_eq!(&read, &entries);
            for (e, data) in entries.iter().zip(&blobs) {
                let s = &bytes[e.offset as usize..e.offset as usize + e.length as usize];
                prop_assert_eq!(&open_blob(&cipher, Kind::DataBlob, &e.id, s, "p").unwrap(), data);
            }
        }

        #[test]
        fn read_header_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let cipher = SecretKey::from_bytes([1; 32]).cipher();
            let _ = read_header(&bytes, &cipher, b"ctx", "p");
        }
    }
}
