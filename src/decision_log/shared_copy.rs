//! Copies a gateway's SQLite decision log into the shared database as one
//! replica's chain, rows and hashes as they are (`audit verify` passes
//! afterwards), with the purge anchor where a purge cut the SQLite log.

use std::path::Path;

use rusqlite::OptionalExtension;

use super::audit::{self, AuditError};
use super::writer::{ROW_COLUMNS, read_row};
use crate::store::postgres::{Pg, PgError};

/// Rows per INSERT while copying.
const CHUNK: usize = 2_000;

/// Why the copy did not happen (nothing of it is kept).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Database(#[from] PgError),
    #[error(transparent)]
    Sqlite(#[from] AuditError),
    #[error(
        "replica {0:?} already has decisions in the shared database: the SQLite log was not copied (copy it under a replica id that has none)"
    )]
    NotEmpty(String),
    #[error(
        "replica {0:?} is writing the decision log right now: stop it before copying its SQLite log"
    )]
    Busy(String),
    #[error(
        "replica {0:?} has ALLOW decisions inside the attempt-cap window: replicas serving meanwhile did not count the SQLite log's ALLOWs; copy the SQLite log before any replica serves (see docs/replicas-decisions.md)"
    )]
    ReplicasServing(String),
}

/// What was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub decisions: u64,
    /// The SQLite log's head, now the replica's head.
    pub head_seq: i64,
    pub head_hash: String,
    /// A re-run: the SQLite log was copied before; nothing was written.
    pub already_present: bool,
}

