//! A repository in one target: opening it with a key, tenants and their keys,
//! and reading and writing its objects.

pub mod epochs;
pub mod holdings;
pub mod index;
pub mod keys;
pub mod packer;
pub mod rules;

use aes_gcm::Aes256Gcm;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::chunker::ChunkerParams;
use crate::crypto::{self, KeyMaterial, SecretKey};
use crate::error::{Error, Result};
use crate::format::index::IndexBody;
use crate::format::pack;
use crate::format::repo_config::{self, RepoConfig};
use crate::format::snapshot::{self, Snapshot};
use crate::format::tenant_key::{self, TenantKeyBody, TenantKeys, Wrap};
use crate::format::tree::Tree;
use crate::format::{Id, Kind, tenant_context};
use crate::layout::{self, tenant_key_path};
use crate::layout::{CONFIG_PATH, id_of_path, index_path, pack_path, snapshot_path, tenant_prefix};
use crate::limits::ReadLimit;
use crate::store::Store;
pub use epochs::{Epoch, RepoKeys};
pub use index::{BlobLocation, Index};

/// What opening a tenant does when it has no key yet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyMissing {
    Fail,
    Create,
}

/// Objects that could not be read, by id, each with why.
pub type Unreadable = Vec<(Id, Error)>;

/// One tenant's open keys.
pub struct Tenant {
    pub name: String,
    pub keys: TenantKeys,
    pub cipher: Aes256Gcm,
    /// Associated-data context of the tenant's objects: repo id | name.
    pub context: Vec<u8>,
}

impl Tenant {
    /// The id of a blob of this kind with this plaintext.
    pub fn blob_id(&self, kind: Kind, data: &[u8]) -> Id {
        let key = match kind {
            Kind::TreeBlob => &self.keys.tree_mac,
            _ => &self.keys.mac,
        };
        Id(crypto::keyed_id(key, data))
    }
}

pub struct Repository {
    pub store: Store,
    pub repo_id: [u8; 16],
    pub config: RepoConfig,
    master: SecretKey,
    /// The key slot that opened this repository.
    pub slot_in_use: String,
    keys: RepoKeys,
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
}

/// The tenants with a folder on a store, by name: each folder under
/// `tenants/` mapped back through `crate::tenant_name`. A folder gallra
/// never writes is no tenant, and is named in a warning.
pub fn tenant_names_on(store: &Store) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for folder in store.list_dirs(layout::TENANTS_FOLDER)? {
        match crate::tenant_name::from_component(&folder) {
            Some(name) => names.push(name),
            None => tracing::warn!(
                "target {}: folder tenants/{folder} is not a tenant folder gallra writes (FORMAT.md section 12); it is left alone",
                store.name()
            ),
        }
    }
    names.sort();
    Ok(names)
}

/// Checks that an object's bytes are what its name (their SHA-256) says.
pub fn check_named(path: &str, bytes: &[u8]) -> Result<()> {
    match id_of_path(path) {
        Some(id) if Id::of_bytes(bytes) == id => Ok(()),
        _ => Err(Error::corrupt(
            path,
            "content does not match its name (damaged object)",
        )),
    }
}

impl Repository {
    /// The repository on one target, opened with `key`.
    pub fn open_target(
        target: &crate::store::TargetSettings,
        key: &RepoKeys,
    ) -> Result<Repository> {
        Repository::open(crate::store::Store::open(target)?, key)
    }

