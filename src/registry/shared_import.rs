//! `dialgate registry import` and `store migrate` on the shared database
//! (`[store] backend = "postgres"`): the import runs exactly as on one
//! gateway (every check, the shrink guard included), but in a private work
//! directory seeded with the *currently published* snapshot, and its result
//! is published instead of being written where a replica serves from. The
//! replicas (this machine's too) download it from the database.

use std::fmt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::file;
use super::import::{self, ImportError, ImportRequest, ImportSummary};
use super::published::{self, Publication, Published, PublishedError};
use crate::config::RegistryConfig;
use crate::store::postgres::{Pg, PgError};

/// Why a shared import failed; nothing was published.
#[derive(Debug, thiserror::Error)]
pub enum SharedImportError {
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("{0}")]
    Published(#[from] PublishedError),
    #[error("current published snapshot unusable, refusing to build on it: {0}")]
    Base(PublishedError),
    #[error(
        "registry {registry}: nothing is published yet, but this machine holds a snapshot ({path}); run `dialgate store migrate --to postgres` first to publish it and import on top of it, or pass --allow-shrink to publish without it"
    )]
    LocalUnpublished { registry: String, path: PathBuf },
    #[error(
        "registry {registry}: the local snapshot (version {local}) is newer than or differs from the published version {published}; it was not published and nothing was changed: keep it, and import on top of the published version (or publish it by hand after a deliberate rollback)"
    )]
    LocalDiffers {
        registry: String,
        local: u64,
        published: u64,
    },
    #[error("cannot make a work directory {path}: {cause}")]
    WorkDir {
        path: PathBuf,
        cause: std::io::Error,
    },
}

impl From<PgError> for SharedImportError {
    fn from(err: PgError) -> Self {
        SharedImportError::Published(PublishedError::Pg(err))
    }
}

/// A private directory under `data_dir`, removed with everything in it when
/// dropped (snapshots are large: the data directory has the room, not /tmp).
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

/// The name prefix of work directories (`registry-work.tmp-PID-N`).
const WORK_DIR_PREFIX: &str = "registry-work.tmp-";

/// Whether process `pid` is running (Linux: `/proc/PID`; elsewhere it is
/// assumed to be, so nothing is removed).
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Removes the work directories under `data_dir` left by imports that were
/// killed (their process no longer runs); returns what it removed. For
/// import and server start.
pub fn remove_abandoned_work_dirs(data_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(WORK_DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        if std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

impl WorkDir {
    /// Creates `data_dir/registry-work.tmp-PID-N`, after removing those
    /// of killed imports.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn new(data_dir: &Path) -> Result<WorkDir, SharedImportError> {
        for path in remove_abandoned_work_dirs(data_dir) {
            tracing::warn!(path = %path.display(), "removed the work directory of an import that did not finish");
        }
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = data_dir.join(format!(
            "{WORK_DIR_PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        crate::private::create_dir_all(&path).map_err(|cause| SharedImportError::WorkDir {
            path: path.clone(),
            cause,
        })?;
        Ok(WorkDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Downloads the current published snapshot of `registry` into `dir` as its
/// snapshot file, checked; returns what was published (`None`: nothing).
///
/// # Errors
/// [`PublishedError`] when it cannot be read or fails a check.
pub async fn fetch_current(
    pg: &Pg,
    registry: &RegistryConfig,
    dir: &Path,
) -> Result<Option<Published>, PublishedError> {
    let Some(current) = published::current_of(pg, &registry.id).await? else {
        return Ok(None);
    };
    let tmp = dir.join(format!("{}.download", registry.id));
    let got = published::download(pg, &registry.id, current.version, &tmp).await?;
    let config = registry.clone();
    let checked = got.clone();
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        published::verify_file(&tmp, &config, &checked)?;
        let path = file::snapshot_path(&dir, &config.id);
        std::fs::rename(&tmp, &path).map_err(|cause| PublishedError::Io { path, cause })
    })
    .await
    .map_err(|e| PgError::Setup(format!("snapshot check task: {e}")))??;
    Ok(Some(got))
}

/// Runs an import on top of the published snapshot and publishes the result
/// (not with `dry_run`). Returns the import's summary and the publication.
///
/// # Errors
/// [`SharedImportError`]; nothing is published on any error, and
/// [`PublishedError::Conflict`] when another import published meanwhile.
pub async fn import_and_publish(
    pg: &Pg,
    registry: &RegistryConfig,
    data_dir: &Path,
    request: &ImportRequest,
    now: Timestamp,
    published_by: &str,
) -> Result<(ImportSummary, Option<Published>), SharedImportError> {
    let work = WorkDir::new(data_dir)?;
    let base = fetch_current(pg, registry, work.path())
        .await
        .map_err(|err| match err {
            PublishedError::Pg(err) => SharedImportError::from(err),
            other => SharedImportError::Base(other),
        })?;
    if base.is_none() && !request.allow_shrink {
        // The first publication: replicas may serve snapshots of their own.
        let local = file::snapshot_path(&super::snapshots_dir(data_dir), &registry.id);
        if local.exists() {
            return Err(SharedImportError::LocalUnpublished {
                registry: registry.id.clone(),
                path: local,
            });
        }
    }
    // After a rollback, newer versions are still stored: build above them.
    let highest = published::highest_version(pg, &registry.id).await?;
    if let (Some(base), Some(highest)) = (&base, highest)
        && highest > base.version
    {
        let (dir, id) = (work.path().to_path_buf(), registry.id.clone());
        tokio::task::spawn_blocking(move || -> Result<(), ImportError> {
            if let Some(mut snapshot) = file::read(&dir, &id)? {
                snapshot.version = highest;
                file::write(&dir, &snapshot).map_err(ImportError::Write)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| PgError::Setup(format!("renumbering task: {e}")))??;
    }
    let summary = {
        let (registry, dir, request) =
            (registry.clone(), work.path().to_path_buf(), request.clone());
        tokio::task::spawn_blocking(move || import::run(&registry, &dir, &request, now))
            .await
            .map_err(|e| PgError::Setup(format!("import task: {e}")))??
    };
    // Every replica refuses a publication that shrinks what it serves
    // beyond the threshold (unless --allow-shrink): so does the import, in
    // any mode, on the list as a whole.
    if !request.allow_shrink
        && import::shrinks_too_much(
            summary.numbers_before,
            summary.numbers_after,
            request.max_shrink_percent,
        )
    {
        return Err(ImportError::Shrink {
            registry: registry.id.clone(),
            controller: String::new(),
            before: summary.numbers_before,
            after: summary.numbers_after,
            max_percent: request.max_shrink_percent,
        }
        .into());
    }
    if request.dry_run {
        return Ok((summary, None));
    }
    let path = file::snapshot_path(work.path(), &registry.id);
    let published = published::publish(
        pg,
        &Publication {
            registry_id: &registry.id,
            version: summary.version,
            numbers: summary.numbers_after,
            based_on: base.map(|b| b.version),
            file: &path,
            published_by,
            allow_shrink: request.allow_shrink,
            max_shrink_percent: request.max_shrink_percent,
        },
    )
    .await?;
    Ok((summary, Some(published)))
}

/// What `store migrate` did with the registry snapshots.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SnapshotsCopied {
    /// `id vN` of each snapshot published.
    pub published: Vec<String>,
    /// Registries whose local snapshot was already the published one.
    pub already: Vec<String>,
    /// Registries with a newer version published: left as they are.
    pub differing: Vec<String>,
    /// Configured registries without a local snapshot.
    pub missing: Vec<String>,
}

impl fmt::Display for SnapshotsCopied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.join(", "))
            }
        };
        write!(
            f,
            "{} published{}, {} already published{}, {} left as published (a newer version is){}, {} without a local snapshot{}",
            self.published.len(),
            list(&self.published),
            self.already.len(),
            list(&self.already),
            self.differing.len(),
            list(&self.differing),
            self.missing.len(),
            list(&self.missing)
        )
    }
}

