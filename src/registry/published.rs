//! Registry snapshots published through the shared PostgreSQL database
//! (`[store] backend = "postgres"`): the snapshot file's exact bytes, in
//! ordered bytea chunks of [`CHUNK_BYTES`], with their SHA-256, size and
//! version; `registry_current` names the version every replica serves.
//! Schema: `src/store/schema/0004_registry.sql` (why chunks, not large
//! objects, is said there).
//!
//! Publishing is one transaction (version, chunks, current, pruning of old
//! versions), so a replica sees a version whole or not at all. Downloading
//! reads the version's row and its chunks in one repeatable-read
//! transaction, writes them to a file and refuses the file unless the
//! chunks are contiguous and the size and SHA-256 match; the caller then
//! decodes it with the snapshot's own checks ([`verify_file`]) before it
//! renames it in.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::file;
use super::snapshot::Snapshot;
use crate::config::RegistryConfig;
use crate::store::postgres::{Pg, PgError};

/// The largest chunk of a published snapshot, in bytes.
pub const CHUNK_BYTES: usize = 1 << 20;

/// How many versions of a registry are kept: the current one and the ones
/// before it (a replica still downloading one keeps its own MVCC snapshot).
pub const KEPT_VERSIONS: i64 = 3;

/// Chunks fetched per round trip when downloading.
const FETCH_CHUNKS: i32 = 4;

/// The longest one step of a transfer (a chunk written or a few read, the
/// commit) may take: a transfer is not bounded as a whole, since a national
/// list takes longer than the decision deadline, but it never hangs.
const TRANSFER_STEP: Duration = Duration::from_secs(30);

/// The notification channel a publication sends (an optional wake-up:
/// replicas poll `registry_current` in any case).
pub const NOTIFY_CHANNEL: &str = "dialgate_registry";

/// One published version of a registry's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub registry_id: String,
    pub version: u64,
    /// SHA-256 of the snapshot file, in hex.
    pub sha256: String,
    pub size_bytes: u64,
    pub chunk_count: u32,
    pub numbers: u64,
    pub published_by: String,
    pub published_at: Timestamp,
    /// Published by an import run with `--allow-shrink`: replicas install it
    /// even when it shrinks what they serve beyond `max_shrink_percent`.
    pub allow_shrink: bool,
    /// The import's shrink threshold, in percent.
    pub max_shrink_percent: u8,
    /// Made current by a deliberate rollback (`registry_current.rollback`):
    /// replicas then install it even though it is older than what they serve.
    pub rollback: bool,
}

/// Why a publication or a download failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum PublishedError {
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error(
        "published snapshot of registry {registry} version {version} is damaged: {problem}; it was not used"
    )]
    Damaged {
        registry: String,
        version: u64,
        problem: String,
    },
    #[error(
        "registry {registry}: version {found} was published while this import ran (it was built on {}); nothing was published: run the import again",
        .expected.map_or("no published version".to_string(), |v| format!("version {v}"))
    )]
    Conflict {
        registry: String,
        expected: Option<u64>,
        found: u64,
    },
    #[error(
        "registry {registry}: version {version} would not be above version {highest}, already stored (a rollback?); nothing was published: run the import again"
    )]
    VersionTaken {
        registry: String,
        version: u64,
        highest: u64,
    },
    #[error(
        "registry {registry}: cannot roll back to version {version}: the current version is {}; nothing was changed",
        .current.map_or("none".to_string(), |v| v.to_string())
    )]
    NotOlder {
        registry: String,
        version: u64,
        current: Option<u64>,
    },
    #[error("registry {registry}: version {version} is no longer published")]
    Gone { registry: String, version: u64 },
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PublishedError + '_ {
    move |cause| PublishedError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

