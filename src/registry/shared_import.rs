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

impl WorkDir {
    /// Creates `data_dir/registry-work.tmp-PID-N`.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn new(data_dir: &Path) -> Result<WorkDir, SharedImportError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = data_dir.join(format!(
            "registry-work.tmp-{}-{}",
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
    let summary = {
        let (registry, dir, request) =
            (registry.clone(), work.path().to_path_buf(), request.clone());
        tokio::task::spawn_blocking(move || import::run(&registry, &dir, &request, now))
            .await
            .map_err(|e| PgError::Setup(format!("import task: {e}")))??
    };
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
    /// Registries with another version published: left as they are.
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
            "{} published{}, {} already published{}, {} left as published (another version is){}, {} without a local snapshot{}",
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
/// again: a snapshot already published is skipped, and a registry with
/// another version published is left alone and named.
///
/// # Errors
/// A local snapshot that fails its checks (nothing of it is published), or
/// a database error.
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
