//! Targets: a repository's home in an object store, through `object_store`.
//!
//! The engine above is synchronous (CPU-bound work runs on rayon and plain
//! threads); this module owns the one tokio runtime and turns each store call
//! into a blocking call on it, so no other module knows about async. Every
//! error names the target and the object.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

use crate::error::{Error, Result};

mod remote;
mod settings;

pub use settings::{Locking, StoreLimits, TargetSettings};

/// Objects at least this large are uploaded in parts, so that a failed
/// request repeats one part rather than the whole object, and parts travel
/// in parallel. Default packs (16 MiB) stay below it: one PUT is cheaper.
pub const MULTIPART_THRESHOLD: usize = 32 << 20;
const MULTIPART_PART: usize = 16 << 20;

/// Attempts per store call, and the back-off between them: exponential from
/// `RETRY_BASE`, capped, with equal jitter so that a fleet retrying after the
/// same outage spreads out. The waits add up to at most 7.75 s (plus each
/// attempt's own time, bounded by the timeout).
const RETRY_ATTEMPTS: u32 = 6;
const RETRY_BASE: Duration = Duration::from_millis(250);
const RETRY_CAP: Duration = Duration::from_secs(8);

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

/// An object listed in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: String,
    pub size: u64,
}

/// What a target's calls have cost so far, for summaries and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub requests: u64,
    pub retries: u64,
    pub failures: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Objects uploaded in parts.
    pub multipart_uploads: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    failures: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    multipart_uploads: AtomicU64,
}

/// The gallra-owned layer every call to a target goes through: bounded
/// concurrency, an upload rate cap, a timeout per request, retries of
/// transient failures, and counters.
struct Layer {
    limits: StoreLimits,
    permits: tokio::sync::Semaphore,
    /// The upload cap, shared by parallel uploads.
    upload_pacer: Option<crate::pace::Pacer>,
    counters: Counters,
}

impl Layer {
    fn new(limits: StoreLimits) -> Layer {
        Layer {
            limits,
            permits: tokio::sync::Semaphore::new(limits.concurrency),
            upload_pacer: limits.upload_rate.map(crate::pace::Pacer::new),
            counters: Counters::default(),
        }
    }

    /// Waits until `bytes` more may be uploaded under the cap.
    async fn pace_upload(&self, bytes: u64) {
        if let Some(pacer) = &self.upload_pacer {
            let start = pacer.reserve(bytes, Instant::now());
            tokio::time::sleep_until(start.into()).await;
        }
    }
}

/// Why a call failed after its retries.
enum Failure {
    Store(object_store::Error),
    Timeout(Duration),
}

struct Failed {
    failure: Failure,
    attempts: u32,
}

/// Whether a store error may go away if the call is repeated: connection
/// failures, timeouts, throttling and server errors. Authentication,
/// permission, not-found and conflict answers are final.
fn is_transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    match e {
        E::Generic { .. } | E::JoinError { .. } => {}
        _ => return false,
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(h) = c.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            return matches!(
                h.kind(),
                K::Connect | K::Request | K::Timeout | K::Interrupted
            );
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::TimedOut
                    | K::Interrupted
                    | K::BrokenPipe
                    | K::UnexpectedEof
            );
        }
        cause = c.source();
    }
    http_status(&e.to_string()).is_some_and(|code| code == 429 || code >= 500)
}

/// The HTTP status in an object_store error's text: its HTTP stores say it
/// in the message and keep the typed error private.
fn http_status(text: &str) -> Option<u16> {
    let i = text.find("status code: ")?;
    text[i + 13..].get(..3)?.parse().ok()
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(text[start..start + len].trim())
}