async fn step<T, E>(work: impl std::future::Future<Output = Result<T, E>>) -> Result<T, PgError>
where
    PgError: From<E>,
{
    tokio::time::timeout(TRANSFER_STEP, work)
        .await
        .map_err(|_| PgError::Timeout(TRANSFER_STEP))?
        .map_err(PgError::from)
}

/// The columns of a published version, in the order [`published_from_row`]
/// reads them; a timestamp out of range reads as NULL (then an error for
/// that row only, never a failed query for every registry).
const PUBLISHED_COLUMNS: &str = "v.registry_id, v.version, v.sha256, v.size_bytes, v.chunk_count, v.numbers, v.published_by, CASE WHEN isfinite(v.published_at) AND v.published_at BETWEEN '1970-01-01' AND '9999-12-31' THEN (extract(epoch from v.published_at) * 1000000)::int8 END, v.allow_shrink, v.max_shrink_percent";

/// A `registry_versions` row (selected with [`PUBLISHED_COLUMNS`]) read
/// back; a value out of range is an error, never a guess.
fn published_from_row(row: &tokio_postgres::Row) -> Result<Published, PgError> {
    let corrupt = |what: &str| PgError::Corrupt(format!("registry_versions: {what}"));
    let registry_id: String = row.try_get(0)?;
    let version: i64 = row.try_get(1)?;
    let sha256: Vec<u8> = row.try_get(2)?;
    let size_bytes: i64 = row.try_get(3)?;
    let chunk_count: i32 = row.try_get(4)?;
    let numbers: i64 = row.try_get(5)?;
    let published_by: String = row.try_get(6)?;
    let micros: Option<i64> = row.try_get(7)?;
    let allow_shrink: bool = row.try_get(8)?;
    let max_shrink_percent: i16 = row.try_get(9)?;
    let rollback: bool = match row.len() > 10 {
        true => row.try_get(10)?,
        false => false,
    };
    if sha256.len() != 32 {
        return Err(corrupt("sha256 is not 32 bytes"));
    }
    Ok(Published {
        version: u64::try_from(version)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| corrupt(&format!("{registry_id}: version {version}")))?,
        sha256: hex::encode(sha256),
        size_bytes: u64::try_from(size_bytes)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| corrupt(&format!("{registry_id}: size {size_bytes}")))?,
        chunk_count: u32::try_from(chunk_count)
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| corrupt(&format!("{registry_id}: chunk count {chunk_count}")))?,
        numbers: u64::try_from(numbers)
            .map_err(|_| corrupt(&format!("{registry_id}: numbers {numbers}")))?,
        published_by,
        published_at: micros
            .and_then(|m| Timestamp::from_microsecond(m).ok())
            .ok_or_else(|| corrupt(&format!("{registry_id}: published_at out of range")))?,
        allow_shrink,
        max_shrink_percent: u8::try_from(max_shrink_percent)
            .ok()
            .filter(|p| *p <= 100)
            .ok_or_else(|| {
                corrupt(&format!(
                    "{registry_id}: max_shrink_percent {max_shrink_percent}"
                ))
            })?,
        rollback,
        registry_id,
    })
}

/// The current published version of each of `ids` that has one, each read
/// on its own: a row that does not read back is an error for its registry
/// only (`Err` inside), the others are read as usual.
///
/// # Errors
/// [`PgError`] when the database does not answer (also within
/// `unavailable_after`).
pub async fn current_each(
    pg: &Pg,
    ids: &[String],
) -> Result<Vec<(String, Result<Published, PgError>)>, PgError> {
    pg.within(async {
        let client = pg.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {PUBLISHED_COLUMNS}, c.rollback FROM registry_current c
                     JOIN registry_versions v USING (registry_id, version)
                     WHERE c.registry_id = ANY($1) ORDER BY c.registry_id"
                ),
                &[&ids],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                Ok((id, published_from_row(row)))
            })
            .collect()
    })
    .await
}

