//! Targets: a repository's home in an object store, through `object_store`.
//!
//! The engine above is synchronous (CPU-bound work runs on rayon and plain
//! threads); this module owns the tokio runtime every store call runs on and
//! turns each call into a blocking one, so that no module above knows about
//! async (the agent's HTTP server has its own runtime). Every error names the
//! target and the object. What every request goes through (limits, retries,
//! counters) is `requests`; what a store is opened with is `settings`.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{
    GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart,
};
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use tokio::runtime::Runtime;

use crate::error::{Error, Result};

mod remote;
mod requests;
mod s3api;
mod settings;
mod versions;

pub use requests::StoreStats;
use requests::{Failed, Failure, Requests, describe, http_status};
pub use s3api::{BucketLock, BucketVersioning};
pub use settings::{
    Deletions, LockMode, Locking, NoncurrentExpiry, ObjectLock, StoreLimits, TargetSettings,
};
pub use versions::{Hidden, KeyChoice, PutBack, RevertPlan};

/// Objects at least this large are uploaded in parts, so that a failed
/// request repeats one part rather than the whole object, and parts travel
/// in parallel. Default packs (16 MiB) stay below it: one PUT is cheaper.
pub const MULTIPART_THRESHOLD: usize = 32 << 20;
const MULTIPART_PART: usize = 16 << 20;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gallra-io")
            .enable_all()
            .build()
            .expect("tokio runtime starts")
    })
}

/// Runs a future on the store's runtime, from blocking code: the other
/// network clients (the key service) share its threads.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// An object listed in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: String,
    pub size: u64,
}

#[derive(Clone)]
pub struct Store {
    name: String,
    inner: Arc<dyn ObjectStore>,
    /// For `file://` targets, the same store, used to read objects with
    /// plain `pread` on the calling thread: restore and check read tens of
    /// thousands of small ranges, and a hop through the runtime's blocking
    /// pool for each cost more than the read itself.
    local: Option<Arc<LocalFileSystem>>,
    requests: Arc<Requests>,
    locking: Locking,
    /// For S3 targets, the calls object_store does not make.
    s3: Option<Arc<s3api::S3Api>>,
    /// Object Lock on what is written (`lock`; only on S3 targets).
    lock: Option<ObjectLock>,
    /// Set by `as_of`: every read sees the versions current at a time, and
    /// nothing is written.
    view: Option<Arc<AsOf>>,
    deletions: Deletions,
    /// Per tenant folder (`tenants/<t>`) or snapshot object, the least a
    /// version written there is locked until (`lock_at_least`).
    lock_floor: Arc<std::sync::Mutex<std::collections::HashMap<String, jiff::Timestamp>>>,
}

/// The objects of an S3 target as they were at `at`: for each name, the
/// newest version written at or before `at`, unless that is a deletion.
struct AsOf {
    at: jiff::Timestamp,
    objects: std::collections::BTreeMap<String, (String, u64)>,
    /// For the key objects (tenant keys, key epochs): the versions written
    /// after `at`, newest first. A rotation since `at` rewrapped the
    /// tenant keys under an epoch made after it and destroyed the epoch of
    /// `at`: the keys of `at` open no more, their rewrapped versions do.
    later_keys: std::collections::BTreeMap<String, Vec<String>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.name)
    }
}

/// Checks a target's URL and options as `Store::open` would, without
/// reading credentials, creating folders or making a request.
pub fn check_target(target: &TargetSettings) -> Result<()> {
    let conf_err = |message: String| Error::TargetConfig {
        target: target.name.clone(),
        message,
    };
    let url =
        url::Url::parse(&target.url).map_err(|e| conf_err(format!("url {:?}: {e}", target.url)))?;
    match url.scheme() {
        "file" | "memory" => {
            if let Some(key) = target.options.keys().next() {
                return Err(conf_err(format!(
                    "option {key:?} is not known for a {}:// target",
                    url.scheme()
                )));
            }
            if target.credentials_file.is_some() {
                return Err(conf_err(format!(
                    "credentials_file means nothing for a {}:// target",
                    url.scheme()
                )));
            }
            if url.scheme() == "file" && url.to_file_path().is_err() {
                return Err(conf_err(format!("url {:?}: not a local path", target.url)));
            }
            Ok(())
        }
        "s3" | "s3a" | "az" | "azure" | "abfs" | "abfss" | "gs" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(conf_err(format!(
                    "url {:?}: name the bucket or container, as in s3://bucket/prefix",
                    target.url
                )));
            }
            remote::check_options(target, url.scheme())
        }
        other => Err(conf_err(format!(
            "scheme {other}:// is not supported (file, memory, s3, az, gs)"
        ))),
    }
}

