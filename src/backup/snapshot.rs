//! One job's snapshot: its paths walked and read, or its command run, then
//! its packs, index and snapshot written.

use globset::GlobSetBuilder;
use indicatif::ProgressBar;
use std::sync::Mutex;
use std::time::Instant;

use super::command::run_command;
use super::pipeline::Pipeline;
use super::read::read_files;
use super::walk::{Counts, Walker, build_tree};
use super::{BackupOptions, Job, SnapshotSummary, TenantState};
use crate::config::{Config, SourceKind};
use crate::error::{Error, Result};
use crate::format::Id;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::repo::Repository;
use crate::repo::packer::Packer;

pub(super) fn snapshot_job(
    repo: &Repository,
    config: &Config,
    opts: &BackupOptions,
    job: &Job<'_>,
    state: &mut TenantState,
    parent: Option<(Id, Snapshot)>,
) -> Result<SnapshotSummary> {
    let TenantState {
        lock,
        tenant,
        index,
        ..
    } = state;
    let started = Instant::now();
    let time = opts.time.unwrap_or_else(jiff::Timestamp::now);
    let packer = Packer::start(repo.store.clone(), tenant.clone(), opts.pack_size);
    let mut pipe = Pipeline {
        tenant,
        index,
        new_ids: Mutex::default(),
        packer_tx: packer.sender(),
        params: repo.chunker_params(),
        compression: opts.compression,
        progress: ProgressBar::hidden(),
        warnings: Mutex::default(),
        cancel: &opts.cancel,
        read_rate: opts.read_rate.as_deref(),
    };
    let stored = match &job.source.kind {
        SourceKind::Paths(_) => store_paths(repo, opts, job, &mut pipe, parent.as_ref(), started)?,
        SourceKind::Command { argv, stdout_file } => {
            store_command_output(&pipe, job, argv, stdout_file, time, &config.key)?
        }
    };
    let warnings = std::mem::take(&mut *pipe.warnings.lock().expect("not poisoned"));
    drop(pipe);
    tracing::debug!(elapsed = ?started.elapsed(), "trees built");
    let (packs, stats) = packer.finish()?;
    // The packs uploaded stay unreferenced (check reports them as
    // information); no index or snapshot names a part-read source.
    opts.cancel.check()?;
    tracing::debug!(elapsed = ?started.elapsed(), "packs written");
    if !packs.is_empty() {
        repo.write_index(
            tenant,
            &crate::format::index::IndexBody {
                packs: packs.clone(),
            },
        )?;
    }
    let snapshot = Snapshot {
        time_secs: time.as_second(),
        time_nanos: time.subsec_nanosecond() as u32,
        host: config.agent.host.clone(),
        tenant: job.tenant.clone(),
        source: job.source.name.clone(),
        category: job.source.category.clone(),
        paths: stored.paths,
        tags: opts.tags.clone(),
        root: stored.root,
        parent: parent.map(|(id, _)| id),
        files: stored.counts.files,
        dirs: stored.counts.dirs,
        bytes: stored.counts.bytes,
        bytes_read: stored.bytes_read,
        bytes_added: stats.plain_bytes,
        bytes_stored: stats.stored_bytes,
        warnings,
        program: format!("gallra {}", env!("CARGO_PKG_VERSION")),
    };
    lock.check()?;
    let id = repo.write_snapshot(tenant, &snapshot)?;
    for p in &packs {
        index.add_pack(p);
    }
    Ok(SnapshotSummary {
        id,
        snapshot,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What a source's content came to in the repository.
struct Stored {
    /// The root tree's id.
    root: Id,
    /// The paths the snapshot records it holds.
    paths: Vec<String>,
    counts: Counts,
    bytes_read: u64,
}

/// Walks the job's paths, reads the files the walk found (those the parent
/// snapshot does not already hold), and stores their trees.
fn store_paths(
    repo: &Repository,
    opts: &BackupOptions,
    job: &Job<'_>,
    pipe: &mut Pipeline<'_>,
    parent: Option<&(Id, Snapshot)>,
    started: Instant,
) -> Result<Stored> {
    let mut excludes = GlobSetBuilder::new();
    for g in &job.source.exclude {
        excludes.add(globset::Glob::new(g).map_err(|e| source_error(job, e.to_string()))?);
    }
    let parent_root = parent.and_then(|(id, s)| {
        repo.read_tree(pipe.tenant, pipe.index, &s.root)
            .map_err(|e| {
                pipe.warn(format!(
                    "parent snapshot {} unreadable ({e}); reading every file again",
                    id.short()
                ))
            })
            .ok()
    });
    let mut walker = Walker {
        repo,
        pipe,
        excludes: excludes
            .build()
            .map_err(|e| source_error(job, e.to_string()))?,
        one_file_system: job.source.one_file_system,
        jobs: Vec::new(),
        parent_trees_failed: false,
    };
    let mut root = Vec::new();
    for p in &job.paths {
        walker.add_source_path(&mut root, p, parent_root.as_ref())?;
    }
    let jobs = std::mem::take(&mut walker.jobs);
    tracing::debug!(files = jobs.len(), elapsed = ?started.elapsed(), "walked");
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    if opts.progress {
        let label = format!("{}/{}", job.tenant, job.source.name);
        pipe.progress = crate::progress::bytes_bar(label, total);
    }
    let mut results = read_files(pipe, &jobs);
    pipe.progress.finish_and_clear();
    tracing::debug!(elapsed = ?started.elapsed(), "files read");
    let bytes_read = results.iter().flatten().map(|r| r.size).sum();
    let mut counts = Counts::default();
    let root = build_tree(pipe, root, &mut results, &mut counts)
        .map_err(|_| source_error(job, "packer stopped".into()))?;
    let paths = job.paths.iter().map(|p| p.display().to_string()).collect();
    Ok(Stored {
        root,
        paths,
        counts,
        bytes_read,
    })
}

/// Runs the job's command and stores its stdout as the one file of the
/// snapshot.
fn store_command_output(
    pipe: &Pipeline<'_>,
    job: &Job<'_>,
    argv: &[String],
    stdout_file: &str,
    time: jiff::Timestamp,
    key: &crate::crypto::KeySource,
) -> Result<Stored> {
    let file_node =
        run_command(pipe, argv, stdout_file, time, key).map_err(|m| source_error(job, m))?;
    // What was read is what was stored: the command's whole stdout.
    let bytes_read = file_node.size;
    let counts = Counts {
        files: 1,
        dirs: 0,
        bytes: file_node.size,
    };
    let root = pipe
        .store_tree(&Tree {
            nodes: vec![file_node],
        })
        .map_err(|_| source_error(job, "packer stopped".into()))?;
    Ok(Stored {
        root,
        paths: vec![format!("/{stdout_file}")],
        counts,
        bytes_read,
    })
}

/// An error of the job's source: its tenant and source are named once, by
/// the failure that carries it.
fn source_error(job: &Job<'_>, message: String) -> Error {
    Error::Source {
        source_name: job.source.name.clone(),
        tenant: job.tenant.clone(),
        message,
    }
}