    /// Creates a repository: a key slot for `key`, then the config object
    /// with a conditional create, so two agents never make two repositories.
    pub fn init(store: Store, key: &RepoKeys, chunker: ChunkerParams) -> Result<Repository> {
        store.check_reachable()?;
        match store.get_limited(CONFIG_PATH, ReadLimit::Config) {
            Ok(_) => {
                return Err(Error::AlreadyInitialised {
                    target: store.name().to_string(),
                });
            }
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let material = KeyMaterial::load(key)?;
        let repo_id: [u8; 16] = crypto::random_bytes();
        let master = SecretKey::random();
        let config = RepoConfig {
            chunk_min: chunker.min,
            chunk_avg: chunker.avg,
            chunk_max: chunker.max,
            created: jiff::Timestamp::now().as_second(),
        };
        let slot = keys::write_slot(&store, &repo_id, &master, &material)?;
        let bytes = repo_config::seal(&config, &master, &repo_id);
        if !store.put_new(CONFIG_PATH, Bytes::from(bytes))? {
            store.delete(&layout::slot_path(&slot))?;
            return Err(Error::AlreadyInitialised {
                target: store.name().to_string(),
            });
        }
        Ok(Repository {
            store,
            repo_id,
            config,
            master,
            slot_in_use: slot,
            keys: key.clone(),
            tenants: Mutex::default(),
        })
    }

    /// Opens a repository with the first key slot that `key` unlocks.
    pub fn open(store: Store, key: &RepoKeys) -> Result<Repository> {
        let config_bytes = match store.get_limited(CONFIG_PATH, ReadLimit::Config) {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => {
                return Err(Error::NotInitialised {
                    target: store.name().to_string(),
                });
            }
            Err(e) => return Err(e),
        };
        let repo_id = repo_config::repo_id(&config_bytes, CONFIG_PATH)?;
        let material = KeyMaterial::load(key)?;
        let (slot_in_use, master) =
            keys::unlock(&store, &repo_id, &material)?.ok_or_else(|| Error::WrongKey {
                target: store.name().to_string(),
                source_desc: key.describe(),
            })?;
        let config = repo_config::open(&config_bytes, &master, CONFIG_PATH)?;
        let params = ChunkerParams {
            min: config.chunk_min,
            avg: config.chunk_avg,
            max: config.chunk_max,
        };
        if !params.is_valid() {
            return Err(Error::corrupt(
                CONFIG_PATH,
                format!("chunker parameters {params:?} are out of range"),
            ));
        }
        Ok(Repository {
            store,
            repo_id,
            config,
            master,
            slot_in_use,
            keys: key.clone(),
            tenants: Mutex::default(),
        })
    }

    pub fn chunker_params(&self) -> ChunkerParams {
        ChunkerParams {
            min: self.config.chunk_min,
            avg: self.config.chunk_avg,
            max: self.config.chunk_max,
        }
    }

    pub(crate) fn master(&self) -> &SecretKey {
        &self.master
    }

    /// Tenants that have a folder in the repository.
    pub fn tenant_names(&self) -> Result<Vec<String>> {
        tenant_names_on(&self.store)
    }

    /// Opens a tenant's key; `NotFound` if the tenant has none.
    pub fn tenant(&self, name: &str) -> Result<Arc<Tenant>> {
        self.open_tenant(name, KeyMissing::Fail)
    }

    /// Opens a tenant's key, making one if the tenant is new (a conditional
    /// create: if another agent won the race, its key is used). Only a
    /// backup makes keys, after the lifecycle gate let the tenant in.
    pub fn tenant_or_create(&self, name: &str) -> Result<Arc<Tenant>> {
        self.open_tenant(name, KeyMissing::Create)
    }

    fn open_tenant(&self, name: &str, missing: KeyMissing) -> Result<Arc<Tenant>> {
        if let Some(t) = self.tenants.lock().expect("not poisoned").get(name) {
            return Ok(t.clone());
        }
        let path = tenant_key_path(name);
        let (bytes, body) = match self.store.get_limited(&path, ReadLimit::TenantKey) {
            Ok(b) => (b, None),
            Err(Error::NotFound { .. }) if missing == KeyMissing::Create => {
                let body = TenantKeyBody {
                    key: crypto::random_bytes(),
                    created: jiff::Timestamp::now().as_second(),
                };
                let sealed =
                    self.wrap_tenant_key(&body, name, self.epoch_for_new_keys()?.as_ref())?;
                self.store.put_new(&path, Bytes::from(sealed))?;
                (
                    self.store.get_limited(&path, ReadLimit::TenantKey)?,
                    Some(body),
                )
            }
            Err(e) => return Err(e),
        };
        let tenant = match self.open_tenant_key(name, &bytes) {
            Ok(t) => Arc::new(t),
            // A view of the past whose key of its time no longer opens (a
            // rotation since destroyed its epoch): the same root key,
            // rewrapped later, does.
            Err(e) if self.store.is_past() => {
                let later = self.store.later_key_versions(&path, ReadLimit::TenantKey)?;
                match later
                    .iter()
                    .find_map(|b| self.open_tenant_key(name, b).ok())
                {
                    Some(t) => Arc::new(t),
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if body.is_some() {
            self.follow_rotation(name, &bytes)?;
        }
        self.tenants
            .lock()
            .expect("not poisoned")
            .insert(name.to_string(), tenant.clone());
        Ok(tenant)
    }

    /// A tenant key object of `body`: wrapped by `epoch`, or by the
    /// master key in a repository without epochs.
    pub fn wrap_tenant_key(
        &self,
        body: &TenantKeyBody,
        name: &str,
        epoch: Option<&Epoch>,
    ) -> Result<Vec<u8>> {
        Ok(match epoch {
            Some(e) => {
                let key = self.unwrap_epoch(e)?;
                tenant_key::seal_under_epoch(body, &e.id, &key, &self.repo_id, name)
            }
            None => tenant_key::seal(body, &self.master, &self.repo_id, name),
        })
    }

    /// The epoch a new tenant key is wrapped by: the newest; with a key
    /// service and none yet (an `init` whose call to the service failed),
    /// a first one made now. Never the master key while a key service is
    /// configured: a copy of such a key would open with the key file for
    /// as long as the copy lives.
    fn epoch_for_new_keys(&self) -> Result<Option<Epoch>> {
        if let Some(e) = self.current_epoch()? {
            return Ok(Some(e));
        }
        if self.keys.service.is_none() {
            return Ok(None);
        }
        let (epoch, _) = self.make_epoch(None)?;
        self.write_epoch(&epoch)?;
        tracing::info!(
            "target {}: made key epoch {} (the repository had none)",
            self.store.name(),
            epoch.short()
        );
        // Another agent may have made one at the same moment: the newest
        // wraps, and the next rotation retires the other.
        Ok(self.current_epoch()?.or(Some(epoch)))
    }

    /// A key just made may have been wrapped by an epoch that a rotation
    /// running meanwhile is retiring, after the rotation looked at this
    /// tenant: the rotation would then destroy the only wrap of the key.
    /// So the maker looks again once its key is written, and rewraps it by
    /// the newest epoch if that is another. The rotation writes its epoch
    /// before it checks the tenants, so one of the two sees the other.
    fn follow_rotation(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = tenant_key_path(name);
        let Some(newest) = self.current_epoch()? else {
            return Ok(());
        };
        if tenant_key::wrapped_by(bytes, &path)? == Wrap::Epoch(newest.id) {
            return Ok(());
        }
        let body = self.open_tenant_key_body(name, bytes)?;
        let sealed = self.wrap_tenant_key(&body, name, Some(&newest))?;
        self.store.put(&path, Bytes::from(sealed))
    }

    /// The root key in a tenant key object, whatever wraps it.
    pub fn open_tenant_key_body(&self, name: &str, bytes: &[u8]) -> Result<TenantKeyBody> {
        let path = tenant_key_path(name);
        match tenant_key::wrapped_by(bytes, &path)? {
            Wrap::Master => Ok(tenant_key::open(
                bytes,
                &self.master,
                &self.repo_id,
                name,
                &path,
            )?),
            Wrap::Epoch(id) => {
                let key = self.epoch_key(&id)?;
                Ok(tenant_key::open_under_epoch(
                    bytes,
                    &key,
                    &self.repo_id,
                    name,
                    &path,
                )?)
            }
        }
    }

    /// Opens the bytes of a tenant's key object (`tenants/<name>/key`).
    /// Every reader of a tenant key, and ship, goes through here.
    pub fn open_tenant_key(&self, name: &str, bytes: &[u8]) -> Result<Tenant> {
        let body = self.open_tenant_key_body(name, bytes)?;
        let keys = TenantKeys::derive(&body.key, &self.repo_id);
        Ok(Tenant {
            name: name.to_string(),
            cipher: keys.data.cipher(),
            keys,
            context: tenant_context(&self.repo_id, name),
        })
    }

    /// Opens the bytes of an index object found at `path`: its name, then
    /// its seal. What `load_index` accepts, and so what ship copies.
    pub fn open_index(&self, tenant: &Tenant, path: &str, bytes: &[u8]) -> Result<IndexBody> {
        check_named(path, bytes)?;
        crate::format::index::open(bytes, &tenant.cipher, &tenant.context, path)
            .map_err(Error::from)
    }

    /// Loads every index object of a tenant into one in-memory index.
    pub fn load_index(&self, tenant: &Tenant) -> Result<Index> {
        let mut index = Index::default();
        for obj in self.store.list(&layout::index_folder(&tenant.name))? {
            // Index objects grow with the tenant: the listing's size is theirs.
            let bytes = self.store.get(&obj.path)?;
            index.add_body(&self.open_index(tenant, &obj.path, &bytes)?);
        }
        Ok(index)
    }

    /// Writes an index object (after its packs, before any snapshot using it).
    pub fn write_index(&self, tenant: &Tenant, body: &IndexBody) -> Result<Id> {
        let bytes = crate::format::index::seal(body, &tenant.cipher, &tenant.context);
        let id = Id::of_bytes(&bytes);
        self.store
            .put(&index_path(&tenant.name, &id), Bytes::from(bytes))?;
        Ok(id)
    }

    /// Writes a snapshot: the commit point of a backup.
    pub fn write_snapshot(&self, tenant: &Tenant, snap: &Snapshot) -> Result<Id> {
        let bytes = snapshot::seal(snap, &tenant.cipher, &tenant.context);
        let id = Id::of_bytes(&bytes);
        self.store
            .put(&snapshot_path(&tenant.name, &id), Bytes::from(bytes))?;
        Ok(id)
    }

    pub fn read_snapshot(&self, tenant: &Tenant, id: &Id) -> Result<Snapshot> {
        let path = snapshot_path(&tenant.name, id);
        let bytes = self.store.get_limited(&path, ReadLimit::Snapshot)?;
        self.open_snapshot(tenant, &path, &bytes)
    }

    /// Opens the bytes of a snapshot object found at `path`: its name, its
    /// seal and its tenant. What `read_snapshot` accepts, and so what ship
    /// copies.
    pub fn open_snapshot(&self, tenant: &Tenant, path: &str, bytes: &[u8]) -> Result<Snapshot> {
        check_named(path, bytes)?;
        let snap = snapshot::open(bytes, &tenant.cipher, &tenant.context, path)?;
        if snap.tenant != tenant.name {
            return Err(Error::corrupt(
                path,
                format!("snapshot names tenant {:?}, not its folder's", snap.tenant),
            ));
        }
        Ok(snap)
    }

    /// Every snapshot of a tenant, oldest first. Fails at the first that
    /// cannot be read: for callers that must know them all (prune, which
    /// would otherwise delete what an unread snapshot references).
    pub fn snapshots(&self, tenant: &Tenant) -> Result<Vec<(Id, Snapshot)>> {
        let (out, mut unreadable) = self.readable_snapshots(tenant)?;
        match unreadable.is_empty() {
            true => Ok(out),
            false => Err(unreadable.swap_remove(0).1),
        }
    }

    /// Every snapshot of a tenant that can be read, oldest first, and the
    /// ids of those that cannot with why: one damaged object is reported,
    /// not a reason to hide the others. Fails only when the tenant's
    /// snapshots cannot be listed.
    pub fn readable_snapshots(&self, tenant: &Tenant) -> Result<(Vec<(Id, Snapshot)>, Unreadable)> {
        let (mut out, mut unreadable) = (Vec::new(), Vec::new());
        for obj in self.store.list(&layout::snapshots_folder(&tenant.name))? {
            let Some(id) = id_of_path(&obj.path) else {
                continue;
            };
            match self.read_snapshot(tenant, &id) {
                Ok(snap) => out.push((id, snap)),
                // Deleted since it was listed (a lifecycle run beside this
                // one): gone, not unreadable. The agent's test saw
                // `snapshots` fail on exactly this while it applied.
                Err(Error::NotFound { .. }) => {}
                Err(e) => unreadable.push((id, e)),
            }
        }
        out.sort_by_key(|(id, s)| (s.time_secs, s.time_nanos, *id));
        Ok((out, unreadable))
    }

    /// Finds a snapshot by id or unique hex prefix (at least 4 digits) across
    /// all tenants.
    pub fn find_snapshot(&self, prefix: &str) -> Result<(Arc<Tenant>, Id)> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.len() < 4 || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Usage(format!(
                "{prefix:?} is not a snapshot id (give at least 4 hex digits)"
            )));
        }
        let mut found = Vec::new();
        for tenant in self.tenant_names()? {
            for obj in self.store.list(&layout::snapshots_folder(&tenant))? {
                if let Some(id) = id_of_path(&obj.path)
                    && id.to_hex().starts_with(&prefix)
                {
                    found.push((tenant.clone(), id));
                }
            }
        }
        match found.len() {
            0 => Err(Error::SnapshotNotFound(prefix)),
            1 => {
                let (tenant, id) = found.remove(0);
                Ok((self.tenant(&tenant)?, id))
            }
            _ => Err(Error::AmbiguousSnapshot {
                prefix,
                candidates: found
                    .iter()
                    .map(|(t, id)| format!("{} ({t})", id.short()))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Reads, authenticates and decompresses one blob.
    pub fn read_blob(
        &self,
        tenant: &Tenant,
        index: &Index,
        id: &Id,
        kind: Kind,
    ) -> Result<Vec<u8>> {
        let loc = index.get(id).ok_or_else(|| {
            Error::corrupt(
                tenant_prefix(&tenant.name),
                format!("{} {} is in no index (missing)", kind.name(), id.to_hex()),
            )
        })?;
        let pack_id = index.pack_id(loc);
        let path = pack_path(&tenant.name, &pack_id);
        let sealed = self
            .store
            .get_range(&path, loc.offset..loc.offset + u64::from(loc.length))?;
        if sealed.len() != loc.length as usize {
            return Err(Error::corrupt(&path, "truncated pack"));
        }
        Ok(pack::open_blob(&tenant.cipher, kind, id, &sealed, &path)?)
    }

    /// Reads many blobs of one kind with as few requests as it can: blobs
    /// of one pack that lie close together come in one ranged read. For
    /// remote targets, where each request costs a round trip. Returns the
    /// plaintexts in the order of `ids`.
    pub fn read_blobs(
        &self,
        tenant: &Tenant,
        index: &Index,
        ids: &[Id],
        kind: Kind,
    ) -> Result<Vec<Vec<u8>>> {
        // Bytes between two wanted blobs read rather than split the request,
        // and the most one request reads.
        const GAP: u64 = 256 << 10;
        const SPAN: u64 = 32 << 20;
        let mut wanted: Vec<(Id, u64, u32, usize)> = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let loc = index.get(id).ok_or_else(|| {
                Error::corrupt(
                    tenant_prefix(&tenant.name),
                    format!("{} {} is in no index (missing)", kind.name(), id.to_hex()),
                )
            })?;
            wanted.push((index.pack_id(loc), loc.offset, loc.length, i));
        }
        wanted.sort_by_key(|w| (w.0, w.1));
        let mut out: Vec<Option<Vec<u8>>> = vec![None; ids.len()];
        let mut start = 0;
        while start < wanted.len() {
            let (pack_id, from, _, _) = wanted[start];
            let mut end = start;
            let mut to = from + u64::from(wanted[start].2);
            while let Some(&(p, off, len, _)) = wanted.get(end + 1) {
                let next_to = (off + u64::from(len)).max(to);
                if p != pack_id || off > to + GAP || next_to - from > SPAN {
                    break;
                }
                to = next_to;
                end += 1;
            }
            let path = pack_path(&tenant.name, &pack_id);
            let span = self.store.get_range(&path, from..to)?;
            if span.len() as u64 != to - from {
                return Err(Error::corrupt(&path, "truncated pack"));
            }
            for &(_, off, len, i) in &wanted[start..=end] {
                let at = (off - from) as usize;
                let sealed = &span[at..at + len as usize];
                out[i] = Some(pack::open_blob(
                    &tenant.cipher,
                    kind,
                    &ids[i],
                    sealed,
                    &path,
                )?);
            }
            start = end + 1;
        }
        Ok(out
            .into_iter()
            .map(|b| b.expect("every blob read"))
            .collect())
    }

    pub fn read_tree(&self, tenant: &Tenant, index: &Index, id: &Id) -> Result<Tree> {
        let bytes = self.read_blob(tenant, index, id, Kind::TreeBlob)?;
        Ok(Tree::decode(&bytes, &format!("tree {}", id.to_hex()))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeySource;

    pub(crate) fn memory_repo() -> (Repository, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        crypto::generate_key_file(&key).unwrap();
        let store = crate::store::memory();
        let repo = Repository::init(
            store,
            &KeySource::File(key).into(),
            ChunkerParams::default(),
        )
        .unwrap();
        (repo, dir)
    }

    #[test]
    fn init_open_and_wrong_key() {
        let (repo, dir) = memory_repo();
        let store = repo.store.clone();
        let key: RepoKeys = KeySource::File(dir.path().join("key")).into();
        let again = Repository::open(store.clone(), &key).unwrap();
        assert_eq!(again.repo_id, repo.repo_id);
        assert_eq!(again.config, repo.config);
        let other = dir.path().join("other");
        crypto::generate_key_file(&other).unwrap();
        let err = Repository::open(store.clone(), &KeySource::File(other).into())
            .err()
            .unwrap();
        assert!(matches!(err, Error::WrongKey { .. }), "{err}");
        assert!(matches!(
            Repository::init(store, &key, ChunkerParams::default())
                .err()
                .unwrap(),
            Error::AlreadyInitialised { .. }
        ));
    }

    #[test]
    fn tenant_keys_are_stable_and_distinct() {
        let (repo, dir) = memory_repo();
        let a = repo.tenant_or_create("acme").unwrap();
        let b = repo.tenant_or_create("beta").unwrap();
        assert_ne!(
            a.blob_id(Kind::DataBlob, b"x"),
            b.blob_id(Kind::DataBlob, b"x")
        );
        assert_ne!(
            a.blob_id(Kind::DataBlob, b"x"),
            a.blob_id(Kind::TreeBlob, b"x")
        );
        let reopened = Repository::open(
            repo.store.clone(),
            &KeySource::File(dir.path().join("key")).into(),
        )
        .unwrap();
        let a2 = reopened.tenant("acme").unwrap();
        assert_eq!(
            a.blob_id(Kind::DataBlob, b"x"),
            a2.blob_id(Kind::DataBlob, b"x")
        );
        assert!(reopened.tenant("nobody").is_err());
    }
}