/// What is wrong with a target's credentials file (missing, unreadable,
/// readable by others, or a line that is not `KEY=value` with a known key),
/// read as `Store::open` would and naming lines by number only.
pub fn credentials_file_problem(target: &TargetSettings) -> Option<String> {
    let path = target.credentials_file.as_ref()?;
    let scheme = url::Url::parse(&target.url).ok()?.scheme().to_string();
    remote::read_credentials_file(&target.name, path, &scheme)
        .err()
        .map(|e| e.to_string())
}

/// Whether opening a `file://` target may make its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    Existing,
    Create,
}

impl Store {
    /// Opens a target that holds a repository: a missing `file://` folder
    /// is `Error::NotInitialised`, not made.
    pub fn open(target: &TargetSettings) -> Result<Store> {
        Store::open_as(target, OpenMode::Existing)
    }

    /// Opens a target, making a missing `file://` folder (for `init`, and
    /// the copy a ship or repair writes).
    pub fn open_or_create(target: &TargetSettings) -> Result<Store> {
        Store::open_as(target, OpenMode::Create)
    }

    fn open_as(target: &TargetSettings, mode: OpenMode) -> Result<Store> {
        let err = |message: String| Error::Store {
            target: target.name.clone(),
            object: target.url.clone(),
            message,
        };
        let conf_err = |message: String| Error::TargetConfig {
            target: target.name.clone(),
            message,
        };
        check_target(target)?;
        let url = url::Url::parse(&target.url)
            .map_err(|e| conf_err(format!("url {:?}: {e}", target.url)))?;
        let mut local = None;
        let mut s3 = None;
        let inner: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|()| err("not a local path".into()))?;
                if mode == OpenMode::Create {
                    std::fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
                } else if !dir.is_dir() {
                    return Err(Error::NotInitialised {
                        target: target.name.clone(),
                    });
                }
                let fs = Arc::new(
                    LocalFileSystem::new_with_prefix(&dir)
                        .map_err(|e| err(e.to_string()))?
                        .with_automatic_cleanup(true)
                        .with_fsync(true),
                );
                local = Some(fs.clone());
                fs
            }
            "memory" => Arc::new(InMemory::new()),
            "s3" | "s3a" | "az" | "azure" | "abfs" | "abfss" | "gs" => {
                let built = remote::build(target, &url)?;
                s3 = built.s3;
                built.store
            }
            other => {
                return Err(conf_err(format!(
                    "scheme {other}:// is not supported (file, memory, s3, az, gs)"
                )));
            }
        };
        Ok(Store {
            name: target.name.clone(),
            inner,
            local,
            requests: Arc::new(Requests::new(target.limits)),
            locking: target.locking,
            lock: target.lock.filter(|_| s3.is_some()),
            s3,
            view: None,
            deletions: target.deletions,
            lock_floor: Default::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this target's tenants are locked (see `crate::lock`). A
    /// view of the past takes no locks: it writes nothing, and what it
    /// reads no job can change.
    pub fn locking(&self) -> Locking {
        match self.view {
            Some(_) => Locking::None,
            None => self.locking,
        }
    }

    /// This target as it was at `at`: every read gets the version of each
    /// object that was current then (S3's version listing, once), objects
    /// written later are not there and objects deleted later are; nothing
    /// can be written through it. For recovery after an attack that
    /// overwrote or deleted objects (docs/IMMUTABLE.md).
    pub fn as_of(&self, at: jiff::Timestamp) -> Result<Store> {
        let (_, versions) = self.all_versions("--as-of")?;
        let mut objects: std::collections::BTreeMap<String, (String, u64)> =
            versions::newest_at(&versions, at)
                .into_iter()
                .filter(|(_, v)| !v.deleted)
                .map(|(k, v)| (k.to_string(), (v.version.clone(), v.size)))
                .collect();
        let mut later_keys: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for v in versions
            .iter()
            .filter(|v| v.modified > at && !v.deleted && crate::layout::is_key_object(&v.key))
        {
            later_keys
                .entry(v.key.clone())
                .or_default()
                .push(v.version.clone());
        }
        // An epoch made after `at` is part of the past's keys: a tenant key
        // rewrapped since needs it (it is named by its id, and a reader
        // that cannot open one skips it).
        for (key, later) in &later_keys {
            if crate::layout::is_under(key, crate::layout::KEY_EPOCHS_FOLDER)
                && !objects.contains_key(key)
                && let Some(v) = versions
                    .iter()
                    .find(|v| &v.key == key && v.version == later[0])
            {
                objects.insert(key.clone(), (v.version.clone(), v.size));
            }
        }
        let mut past = self.clone();
        past.view = Some(Arc::new(AsOf {
            at,
            objects,
            later_keys,
        }));
        Ok(past)
    }

    /// Whether this is a view of the past (`as_of`).
    pub fn is_past(&self) -> bool {
        self.view.is_some()
    }

    /// In a view of the past: the versions of key object `path` written
    /// after its time, newest first, each read with `limit` (see
    /// `AsOf::later_keys`). Empty otherwise.
    pub fn later_key_versions(
        &self,
        path: &str,
        limit: crate::limits::ReadLimit,
    ) -> Result<Vec<Bytes>> {
        let Some(versions) = self.view.as_ref().and_then(|v| v.later_keys.get(path)) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(versions.len());
        for version in versions {
            let bytes = self.get_remote(path, Some(version.clone()))?;
            if bytes.len() as u64 <= limit.bytes() {
                self.count_download(bytes.len());
                out.push(bytes);
            }
        }
        Ok(out)
    }

    /// The version to read of `path` in a view of the past (`None`: the
    /// current one); a name the past did not have is not found.
    fn version_to_read(&self, path: &str) -> Result<Option<String>> {
        let Some(view) = &self.view else {
            return Ok(None);
        };
        match view.objects.get(path) {
            Some((version, _)) => Ok(Some(version.clone())),
            None => Err(Error::NotFound {
                target: self.name.clone(),
                object: path.to_string(),
            }),
        }
    }

    /// Refuses a write through a view of the past.
    fn writable(&self, path: &str) -> Result<()> {
        match &self.view {
            None => Ok(()),
            Some(view) => Err(Error::Store {
                target: self.name.clone(),
                object: path.to_string(),
                message: format!(
                    "read as it was at {}: nothing is written through it",
                    view.at
                ),
            }),
        }
    }

    /// Whether the target is a folder on this machine.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    pub fn stats(&self) -> StoreStats {
        self.requests.stats()
    }

    /// Runs one store operation through the target's request limits,
    /// retries and counters (`Requests::call`).
    async fn call<T, F, Fut>(&self, upload: u64, op: F) -> std::result::Result<T, Failed>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        self.requests.call(&self.name, upload, op).await
    }

    fn fail(&self, object: &str, f: Failed) -> Error {
        let after = if f.attempts > 1 {
            format!(" (after {} attempts)", f.attempts)
        } else {
            String::new()
        };
        match f.failure {
            Failure::Store(object_store::Error::NotFound { .. }) => Error::NotFound {
                target: self.name.clone(),
                object: object.to_string(),
            },
            Failure::Store(e) => Error::Store {
                target: self.name.clone(),
                object: object.to_string(),
                message: format!("{}{after}", describe(&e)),
            },
            Failure::Timeout(t) => Error::Store {
                target: self.name.clone(),
                object: object.to_string(),
                message: format!("no answer within {t:?}{after}"),
            },
        }
    }

    fn count_download(&self, bytes: usize) {
        self.requests
            .counters
            .bytes_down
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn map_io_err(&self, object: &str, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                target: self.name.clone(),
                object: object.to_string(),
            }
        } else {
            Error::Store {
                target: self.name.clone(),
                object: object.to_string(),
                message: e.to_string(),
            }
        }
    }

    /// The object_store path of `path`, taken verbatim. Callers give paths
    /// in store form (a tenant's name already mapped by `tenant_name`):
    /// `ObjPath::from` would percent-encode them a second time, so that
    /// what is written could not be found again under a listed name.
    fn obj_path(&self, path: &str) -> Result<ObjPath> {
        ObjPath::parse(path).map_err(|e| Error::Store {
            target: self.name.clone(),
            object: path.to_string(),
            message: format!("not a valid object path: {e}"),
        })
    }

    fn local_file(&self, fs: &LocalFileSystem, path: &str) -> Result<std::path::PathBuf> {
        fs.path_to_filesystem(&self.obj_path(path)?)
            .map_err(|e| Error::Store {
                target: self.name.clone(),
                object: path.to_string(),
                message: e.to_string(),
            })
    }

    pub fn get(&self, path: &str) -> Result<Bytes> {
        let bytes = if let Some(fs) = &self.local {
            self.requests
                .counters
                .requests
                .fetch_add(1, Ordering::Relaxed);
            let file = self.local_file(fs, path)?;
            std::fs::read(&file)
                .map(Bytes::from)
                .map_err(|e| self.map_io_err(path, e))?
        } else {
            self.get_remote(path, self.version_to_read(path)?)?
        };
        self.count_download(bytes.len());
        Ok(bytes)
    }

    /// A whole object from a remote store: its current version, or
    /// `version`.
    fn get_remote(&self, path: &str, version: Option<String>) -> Result<Bytes> {
        let p = self.obj_path(path)?;
        let opts = GetOptions::default().with_version(version);
        runtime()
            .block_on(self.call(0, || async {
                self.inner.get_opts(&p, opts.clone()).await?.bytes().await
            }))
            .map_err(|f| self.fail(path, f))
    }

    /// Reads an object of a kind that is small by construction, refusing
    /// one larger than `limit` before more than that is read: a local file
    /// by its size, a remote object by its length header and then by the
    /// bytes that actually arrive.
    pub fn get_limited(&self, path: &str, limit: crate::limits::ReadLimit) -> Result<Bytes> {
        let max = limit.bytes();
        let got = if let Some(fs) = &self.local {
            self.requests
                .counters
                .requests
                .fetch_add(1, Ordering::Relaxed);
            let file = self.local_file(fs, path)?;
            std::fs::File::open(&file)
                .and_then(|mut f| crate::files::read_capped(&mut f, max))
                .map_err(|e| self.map_io_err(path, e))?
                .map(Bytes::from)
        } else {
            let p = self.obj_path(path)?;
            let opts = GetOptions::default().with_version(self.version_to_read(path)?);
            runtime()
                .block_on(self.call(0, || async {
                    let r = self.inner.get_opts(&p, opts.clone()).await?;
                    if r.meta.size > max {
                        return Ok(None);
                    }
                    let mut stream = r.into_stream();
                    let mut buf = Vec::new();
                    while let Some(chunk) = stream.try_next().await? {
                        buf.extend_from_slice(&chunk);
                        if buf.len() as u64 > max {
                            return Ok(None);
                        }
                    }
                    Ok(Some(Bytes::from(buf)))
                }))
                .map_err(|f| self.fail(path, f))?
        };
        let bytes = got.ok_or_else(|| Error::TooLarge {
            object: format!("target {}: {path}", self.name),
            limit,
        })?;
        self.count_download(bytes.len());
        Ok(bytes)
    }

    pub fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        let bytes = if let Some(fs) = &self.local {
            self.requests
                .counters
                .requests
                .fetch_add(1, Ordering::Relaxed);
            let file = self.local_file(fs, path)?;
            read_local_range(&file, range).map_err(|e| self.map_io_err(path, e))?
        } else {
            let p = self.obj_path(path)?;
            let version = self.version_to_read(path)?;
            runtime()
                .block_on(self.call(0, || async {
                    match &version {
                        None => self.inner.get_range(&p, range.clone()).await,
                        Some(v) => {
                            let opts = GetOptions::default()
                                .with_range(Some(range.clone()))
                                .with_version(Some(v.clone()));
                            self.inner.get_opts(&p, opts).await?.bytes().await
                        }
                    }
                }))
                .map_err(|f| self.fail(path, f))?
        };
        self.count_download(bytes.len());
        Ok(bytes)
    }

    /// The size of an object, or `None` if there is none.
    pub fn size_of(&self, path: &str) -> Result<Option<u64>> {
        if let Some(view) = &self.view {
            return Ok(view.objects.get(path).map(|(_, size)| *size));
        }
        let p = self.obj_path(path)?;
        match runtime().block_on(self.call(0, || self.inner.head(&p))) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(Failed {
                failure: Failure::Store(object_store::Error::NotFound { .. }),
                ..
            }) => Ok(None),
            Err(f) => Err(self.fail(path, f)),
        }
    }

    async fn put_async(&self, path: &str, data: Bytes, mode: PutMode) -> Result<bool> {
        self.writable(path)?;
        let p = self.obj_path(path)?;
        let size = data.len() as u64;
        let locked = match (&self.s3, &self.lock) {
            (Some(api), Some(lock)) if !crate::layout::is_lock_object(path) => Some((api, lock)),
            _ => None,
        };
        let outcome = if let Some((api, lock)) = locked {
            // One PUT whatever the size (S3 takes up to 5 GiB in one, and
            // packs are far smaller): a locked multipart upload would need
            // the lock on its first request and a checksum on every part.
            let create_only = mode == PutMode::Create;
            let floor = self.lock_floor_of(path);
            self.call(size, || {
                let until = lock
                    .until(jiff::Timestamp::now())
                    .max(floor.unwrap_or_default());
                api.put_locked(p.as_ref(), data.clone(), lock, until, create_only)
            })
            .await
        } else if data.len() >= MULTIPART_THRESHOLD && mode == PutMode::Overwrite {
            let done = self
                .call(size, || async {
                    let upload = self.inner.put_multipart(&p).await?;
                    let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART);
                    writer.put(data.clone());
                    writer.finish().await
                })
                .await;
            if done.is_ok() {
                self.requests
                    .counters
                    .multipart_uploads
                    .fetch_add(1, Ordering::Relaxed);
            }
            done
        } else {
            self.call(size, || {
                let opts = PutOptions {
                    mode: mode.clone(),
                    ..Default::default()
                };
                self.inner
                    .put_opts(&p, PutPayload::from_bytes(data.clone()), opts)
            })
            .await
        };
        match outcome {
            Ok(_) => Ok(true),
            Err(Failed {
                failure: Failure::Store(object_store::Error::AlreadyExists { .. }),
                ..
            }) if mode == PutMode::Create => Ok(false),
            Err(f) => Err(self.fail(path, f)),
        }
    }

    /// Writes an object, replacing any there (objects are named by their
    /// content, so a replacement has the same bytes). Large ones go in parts.
    pub fn put(&self, path: &str, data: Bytes) -> Result<()> {
        runtime()
            .block_on(self.put_async(path, data, PutMode::Overwrite))
            .map(|_| ())
    }

    /// Creates an object only if none exists there; `false` if one did.
    pub fn put_new(&self, path: &str, data: Bytes) -> Result<bool> {
        runtime().block_on(self.put_async(path, data, PutMode::Create))
    }

    /// Starts a put on the runtime and returns at once; `wait` the handle.
    pub fn put_background(&self, path: String, data: Bytes) -> PendingPut {
        let store = self.clone();
        let handle = runtime().spawn(async move {
            store
                .put_async(&path, data, PutMode::Overwrite)
                .await
                .map(|_| ())
        });
        PendingPut {
            target: self.name.clone(),
            handle,
        }
    }

    /// Every object under `prefix` (a folder path without trailing slash).
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        if let Some(view) = &self.view {
            return Ok(view
                .objects
                .iter()
                .filter(|(k, _)| prefix.is_empty() || crate::layout::is_under(k, prefix))
                .map(|(k, (_, size))| Listed {
                    path: k.clone(),
                    size: *size,
                })
                .collect());
        }
        let p = self.obj_path(prefix)?;
        let metas: Vec<object_store::ObjectMeta> = runtime()
            .block_on(self.call(0, || self.inner.list(Some(&p)).try_collect()))
            .map_err(|f| self.fail(prefix, f))?;
        let mut out: Vec<Listed> = metas
            .into_iter()
            .map(|m| Listed {
                path: m.location.to_string(),
                size: m.size,
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The names directly under `prefix` that are folders.
    pub fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        if let Some(view) = &self.view {
            let mut dirs: Vec<String> = view
                .objects
                .keys()
                .filter_map(|k| {
                    let rest = match prefix {
                        "" => k.as_str(),
                        p => k.strip_prefix(p)?.strip_prefix('/')?,
                    };
                    let (dir, _) = rest.split_once('/')?;
                    Some(dir.to_string())
                })
                .collect();
            dirs.sort();
            dirs.dedup();
            return Ok(dirs);
        }
        let p = self.obj_path(prefix)?;
        let res = runtime()
            .block_on(self.call(0, || self.inner.list_with_delimiter(Some(&p))))
            .map_err(|f| self.fail(prefix, f))?;
        let mut out: Vec<String> = res
            .common_prefixes
            .into_iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Fails unless the target answers and its bucket or container exists.
    /// A missing object and a missing bucket both read as "not found", and
    /// some servers create a bucket on the first write: gallra creates none,
    /// so that a typo in a URL never starts a repository in the wrong place.
    pub fn check_reachable(&self) -> Result<()> {
        if self.local.is_some() {
            return Ok(());
        }
        match runtime().block_on(self.call(0, || self.inner.list_with_delimiter(None))) {
            Ok(_) => Ok(()),
            Err(Failed {
                failure: Failure::Store(e),
                ..
            }) if matches!(e, object_store::Error::NotFound { .. })
                || http_status(&e.to_string()) == Some(404) =>
            {
                Err(Error::Store {
                    target: self.name.clone(),
                    object: "(bucket)".into(),
                    message: format!(
                        "the bucket or container does not exist; create it first, gallra never creates one ({})",
                        describe(&e)
                    ),
                })
            }
            Err(f) => Err(self.fail("(bucket)", f)),
        }
    }

    /// Whether the target refuses a second conditional create of one key,
    /// as locks need. Some S3-compatible servers ignore `If-None-Match` and
    /// overwrite: on those, two agents could both believe they hold a lock.
    pub fn honours_conditional_create(&self) -> Result<bool> {
        let path = probe_path();
        let first = self.put_new(&path, Bytes::from_static(b"first"))?;
        let second = self.put_new(&path, Bytes::from_static(b"second"));
        let kept = self.get(&path);
        self.delete(&path)?;
        Ok(first && !second? && kept?.as_ref() == b"first")
    }

    /// Whether the target keeps an old version of what gallra overwrites or
    /// deletes: a store with versioning on answers a write with a version
    /// id (S3's `x-amz-version-id`, Azure's `x-ms-version-id`), and a delete
    /// there only hides the object. Probed by writing and deleting one small
    /// object under `locks-selftest/`; on a versioned store that probe stays
    /// as a noncurrent version (5 bytes) until the store's own rules expire
    /// it.
    pub fn keeps_old_versions(&self) -> Result<bool> {
        let path = crate::layout::locks_selftest_path(
            &crate::format::Id(crate::crypto::random_bytes()).to_hex(),
        );
        let p = self.obj_path(&path)?;
        let written = runtime()
            .block_on(self.call(5, || {
                self.inner
                    .put_opts(&p, PutPayload::from_static(b"probe"), PutOptions::default())
            }))
            .map_err(|f| self.fail(&path, f))?;
        self.delete(&path)?;
        Ok(written.version.is_some())
    }

    /// What an S3 bucket says protects this target's objects (versioning,
    /// Object Lock) and whether these credentials may delete them; `None`
    /// for a store gallra does not ask (a folder, Azure, GCS).
    pub fn s3_protection(&self) -> Result<Option<S3Protection>> {
        let Some(api) = &self.s3 else {
            return Ok(None);
        };
        let versioning = runtime()
            .block_on(self.call(0, || api.versioning()))
            .map_err(|f| self.fail("(bucket versioning)", f))?;
        let object_lock = runtime()
            .block_on(self.call(0, || api.object_lock()))
            .map_err(|f| self.fail("(bucket Object Lock)", f))?;
        let probe = crate::layout::deletion_probe_path(
            &crate::format::Id(crate::crypto::random_bytes()).to_hex(),
        );
        let may_delete = runtime()
            .block_on(self.call(0, || api.may_delete(&probe)))
            .map_err(|f| self.fail(&probe, f))?;
        Ok(Some(S3Protection {
            versioning,
            object_lock,
            may_delete,
        }))
    }

    /// The Object Lock on an object's current version, as the store says
    /// it: its mode and until when. `None` when it has none, or when the
    /// store is not S3.
    pub fn lock_of(&self, path: &str) -> Result<Option<(LockMode, jiff::Timestamp)>> {
        let Some(api) = &self.s3 else {
            return Ok(None);
        };
        runtime()
            .block_on(self.call(0, || api.lock_of(path)))
            .map_err(|f| self.fail(path, f))
    }

    /// Lengthens the Object Lock on the current version of `path` to
    /// `until`, in the target's lock mode (a target without `lock`: nothing
    /// to do).
    pub fn extend_lock(&self, path: &str, until: jiff::Timestamp) -> Result<()> {
        self.writable(path)?;
        let (Some(api), Some(lock)) = (&self.s3, &self.lock) else {
            return Ok(());
        };
        runtime()
            .block_on(self.call(0, || api.put_retention(path, lock.mode, until)))
            .map_err(|f| self.fail(path, f))
    }

    /// Whether this agent deletes on the target (`deletions = "here"`), or
    /// leaves it to a lifecycle host: then only its locks are deleted.
    pub fn deletes_here(&self) -> bool {
        self.deletions == Deletions::Here
    }

    /// From now on, what is written to this target under `scope` is locked
    /// at least until `until` (with `lock` set; a later call with an earlier
    /// time does not shorten it). `scope` is a tenant's folder
    /// (`tenants/<t>`: its packs, index and key) or a snapshot object (which
    /// its tenant's folder does not cover: it is locked until its own
    /// retention ends).
    pub fn lock_at_least(&self, scope: &str, until: jiff::Timestamp) {
        let mut floors = self.lock_floor.lock().expect("not poisoned");
        let floor = floors.entry(scope.to_string()).or_insert(until);
        *floor = (*floor).max(until);
    }

    /// The least lock set for `path` (`lock_at_least`): its own for a
    /// snapshot object, else its tenant folder's.
    fn lock_floor_of(&self, path: &str) -> Option<jiff::Timestamp> {
        let mut parts = path.splitn(4, '/');
        let (first, tenant, kind) = (parts.next()?, parts.next()?, parts.next());
        let floors = self.lock_floor.lock().expect("not poisoned");
        match kind {
            Some("snapshots") => floors.get(path).copied(),
            _ => floors.get(&format!("{first}/{tenant}")).copied(),
        }
    }

    /// The lock this target puts on what it writes (`lock`), if any.
    pub fn object_lock(&self) -> Option<ObjectLock> {
        self.lock
    }

    /// The one place objects are deleted, so that deletion can later be given
    /// its own credentials.
    pub fn delete(&self, path: &str) -> Result<()> {
        runtime().block_on(self.delete_async(path))
    }

    async fn delete_async(&self, path: &str) -> Result<()> {
        self.writable(path)?;
        if !self.deletes_here() && !crate::layout::is_lock_object(path) {
            // Every caller skips such a target; this is the backstop.
            return Err(Error::Refused(format!(
                "target {}: its deletions are a lifecycle host's (deletions = \"lifecycle-host\"); {path} is not deleted from here",
                self.name
            )));
        }
        kill_point();
        let p = self.obj_path(path)?;
        match self.call(0, || self.inner.delete(&p)).await {
            Ok(())
            | Err(Failed {
                failure: Failure::Store(object_store::Error::NotFound { .. }),
                ..
            }) => Ok(()),
            Err(f) => Err(self.fail(path, f)),
        }
    }
}

/// What an S3 bucket says protects a target's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct S3Protection {
    pub versioning: BucketVersioning,
    /// `None` when the bucket has no Object Lock.
    pub object_lock: Option<BucketLock>,
    /// Whether the credentials this target is opened with may delete an
    /// object outside the lock folders.
    pub may_delete: bool,
}

