//! `[repository]`: how backups are packed: compression, pack size, and the
//! chunker's sizes (read only when a repository is created).

use serde::Deserialize;

use super::ConfigFile;
use crate::chunker::ChunkerParams;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct RepositorySettings {
    pub compression: i32,
    pub pack_size: u64,
    /// Used only when a repository is created.
    pub chunker: ChunkerParams,
}

/// The `[repository]` table as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRepository {
    compression: Option<i32>,
    pack_size: Option<String>,
    chunk_min: Option<String>,
    chunk_avg: Option<String>,
    chunk_max: Option<String>,
}

pub(super) fn parse(raw: RawRepository, file: &ConfigFile) -> Result<RepositorySettings> {
    let err = |message: String| file.error(message);
    let size = |key: &str, v: &Option<String>, default: u64| -> Result<u64> {
        match v {
            None => Ok(default),
            Some(s) => crate::units::parse_size(s)
                .ok_or_else(|| err(format!("[repository] {key}: not a size: {s:?}"))),
        }
    };
    let compression = raw.compression.unwrap_or(3);
    if !(1..=22).contains(&compression) {
        return Err(err(format!(
            "[repository] compression: zstd level {compression} is outside 1..=22"
        )));
    }
    let pack_size = size("pack_size", &raw.pack_size, 16 << 20)?;
    if !(64 << 10..=1 << 30).contains(&pack_size) {
        return Err(err(
            "[repository] pack_size: must be between 64 KiB and 1 GiB".into(),
        ));
    }
    let d = ChunkerParams::default();
    let chunker = ChunkerParams {
        min: size("chunk_min", &raw.chunk_min, d.min.into())? as u32,
        avg: size("chunk_avg", &raw.chunk_avg, d.avg.into())? as u32,
        max: size("chunk_max", &raw.chunk_max, d.max.into())? as u32,
    };
    if !chunker.is_valid() {
        return Err(err(
            "[repository] chunk_min/chunk_avg/chunk_max: need 64 B <= min <= 1 MiB, 256 B <= avg <= 4 MiB, 1 KiB <= max <= 16 MiB, min <= avg <= max, all even".into(),
        ));
    }
    Ok(RepositorySettings {
        compression,
        pack_size,
        chunker,
    })
}
