//! Which history of the shared database a replica decides on.
//!
//! A failover to an asynchronous standby, or a restore of a backup, gives
//! the replicas a database that lacks the last commits of the old one: the
//! ALLOWs the attempt caps count, the opt-outs the CRM was told were
//! recorded. The replica that wrote them notices (its chain goes back, see
//! `shared_head`) and stops; the others did not, and went on counting caps
//! without those ALLOWs (found by review: a fourth call under a cap of 3).
//!
//! PostgreSQL starts a new timeline at every promotion and every
//! point-in-time recovery, and a new cluster has a new system identifier.
//! The pair the replicas decide on is recorded in the database itself
//! (`database_history`: written by the first replica, copied to standbys
//! with everything else, so that a replica new to the database, with an
//! empty `data_dir`, finds the change too) and by each replica in
//! `data_dir/shared-database.json`; both are checked whenever the decision
//! log's writer connects. Another pair stops decisions (`UNAVAILABLE`)
//! until an operator, having checked what the new primary lacks, runs
//! `dialgate store accept-database` on each replica (the first run also
//! updates the database's record).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::postgres::PgError;

/// The file, under `data_dir`, holding the history decided on.
pub const FILE: &str = "shared-database.json";

/// A history of the shared database: its cluster and timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseEpoch {
    /// `pg_control_system()`'s system identifier, when the role may read
    /// it (superusers and `pg_monitor`); else only the timeline is known.
    pub system_identifier: Option<i64>,
    /// The timeline the primary writes (from its current WAL file's name).
    pub timeline: u32,
}

impl std::fmt::Display for DatabaseEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.system_identifier {
            Some(id) => write!(f, "cluster {id}, timeline {}", self.timeline),
            None => write!(f, "timeline {}", self.timeline),
        }
    }
}

/// Reads the history the connected server is on.
///
/// # Errors
/// [`PgError`] when the server does not answer, is a standby in recovery
/// (no timeline to write on), or names its WAL file unreadably.
pub async fn read(client: &tokio_postgres::Client) -> Result<DatabaseEpoch, PgError> {
    let wal_file: String = client
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await?
        .try_get(0)?;
    let timeline = wal_file
        .get(..8)
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or_else(|| {
            PgError::Corrupt(format!("WAL file name {wal_file:?}: no timeline in it"))
        })?;
    // Refused to roles without the right: the timeline alone then.
    let system_identifier = match client
        .query_one("SELECT system_identifier FROM pg_control_system()", &[])
        .await
    {
        Ok(row) => row.try_get::<_, i64>(0).ok(),
        Err(err) => {
            tracing::debug!(error = %err, "pg_control_system() not readable: the timeline alone tells the database's history");
            None
        }
    };
    Ok(DatabaseEpoch {
        system_identifier,
        timeline,
    })
}

/// The file of `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The history recorded in `data_dir`, if any.
///
/// # Errors
/// [`PgError::Setup`] when the file exists but cannot be read or parsed:
/// a damaged record is not taken as none (that would accept any history).
pub fn recorded(data_dir: &Path) -> Result<Option<DatabaseEpoch>, PgError> {
    let file = path(data_dir);
    match std::fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            PgError::Setup(format!(
                "{}: {e}: the shared database's history this replica decided on cannot be read; check it, then run `dialgate store accept-database`",
                file.display()
            ))
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(PgError::Setup(format!("{}: {err}", file.display()))),
    }
}

/// Records `epoch` as the history `data_dir`'s replica decides on
/// (written whole, then renamed in).
///
/// # Errors
/// [`PgError::Setup`] when the file cannot be written.
pub fn record(data_dir: &Path, epoch: DatabaseEpoch) -> Result<(), PgError> {
    let file = path(data_dir);
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    let written = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut out = crate::private::create_file(&tmp)?;
        out.write_all(
            serde_json::to_string(&epoch)
                .map_err(std::io::Error::other)?
                .as_bytes(),
        )?;
        out.sync_all()?;
        std::fs::rename(&tmp, &file)?;
        std::fs::File::open(data_dir)?.sync_all()
    })();
    written.map_err(|e| PgError::Setup(format!("{}: {e}", file.display())))
}

