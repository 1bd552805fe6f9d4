//! gallra's on-store format: what `docs/FORMAT.md` specifies byte for byte
//! and the fixture repository under `tests/fixtures/` pins. The object
//! codecs (one module per kind), the chunker, the crypto primitives, `Id`
//! and the tenant names on a store. Pure: no I/O, no tokio, and a crate of
//! its own so that the compiler, not a review, keeps it so. gallra
//! re-exports it as `gallra::format` (and `chunker`, `crypto`,
//! `tenant_name` at its root).
//!
//! An object in a store is an *envelope*:
//!
//! ```text
//! magic "GLRA" | version u8 | kind u8 | clear header (kind-specific) | nonce(12) | ciphertext | tag(16)
//! ```
//!
//! The associated data is `"gallra" | version | kind | clear header |
//! context`, where the context names what the object is (repository id and
//! tenant, or slot id), so that an object moved to another name or tenant
//! fails to open.

pub mod chunker;
pub mod crypto;
pub mod error;
pub mod tenant_name;

pub mod event;
pub mod holdings;
pub mod index;
pub mod key_epoch;
pub mod keyslot;
pub mod pack;
pub mod record;
pub mod repo_config;
pub mod rules;
pub mod snapshot;
pub mod tenant_key;
pub mod tree;

use aes_gcm::Aes256Gcm;
use serde::{Deserialize, Serialize};
use std::fmt;

pub use crate::error::{Error, Result};

pub const MAGIC: &[u8; 4] = b"GLRA";
/// The format version of every object kind that version 2 left as it was:
/// this build writes and reads them as version 1.
pub const FORMAT_VERSION: u8 = 1;
/// Version 2 of the format: tenant keys wrapped by a key epoch, and the
/// key-epoch objects (docs/FORMAT.md section 11.4). Readers of kind 3 read
/// both versions; kind 11 exists in version 2 only.
pub const FORMAT_VERSION_2: u8 = 2;
/// Bytes of `magic | version | kind`.
pub const ENVELOPE_PREFIX: usize = 6;

/// What an object or blob is. The byte is part of every envelope and of every
/// blob's associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Config = 1,
    KeySlot = 2,
    TenantKey = 3,
    PackHeader = 4,
    Index = 5,
    Snapshot = 6,
    DataBlob = 7,
    TreeBlob = 8,
    Event = 9,
    AuditRecord = 10,
    KeyEpoch = 11,
    Holdings = 12,
    Rules = 13,
}

impl Kind {
    pub fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Config,
            2 => Kind::KeySlot,
            3 => Kind::TenantKey,
            4 => Kind::PackHeader,
            5 => Kind::Index,
            6 => Kind::Snapshot,
            7 => Kind::DataBlob,
            8 => Kind::TreeBlob,
            9 => Kind::Event,
            10 => Kind::AuditRecord,
            11 => Kind::KeyEpoch,
            12 => Kind::Holdings,
            13 => Kind::Rules,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::KeySlot => "key slot",
            Kind::TenantKey => "tenant key",
            Kind::PackHeader => "pack header",
            Kind::Index => "index",
            Kind::Snapshot => "snapshot",
            Kind::DataBlob => "data blob",
            Kind::TreeBlob => "tree blob",
            Kind::Event => "lifecycle event",
            Kind::AuditRecord => "audit record",
            Kind::KeyEpoch => "key epoch",
            Kind::Holdings => "primary holdings",
            Kind::Rules => "retention rules",
        }
    }
}

/// A 32-byte identifier: a blob's keyed id, or the SHA-256 of a pack, index
/// or snapshot object (which is also its name in the store).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Id(pub [u8; 32]);

/// How many bytes of an id its short form shows.
pub const SHORT_BYTES: usize = 6;

impl Id {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The id as every command shows it: 12 hex digits (48 bits), so that
    /// a year of daily snapshots of a thousand tenants (some 400,000 ids)
    /// shows no two alike by chance (8 digits would, a few times over).
    pub fn short(&self) -> String {
        hex::encode(&self.0[..SHORT_BYTES])
    }

    pub fn from_hex(s: &str) -> Option<Id> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Id(out))
    }

    pub fn of_bytes(data: &[u8]) -> Id {
        Id(crypto::sha256(data))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

fn aad(version: u8, kind: Kind, clear_header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(8 + clear_header.len() + context.len());
    aad.extend_from_slice(b"gallra");
    aad.push(version);
    aad.push(kind as u8);
    aad.extend_from_slice(clear_header);
    aad.extend_from_slice(context);
    aad
}

/// Encodes a version 1 envelope around `body`.
pub fn seal_object(
    cipher: &Aes256Gcm,
    kind: Kind,
    clear_header: &[u8],
    context: &[u8],
    body: &[u8],
) -> Vec<u8> {
    seal_object_version(FORMAT_VERSION, cipher, kind, clear_header, context, body)
}

/// Encodes an envelope of `version` around `body`.
pub fn seal_object_version(
    version: u8,
    cipher: &Aes256Gcm,
    kind: Kind,
    clear_header: &[u8],
    context: &[u8],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        ENVELOPE_PREFIX + clear_header.len() + crypto::SEAL_OVERHEAD + body.len(),
    );
    out.extend_from_slice(MAGIC);
    out.push(version);
    out.push(kind as u8);
    out.extend_from_slice(clear_header);
    crypto::seal_into(
        cipher,
        &aad(version, kind, clear_header, context),
        body,
        &mut out,
    );
    out
}

