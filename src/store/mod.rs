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
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use tokio::runtime::Runtime;

use crate::config;
use crate::error::{Error, Result};

mod remote;

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

#[derive(Clone)]
pub struct Store {
    name: String,
    inner: Arc<dyn ObjectStore>,
    /// For `file://` targets, the same store, used to read objects with
    /// plain `pread` on the calling thread: restore and check read tens of
    /// thousands of small ranges, and a hop through the runtime's blocking
    /// pool for each cost more than the read itself.
    local: Option<Arc<LocalFileSystem>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.name)
    }
}

impl Store {
    /// Opens a target. With `create`, a missing `file://` folder is made.
    pub fn open(target: &config::Target, create: bool) -> Result<Store> {
        let err = |message: String| Error::Store {
            target: target.name.clone(),
            object: target.url.clone(),
            message,
        };
        let conf_err = |message: String| Error::TargetConfig {
            target: target.name.clone(),
            message,
        };
        let url = url::Url::parse(&target.url)
            .map_err(|e| conf_err(format!("url {:?}: {e}", target.url)))?;
        if matches!(url.scheme(), "file" | "memory") {
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
        }
        let mut local = None;
        let inner: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|()| err("not a local path".into()))?;
                if create {
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
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn map_err(&self, object: &str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound {
                target: self.name.clone(),
                object: object.to_string(),
            },
            other => Error::Store {
                target: self.name.clone(),
                object: object.to_string(),
                message: other.to_string(),
            },
        }
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

    pub fn get(&self, path: &str) -> Result<Bytes> {
        let p = ObjPath::from(path);
        if let Some(fs) = &self.local {
            let file = fs
                .path_to_filesystem(&p)
                .map_err(|e| self.map_err(path, e))?;
            return std::fs::read(&file)
                .map(Bytes::from)
                .map_err(|e| self.map_io_err(path, e));
        }
        runtime()
            .block_on(async { self.inner.get(&p).await?.bytes().await })
            .map_err(|e| self.map_err(path, e))
    }

    pub fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        let p = ObjPath::from(path);
        if let Some(fs) = &self.local {
            let file = fs
                .path_to_filesystem(&p)
                .map_err(|e| self.map_err(path, e))?;
            return read_local_range(&file, range).map_err(|e| self.map_io_err(path, e));
        }
        runtime()
            .block_on(self.inner.get_range(&p, range))
            .map_err(|e| self.map_err(path, e))
    }

    pub fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let p = ObjPath::from(path);
        runtime()
            .block_on(self.inner.put(&p, PutPayload::from_bytes(data)))
            .map(|_| ())
            .map_err(|e| self.map_err(path, e))
    }

    /// Creates an object only if none exists there; `false` if one did.
    pub fn put_new(&self, path: &str, data: Bytes) -> Result<bool> {
        let p = ObjPath::from(path);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match runtime().block_on(self.inner.put_opts(&p, PutPayload::from_bytes(data), opts)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.map_err(path, e)),
        }
    }

    /// Starts a put on the runtime and returns at once; `wait` the handle.
    pub fn put_background(&self, path: String, data: Bytes) -> PendingPut {
        let store = self.clone();
        let handle = runtime().spawn(async move {
            let p = ObjPath::from(path.as_str());
            store
                .inner
                .put(&p, PutPayload::from_bytes(data))
                .await
                .map(|_| ())
                .map_err(|e| store.map_err(&path, e))
        });
        PendingPut {
            target: self.name.clone(),
            handle,
        }
    }

    /// Every object under `prefix` (a folder path without trailing slash).
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let p = ObjPath::from(prefix);
        let metas: Vec<object_store::ObjectMeta> = runtime()
            .block_on(self.inner.list(Some(&p)).try_collect())
            .map_err(|e| self.map_err(prefix, e))?;
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
        let p = ObjPath::from(prefix);
        let res = runtime()
            .block_on(self.inner.list_with_delimiter(Some(&p)))
            .map_err(|e| self.map_err(prefix, e))?;
        let mut out: Vec<String> = res
            .common_prefixes
            .into_iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The one place objects are deleted, so that deletion can later be given
    /// its own credentials.
    pub fn delete(&self, path: &str) -> Result<()> {
        let p = ObjPath::from(path);
        match runtime().block_on(self.inner.delete(&p)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.map_err(path, e)),
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
    Store::open(
        &config::Target {
            name: "mem".into(),
            url: "memory://".into(),
            primary: true,
            options: Default::default(),
            credentials_file: None,
            retention: None,
        },
        true,
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

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
