//! Key epochs (format version 2, docs/FORMAT.md section 11.4): the keys
//! that wrap tenant keys when a key service holds them, so that destroying
//! an epoch in the service shreds every copy of every tenant key it wrapped.
//!
//! `RepoKeys` is what opens a repository: the key source of its master key
//! and, if configured, the key service. Its service client and the epoch
//! keys it decrypted are shared by every repository a process opens with
//! it: one `Decrypt` per epoch per process, whatever the number of targets.

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Repository;
use crate::crypto::{KeySource, SecretKey};
use crate::error::{Error, Result};
use crate::format::key_epoch::{self, KeyEpochBody};
use crate::keyservice::{KeyService, KeyServiceSettings, ServiceKeyState};
use crate::layout;
use crate::limits::ReadLimit;

/// What opens a repository: the master key's source and the key service.
#[derive(Clone)]
pub struct RepoKeys {
    pub master: KeySource,
    pub service: Option<KeyServiceSettings>,
    client: Arc<Mutex<Option<Arc<KeyService>>>>,
    epoch_keys: Arc<Mutex<EpochKeys>>,
}

/// Each epoch key by epoch id, with when the service last said its key is
/// enabled.
type EpochKeys = HashMap<[u8; 16], (Arc<SecretKey>, Instant)>;

/// How long an epoch key is used before the service is asked again whether
/// it still may be: a long-running agent stops using an epoch that another
/// process's rotation destroyed within this.
const EPOCH_KEY_TRUST: Duration = Duration::from_secs(15 * 60);

impl RepoKeys {
    pub fn new(master: KeySource, service: Option<KeyServiceSettings>) -> RepoKeys {
        RepoKeys {
            master,
            service,
            client: Arc::default(),
            epoch_keys: Arc::default(),
        }
    }

    /// The key service client, made on first use.
    pub fn client(&self) -> Result<Arc<KeyService>> {
        let Some(settings) = &self.service else {
            return Err(Error::KeyServiceConfig {
                message: "not configured: this repository's tenant keys are wrapped by key epochs that a key service holds; add the [key_service] table (docs/SECURITY.md)".into(),
            });
        };
        let mut client = self.client.lock().expect("not poisoned");
        if let Some(c) = client.as_ref() {
            return Ok(c.clone());
        }
        let made = Arc::new(KeyService::new(settings)?);
        *client = Some(made.clone());
        Ok(made)
    }

    pub(crate) fn remember(&self, id: [u8; 16], key: Arc<SecretKey>) {
        self.epoch_keys
            .lock()
            .expect("not poisoned")
            .insert(id, (key, Instant::now()));
    }

    pub(crate) fn remembered(&self, id: &[u8; 16]) -> Option<Arc<SecretKey>> {
        let mut keys = self.epoch_keys.lock().expect("not poisoned");
        match keys.get(id) {
            Some((k, at)) if at.elapsed() < EPOCH_KEY_TRUST => Some(k.clone()),
            Some(_) => {
                keys.remove(id);
                None
            }
            None => None,
        }
    }

    /// Forgets an epoch's key: after a rotation destroyed it, nothing in
    /// this process wraps with it again.
    pub(crate) fn forget(&self, id: &[u8; 16]) {
        self.epoch_keys.lock().expect("not poisoned").remove(id);
    }
}

/// The master key's source describes the keys (messages, `key` commands).
impl std::ops::Deref for RepoKeys {
    type Target = KeySource;
    fn deref(&self) -> &KeySource {
        &self.master
    }
}

impl From<KeySource> for RepoKeys {
    fn from(master: KeySource) -> RepoKeys {
        RepoKeys::new(master, None)
    }
}

impl std::fmt::Debug for RepoKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoKeys")
            .field("master", &self.master)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// One key epoch as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoch {
    pub id: [u8; 16],
    pub body: KeyEpochBody,
}

impl Epoch {
    /// Epochs are ordered by creation, then id: the newest wraps new keys.
    pub fn order(&self) -> (i64, [u8; 16]) {
        (self.body.created, self.id)
    }