/// Copies the SQLite decision log under `data_dir` into the shared
/// database as `replica_id`'s chain, in one transaction. Refuses when that
/// replica already has rows (or a purge anchor), or a process writes as it.
///
/// # Errors
/// [`CopyError`].
pub async fn copy_from_sqlite(
    pg: &Pg,
    data_dir: &Path,
    replica_id: &str,
    key: Option<&ed25519_dalek::SigningKey>,
) -> Result<Copied, CopyError> {
    let db = super::database_path(data_dir);
    if !db.exists() {
        // A gateway that never served: no log to copy.
        return Ok(Copied {
            decisions: 0,
            head_seq: 0,
            head_hash: String::new(),
            already_present: false,
        });
    }
    let conn = audit::open_read_only(&db)?;
    let anchor = audit::purge_anchor(&conn)?;
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(PgError::from)?;
    // The writer's lock, for this transaction: no replica writes as it meanwhile.
    let free: bool = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1, hashtext($2))",
            &[&super::shared::WRITER_LOCK_CLASS, &replica_id],
        )
        .await
        .map_err(PgError::from)?
        .try_get(0)
        .map_err(PgError::from)?;
    if !free {
        return Err(CopyError::Busy(replica_id.to_string()));
    }
    let taken: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM decisions WHERE replica_id = $1)
                 OR EXISTS (SELECT 1 FROM decision_purges WHERE replica_id = $1)",
            &[&replica_id],
        )
        .await
        .map_err(PgError::from)?
        .try_get(0)
        .map_err(PgError::from)?;
    if taken {
        // A re-run of `store migrate`: the SQLite head is already in this
        // replica's chain (which may have grown since); anything else is
        // another log, refused.
        let sqlite_head: Option<(i64, String)> = conn
            .query_row(
                "SELECT seq, hash FROM decisions ORDER BY seq DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(AuditError::from)?
            .or_else(|| anchor.clone());
        let Some((seq, hash)) = sqlite_head else {
            return Ok(Copied::already(0, String::new()));
        };
        let present: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM decisions WHERE replica_id = $1 AND seq = $2 AND hash = $3)
                     OR EXISTS (SELECT 1 FROM decision_purges WHERE replica_id = $1 AND through_seq >= $2)",
                &[&replica_id, &seq, &hash],
            )
            .await
            .map_err(PgError::from)?
            .try_get(0)
            .map_err(PgError::from)?;
        if present {
            return Ok(Copied::already(seq, hash));
        }
        return Err(CopyError::NotEmpty(replica_id.to_string()));
    }
    // Replicas that decided inside a cap window did not count the ALLOWs
    // copied now: the copy comes before any replica serves.
    let serving = tx
        .query_opt(
            "SELECT d.replica_id FROM decisions d, (SELECT max(cap_window_us) AS w FROM replicas) m
             WHERE m.w IS NOT NULL AND d.replica_id <> $1 AND d.verdict = 'ALLOW'
               AND d.decided_at_us > (extract(epoch FROM clock_timestamp()) * 1000000)::bigint - m.w
             LIMIT 1",
            &[&replica_id],
        )
        .await
        .map_err(PgError::from)?;
    if let Some(row) = serving {
        return Err(CopyError::ReplicasServing(
            row.try_get(0).map_err(PgError::from)?,
        ));
    }
    // Checkpoints cover the replicas listed here.
    tx.execute(
        "INSERT INTO replicas (replica_id, first_seen, last_seen) VALUES ($1, now(), now())
         ON CONFLICT (replica_id) DO NOTHING",
        &[&replica_id],
    )
    .await
    .map_err(PgError::from)?;
    let insert = tx
        .prepare(super::shared::INSERT_ROWS)
        .await
        .map_err(PgError::from)?;
    let mut head = anchor
        .clone()
        .unwrap_or((0, super::chain::GENESIS.to_string()));
    if let Some((seq, hash)) = &anchor {
        tx.execute(
            "INSERT INTO decision_purges (replica_id, through_seq, through_hash) VALUES ($1, $2, $3)",
            &[&replica_id, seq, hash],
        )
        .await
        .map_err(PgError::from)?;
        // Attested with the copy, as a purge attests its cut, signed with
        // the checkpoint key when one is configured.
        super::shared_audit::append_checkpoint(
            &tx,
            "store migrate",
            vec![super::shared_audit::ReplicaHead {
                replica_id: replica_id.to_string(),
                seq: *seq,
                hash: hash.clone(),
            }],
            key,
        )
        .await?;
    }
    let mut statement = conn
        .prepare(&format!("SELECT {ROW_COLUMNS} FROM decisions ORDER BY seq"))
        .map_err(AuditError::from)?;
    let mut rows = statement.query([]).map_err(AuditError::from)?;
    let mut columns = super::shared::Columns::default();
    let mut copied = 0u64;
    loop {
        let row = rows.next().map_err(AuditError::from)?;
        let done = row.is_none();
        if let Some(row) = row {
            let (stored, hash) = read_row(row).map_err(AuditError::from)?;
            head = (stored.seq, hash.clone());
            columns.push(stored, hash);
        }
        if columns.len() >= CHUNK || (done && columns.len() > 0) {
            copied += columns.len() as u64;
            columns
                .insert(&tx, &insert, replica_id)
                .await
                .map_err(PgError::from)?;
            columns = super::shared::Columns::default();
        }
        if done {
            break;
        }
    }
    tx.commit().await.map_err(PgError::from)?;
    Ok(Copied {
        decisions: copied,
        head_seq: head.0,
        head_hash: head.1,
        already_present: false,
    })
}

impl Copied {
    fn already(head_seq: i64, head_hash: String) -> Copied {
        Copied {
            decisions: 0,
            head_seq,
            head_hash,
            already_present: true,
        }
    }
}

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.head_seq == 0 && self.decisions == 0 && !self.already_present {
            write!(f, "nothing to copy (no decision in the SQLite log)")
        } else if self.already_present {
            write!(
                f,
                "already copied (the SQLite head, seq {}, is in this replica's chain)",
                self.head_seq
            )
        } else {
            write!(
                f,
                "{} decisions copied, chain head seq {}",
                self.decisions, self.head_seq
            )
        }
    }
}
