//! A replica following the published registry snapshots
//! (`[store] backend = "postgres"`).
//!
//! Every `registry_reload_interval_ms` it reads `registry_current`; a
//! version whose SHA-256 differs from the file it has is downloaded to a
//! temporary file in the snapshots directory, checked (contiguous chunks,
//! size, SHA-256, then the snapshot's own checks and that it is the
//! configured registry at the published version) and renamed in; the
//! registry set's hot swap then serves it. A download that fails a check is
//! removed, logged and retried later (backing off); the snapshot in service
//! stays.
//!
//! A publication is refused (logged, shown in `/status` as
//! `published.error`, the snapshot in service kept) when it is older than
//! the version served, unless `registry_current.rollback` marks a
//! deliberate rollback, and when it shrinks the snapshot served by more than
//! its `max_shrink_percent`, unless it was published with `--allow-shrink`
//! or the snapshot served is itself a stored publication (the imports
//! between them were guarded). A snapshot replaced by an older or equal
//! version is kept as `ID.snap.replaced-<unix seconds>`. The snapshot file
//! is checked (size and modification time) on every check: one written by
//! anything else is replaced by the published version. The database unreachable changes nothing served: registry data
//! stays subject to its own freshness rules (`valid_days` from the check
//! dates the snapshot carries), so a cut-off replica decides on what it has
//! until that goes stale and is then denied `REGISTRY_UNAVAILABLE`, as on
//! one gateway. The database answering the read of `registry_current` but
//! failing the download of a version it names (a damaged chunk, a denied
//! permission, a timeout) is not an outage: that version failed, and the
//! registry is not decided on until it is installed, since the other
//! replicas may already decide on it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::published::{self, Published, PublishedError};
use super::{PublishedState, RegistryEntry, RegistrySet, file};
use crate::store::postgres::{Pg, PgError};

/// The longest wait before a version that failed its checks is tried again.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// A published version that failed its checks, and when to try again.
#[derive(Debug)]
struct Failure {
    /// The version and SHA-256 that failed.
    published: (u64, String),
    /// Whether it was marked as a rollback then (marking it retries at once).
    rollback: bool,
    failures: u32,
    retry_at: Instant,
    error: String,
}

/// The snapshot file a replica installed (or found at start).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Installed {
    version: u64,
    sha256: String,
    /// Size and modification time of the file when it was installed.
    seen: Option<file::Stamp>,
}

impl Installed {
    fn is(&self, published: &Published) -> bool {
        self.version == published.version && self.sha256 == published.sha256
    }
}

/// What tells one snapshot file from another (see `file::Stamp`).
fn file_seen(path: &Path) -> Option<file::Stamp> {
    file::Stamp::of(path)
}

/// What one replica installed of the published snapshots.
#[derive(Debug)]
pub struct Follower {
    pg: Pg,
    registries: Arc<RegistrySet>,
    /// The snapshot file in the snapshots directory, per registry.
    installed: HashMap<String, Installed>,
    failed: HashMap<String, Failure>,
    /// Registries whose published row does not read back, and why.
    unreadable: HashMap<String, String>,
    unreachable: bool,
    /// The published versions the last successful check read.
    last_current: Vec<Published>,
}

impl Follower {
    /// Hashes the snapshot files the replica has and downloads every
    /// published version it lacks, before the replica serves.
    ///
    /// # Errors
    /// [`PgError`] when the database does not answer.
    pub async fn catch_up(pg: Pg, registries: Arc<RegistrySet>) -> Result<Follower, PgError> {
        let dir = registries.dir().to_path_buf();
        if let Some(data_dir) = dir.parent() {
            for path in super::shared_import::remove_abandoned_work_dirs(data_dir) {
                tracing::warn!(path = %path.display(), "removed the work directory of an import that did not finish");
            }
        }
        let loaded: Vec<(String, u64)> = registries
            .entries()
            .iter()
            .filter_map(|e| Some((e.config.id.clone(), e.snapshot_guard().as_ref()?.version)))
            .collect();
        let installed = tokio::task::spawn_blocking(move || installed_hashes(&dir, &loaded))
            .await
            .map_err(|e| PgError::Setup(format!("hashing task: {e}")))?;
        let mut follower = Follower {
            pg,
            registries,
            installed,
            failed: HashMap::new(),
            unreadable: HashMap::new(),
            unreachable: false,
            last_current: Vec::new(),
        };
        let swapped = follower.check().await?;
        if !swapped.is_empty() {
            tracing::info!(registries = %swapped.join(", "), "published registry snapshots downloaded before serving");
        }
        Ok(follower)
    }