/// The version byte of an envelope of `kind` that this build reads, or why
/// not: checked before anything else in it is used.
pub fn envelope_version(bytes: &[u8], kind: Kind, name: &str) -> Result<u8> {
    let readable: &[u8] = match kind {
        Kind::TenantKey => &[FORMAT_VERSION, FORMAT_VERSION_2],
        Kind::KeyEpoch => &[FORMAT_VERSION_2],
        _ => &[FORMAT_VERSION],
    };
    check_magic(bytes, kind, ENVELOPE_PREFIX, name)?;
    if !readable.contains(&bytes[4]) {
        let reads: Vec<String> = readable.iter().map(u8::to_string).collect();
        return Err(Error::corrupt(
            name,
            format!(
                "format version {} is not supported by this gallra (reads version {} of a {})",
                bytes[4],
                reads.join(" and "),
                kind.name()
            ),
        ));
    }
    Ok(bytes[4])
}

/// At least `min` bytes, starting with the magic: the first thing read of
/// any envelope.
fn check_magic(bytes: &[u8], kind: Kind, min: usize, name: &str) -> Result<()> {
    if bytes.len() < min {
        return Err(Error::corrupt(
            name,
            format!("truncated {} ({} bytes)", kind.name(), bytes.len()),
        ));
    }
    if &bytes[..4] != MAGIC {
        return Err(Error::corrupt(name, "not a gallra object (bad magic)"));
    }
    Ok(())
}

/// Checks a version 1 envelope's prefix and returns its clear header (of
/// `header_len` bytes) and the sealed rest. `name` is used in errors.
pub fn split_envelope<'a>(
    bytes: &'a [u8],
    kind: Kind,
    header_len: usize,
    name: &str,
) -> Result<(&'a [u8], &'a [u8])> {
    split_envelope_version(FORMAT_VERSION, bytes, kind, header_len, name)
}

/// As `split_envelope`, for an envelope of `version`.
pub fn split_envelope_version<'a>(
    version: u8,
    bytes: &'a [u8],
    kind: Kind,
    header_len: usize,
    name: &str,
) -> Result<(&'a [u8], &'a [u8])> {
    check_magic(
        bytes,
        kind,
        ENVELOPE_PREFIX + header_len + crypto::SEAL_OVERHEAD,
        name,
    )?;
    if bytes[4] != version {
        return Err(Error::corrupt(
            name,
            format!(
                "format version {} is not supported by this gallra (reads version {version})",
                bytes[4]
            ),
        ));
    }
    if bytes[5] != kind as u8 {
        let found = Kind::from_byte(bytes[5]).map_or("unknown", Kind::name);
        return Err(Error::corrupt(
            name,
            format!("expected a {} object, found a {found} object", kind.name()),
        ));
    }
    let rest = &bytes[ENVELOPE_PREFIX..];
    Ok(rest.split_at(header_len))
}

/// Opens an envelope sealed by [`seal_object`].
pub fn open_object(
    cipher: &Aes256Gcm,
    kind: Kind,
    header_len: usize,
    context: &[u8],
    bytes: &[u8],
    name: &str,
) -> Result<Vec<u8>> {
    open_object_version(
        FORMAT_VERSION,
        cipher,
        kind,
        header_len,
        context,
        bytes,
        name,
    )
}

/// Opens an envelope of `version` sealed by [`seal_object_version`].
pub fn open_object_version(
    version: u8,
    cipher: &Aes256Gcm,
    kind: Kind,
    header_len: usize,
    context: &[u8],
    bytes: &[u8],
    name: &str,
) -> Result<Vec<u8>> {
    let (header, sealed) = split_envelope_version(version, bytes, kind, header_len, name)?;
    crypto::open(cipher, &aad(version, kind, header, context), sealed).map_err(|_| {
        Error::corrupt(
            name,
            format!(
                "{} failed authentication (damaged, moved, or sealed with another key)",
                kind.name()
            ),
        )
    })
}

/// Serialises a body with postcard. Infallible for gallra's own types.
pub fn to_body<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard serialises gallra's types")
}

pub fn from_body<'a, T: Deserialize<'a>>(bytes: &'a [u8], name: &str, kind: Kind) -> Result<T> {
    let (value, rest) = postcard::take_from_bytes(bytes)
        .map_err(|e| Error::corrupt(name, format!("undecodable {}: {e}", kind.name())))?;
    if !rest.is_empty() {
        return Err(Error::corrupt(
            name,
            format!("{} has {} trailing bytes", kind.name(), rest.len()),
        ));
    }
    Ok(value)
}

