//! Master-key slots: `keys/<slot>`.

use bytes::Bytes;

use super::Repository;
use crate::crypto::{self, Argon2Params, KeyMaterial, KeySource, SecretKey};
use crate::error::{Error, Result};
use crate::format::keyslot::{self, KeySlotHeader, SlotKind};
use crate::layout::{CONFIG_PATH, KEYS_FOLDER, slot_path};
use crate::store::Store;

/// Argon2id costs for new passphrase slots; `GALLRA_TEST_ARGON2_KIB` lowers
/// the memory cost so that test suites stay fast (never below 8 KiB).
fn argon_params() -> Argon2Params {
    let mut p = Argon2Params::default();
    if let Some(kib) = std::env::var("GALLRA_TEST_ARGON2_KIB")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        p.m_cost_kib = kib.max(8);
        p.t_cost = 1;
    }
    p
}

pub(crate) fn write_slot(
    store: &Store,
    repo_id: &[u8; 16],
    master: &SecretKey,
    material: &KeyMaterial,
) -> Result<String> {
    let slot = hex::encode(crypto::random_bytes::<8>());
    let (kind, argon) = match material {
        KeyMaterial::File(_) => (
            SlotKind::File,
            Argon2Params {
                m_cost_kib: 0,
                t_cost: 0,
                p_cost: 0,
            },
        ),
        KeyMaterial::Passphrase(_) => (SlotKind::Passphrase, argon_params()),
    };
    let header = KeySlotHeader {
        kind,
        argon,
        salt: crypto::random_bytes(),
        created: jiff::Timestamp::now().as_second(),
    };
    let kek = material.kek(&header.salt, header.argon)?;
    let bytes = keyslot::seal(&header, &kek, master, repo_id, &slot);
    store.put(&slot_path(&slot), Bytes::from(bytes))?;
    Ok(slot)
}

/// Tries every slot of the material's kind; the slot id and master key of the
/// first that opens.
pub(crate) fn unlock(
    store: &Store,
    repo_id: &[u8; 16],
    material: &KeyMaterial,
) -> Result<Option<(String, SecretKey)>> {
    let want = match material {
        KeyMaterial::File(_) => SlotKind::File,
        KeyMaterial::Passphrase(_) => SlotKind::Passphrase,
    };
    for obj in store.list(KEYS_FOLDER)? {
        let slot = obj.path.rsplit('/').next().unwrap_or_default().to_string();
        let bytes = store.get_limited(&obj.path, crate::limits::ReadLimit::KeySlot)?;
        // A damaged or newer slot must not lock out the keys of the others.
        let header = match KeySlotHeader::decode(&bytes, &obj.path) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("skipping key slot: {e}");
                continue;
            }
        };
        if header.kind != want {
            continue;
        }
        // The costs are read before the slot is authenticated: refuse ones
        // that would let a tampered slot stall every agent for minutes.
        if header.kind == SlotKind::Passphrase && !header.argon.is_reasonable() {
            tracing::warn!(
                "skipping key slot {}: Argon2id costs {:?} exceed the limits",
                obj.path,
                header.argon
            );
            continue;
        }
        let kek = match material.kek(&header.salt, header.argon) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!("skipping key slot {}: {e}", obj.path);
                continue;
            }
        };
        match keyslot::open(&bytes, &kek, repo_id, &slot, &obj.path) {
            Ok(Some(master)) => return Ok(Some((slot, master))),
            Ok(None) => {}
            Err(e) => tracing::warn!("skipping key slot: {e}"),
        }
    }
    Ok(None)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub id: String,
    pub kind: &'static str,
    /// Unix seconds.
    pub created: i64,
    pub in_use: bool,
}