    /// Checks the published versions once and installs the new ones;
    /// returns the ids of the registries swapped.
    ///
    /// # Errors
    /// [`PgError`] when `registry_current` cannot be read (nothing
    /// changed). Any database error after that read (downloading or
    /// checking a version) fails that version: its registry is not decided
    /// on (`REGISTRY_UNAVAILABLE`) until the current version is installed.
    pub async fn check(&mut self) -> Result<Vec<String>, PgError> {
        let ids: Vec<String> = self
            .registries
            .entries()
            .iter()
            .map(|e| e.config.id.clone())
            .collect();
        let mut current = Vec::new();
        self.unreadable.clear();
        for (id, published) in published::current_each(&self.pg, &ids).await? {
            match published {
                Ok(published) => current.push(published),
                Err(err) => {
                    tracing::error!(registry = %id, error = %err, "published registry version unreadable; keeping the snapshot in service");
                    self.unreadable.insert(id, err.to_string());
                }
            }
        }
        let mut installed_any = false;
        let registries = Arc::clone(&self.registries);
        for entry in registries.entries() {
            let id = &entry.config.id;
            let Some(wanted) = current.iter().find(|p| &p.registry_id == id) else {
                continue;
            };
            // A file written by anything else is not what was installed.
            let path = file::snapshot_path(registries.dir(), id);
            let seen = file_seen(&path);
            if self.installed.get(id).is_some_and(|i| i.seen != seen) {
                tracing::warn!(registry = %id, "registry snapshot file changed under the replica; installing the published version again");
                self.installed.remove(id);
            }
            if self.installed.get(id).is_some_and(|i| i.is(wanted)) {
                continue;
            }
            if let Some(failure) = self.failed.get(id)
                && failure.published == (wanted.version, wanted.sha256.clone())
                && failure.rollback == wanted.rollback
                && Instant::now() < failure.retry_at
            {
                continue;
            }
            // Past the read of `registry_current`, the database answered:
            // an error now (a damaged chunk, a permission, a timeout) is
            // this version failing, not an outage, and the registry is not
            // decided on while a version it cannot install is current.
            match self.refusal(entry, wanted).await {
                Ok(None) => {}
                Ok(Some(refusal)) => {
                    self.record_failure(id, wanted, refusal);
                    continue;
                }
                Err(err) => {
                    self.record_failure(id, wanted, format!("shared database: {err}"));
                    continue;
                }
            }
            match self.install(entry, wanted).await {
                Ok(published) => {
                    tracing::info!(registry = %id, version = published.version, sha256 = %&published.sha256[..16], "published registry snapshot downloaded and checked");
                    self.installed.insert(
                        id.clone(),
                        Installed {
                            version: published.version,
                            sha256: published.sha256,
                            seen: file_seen(&path),
                        },
                    );
                    self.failed.remove(id);
                    installed_any = true;
                }
                Err(PublishedError::Pg(err)) => {
                    self.record_failure(id, wanted, format!("shared database: {err}"));
                }
                Err(PublishedError::Gone { .. }) => {
                    // Replaced and pruned meanwhile: the next check sees the new one.
                }
                Err(err) => self.record_failure(id, wanted, err.to_string()),
            }
        }
        let swapped = if installed_any {
            let registries = Arc::clone(&self.registries);
            tokio::task::spawn_blocking(move || registries.reload_changed())
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        self.publish_states(&current, None);
        self.last_current = current;
        Ok(swapped)
    }

    /// Why `wanted` must not replace the snapshot `entry` serves, if it
    /// must not: older than it (not a deliberate rollback), or shrinking
    /// it beyond the publication's threshold (not forced, and the snapshot
    /// served is not itself a stored publication).
    ///
    /// # Errors
    /// [`PgError`] when the database does not answer.
    async fn refusal(
        &self,
        entry: &RegistryEntry,
        wanted: &Published,
    ) -> Result<Option<String>, PgError> {
        let Some((served, numbers)) = entry
            .snapshot_guard()
            .as_ref()
            .map(|s| (s.version, s.len()))
        else {
            return Ok(None);
        };
        if wanted.version < served && !wanted.rollback {
            return Ok(Some(format!(
                "published version {} is older than version {served} served here; refused (a restored database or a repair?): publish a new version, or mark a deliberate rollback with registry_current.rollback = true",
                wanted.version
            )));
        }
        if wanted.allow_shrink
            || !super::import::shrinks_too_much(numbers, wanted.numbers, wanted.max_shrink_percent)
        {
            return Ok(None);
        }
        if let Some(installed) = self.installed.get(&entry.config.id)
            && installed.version == served
            && published::is_stored(&self.pg, &entry.config.id, served, &installed.sha256).await?
        {
            return Ok(None);
        }
        Ok(Some(format!(
            "published version {} holds {} numbers, the snapshot served here (version {served}) {numbers}: it shrinks by more than {} %; refused: publish it with --allow-shrink if this is intended (or run store migrate on the machine holding the full list)",
            wanted.version, wanted.numbers, wanted.max_shrink_percent
        )))
    }

    fn record_failure(&mut self, id: &str, wanted: &Published, error: String) {
        let published = (wanted.version, wanted.sha256.clone());
        let failures = self
            .failed
            .get(id)
            .filter(|f| f.published == published)
            .map_or(1, |f| f.failures + 1);
        let wait = Duration::from_secs(1u64 << failures.min(6)).min(MAX_RETRY);
        tracing::error!(registry = %id, version = wanted.version, error = %error, retry_in_s = wait.as_secs(), "published registry snapshot refused; keeping the snapshot in service");
        self.failed.insert(
            id.to_string(),
            Failure {
                published,
                rollback: wanted.rollback,
                failures,
                retry_at: Instant::now() + wait,
                error,
            },
        );
    }

    /// Downloads, checks and renames in one published version.
    async fn install(
        &self,
        entry: &RegistryEntry,
        wanted: &Published,
    ) -> Result<Published, PublishedError> {
        let dir = self.registries.dir().to_path_buf();
        crate::private::create_dir_all(&dir).map_err(|cause| PublishedError::Io {
            path: dir.clone(),
            cause,
        })?;
        // The name of a temporary snapshot file: removed at start if left over.
        let tmp = dir.join(format!(
            "{}.snap.tmp-{}",
            entry.config.id,
            std::process::id()
        ));
        let published =
            published::download(&self.pg, &entry.config.id, wanted.version, &tmp).await?;
        let config = entry.config.clone();
        let checked = published.clone();
        // An edition replaced by an older or equal version is kept.
        let keep_replaced = entry
            .snapshot_guard()
            .as_ref()
            .is_some_and(|s| s.version >= published.version);
        tokio::task::spawn_blocking(move || {
            let result = published::verify_file(&tmp, &config, &checked).and_then(|_| {
                let path = file::snapshot_path(&dir, &config.id);
                if keep_replaced && path.exists() {
                    let seconds = jiff::Timestamp::now().as_second();
                    let kept = dir.join(format!("{}.snap.replaced-{seconds}", config.id));
                    std::fs::hard_link(&path, &kept)
                        .map_err(|cause| PublishedError::Io { path: kept.clone(), cause })?;
                    tracing::warn!(registry = %config.id, kept = %kept.display(), "the replaced snapshot is kept");
                }
                std::fs::rename(&tmp, &path)
                    .and_then(|()| std::fs::File::open(&dir)?.sync_all())
                    .map_err(|cause| PublishedError::Io { path, cause })
            });
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        })
        .await
        .map_err(|e| PgError::Setup(format!("snapshot check task: {e}")))??;
        Ok(published)
    }

    /// Shows, per registry, the published version and whether it is served.
    fn publish_states(&self, current: &[Published], unreachable: Option<&str>) {
        for entry in self.registries.entries() {
            let id = &entry.config.id;
            let wanted = current.iter().find(|p| &p.registry_id == id);
            let serving = wanted.is_some_and(|p| {
                self.installed.get(id).is_some_and(|i| i.is(p))
                    && entry.snapshot_guard().as_ref().map(|s| s.version) == Some(p.version)
            });
            let error = unreachable
                .map(str::to_string)
                .or_else(|| self.unreadable.get(id).cloned())
                .or_else(|| {
                    self.failed
                        .get(id)
                        .filter(|f| {
                            wanted.is_some_and(|p| {
                                p.version == f.published.0 && p.sha256 == f.published.1
                            })
                        })
                        .map(|f| f.error.clone())
                });
            // Refused or unreadable (not merely the database out of reach,
            // nor a new version not downloaded yet): this replica would
            // decide on another edition than the others. An unreadable
            // publication leaves no `wanted` to compare with, but it may be
            // newer than the snapshot held, so that is not decided on either.
            if unreachable.is_none() {
                entry.set_diverged(
                    (wanted.is_some() && !serving && error.is_some())
                        || self.unreadable.contains_key(id),
                );
            }
            entry.set_published(PublishedState {
                version: wanted.map(|p| p.version),
                sha256: wanted.map(|p| p.sha256.clone()),
                published_at: wanted.map(|p| p.published_at),
                published_by: wanted.map(|p| p.published_by.clone()),
                serving,
                error,
            });
        }
    }

    /// Checks every `every` until `stop`; the database unreachable is
    /// logged once per outage and shown in `/status`.
    pub async fn run(mut self, every: Duration, stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if *stop.borrow() {
                return;
            }
            match self.check().await {
                Ok(_) => {
                    if self.unreachable {
                        tracing::info!("registry publications readable again");
                        self.unreachable = false;
                    }
                }
                Err(err) => {
                    if !self.unreachable {
                        tracing::error!(error = %err, "cannot read the published registry snapshots; serving the ones held (subject to their freshness rules)");
                        self.unreachable = true;
                    }
                    let last = std::mem::take(&mut self.last_current);
                    self.publish_states(&last, Some(&format!("shared database: {err}")));
                    self.last_current = last;
                }
            }
        }
    }
}

/// Version and SHA-256 of each registry's snapshot file that was loaded
/// (`loaded`: registry id and the version it serves).
fn installed_hashes(dir: &Path, loaded: &[(String, u64)]) -> HashMap<String, Installed> {
    loaded
        .iter()
        .filter_map(|(id, version)| {
            let path = file::snapshot_path(dir, id);
            let seen = file_seen(&path);
            published::hash_file(&path).ok().map(|(sha256, _)| {
                (
                    id.clone(),
                    Installed {
                        version: *version,
                        sha256,
                        seen,
                    },
                )
            })
        })
        .collect()
}