/// An object_store error in one short line: the HTTP status, the server's
/// error code and message, and the request without its query string (which
/// may hold a signature or SAS token), instead of the whole response body.
fn describe(e: &object_store::Error) -> String {
    let text = e.to_string().replace('\n', " ");
    // The innermost "Error performing METHOD URL in TIME" names the request.
    let innermost = text
        .rfind("Error performing ")
        .map_or(text.as_str(), |i| &text[i..]);
    let request = between(innermost, "Error performing ", " in ").map(|r| {
        let r = r.split('?').next().unwrap_or(r);
        format!(" ({r})")
    });
    let marker = "status code: ";
    if let Some(i) = text.find(marker) {
        let rest = &text[i + marker.len()..];
        let status = rest.split(':').next().unwrap_or(rest).trim();
        let code = between(rest, "<Code>", "</Code>")
            .map(|c| format!(" {c}"))
            .unwrap_or_default();
        let message = between(rest, "<Message>", "</Message>")
            .map(|m| {
                let m = m.split("RequestId:").next().unwrap_or(m).trim();
                format!(": {m}")
            })
            .unwrap_or_default();
        return format!("{status}{code}{message}{}", request.unwrap_or_default());
    }
    if text.contains("error sending request") {
        return format!(
            "cannot reach the server{}: connection failed",
            request.unwrap_or_default()
        );
    }
    text
}