/// Context for objects that belong to a tenant: repository id, then the
/// tenant's name.
pub fn tenant_context(repo_id: &[u8; 16], tenant: &str) -> Vec<u8> {
    let mut c = Vec::with_capacity(16 + tenant.len());
    c.extend_from_slice(repo_id);
    c.extend_from_slice(tenant.as_bytes());
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn envelope_round_trip_and_binding() {
        let cipher = SecretKey::random().cipher();
        let obj = seal_object(&cipher, Kind::Index, b"hdr", b"ctx", b"body");
        assert_eq!(&obj[..4], MAGIC);
        let body = open_object(&cipher, Kind::Index, 3, b"ctx", &obj, "x").unwrap();
        assert_eq!(body, b"body");
        assert!(open_object(&cipher, Kind::Index, 3, b"other", &obj, "x").is_err());
        let err = open_object(&cipher, Kind::Snapshot, 3, b"ctx", &obj, "x").unwrap_err();
        assert!(err.to_string().contains("expected a snapshot"), "{err}");
        let mut bumped = obj.clone();
        bumped[4] = 9;
        let err = open_object(&cipher, Kind::Index, 3, b"ctx", &bumped, "x").unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
        assert!(open_object(&cipher, Kind::Index, 3, b"ctx", &obj[..10], "x").is_err());
    }

    use proptest::prelude::*;

    proptest! {
        /// Every decoder meets hostile bytes without panicking: those before
        /// authentication (envelope prefix, slot header, config id) and the
        /// bodies behind it (which a key holder's bug could still garble).
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let cipher = SecretKey::from_bytes([5; 32]).cipher();
            for kind in [Kind::Config, Kind::KeySlot, Kind::TenantKey, Kind::PackHeader, Kind::Index, Kind::Snapshot] {
                let _ = open_object(&cipher, kind, 0, b"ctx", &bytes, "x");
            }
            let _ = keyslot::KeySlotHeader::decode(&bytes, "x");
            let _ = repo_config::repo_id(&bytes, "x");
            let _ = from_body::<index::IndexBody>(&bytes, "x", Kind::Index);
            let _ = from_body::<snapshot::Snapshot>(&bytes, "x", Kind::Snapshot);
            let _ = from_body::<repo_config::RepoConfig>(&bytes, "x", Kind::Config);
            let _ = from_body::<tenant_key::TenantKeyBody>(&bytes, "x", Kind::TenantKey);
            let _ = tree::Tree::decode(&bytes, "x");
            let key = SecretKey::from_bytes([5; 32]);
            let _ = tenant_key::wrapped_by(&bytes, "x");
            let _ = tenant_key::open_under_epoch(&bytes, &key, &[2; 16], "t", "x");
            let _ = key_epoch::epoch_id(&bytes, "x");
            let _ = key_epoch::open(&bytes, &key, &[2; 16], "x");
            let _ = from_body::<key_epoch::KeyEpochBody>(&bytes, "x", Kind::KeyEpoch);
        }

        #[test]
        fn snapshot_and_index_round_trip(tenant in "[a-z]{1,12}", files in any::<u64>(), secs in any::<i64>(), n in 0usize..5) {
            let cipher = SecretKey::from_bytes([6; 32]).cipher();
            let snap = snapshot::Snapshot {
                time_secs: secs, time_nanos: 7, host: "h".into(), tenant: tenant.clone(),
                source: "www".into(), category: "site".into(), paths: vec!["/var/www".into()],
                tags: vec![("k".into(), "v".into())], root: Id([1; 32]), parent: None,
                files, dirs: 2, bytes: 3, bytes_read: 4, bytes_added: 5, bytes_stored: 6,
                warnings: vec!["w".into()], program: "gallra".into(),
            };
            let ctx = tenant_context(&[2; 16], &tenant);
            let sealed = snapshot::seal(&snap, &cipher, &ctx);
            prop_assert_eq!(snapshot::open(&sealed, &cipher, &ctx, "s").unwrap(), snap);
            let body = index::IndexBody { packs: (0..n).map(|i| index::IndexPack {
                id: Id([i as u8; 32]), size: i as u64 * 100,
                blobs: vec![pack::PackEntry { kind: Kind::DataBlob as u8, id: Id([9; 32]), offset: 0, length: 40 }],
            }).collect() };
            let sealed = index::seal(&body, &cipher, &ctx);
            prop_assert_eq!(index::open(&sealed, &cipher, &ctx, "i").unwrap(), body);
        }
    }

    #[test]
    fn id_hex_round_trip() {
        let id = Id::of_bytes(b"abc");
        assert_eq!(Id::from_hex(&id.to_hex()), Some(id));
        assert_eq!(id.short().len(), 12);
        assert_eq!(Id::from_hex("zz"), None);
    }
}