/// The current published version of each of `ids` that has one.
///
/// # Errors
/// [`PgError`], also when no answer came within `unavailable_after`, or
/// when any of their rows does not read back.
pub async fn current(pg: &Pg, ids: &[String]) -> Result<Vec<Published>, PgError> {
    current_each(pg, ids)
        .await?
        .into_iter()
        .map(|(_, published)| published)
        .collect()
}

/// Whether `version` of `registry_id` with this SHA-256 is still stored
/// (the snapshot descends from what was published).
///
/// # Errors
/// [`PgError`] when the database does not answer.
pub async fn is_stored(
    pg: &Pg,
    registry_id: &str,
    version: u64,
    sha256: &str,
) -> Result<bool, PgError> {
    let (Ok(version), Ok(sha)) = (i64::try_from(version), hex::decode(sha256)) else {
        return Ok(false);
    };
    pg.within(async {
        let client = pg.client().await?;
        Ok(client
            .query_opt(
                "SELECT 1 FROM registry_versions WHERE registry_id = $1 AND version = $2 AND sha256 = $3",
                &[&registry_id, &version, &sha],
            )
            .await?
            .is_some())
    })
    .await
}

/// The highest version of `registry_id` stored (current or not).
///
/// # Errors
/// [`PgError`] when the database does not answer or the value is out of range.
pub async fn highest_version(pg: &Pg, registry_id: &str) -> Result<Option<u64>, PgError> {
    pg.within(async {
        let client = pg.client().await?;
        let highest: Option<i64> = client
            .query_one(
                "SELECT max(version) FROM registry_versions WHERE registry_id = $1",
                &[&registry_id],
            )
            .await?
            .try_get(0)?;
        highest
            .map(|v| {
                u64::try_from(v).map_err(|_| {
                    PgError::Corrupt(format!("registry_versions: {registry_id} version {v}"))
                })
            })
            .transpose()
    })
    .await
}

/// The current published version of one registry, if any.
///
/// # Errors
/// As [`current`].
pub async fn current_of(pg: &Pg, id: &str) -> Result<Option<Published>, PgError> {
    Ok(current(pg, &[id.to_string()]).await?.into_iter().next())
}

/// Downloads version `version` of `registry_id` into `dest` (created or
/// truncated, fsync'd), checking that its chunks are contiguous and that its
/// size and SHA-256 match the published ones. On any error `dest` is removed.
///
/// # Errors
/// [`PublishedError::Damaged`] for bytes that do not match,
/// [`PublishedError::Gone`] when the version was deleted meanwhile, or a
/// database or file error.
pub async fn download(
    pg: &Pg,
    registry_id: &str,
    version: u64,
    dest: &Path,
) -> Result<Published, PublishedError> {
    let result = download_unchecked(pg, registry_id, version, dest).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(dest).await;
    }
    result
}