/// A fresh name under `locks-selftest/` for one probe of a target.
fn probe_path() -> String {
    crate::layout::locks_selftest_path(&crate::format::Id(crate::crypto::random_bytes()).to_hex())
}

/// Fault injection for crash tests: with `GALLRA_TEST_KILL_AT_DELETE=N`,
/// the process sends itself SIGKILL just before its Nth delete, so a test
/// can stop a prune or an erasure at an exact step, as a power cut would.
fn kill_point() {
    static AT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Some(at) = *AT.get_or_init(|| {
        std::env::var("GALLRA_TEST_KILL_AT_DELETE")
            .ok()
            .and_then(|v| v.parse().ok())
    }) else {
        return;
    };
    if COUNT.fetch_add(1, Ordering::SeqCst) + 1 == at {
        // SAFETY: kill(2) on this process with a constant signal.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Reads `range` of a local file (fewer bytes at its end: the caller checks
/// the length), keeping a few pack files open per thread, since restore
/// reads many blobs of each.
fn read_local_range(file: &std::path::Path, range: Range<u64>) -> std::io::Result<Bytes> {
    use std::cell::RefCell;
    use std::os::unix::fs::FileExt;
    thread_local! {
        static OPEN: RefCell<Vec<(std::path::PathBuf, std::fs::File)>> = const { RefCell::new(Vec::new()) };
    }
    const KEEP_OPEN: usize = 8;
    OPEN.with(|cell| {
        let mut open = cell.borrow_mut();
        let pos = match open.iter().position(|(p, _)| p == file) {
            Some(pos) => pos,
            None => {
                let f = std::fs::File::open(file)?;
                if open.len() == KEEP_OPEN {
                    open.remove(0);
                }
                open.push((file.to_path_buf(), f));
                open.len() - 1
            }
        };
        let f = &open[pos].1;
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], range.start + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(done);
        Ok(Bytes::from(buf))
    })
}

pub struct PendingPut {
    target: String,
    handle: tokio::task::JoinHandle<Result<()>>,
}

impl PendingPut {
    pub fn wait(self) -> Result<()> {
        runtime().block_on(self.handle).unwrap_or_else(|e| {
            Err(Error::Store {
                target: self.target,
                object: "(upload)".into(),
                message: format!("upload task failed: {e}"),
            })
        })
    }
}

/// A fresh in-memory store, for the library's own tests.
#[cfg(test)]
pub(crate) fn memory() -> Store {
    Store::open_or_create(&TargetSettings::new("mem", "memory://")).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_upload_cap_holds_across_parallel_uploads() {
        let mut t = TargetSettings::new("capped", "memory://");
        t.limits.upload_rate = Some(1 << 20);
        let store = Store::open_or_create(&t).unwrap();
        let started = Instant::now();
        let pending: Vec<PendingPut> = (0..3)
            .map(|i| store.put_background(format!("o/{i}"), Bytes::from(vec![0u8; 512 << 10])))
            .collect();
        for p in pending {
            p.wait().unwrap();
        }
        // 1.5 MiB at 1 MiB/s: the last upload may not start before 1 s.
        assert!(
            started.elapsed() >= Duration::from_millis(950),
            "{:?}",
            started.elapsed()
        );
        let stats = store.stats();
        assert_eq!(stats.bytes_up, 3 * (512 << 10));
        assert_eq!(stats.requests, 3);
    }

    #[test]
    fn a_server_that_never_answers_times_out_and_names_the_target() {
        // Accepts connections and never says a word.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                held.push(conn);
            }
        });
        let mut t = TargetSettings::new("offsite", "s3://bucket/web01");
        for (k, v) in [
            ("endpoint", format!("http://127.0.0.1:{port}")),
            ("region", "eu-north-1".into()),
            ("allow_http", "true".into()),
            ("aws_access_key_id", "AKID".into()),
            ("aws_secret_access_key", "s3cr3t".into()),
        ] {
            t.options.insert(k.into(), v);
        }
        t.limits.timeout = Duration::from_millis(300);
        let store = Store::open(&t).unwrap();
        let e = store.get("config").unwrap_err().to_string();
        assert!(
            e.contains("offsite") && e.contains("config") && e.contains("after 6 attempts"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
        assert_eq!(store.stats().retries, 5);
    }

    #[test]
    fn small_kinds_are_read_with_a_cap_that_names_object_and_limit() {
        use crate::limits::ReadLimit;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let local = Store::open_or_create(&TargetSettings::new("local", &url)).unwrap();
        for s in [memory(), local] {
            let max = ReadLimit::Lock.bytes() as usize;
            s.put("l/ok", Bytes::from(vec![b'x'; max])).unwrap();
            assert_eq!(s.get_limited("l/ok", ReadLimit::Lock).unwrap().len(), max);
            s.put("l/big", Bytes::from(vec![b'x'; max + 1])).unwrap();
            let e = s.get_limited("l/big", ReadLimit::Lock).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("l/big") && msg.contains("64.0 KiB") && msg.contains("lock object"),
                "{msg}"
            );
            assert!(matches!(
                s.get_limited("l/none", ReadLimit::Lock),
                Err(Error::NotFound { .. })
            ));
        }
    }

    #[test]
    fn put_get_list_delete() {
        let s = memory();
        s.put("a/b/c", Bytes::from_static(b"hello")).unwrap();
        assert_eq!(&s.get("a/b/c").unwrap()[..], b"hello");
        assert_eq!(&s.get_range("a/b/c", 1..3).unwrap()[..], b"el");
        assert!(!s.put_new("a/b/c", Bytes::from_static(b"x")).unwrap());
        assert!(s.put_new("a/b/d", Bytes::from_static(b"x")).unwrap());
        let listed = s.list("a").unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(s.list_dirs("a").unwrap(), vec!["b".to_string()]);
        s.delete("a/b/c").unwrap();
        s.delete("a/b/c").unwrap();
        let e = s.get("a/b/c").unwrap_err().to_string();
        assert!(e.contains("mem") && e.contains("a/b/c"), "{e}");
    }
}