impl Repository {
    pub fn list_slots(&self) -> Result<Vec<SlotInfo>> {
        let mut out = Vec::new();
        for obj in self.store.list(KEYS_FOLDER)? {
            let bytes = self
                .store
                .get_limited(&obj.path, crate::limits::ReadLimit::KeySlot)?;
            let id = obj.path.rsplit('/').next().unwrap_or_default().to_string();
            // A damaged slot is listed, so that `key remove` can clear it.
            let (kind, created) = match KeySlotHeader::decode(&bytes, &obj.path) {
                Ok(h) => (h.kind.name(), h.created),
                Err(_) => ("damaged", 0),
            };
            out.push(SlotInfo {
                in_use: id == self.slot_in_use,
                id,
                kind,
                created,
            });
        }
        Ok(out)
    }

    /// Adds a slot that `key` opens; returns its id.
    pub fn add_slot(&self, key: &KeySource) -> Result<String> {
        let material = KeyMaterial::load(key)?;
        write_slot(&self.store, &self.repo_id, self.master(), &material)
    }

    /// Removes a slot, never the last one nor the one that opened the
    /// repository (remove that with another key, so a typo cannot lock
    /// everyone out).
    pub fn remove_slot(&self, id: &str) -> Result<()> {
        let slots = self.list_slots()?;
        if !slots.iter().any(|s| s.id == id) {
            return Err(Error::Usage(format!("no key slot {id}")));
        }
        if slots.len() == 1 {
            return Err(Error::Usage(format!(
                "key slot {id} is the last one; add another before removing it"
            )));
        }
        if id == self.slot_in_use {
            return Err(Error::Usage(format!(
                "key slot {id} is the one this command was opened with; remove it using another key"
            )));
        }
        self.store.delete(&slot_path(id))
    }
}

/// How a target's key slots differ from the primary's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotDifference {
    /// Slots the primary has and the target lacks (or holds otherwise).
    pub lacking: Vec<String>,
    pub lacking_bytes: u64,
    /// Slots the target still has that the primary removed: their keys
    /// still open the target's copy of the repository.
    pub extra: Vec<String>,
}

impl SlotDifference {
    pub fn is_empty(&self) -> bool {
        self.lacking.is_empty() && self.extra.is_empty()
    }
}

fn slot_id(path: &str) -> String {
    path.rsplit('/').next().unwrap_or_default().to_string()
}

/// Compares the key slots of `target` with the primary's, by listing.
pub fn slot_difference(primary: &Store, target: &Store) -> Result<SlotDifference> {
    let ours = primary.list(KEYS_FOLDER)?;
    let theirs = target.list(KEYS_FOLDER)?;
    let mut d = SlotDifference::default();
    for o in &ours {
        if !theirs.iter().any(|t| t.path == o.path && t.size == o.size) {
            d.lacking.push(slot_id(&o.path));
            d.lacking_bytes += o.size;
        }
    }
    for t in &theirs {
        if !ours.iter().any(|o| o.path == t.path) {
            d.extra.push(slot_id(&t.path));
        }
    }
    Ok(d)
}

/// Makes slot `id` on `target` what it is on the primary: copied if the
/// primary has it, deleted if not. Refuses a target that holds no
/// repository, or another one: a slot is only meaningful beside its own
/// repository's config.
pub fn sync_slot(primary: &Store, target: &Store, id: &str) -> Result<()> {
    let config = primary.get_limited(CONFIG_PATH, crate::limits::ReadLimit::Config)?;
    match target.get_limited(CONFIG_PATH, crate::limits::ReadLimit::Config) {
        Ok(theirs) if theirs == config => {}
        Ok(_) => {
            return Err(Error::DifferentRepository {
                target: target.name().to_string(),
                message: format!(
                    "it holds another repository than target {}; its key slots are left alone",
                    primary.name()
                ),
            });
        }
        Err(Error::NotFound { .. }) => {
            return Err(Error::NoRepository {
                target: target.name().to_string(),
            });
        }
        Err(e) => return Err(e),
    }
    let path = slot_path(id);
    match primary.get_limited(&path, crate::limits::ReadLimit::KeySlot) {
        Ok(bytes) => target.put(&path, bytes),
        Err(Error::NotFound { .. }) => target.delete(&path),
        Err(e) => Err(e),
    }
}