/// The history the database records (`database_history`), recording
/// `now` by `by` when it records none (the first replica on it).
async fn shared_record(
    client: &tokio_postgres::Client,
    now: DatabaseEpoch,
    by: &str,
) -> Result<DatabaseEpoch, PgError> {
    let timeline = i32::try_from(now.timeline)
        .map_err(|_| PgError::Corrupt(format!("timeline {} out of range", now.timeline)))?;
    client
        .execute(
            "INSERT INTO database_history (id, system_identifier, timeline, recorded_by)
             VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
            &[&now.system_identifier, &timeline, &by],
        )
        .await?;
    let row = client
        .query_one(
            "SELECT system_identifier, timeline FROM database_history WHERE id = 1",
            &[],
        )
        .await?;
    let timeline: i32 = row.try_get(1)?;
    Ok(DatabaseEpoch {
        system_identifier: row.try_get(0)?,
        timeline: u32::try_from(timeline)
            .map_err(|_| PgError::Corrupt(format!("database_history: timeline {timeline}")))?,
    })
}

fn another_history(now: DatabaseEpoch, known: DatabaseEpoch, whose: &str) -> PgError {
    PgError::Setup(format!(
        "the shared database is on another history ({now}) than the one {whose} ({known}): a failover or a restore, after which decisions and contact changes committed on the old primary may be missing (ALLOWs the attempt caps count, opt-outs the CRM was told were recorded); no decision until an operator has checked what is missing and run `dialgate store accept-database` on each replica"
    ))
}

/// Checks that the connected server is on the history the database
/// records and `data_dir`'s replica decided on; records it where none is
/// (the first replica on the database; a new replica).
///
/// # Errors
/// [`PgError::Setup`] naming both histories when they differ.
pub async fn check(
    client: &tokio_postgres::Client,
    data_dir: &Path,
    by: &str,
) -> Result<(), PgError> {
    let now = read(client).await?;
    let shared = shared_record(client, now, by).await?;
    if !same_history(shared, now) {
        return Err(another_history(now, shared, "the replicas decided on"));
    }
    match recorded(data_dir)? {
        None => record(data_dir, now),
        Some(known) if same_history(known, now) => Ok(()),
        Some(known) => Err(another_history(now, known, "this replica decided on")),
    }
}

/// Records the connected server's history as the one decided on, in the
/// database and in `data_dir` (`dialgate store accept-database`); returns
/// it and the one `data_dir` recorded before.
///
/// # Errors
/// [`PgError`] when the database or the file cannot be written.
pub async fn accept(
    client: &tokio_postgres::Client,
    data_dir: &Path,
    by: &str,
) -> Result<(DatabaseEpoch, Option<DatabaseEpoch>), PgError> {
    let now = read(client).await?;
    let before = recorded(data_dir).ok().flatten();
    let timeline = i32::try_from(now.timeline)
        .map_err(|_| PgError::Corrupt(format!("timeline {} out of range", now.timeline)))?;
    client
        .execute(
            "INSERT INTO database_history (id, system_identifier, timeline, recorded_by)
             VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET system_identifier = $1, timeline = $2,
                 recorded_by = $3, recorded_at = now()",
            &[&now.system_identifier, &timeline, &by],
        )
        .await?;
    record(data_dir, now)?;
    Ok((now, before))
}

/// Whether `now` is the history `known` (a system identifier that one of
/// them could not read is not compared).
fn same_history(known: DatabaseEpoch, now: DatabaseEpoch) -> bool {
    known.timeline == now.timeline
        && match (known.system_identifier, now.system_identifier) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_another_timeline_or_cluster_is_another_history() {
        let epoch = |id: Option<i64>, timeline: u32| DatabaseEpoch {
            system_identifier: id,
            timeline,
        };
        assert!(same_history(epoch(Some(7), 1), epoch(Some(7), 1)));
        assert!(same_history(epoch(None, 1), epoch(Some(7), 1)));
        assert!(!same_history(epoch(Some(7), 1), epoch(Some(7), 2)));
        assert!(!same_history(epoch(Some(7), 1), epoch(Some(8), 1)));
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded(dir.path()).unwrap(), None);
        record(dir.path(), epoch(Some(7), 2)).unwrap();
        assert_eq!(recorded(dir.path()).unwrap(), Some(epoch(Some(7), 2)));
        std::fs::write(path(dir.path()), "{").unwrap();
        assert!(recorded(dir.path()).is_err(), "damaged: not taken as none");
    }
}