fn backoff(attempt: u32) -> Duration {
    use rand::RngExt;
    let exp = RETRY_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(RETRY_CAP);
    let half = exp / 2;
    half + half.mul_f64(rand::rng().random_range(0.0..1.0))
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
    layer: Arc<Layer>,
    locking: Locking,
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
            "s3" | "s3a" | "az" | "azure" | "abfs" | "abfss" | "gs" => remote::build(target, &url)?,
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
            layer: Arc::new(Layer::new(target.limits)),
            locking: target.locking,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this target's tenants are locked (see `crate::lock`).
    pub fn locking(&self) -> Locking {
        self.locking
    }

    /// Whether the target is a folder on this machine.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    pub fn stats(&self) -> StoreStats {
        let c = &self.layer.counters;
        StoreStats {
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
            multipart_uploads: c.multipart_uploads.load(Ordering::Relaxed),
        }
    }

    /// Runs one store operation through the layer: waits for the upload cap
    /// and a permit, bounds it by the timeout, repeats it on transient
    /// failures with back-off, and counts it. `upload` is the bytes it sends.
    async fn call<T, F, Fut>(&self, upload: u64, op: F) -> std::result::Result<T, Failed>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let layer = &self.layer;
        let mut attempt = 0;
        loop {
            attempt += 1;
            layer.pace_upload(upload).await;
            let outcome = {
                let _permit = layer.permits.acquire().await.expect("never closed");
                layer.counters.requests.fetch_add(1, Ordering::Relaxed);
                tokio::time::timeout(layer.limits.timeout, op()).await
            };
            let failure = match outcome {
                Ok(Ok(v)) => {
                    layer.counters.bytes_up.fetch_add(upload, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(e)) if !is_transient(&e) => {
                    layer.counters.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(Failed {
                        failure: Failure::Store(e),
                        attempts: attempt,
                    });
                }
                Ok(Err(e)) => Failure::Store(e),
                Err(_) => Failure::Timeout(layer.limits.timeout),
            };
            if attempt >= RETRY_ATTEMPTS {
                layer.counters.failures.fetch_add(1, Ordering::Relaxed);
                return Err(Failed {
                    failure,
                    attempts: attempt,
                });
            }
            layer.counters.retries.fetch_add(1, Ordering::Relaxed);
            let wait = backoff(attempt);
            tracing::info!(
                target: "gallra::store",
                "target {}: retrying in {wait:?} after: {}",
                self.name,
                match &failure {
                    Failure::Store(e) => describe(e),
                    Failure::Timeout(t) => format!("no answer in {t:?}"),
                }
            );
            tokio::time::sleep(wait).await;
        }
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
        self.layer
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
            self.layer.counters.requests.fetch_add(1, Ordering::Relaxed);
            let file = self.local_file(fs, path)?;
            std::fs::read(&file)
                .map(Bytes::from)
                .map_err(|e| self.map_io_err(path, e))?
        } else {
            let p = self.obj_path(path)?;
            runtime()
                .block_on(self.call(0, || async { self.inner.get(&p).await?.bytes().await }))
                .map_err(|f| self.fail(path, f))?
        };
        self.count_download(bytes.len());
        Ok(bytes)
    }

    /// Reads an object of a kind that is small by construction, refusing
    /// one larger than `limit` before more than that is read: a local file
    /// by its size, a remote object by its length header and then by the
    /// bytes that actually arrive.
    pub fn get_limited(&self, path: &str, limit: crate::limits::ReadLimit) -> Result<Bytes> {
        let max = limit.bytes();
        let got = if let Some(fs) = &self.local {
            self.layer.counters.requests.fetch_add(1, Ordering::Relaxed);
            let file = self.local_file(fs, path)?;
            std::fs::File::open(&file)
                .and_then(|mut f| crate::files::read_capped(&mut f, max))
                .map_err(|e| self.map_io_err(path, e))?
                .map(Bytes::from)
        } else {
            let p = self.obj_path(path)?;
            runtime()
                .block_on(self.call(0, || async {
                    let r = self.inner.get(&p).await?;
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
            self.layer.counters.requests.fetch_add(1, Ordering::Relaxed);
            let file = self.local_file(fs, path)?;
            read_local_range(&file, range).map_err(|e| self.map_io_err(path, e))?
        } else {
            let p = self.obj_path(path)?;
            runtime()
                .block_on(self.call(0, || self.inner.get_range(&p, range.clone())))
                .map_err(|f| self.fail(path, f))?
        };
        self.count_download(bytes.len());
        Ok(bytes)
    }

    /// The size of an object, or `None` if there is none.
    pub fn size_of(&self, path: &str) -> Result<Option<u64>> {
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
        let p = self.obj_path(path)?;
        let size = data.len() as u64;
        let outcome = if data.len() >= MULTIPART_THRESHOLD && mode == PutMode::Overwrite {
            let done = self
                .call(size, || async {
                    let upload = self.inner.put_multipart(&p).await?;
                    let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART);
                    writer.put(data.clone());
                    writer.finish().await
                })
                .await;
            if done.is_ok() {
                self.layer
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
        let path = format!(
            "locks-selftest/{}",
            crate::format::Id(crate::crypto::random_bytes()).to_hex()
        );
        let first = self.put_new(&path, Bytes::from_static(b"first"))?;
        let second = self.put_new(&path, Bytes::from_static(b"second"));
        let kept = self.get(&path);
        self.delete(&path)?;
        Ok(first && !second? && kept?.as_ref() == b"first")
    }

    /// The one place objects are deleted, so that deletion can later be given
    /// its own credentials.
    pub fn delete(&self, path: &str) -> Result<()> {
        kill_point();
        let p = self.obj_path(path)?;
        match runtime().block_on(self.call(0, || self.inner.delete(&p))) {
            Ok(())
            | Err(Failed {
                failure: Failure::Store(object_store::Error::NotFound { .. }),
                ..
            }) => Ok(()),
            Err(f) => Err(self.fail(path, f)),
        }
    }
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

    #[test]
    fn store_errors_are_summarised_without_body_or_query() {
        let text = "Error performing GET http://127.0.0.1:1/b?list-type=2&X-Amz-Signature=abc in 1ms - Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?> <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><RequestId>X</RequestId></Error>";
        let e = object_store::Error::Generic {
            store: "S3",
            source: text.into(),
        };
        assert_eq!(
            describe(&e),
            "404 Not Found NoSuchBucket: The specified bucket does not exist (GET http://127.0.0.1:1/b)"
        );
        assert!(!is_transient(&e));
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Error performing PUT http://h/b/k in 2ms - Server returned non-2xx status code: 503 Service Unavailable: slow down".into(),
        };
        assert!(is_transient(&e));
        assert_eq!(describe(&e), "503 Service Unavailable (PUT http://h/b/k)");
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Error performing GET http://127.0.0.1:1/b?sig=s in 1ms - HTTP error: error sending request".into(),
        };
        assert_eq!(
            describe(&e),
            "cannot reach the server (GET http://127.0.0.1:1/b): connection failed"
        );
    }

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
