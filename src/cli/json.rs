//! Pieces of the `--json` reports that several commands print: a time as
//! RFC 3339 and a snapshot as scripts read it.

use serde::{Serialize, Serializer};

use gallra::format::Id;
use gallra::format::snapshot::Snapshot;

use super::output::rfc3339;

/// A time as the store records it, Unix seconds and nanoseconds, printed as
/// RFC 3339 (UTC); an empty string when out of range, as for people.
#[derive(Clone, Copy)]
pub struct UnixTime {
    pub secs: i64,
    pub nanos: u32,
}

impl UnixTime {
    pub fn secs(secs: i64) -> UnixTime {
        UnixTime { secs, nanos: 0 }
    }
}

impl Serialize for UnixTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(self.secs, self.nanos))
    }
}

/// A snapshot in `--json`: the fields a script needs, not the whole object
/// (no tree root, no byte counts of the upload). `Snapshot`'s own
/// `Serialize` is the on-store encoding, hence this view.
#[derive(Serialize)]
pub struct SnapshotJson<'a> {
    id: String,
    tenant: &'a str,
    source: &'a str,
    category: &'a str,
    time: UnixTime,
    host: &'a str,
    files: u64,
    bytes: u64,
    /// An object of tag → value; of a tag given twice the last wins.
    #[serde(serialize_with = "tags_as_object")]
    tags: &'a [(String, String)],
    paths: &'a [String],
    /// `null` for a first snapshot, not left out.
    parent: Option<String>,
}

impl<'a> SnapshotJson<'a> {
    pub fn new(id: &Id, s: &'a Snapshot) -> SnapshotJson<'a> {
        SnapshotJson {
            id: id.to_hex(),
            tenant: &s.tenant,
            source: &s.source,
            category: &s.category,
            time: UnixTime {
                secs: s.time_secs,
                nanos: s.time_nanos,
            },
            host: &s.host,
            files: s.files,
            bytes: s.bytes,
            tags: &s.tags,
            paths: &s.paths,
            parent: s.parent.map(|p| p.to_hex()),
        }
    }
}

fn tags_as_object<S: Serializer>(tags: &&[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(tags.iter().map(|(k, v)| (k, v)))
}