async fn download_unchecked(
    pg: &Pg,
    registry_id: &str,
    version: u64,
    dest: &Path,
) -> Result<Published, PublishedError> {
    let damaged = |problem: String| PublishedError::Damaged {
        registry: registry_id.to_string(),
        version,
        problem,
    };
    let version_sql = i64::try_from(version).map_err(|_| PublishedError::Gone {
        registry: registry_id.to_string(),
        version,
    })?;
    let mut client = pg.client().await?;
    let tx = step(
        client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start(),
    )
    .await?;
    let row = step(tx.query_opt(
        &format!(
            "SELECT {PUBLISHED_COLUMNS} FROM registry_versions v WHERE registry_id = $1 AND version = $2"
        ),
        &[&registry_id, &version_sql],
    ))
    .await?
    .ok_or_else(|| PublishedError::Gone {
        registry: registry_id.to_string(),
        version,
    })?;
    let published = published_from_row(&row)?;
    let statement = step(tx.prepare(
        "SELECT seq, data FROM registry_chunks WHERE registry_id = $1 AND version = $2 ORDER BY seq",
    ))
    .await?;
    let portal = step(tx.bind(&statement, &[&registry_id, &version_sql])).await?;
    let mut out =
        tokio::fs::File::from_std(crate::private::create_file(dest).map_err(io_error(dest))?);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut next_seq: i64 = 0;
    loop {
        let rows = step(tx.query_portal(&portal, FETCH_CHUNKS)).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let seq: i32 = row.try_get(0).map_err(PgError::from)?;
            let data: &[u8] = row.try_get(1).map_err(PgError::from)?;
            if i64::from(seq) != next_seq {
                return Err(damaged(format!("chunk {next_seq} missing (found {seq})")));
            }
            if data.is_empty() || data.len() > CHUNK_BYTES {
                return Err(damaged(format!("chunk {seq} holds {} bytes", data.len())));
            }
            next_seq += 1;
            size += data.len() as u64;
            if size > published.size_bytes {
                return Err(damaged(format!(
                    "longer than its published size {}",
                    published.size_bytes
                )));
            }
            hasher.update(data);
            out.write_all(data).await.map_err(io_error(dest))?;
        }
    }
    drop(tx);
    if next_seq != i64::from(published.chunk_count) {
        return Err(damaged(format!(
            "{next_seq} chunks, {} published",
            published.chunk_count
        )));
    }
    if size != published.size_bytes {
        return Err(damaged(format!(
            "{size} bytes, {} published",
            published.size_bytes
        )));
    }
    let sha256 = hex::encode(hasher.finalize());
    if sha256 != published.sha256 {
        return Err(damaged(format!(
            "SHA-256 {} does not match the published {}",
            &sha256[..16],
            &published.sha256[..16]
        )));
    }
    out.sync_all().await.map_err(io_error(dest))?;
    Ok(published)
}

/// Decodes a downloaded snapshot file with the snapshot's own checks and
/// checks it is the published version of the configured registry.
/// Blocking (reads the whole file).
///
/// # Errors
/// [`PublishedError::Damaged`] naming the problem.
pub fn verify_file(
    path: &Path,
    registry: &RegistryConfig,
    published: &Published,
) -> Result<Snapshot, PublishedError> {
    let damaged = |problem: String| PublishedError::Damaged {
        registry: registry.id.clone(),
        version: published.version,
        problem,
    };
    let reader = std::fs::File::open(path).map_err(io_error(path))?;
    let snapshot = file::read_from(std::io::BufReader::with_capacity(1 << 20, reader), path)
        .map_err(|e| damaged(e.to_string()))?;
    if snapshot.registry_id != registry.id {
        return Err(damaged(format!(
            "holds registry {:?}",
            snapshot.registry_id
        )));
    }
    if snapshot.kind != registry.kind || snapshot.country != registry.country.as_str() {
        return Err(damaged(format!(
            "is a {} of {}, the configuration says {} of {}",
            snapshot.kind, snapshot.country, registry.kind, registry.country
        )));
    }
    if snapshot.version != published.version {
        return Err(damaged(format!(
            "holds version {}, published as {}",
            snapshot.version, published.version
        )));
    }
    if snapshot.len() != published.numbers {
        return Err(damaged(format!(
            "holds {} numbers, published as {}",
            snapshot.len(),
            published.numbers
        )));
    }
    Ok(snapshot)
}

/// SHA-256 (hex) and size of a file. Blocking.
///
/// # Errors
/// A read error.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// One snapshot file to publish.
#[derive(Debug, Clone)]
pub struct Publication<'a> {
    pub registry_id: &'a str,
    /// The snapshot's own version (its header's).
    pub version: u64,
    pub numbers: u64,
    /// The published version the snapshot was built on (`None`: none was);
    /// the publication is refused if another was published since.
    pub based_on: Option<u64>,
    pub file: &'a Path,
    pub published_by: &'a str,
    /// Made with `--allow-shrink`: replicas install it even when it shrinks
    /// what they serve by more than `max_shrink_percent`.
    pub allow_shrink: bool,
    pub max_shrink_percent: u8,
}

