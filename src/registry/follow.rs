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
//! stays. The database unreachable changes nothing served: registry data
//! stays subject to its own freshness rules (`valid_days` from the check
//! dates the snapshot carries), so a cut-off replica decides on what it has
//! until that goes stale and is then denied `REGISTRY_UNAVAILABLE`, as on
//! one gateway.

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
    failures: u32,
    retry_at: Instant,
    error: String,
}

/// What one replica installed of the published snapshots.
#[derive(Debug)]
pub struct Follower {
    pg: Pg,
    registries: Arc<RegistrySet>,
    /// Version and SHA-256 of the snapshot file in the snapshots
    /// directory, per registry.
    installed: HashMap<String, (u64, String)>,
    failed: HashMap<String, Failure>,
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
    /// [`PgError`] when the database does not answer (nothing changed).
    pub async fn check(&mut self) -> Result<Vec<String>, PgError> {
        let ids: Vec<String> = self
            .registries
            .entries()
            .iter()
            .map(|e| e.config.id.clone())
            .collect();
        let current = published::current(&self.pg, &ids).await?;
        let mut installed_any = false;
        let registries = Arc::clone(&self.registries);
        for entry in registries.entries() {
            let id = &entry.config.id;
            let Some(wanted) = current.iter().find(|p| &p.registry_id == id) else {
                continue;
            };
            if self.installed.get(id) == Some(&(wanted.version, wanted.sha256.clone())) {
                continue;
            }
            if let Some(failure) = self.failed.get(id)
                && failure.published == (wanted.version, wanted.sha256.clone())
                && Instant::now() < failure.retry_at
            {
                continue;
            }
            match self.install(entry, wanted).await {
                Ok(published) => {
                    tracing::info!(registry = %id, version = published.version, sha256 = %&published.sha256[..16], "published registry snapshot downloaded and checked");
                    self.installed
                        .insert(id.clone(), (published.version, published.sha256));
                    self.failed.remove(id);
                    installed_any = true;
                }
                Err(PublishedError::Pg(err)) => return Err(err),
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
        tokio::task::spawn_blocking(move || {
            let result = published::verify_file(&tmp, &config, &checked).and_then(|_| {
                let path = file::snapshot_path(&dir, &config.id);
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
                self.installed.get(id) == Some(&(p.version, p.sha256.clone()))
                    && entry.snapshot_guard().as_ref().map(|s| s.version) == Some(p.version)
            });
            let error = unreachable.map(str::to_string).or_else(|| {
                self.failed
                    .get(id)
                    .filter(|f| {
                        wanted.is_some_and(|p| {
                            p.version == f.published.0 && p.sha256 == f.published.1
                        })
                    })
                    .map(|f| f.error.clone())
            });
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
fn installed_hashes(dir: &Path, loaded: &[(String, u64)]) -> HashMap<String, (u64, String)> {
    loaded
        .iter()
        .filter_map(|(id, version)| {
            let path = file::snapshot_path(dir, id);
            published::hash_file(&path)
                .ok()
                .map(|(sha256, _)| (id.clone(), (*version, sha256)))
        })
        .collect()
}
