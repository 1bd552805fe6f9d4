//! What one drilled snapshot came to, and each problem named down to the
//! file, blob and pack.

use serde::Serialize;

use crate::error::Error;
use crate::text::short_hex;

/// One thing that failed, named down to the file, blob and pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file's path in the snapshot (a directory's, when its tree could
    /// not be read); `None` for the snapshot as a whole.
    pub file: Option<String>,
    /// The blob whose read failed, when that was the cause.
    pub blob: Option<String>,
    /// The store object (a pack, the index, the snapshot) involved.
    pub object: Option<String>,
    /// What went wrong; never names the file.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if let Some(blob) = &self.blob {
            write!(f, "blob {}: ", short_hex(blob, 16))?;
        }
        // Store errors name their object already; the others get it here.
        if let Some(object) = &self.object
            && !self.message.contains(object.as_str())
        {
            write!(f, "{object}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl Problem {
    pub(super) fn whole(e: Error) -> Problem {
        let object = e.object().map(str::to_string);
        match e {
            Error::Tree { dir, tree, source } => Problem {
                file: Some(dir),
                blob: Some(tree),
                object,
                message: source.to_string(),
            },
            e => Problem {
                file: None,
                blob: None,
                object,
                message: e.to_string(),
            },
        }
    }

    pub(super) fn of_snapshot(message: String) -> Problem {
        Problem {
            file: None,
            blob: None,
            object: None,
            message,
        }
    }

    /// As `Display`, without the file: for the audit trail, which names no file.
    pub fn without_file(&self) -> String {
        let named = Problem {
            file: None,
            ..self.clone()
        };
        match &self.file {
            Some(_) => format!("a file: {named}"),
            None => named.to_string(),
        }
    }
}

/// The result of one drilled snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct DrillResult {
    pub tenant: String,
    /// Hex id; empty when the tenant had no snapshot to drill.
    pub snapshot: String,
    pub source: String,
    pub target: String,
    /// When the snapshot was taken (RFC 3339).
    pub taken: Option<String>,
    /// Files restored and verified, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// What the snapshot records it holds.
    pub expected_files: u64,
    pub expected_bytes: u64,
    /// Time to restore and verify, from opening the snapshot.
    pub seconds: f64,
    pub first_byte_seconds: Option<f64>,
    pub mb_per_s: f64,
    /// Entries whose mode, times, size, link target and hard links matched.
    pub metadata_checked: u64,
    /// Entries recorded with another owner than the one a drill without
    /// root could give them (compared, not failed).
    pub ownership_not_restored: u64,
    /// The latest snapshot of this tenant's source, and whether it is
    /// younger than the maximum age (`None`: not expected, see `freshness`).
    pub latest: Option<String>,
    pub fresh: Option<bool>,
    pub freshness: String,
    pub ok: bool,
    /// The first problem, in one line; `None` when ok.
    pub error: Option<String>,
    pub problems: Vec<Problem>,
}

impl DrillResult {
    pub(super) fn new(tenant: &str, target: &str) -> DrillResult {
        DrillResult {
            tenant: tenant.to_string(),
            snapshot: String::new(),
            source: String::new(),
            target: target.to_string(),
            taken: None,
            files: 0,
            bytes: 0,
            expected_files: 0,
            expected_bytes: 0,
            seconds: 0.0,
            first_byte_seconds: None,
            mb_per_s: 0.0,
            metadata_checked: 0,
            ownership_not_restored: 0,
            latest: None,
            fresh: None,
            freshness: String::new(),
            ok: false,
            error: None,
            problems: Vec::new(),
        }
    }

    pub(super) fn failed(tenant: &str, target: &str, problem: Problem) -> DrillResult {
        let mut result = DrillResult::new(tenant, target);
        result.problems.push(problem);
        result.finish()
    }

    pub(super) fn finish(mut self) -> DrillResult {
        self.ok = self.problems.is_empty();
        self.error = match self.problems.as_slice() {
            [] => None,
            [one] => Some(one.to_string()),
            [first, rest @ ..] => Some(format!("{first} (and {} more problems)", rest.len())),
        };
        self
    }
}

/// Drill results for the tests of every part of the drill.
#[cfg(test)]
pub(super) mod fixtures {
    use super::*;

    pub(crate) const BLOB: &str =
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    pub(crate) const PACK: &str =
        "tenants/acme/packs/ab/abababababababababababababababababababababababababababababababab";
    pub(crate) const SECRET: &str = "/var/www/acme/secret-ledger.txt";

    pub(crate) fn passing() -> DrillResult {
        let mut r = DrillResult::new("beta", "offsite");
        r.snapshot = "5e".repeat(32);
        r.source = "www".into();
        r.files = 3;
        r.bytes = 4096;
        r.seconds = 1.25;
        r.first_byte_seconds = Some(0.5);
        r.fresh = Some(true);
        r.freshness = "latest 2h 0m old, under 2 days".into();
        r.finish()
    }

    pub(crate) fn failing() -> DrillResult {
        let mut r = DrillResult::new("acme", "offsite");
        r.snapshot = "c0".repeat(32);
        r.source = "www".into();
        r.files = 1;
        r.bytes = 10;
        r.seconds = 2.5;
        r.fresh = Some(false);
        r.problems.push(Problem {
            file: Some(SECRET.into()),
            blob: Some(BLOB.into()),
            object: Some(PACK.into()),
            message: "authentication failed".into(),
        });
        r.problems.push(Problem::of_snapshot("stale".into()));
        r.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn problem_names_file_blob_and_object_once() {
        let p = Problem {
            file: Some(SECRET.into()),
            blob: Some(BLOB.into()),
            object: Some(PACK.into()),
            message: "authentication failed".into(),
        };
        let want = format!("{SECRET}: blob 0123456789abcdef: {PACK}: authentication failed");
        assert_eq!(p.to_string(), want);
        let without = p.without_file();
        assert_eq!(
            without,
            format!("a file: blob 0123456789abcdef: {PACK}: authentication failed")
        );
        assert!(!without.contains("/var/www"));

        let inside = Problem {
            message: format!("reading {PACK}: not found"),
            ..p.clone()
        };
        let shown = inside.to_string();
        assert_eq!(shown.matches(PACK).count(), 1, "{shown}");
        assert!(shown.ends_with(&format!("blob 0123456789abcdef: reading {PACK}: not found")));

        let whole = Problem::of_snapshot("stale".into());
        assert_eq!(
            (whole.to_string(), whole.without_file()),
            ("stale".into(), "stale".into())
        );
    }
}