/// Publishes a snapshot file and makes it the current version, in one
/// transaction; prunes versions beyond [`KEPT_VERSIONS`].
///
/// # Errors
/// [`PublishedError::Conflict`] when the current version is not
/// `based_on`, or the file changed while it was sent; a database or file error.
pub async fn publish(pg: &Pg, publication: &Publication<'_>) -> Result<Published, PublishedError> {
    let path = publication.file.to_path_buf();
    let (sha256, size) = tokio::task::spawn_blocking(move || hash_file(&path))
        .await
        .map_err(|e| PgError::Setup(format!("hashing task: {e}")))?
        .map_err(io_error(publication.file))?;
    let registry_id = publication.registry_id;
    let conflict = |found: u64| PublishedError::Conflict {
        registry: registry_id.to_string(),
        expected: publication.based_on,
        found,
    };
    let too_large = || PgError::Setup(format!("snapshot of {registry_id} too large"));
    let version = i64::try_from(publication.version).map_err(|_| too_large())?;
    let size_sql = i64::try_from(size).map_err(|_| too_large())?;
    let chunk_count = i32::try_from(size.div_ceil(CHUNK_BYTES as u64)).map_err(|_| too_large())?;
    let numbers = i64::try_from(publication.numbers).map_err(|_| too_large())?;
    let sha_bytes = hex::decode(&sha256).map_err(|e| PgError::Setup(e.to_string()))?;

    let mut client = pg.client().await?;
    let tx = step(client.transaction()).await?;
    // Durable before it is reported published, whatever the database's
    // default (the contact journal and the decision log set it too).
    step(tx.batch_execute("SET LOCAL synchronous_commit = on")).await?;
    // Publications of one registry queue here; replicas never wait on it.
    step(tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('dialgate.registry.' || $1, 0))",
        &[&registry_id],
    ))
    .await?;
    let current: Option<i64> = step(tx.query_opt(
        "SELECT version FROM registry_current WHERE registry_id = $1",
        &[&registry_id],
    ))
    .await?
    .map(|row| row.try_get(0))
    .transpose()
    .map_err(PgError::from)?;
    let current = current
        .map(|v| {
            u64::try_from(v).map_err(|_| {
                PgError::Corrupt(format!("registry_current: {registry_id} version {v}"))
            })
        })
        .transpose()?;
    if current != publication.based_on {
        return Err(conflict(current.unwrap_or(0)));
    }
    if current.is_some_and(|c| publication.version <= c) {
        return Err(conflict(current.unwrap_or(0)));
    }
    // After a rollback, versions above the current one are still kept.
    let highest: Option<i64> = step(tx.query_one(
        "SELECT max(version) FROM registry_versions WHERE registry_id = $1",
        &[&registry_id],
    ))
    .await?
    .try_get(0)
    .map_err(PgError::from)?;
    if let Some(highest) = highest.filter(|h| *h >= version) {
        return Err(PublishedError::VersionTaken {
            registry: registry_id.to_string(),
            version: publication.version,
            highest: u64::try_from(highest).unwrap_or(0),
        });
    }
    let max_shrink_percent = i16::from(publication.max_shrink_percent.min(100));
    let row = step(tx.query_one(
        &format!(
            "INSERT INTO registry_versions AS v
                 (registry_id, version, sha256, size_bytes, chunk_count, numbers, published_by, published_at, allow_shrink, max_shrink_percent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8, $9)
             RETURNING {PUBLISHED_COLUMNS}"
        ),
        &[
            &registry_id,
            &version,
            &sha_bytes,
            &size_sql,
            &chunk_count,
            &numbers,
            &publication.published_by,
            &publication.allow_shrink,
            &max_shrink_percent,
        ],
    ))
    .await?;
    let published = published_from_row(&row)?;
    let insert = step(tx.prepare(
        "INSERT INTO registry_chunks (registry_id, version, seq, data) VALUES ($1, $2, $3, $4)",
    ))
    .await?;
    let mut input = tokio::fs::File::open(publication.file)
        .await
        .map_err(io_error(publication.file))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut seq: i32 = 0;
    loop {
        let mut filled = 0;
        while filled < CHUNK_BYTES {
            let n = input
                .read(&mut buf[filled..])
                .await
                .map_err(io_error(publication.file))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        hasher.update(&buf[..filled]);
        let data: &[u8] = &buf[..filled];
        step(tx.execute(&insert, &[&registry_id, &version, &seq, &data])).await?;
        seq += 1;
    }
    if seq != chunk_count || hex::encode(hasher.finalize()) != sha256 {
        return Err(PublishedError::Io {
            path: publication.file.to_path_buf(),
            cause: std::io::Error::other("the file changed while it was published"),
        });
    }
    step(tx.execute(
        "INSERT INTO registry_current (registry_id, version, rollback) VALUES ($1, $2, false)
         ON CONFLICT (registry_id) DO UPDATE SET version = EXCLUDED.version, rollback = false",
        &[&registry_id, &version],
    ))
    .await?;
    step(tx.execute(
        "DELETE FROM registry_versions WHERE registry_id = $1 AND version NOT IN
             (SELECT version FROM registry_versions WHERE registry_id = $1
              ORDER BY version DESC LIMIT $2)",
        &[&registry_id, &KEPT_VERSIONS],
    ))
    .await?;
    step(tx.execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &registry_id])).await?;
    step(tx.commit()).await?;
    Ok(published)
}

