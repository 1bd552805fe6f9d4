//! `keys/<slot>`: the master key wrapped by one key-encryption key.
//!
//! Clear header (37 bytes): slot kind u8 (1 key file, 2 passphrase), Argon2id
//! m_cost KiB u32 LE, t_cost u32 LE, p_cost u32 LE, salt [16], created (Unix
//! seconds) i64 LE. Body: the 32-byte master key. Context: repository id |
//! slot id (ASCII).

use super::{Kind, open_object, seal_object};
use crate::crypto::{Argon2Params, SecretKey};
use crate::error::{Error, Result};

pub const HEADER_LEN: usize = 1 + 12 + 16 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    File = 1,
    Passphrase = 2,
}

impl SlotKind {
    pub fn name(self) -> &'static str {
        match self {
            SlotKind::File => "file",
            SlotKind::Passphrase => "passphrase",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlotHeader {
    pub kind: SlotKind,
    pub argon: Argon2Params,
    pub salt: [u8; 16],
    pub created: i64,
}

impl KeySlotHeader {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = self.kind as u8;
        h[1..5].copy_from_slice(&self.argon.m_cost_kib.to_le_bytes());
        h[5..9].copy_from_slice(&self.argon.t_cost.to_le_bytes());
        h[9..13].copy_from_slice(&self.argon.p_cost.to_le_bytes());
        h[13..29].copy_from_slice(&self.salt);
        h[29..37].copy_from_slice(&self.created.to_le_bytes());
        h
    }

    /// Reads the clear header of a slot object without any key.
    pub fn decode(bytes: &[u8], name: &str) -> Result<KeySlotHeader> {
        let (h, _) = super::split_envelope(bytes, Kind::KeySlot, HEADER_LEN, name)?;
        let kind = match h[0] {
            1 => SlotKind::File,
            2 => SlotKind::Passphrase,
            k => return Err(Error::corrupt(name, format!("unknown key slot kind {k}"))),
        };
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
        Ok(KeySlotHeader {
            kind,
            argon: Argon2Params {
                m_cost_kib: u32_at(1),
                t_cost: u32_at(5),
                p_cost: u32_at(9),
            },
            salt: h[13..29].try_into().expect("16 bytes"),
            created: i64::from_le_bytes(h[29..37].try_into().expect("8 bytes")),
        })
    }
}

fn context(repo_id: &[u8; 16], slot_id: &str) -> Vec<u8> {
    let mut c = repo_id.to_vec();
    c.extend_from_slice(slot_id.as_bytes());
    c
}

pub fn seal(
    header: &KeySlotHeader,
    kek: &SecretKey,
    master: &SecretKey,
    repo_id: &[u8; 16],
    slot_id: &str,
) -> Vec<u8> {
    seal_object(
        &kek.cipher(),
        Kind::KeySlot,
        &header.encode(),
        &context(repo_id, slot_id),
        master.as_bytes(),
    )
}

/// Unwraps the master key; `None` when this key-encryption key does not open
/// the slot (another key's slot), an error when the object is malformed.
pub fn open(
    bytes: &[u8],
    kek: &SecretKey,
    repo_id: &[u8; 16],
    slot_id: &str,
    name: &str,
) -> Result<Option<SecretKey>> {
    match open_object(
        &kek.cipher(),
        Kind::KeySlot,
        HEADER_LEN,
        &context(repo_id, slot_id),
        bytes,
        name,
    ) {
        Ok(body) => {
            let body = zeroize::Zeroizing::new(body);
            let key: [u8; 32] = body
                .as_slice()
                .try_into()
                .map_err(|_| Error::corrupt(name, "master key is not 32 bytes"))?;
            Ok(Some(SecretKey::from_bytes(key)))
        }
        Err(Error::Corrupt { message, .. }) if message.contains("failed authentication") => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_round_trip() {
        let header = KeySlotHeader {
            kind: SlotKind::Passphrase,
            argon: Argon2Params {
                m_cost_kib: 8,
                t_cost: 1,
                p_cost: 1,
            },
            salt: [3; 16],
            created: 1_700_000_000,
        };
        let kek = SecretKey::random();
        let master = SecretKey::random();
        let obj = seal(&header, &kek, &master, &[1; 16], "s1");
        assert_eq!(KeySlotHeader::decode(&obj, "k").unwrap(), header);
        let got = open(&obj, &kek, &[1; 16], "s1", "k").unwrap().unwrap();
        assert_eq!(got.as_bytes(), master.as_bytes());
        assert!(
            open(&obj, &SecretKey::random(), &[1; 16], "s1", "k")
                .unwrap()
                .is_none()
        );
        assert!(open(&obj, &kek, &[1; 16], "s2", "k").unwrap().is_none());
    }
}