    pub fn short(&self) -> String {
        hex::encode(&self.id[..4])
    }

    pub fn path(&self) -> String {
        layout::key_epoch_path(&self.id)
    }
}

fn service_context(repo_id: &[u8; 16], epoch_id: &[u8; 16]) -> BTreeMap<String, String> {
    key_epoch::service_context(repo_id, epoch_id)
        .into_iter()
        .collect()
}

impl Repository {
    /// Every key epoch on this target, oldest first.
    pub fn epochs(&self) -> Result<Vec<Epoch>> {
        let mut out = Vec::new();
        for obj in self.store.list(layout::KEY_EPOCHS_FOLDER)? {
            if layout::key_epoch_id_of_path(&obj.path).is_none() {
                continue;
            }
            let bytes = match self.store.get_limited(&obj.path, ReadLimit::TenantKey) {
                Ok(b) => b,
                // Retired by a rotation since it was listed.
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            match self.open_epoch(&obj.path, &bytes) {
                Ok(e) => out.push(e),
                // A view of the past offers epochs made after its time;
                // one that does not open (written by someone without the
                // master key) is not the repository's.
                Err(e) if self.store.is_past() => {
                    tracing::warn!("{e}; skipped in the view of the past");
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(Epoch::order);
        Ok(out)
    }

    /// Opens the bytes of a key-epoch object found at `path`.
    pub fn open_epoch(&self, path: &str, bytes: &[u8]) -> Result<Epoch> {
        let name = format!("target {}: {path}", self.store.name());
        let (id, body) = key_epoch::open(bytes, self.master(), &self.repo_id, &name)?;
        if layout::key_epoch_path(&id) != path {
            return Err(Error::corrupt(
                name,
                format!(
                    "holds key epoch {}, not the one its name says",
                    hex::encode(id)
                ),
            ));
        }
        Ok(Epoch { id, body })
    }

    /// The epoch that wraps new tenant keys: the newest.
    pub fn current_epoch(&self) -> Result<Option<Epoch>> {
        Ok(self.epochs()?.pop())
    }

    /// The key of epoch `id`, from the key service (once per process).
    pub fn epoch_key(&self, id: &[u8; 16]) -> Result<Arc<SecretKey>> {
        if let Some(k) = self.keys.remembered(id) {
            return Ok(k);
        }
        let path = layout::key_epoch_path(id);
        let bytes = match self.store.get_limited(&path, ReadLimit::TenantKey) {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => {
                return Err(Error::EpochGone {
                    target: self.store.name().to_string(),
                    epoch: hex::encode(&id[..4]),
                });
            }
            Err(e) => return Err(e),
        };
        let epoch = self.open_epoch(&path, &bytes)?;
        self.unwrap_epoch(&epoch)
    }

    /// Asks the key service for an epoch's key.
    pub fn unwrap_epoch(&self, epoch: &Epoch) -> Result<Arc<SecretKey>> {
        if let Some(k) = self.keys.remembered(&epoch.id) {
            return Ok(k);
        }
        let client = self.keys.client()?;
        let unusable = |e: Error| Error::EpochUnusable {
            target: self.store.name().to_string(),
            epoch: epoch.short(),
            source: Box::new(e),
        };
        // AWS refuses to decrypt under a key pending deletion; a service
        // that would not (moto's) is not asked: a destroyed epoch is
        // destroyed for gallra whatever the service does with its key.
        match client.describe_key(&epoch.body.key_id).map_err(unusable)? {
            ServiceKeyState::Enabled => {}
            ServiceKeyState::PendingDeletion { deletion } => {
                return Err(unusable(Error::Refused(format!(
                    "its service key {} is pending deletion{}: a rotation destroyed this epoch, and nothing it wrapped opens again",
                    epoch.body.key_id,
                    deletion
                        .map(|t| format!(" (deleted for good by {t})"))
                        .unwrap_or_default()
                ))));
            }
            ServiceKeyState::Other(state) => {
                return Err(unusable(Error::Refused(format!(
                    "its service key {} is {state}, not enabled",
                    epoch.body.key_id
                ))));
            }
        }
        let plain = client
            .decrypt(
                &epoch.body.key_id,
                &epoch.body.wrapped,
                &service_context(&self.repo_id, &epoch.id),
            )
            .map_err(unusable)?;
        let key = Arc::new(SecretKey::from_bytes(*plain));
        self.keys.remember(epoch.id, key.clone());
        Ok(key)
    }

    /// Makes a new epoch in the key service (a service key of its own, and a
    /// data key under it) and returns it with its key; writes nothing. Its
    /// time is the clock's, whatever time a lifecycle run plans for, and
    /// later than `after` (the newest epoch's): epochs are ordered by it,
    /// and a new one made within the second of the last must still be the
    /// newest.
    pub fn make_epoch(&self, after: Option<&Epoch>) -> Result<(Epoch, Arc<SecretKey>)> {
        let created = match after {
            Some(e) => jiff::Timestamp::now().as_second().max(e.body.created + 1),
            None => jiff::Timestamp::now().as_second(),
        };
        let client = self.keys.client()?;
        let id: [u8; 16] = crate::crypto::random_bytes();
        let key_id = client.create_key(&format!(
            "gallra repository {} key epoch {}",
            hex::encode(self.repo_id),
            hex::encode(id)
        ))?;
        let (plain, wrapped) =
            client.generate_data_key(&key_id, &service_context(&self.repo_id, &id))?;
        let epoch = Epoch {
            id,
            body: KeyEpochBody {
                service: crate::keyservice::AWS_KMS.into(),
                key_id,
                wrapped,
                created,
            },
        };
        let key = Arc::new(SecretKey::from_bytes(*plain));
        self.keys.remember(id, key.clone());
        Ok((epoch, key))
    }

    /// Writes an epoch object to this target (a conditional create: an
    /// epoch is never rewritten). True if it was written or is there.
    pub fn write_epoch(&self, epoch: &Epoch) -> Result<()> {
        let bytes = key_epoch::seal(&epoch.body, &epoch.id, self.master(), &self.repo_id);
        if !self.store.put_new(&epoch.path(), Bytes::from(bytes))? {
            // Written by an earlier, interrupted run of the same rotation.
            let there = self
                .store
                .get_limited(&epoch.path(), ReadLimit::TenantKey)?;
            if self.open_epoch(&epoch.path(), &there)? != *epoch {
                return Err(Error::corrupt(
                    format!("target {}: {}", self.store.name(), epoch.path()),
                    "another key epoch with the same id",
                ));
            }
        }
        Ok(())
    }

    pub fn keys(&self) -> &RepoKeys {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    //! The version 2 objects of `tests/fixtures/repo-v2/`, beside the
    //! version 1 fixture repository they belong to: a key epoch, and tenant
    //! acme's key wrapped by it. The epoch key, which only a key service
    //! holds in a real repository, is checked in beside them
    //! (`epoch-key.hex`) so that the bytes can be opened without one. If
    //! this fails after a change, the change altered format version 2.

    use super::*;
    use crate::crypto::KeySource;
    use crate::format::tenant_key::{self, Wrap};
    use crate::store::{Store, TargetSettings};
    use std::path::{Path, PathBuf};

    const EPOCH: &str = "6766697874757265657061636830303a";

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    /// The v1 fixture repository, opened with its key file (copied to a
    /// 0600 file, as keys must be).
    fn fixture_repo(tmp: &tempfile::TempDir) -> Repository {
        use std::os::unix::fs::PermissionsExt;
        let key = tmp.path().join("key");
        std::fs::copy(fixtures().join("repo-v1.key"), &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let url = format!("file://{}", fixtures().join("repo-v1").display());
        let store = Store::open(&TargetSettings::new("fixture", &url)).unwrap();
        Repository::open(store, &KeySource::File(key).into()).unwrap()
    }

    fn epoch_key() -> SecretKey {
        let text = std::fs::read_to_string(fixtures().join("repo-v2/epoch-key.hex")).unwrap();
        SecretKey::from_bytes(hex::decode(text.trim()).unwrap().try_into().unwrap())
    }

    #[test]
    fn the_version_2_fixture_objects_open_and_hold_acmes_root_key() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = fixture_repo(&tmp);
        let v2 = fixtures().join("repo-v2");
        let path = format!("key-epochs/{EPOCH}");
        let epoch = repo
            .open_epoch(&path, &std::fs::read(v2.join(&path)).unwrap())
            .unwrap();
        assert_eq!(hex::encode(epoch.id), EPOCH);
        assert_eq!(epoch.body.service, "aws-kms");
        assert_eq!(epoch.body.key_id, "fixture-service-key");
        assert_eq!(epoch.body.created, 1_796_000_000);
        assert_eq!(epoch.body.wrapped, b"the service's ciphertext".to_vec());

        let v2_key = std::fs::read(v2.join("tenants/acme/key")).unwrap();
        assert_eq!(&v2_key[..6], b"GLRA\x02\x03");
        assert_eq!(
            tenant_key::wrapped_by(&v2_key, "k").unwrap(),
            Wrap::Epoch(epoch.id)
        );
        let opened =
            tenant_key::open_under_epoch(&v2_key, &epoch_key(), &repo.repo_id, "acme", "k")
                .unwrap();
        let v1_key = repo.store.get(&layout::tenant_key_path("acme")).unwrap();
        let v1 = repo.open_tenant_key_body("acme", &v1_key).unwrap();
        assert_eq!(
            opened.key, v1.key,
            "the same root key, wrapped by the epoch"
        );
        assert_eq!(opened.created, v1.created);
        assert!(
            tenant_key::open(&v2_key, repo.master(), &repo.repo_id, "acme", "k").is_err(),
            "the master key never opens a version 2 tenant key"
        );
    }

    /// The recipe of `tests/fixtures/repo-v2/`. Run as a test it writes the
    /// objects to a temporary folder and checks that they open as the
    /// checked-in ones do; `GALLRA_WRITE_FIXTURE=1 cargo nextest run --lib
    /// the_version_2_fixture_recipe` writes them over the fixture (new
    /// nonces, same contents).
    #[test]
    fn the_version_2_fixture_recipe_makes_objects_that_open() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = fixture_repo(&tmp);
        let v2 = match std::env::var_os("GALLRA_WRITE_FIXTURE") {
            Some(_) => fixtures().join("repo-v2"),
            None => tmp.path().join("repo-v2"),
        };
        let epoch = Epoch {
            id: hex::decode(EPOCH).unwrap().try_into().unwrap(),
            body: KeyEpochBody {
                service: "aws-kms".into(),
                key_id: "fixture-service-key".into(),
                wrapped: b"the service's ciphertext".to_vec(),
                created: 1_796_000_000,
            },
        };
        let key = SecretKey::random();
        std::fs::create_dir_all(v2.join("key-epochs")).unwrap();
        std::fs::create_dir_all(v2.join("tenants/acme")).unwrap();
        std::fs::write(
            v2.join(epoch.path()),
            key_epoch::seal(&epoch.body, &epoch.id, repo.master(), &repo.repo_id),
        )
        .unwrap();
        let v1_key = repo.store.get(&layout::tenant_key_path("acme")).unwrap();
        let body = repo.open_tenant_key_body("acme", &v1_key).unwrap();
        std::fs::write(
            v2.join("tenants/acme/key"),
            tenant_key::seal_under_epoch(&body, &epoch.id, &key, &repo.repo_id, "acme"),
        )
        .unwrap();
        std::fs::write(
            v2.join("epoch-key.hex"),
            format!("{}\n", hex::encode(key.as_bytes())),
        )
        .unwrap();
        let made = repo
            .open_epoch(
                &epoch.path(),
                &std::fs::read(v2.join(epoch.path())).unwrap(),
            )
            .unwrap();
        assert_eq!(made, epoch);
        let wrapped = std::fs::read(v2.join("tenants/acme/key")).unwrap();
        let opened =
            tenant_key::open_under_epoch(&wrapped, &key, &repo.repo_id, "acme", "k").unwrap();
        assert_eq!(opened.key, body.key);
    }
}