/// `store migrate --to postgres`, registry part: publishes every configured
/// registry's snapshot from `data_dir` that the database lacks. Safe to run
/// again: a snapshot already published is skipped, and a registry with a
/// newer version published is left alone and named.
///
/// # Errors
/// A local snapshot that fails its checks (nothing of it is published), a
/// local snapshot newer than or differing from the published version at
/// the same version ([`SharedImportError::LocalDiffers`]: never dropped
/// silently), or a database error.
pub async fn copy_from_sqlite(
    pg: &Pg,
    registries: &[RegistryConfig],
    data_dir: &Path,
    published_by: &str,
) -> Result<SnapshotsCopied, SharedImportError> {
    let dir = super::snapshots_dir(data_dir);
    let mut copied = SnapshotsCopied::default();
    for registry in registries {
        let path = file::snapshot_path(&dir, &registry.id);
        if !path.exists() {
            copied.missing.push(registry.id.clone());
            continue;
        }
        let snapshot = {
            let (dir, id) = (dir.clone(), registry.id.clone());
            tokio::task::spawn_blocking(move || file::read(&dir, &id))
                .await
                .map_err(|e| PgError::Setup(format!("snapshot read task: {e}")))?
                .map_err(ImportError::from)?
        };
        let Some(snapshot) = snapshot else {
            copied.missing.push(registry.id.clone());
            continue;
        };
        if snapshot.kind != registry.kind || snapshot.country != registry.country.as_str() {
            return Err(ImportError::Snapshot(file::SnapshotFileError::Corrupt {
                path,
                problem: format!(
                    "is a {} of {}, the configuration says {} of {}",
                    snapshot.kind, snapshot.country, registry.kind, registry.country
                ),
            })
            .into());
        }
        let local_sha = {
            let hashed = path.clone();
            tokio::task::spawn_blocking(move || published::hash_file(&hashed))
                .await
                .map_err(|e| PgError::Setup(format!("hashing task: {e}")))?
                .map_err(|cause| PublishedError::Io {
                    path: path.clone(),
                    cause,
                })?
                .0
        };
        match published::current_of(pg, &registry.id).await? {
            Some(current) if current.sha256 == local_sha => {
                copied.already.push(registry.id.clone())
            }
            Some(current) if snapshot.version >= current.version => {
                return Err(SharedImportError::LocalDiffers {
                    registry: registry.id.clone(),
                    local: snapshot.version,
                    published: current.version,
                });
            }
            Some(current) => copied
                .differing
                .push(format!("{} v{}", registry.id, current.version)),
            None => {
                let published = published::publish(
                    pg,
                    &Publication {
                        registry_id: &registry.id,
                        version: snapshot.version,
                        numbers: snapshot.len(),
                        based_on: None,
                        file: &path,
                        published_by,
                        allow_shrink: false,
                        max_shrink_percent: import::DEFAULT_MAX_SHRINK_PERCENT,
                    },
                )
                .await?;
                copied
                    .published
                    .push(format!("{} v{}", registry.id, published.version));
            }
        }
    }
    Ok(copied)
}