/// Makes the stored `version` of `registry_id` current again as a
/// **deliberate rollback** (`registry_current.rollback = true`): replicas
/// then install it although it is older than what they serve (they keep
/// the edition it replaces as `ID.snap.replaced-<seconds>`). The next
/// publication clears the mark and is numbered above every stored version.
///
/// # Errors
/// [`PublishedError::Gone`] when that version is not stored (pruned, or
/// never published), [`PublishedError::NotOlder`] when it is not older than
/// the current one, or a database error.
pub async fn rollback(
    pg: &Pg,
    registry_id: &str,
    version: u64,
) -> Result<Published, PublishedError> {
    let gone = || PublishedError::Gone {
        registry: registry_id.to_string(),
        version,
    };
    let version_sql = i64::try_from(version).map_err(|_| gone())?;
    let mut client = pg.client().await?;
    let tx = step(client.transaction()).await?;
    step(tx.batch_execute("SET LOCAL synchronous_commit = on")).await?;
    step(tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('dialgate.registry.' || $1, 0))",
        &[&registry_id],
    ))
    .await?;
    let row = step(tx.query_opt(
        &format!(
            "SELECT {PUBLISHED_COLUMNS}, true FROM registry_versions v WHERE registry_id = $1 AND version = $2"
        ),
        &[&registry_id, &version_sql],
    ))
    .await?
    .ok_or_else(gone)?;
    let published = published_from_row(&row)?;
    let current: Option<i64> = step(tx.query_opt(
        "SELECT version FROM registry_current WHERE registry_id = $1",
        &[&registry_id],
    ))
    .await?
    .map(|row| row.try_get(0))
    .transpose()
    .map_err(PgError::from)?;
    if current.is_none_or(|c| c <= version_sql) {
        return Err(PublishedError::NotOlder {
            registry: registry_id.to_string(),
            version,
            current: current.and_then(|c| u64::try_from(c).ok()),
        });
    }
    step(tx.execute(
        "UPDATE registry_current SET version = $2, rollback = true WHERE registry_id = $1",
        &[&registry_id, &version_sql],
    ))
    .await?;
    step(tx.execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &registry_id])).await?;
    step(tx.commit()).await?;
    Ok(published)
}
