//! Audit of the shared decision log: checkpoints over every replica's head,
//! `audit verify` over every replica's chain, `audit export` of every
//! replica's decisions (each saying which replica decided), `audit purge`
//! of each chain's old prefix.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;
use tokio_stream::StreamExt;

use super::audit::{ExportFilter, ExportFormat, csv_field};
use super::chain::{self, GENESIS};
use super::micros;
use super::shared_rows::{PG_COLUMNS, read_pg_row, strict_record};
use crate::model::Reason;
use crate::store::postgres::{Pg, PgError};

/// One replica's chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaHead {
    pub replica_id: String,
    pub seq: i64,
    pub hash: String,
}

/// A checkpoint over the heads of every replica's chain, signed with the
/// checkpoint key when one is configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadsCheckpoint {
    pub at: Timestamp,
    /// Sorted by replica id.
    pub heads: Vec<ReplicaHead>,
    /// SHA-256 (hex) of the checkpoint stored before this one, as stored:
    /// the checkpoints form a chain (none is removed unnoticed). `None`
    /// only for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

impl HeadsCheckpoint {
    /// The signed text.
    pub fn message(&self) -> String {
        let heads: Vec<String> = self
            .heads
            .iter()
            .map(|h| format!("{}={}:{}", hex::encode(&h.replica_id), h.seq, h.hash))
            .collect();
        match &self.prev {
            None => format!("dialgate-checkpoint:v2:{}:{}", self.at, heads.join(",")),
            Some(prev) => format!(
                "dialgate-checkpoint:v3:{}:{}:{prev}",
                self.at,
                heads.join(",")
            ),
        }
    }

    /// A checkpoint of `heads` at `at` following `prev` (the hash of the
    /// checkpoint stored before it), signed when a key is given.
    pub fn new(
        mut heads: Vec<ReplicaHead>,
        at: Timestamp,
        prev: Option<String>,
        key: Option<&SigningKey>,
    ) -> HeadsCheckpoint {
        heads.sort_by(|a, b| a.replica_id.cmp(&b.replica_id));
        let mut checkpoint = HeadsCheckpoint {
            at,
            heads,
            prev,
            signature: None,
            public_key: None,
        };
        if let Some(key) = key {
            let (signature, public_key) = super::checkpoint::sign(key, &checkpoint.message());
            checkpoint.signature = Some(signature);
            checkpoint.public_key = Some(public_key);
        }
        checkpoint
    }

    /// Whether the signature is valid for `key`.
    pub fn signed_by(&self, key: &VerifyingKey) -> bool {
        super::checkpoint::signature_valid(self.signature.as_deref(), key, &self.message())
    }
}

/// The head of every replica's chain (after a purge of all its rows: the
/// purge anchor).
///
/// # Errors
/// [`PgError`] when the database cannot be read.
pub async fn heads(client: &impl GenericClient) -> Result<Vec<ReplicaHead>, PgError> {
    let rows = client
        .query(
            // One index probe per replica, not a scan of the log.
            "SELECT r.replica_id, coalesce(d.seq, p.through_seq), coalesce(d.hash, p.through_hash)
             FROM replicas r
             LEFT JOIN LATERAL (
                 SELECT seq, hash FROM decisions
                 WHERE replica_id = r.replica_id ORDER BY seq DESC LIMIT 1
             ) d ON true
             LEFT JOIN decision_purges p ON p.replica_id = r.replica_id
             WHERE d.seq IS NOT NULL OR p.through_seq IS NOT NULL
             ORDER BY r.replica_id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ReplicaHead {
                replica_id: row.try_get(0)?,
                seq: row.try_get(1)?,
                hash: row.try_get(2)?,
            })
        })
        .collect()
}

/// Appends a checkpoint of every replica's head to `decision_checkpoints`.
///
/// # Errors
/// [`PgError`] when the database cannot be read or written.
pub async fn write_checkpoint(
    pg: &Pg,
    written_by: &str,
    key: Option<&SigningKey>,
) -> Result<HeadsCheckpoint, PgError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    let heads = heads(&*tx).await?;
    let checkpoint = append_checkpoint(&tx, written_by, heads, key).await?;
    tx.commit().await?;
    Ok(checkpoint)
}

/// The class of the advisory lock that orders checkpoint writes ("dglc").
const CHECKPOINT_LOCK_CLASS: i32 = 0x6467_6c63;

/// The hash a checkpoint's successor names as `prev`.
fn stored_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Appends a checkpoint of `heads`, chained to the last one stored, inside
/// the caller's transaction (its commit orders it after the last one).
///
/// # Errors
/// [`PgError`] when the database cannot be read or written.
pub(crate) async fn append_checkpoint(
    tx: &tokio_postgres::Transaction<'_>,
    written_by: &str,
    heads: Vec<ReplicaHead>,
    key: Option<&SigningKey>,
) -> Result<HeadsCheckpoint, PgError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, 0)",
        &[&CHECKPOINT_LOCK_CLASS],
    )
    .await?;
    let prev = tx
        .query_opt(
            "SELECT checkpoint FROM decision_checkpoints ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await?
        .map(|row| row.try_get::<_, String>(0).map(|text| stored_hash(&text)))
        .transpose()?;
    let checkpoint = HeadsCheckpoint::new(heads, Timestamp::now(), prev, key);
    let json = serde_json::to_string(&checkpoint).map_err(|e| PgError::Setup(e.to_string()))?;
    tx.execute(
        "INSERT INTO decision_checkpoints (written_by, checkpoint) VALUES ($1, $2)",
        &[&written_by, &json],
    )
    .await?;
    Ok(checkpoint)
}

/// When the writer checkpoints: at an interval, when the heads moved.
pub(crate) struct CheckpointSchedule {
    key: Option<SigningKey>,
    interval: Duration,
    last_written: Option<Instant>,
    last_heads: Vec<ReplicaHead>,
    /// The log held nothing at the last look (a new deployment): its first
    /// decisions are checkpointed at once, not an interval later, so that
    /// with a key `verify` finds a signed checkpoint from the start.
    empty: bool,
}

impl CheckpointSchedule {
    pub(crate) fn new(key: Option<SigningKey>, interval: Duration) -> CheckpointSchedule {
        CheckpointSchedule {
            key,
            interval,
            last_written: None,
            last_heads: Vec::new(),
            empty: false,
        }
    }

    pub(crate) async fn write_if_due(&mut self, pg: &Pg) {
        if !self.empty
            && self
                .last_written
                .is_some_and(|at| at.elapsed() < self.interval)
        {
            return;
        }
        self.write_now(pg).await;
    }

    pub(crate) async fn write_now(&mut self, pg: &Pg) {
        let written = tokio::time::timeout(Duration::from_secs(2), async {
            let mut client = pg.client().await?;
            let tx = client.transaction().await?;
            let heads = heads(&*tx).await?;
            self.empty = heads.is_empty();
            if heads.is_empty() || heads == self.last_heads {
                return Ok(None);
            }
            let checkpoint =
                append_checkpoint(&tx, pg.replica_id(), heads, self.key.as_ref()).await?;
            tx.commit().await?;
            Ok::<_, PgError>(Some(checkpoint))
        })
        .await;
        self.last_written = Some(Instant::now());
        match written {
            Ok(Ok(Some(checkpoint))) => self.last_heads = checkpoint.heads,
            Ok(Ok(None)) => {}
            Ok(Err(err)) => tracing::error!(error = %err, "decision log checkpoint not written"),
            Err(_) => tracing::error!("decision log checkpoint not written: no answer in 2 s"),
        }
    }
}

/// Every checkpoint stored, oldest first.
///
/// # Errors
/// [`PgError::Corrupt`] for a stored checkpoint that does not parse.
pub async fn checkpoints(client: &tokio_postgres::Client) -> Result<Vec<HeadsCheckpoint>, PgError> {
    Ok(stored_checkpoints(client)
        .await?
        .into_iter()
        .map(|(_, checkpoint)| checkpoint)
        .collect())
}

/// Every checkpoint stored, oldest first, with its hash as stored.
async fn stored_checkpoints(
    client: &tokio_postgres::Client,
) -> Result<Vec<(String, HeadsCheckpoint)>, PgError> {
    let rows = client
        .query(
            "SELECT id, checkpoint FROM decision_checkpoints ORDER BY id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let id: i64 = row.try_get(0)?;
            let text: String = row.try_get(1)?;
            serde_json::from_str(&text)
                .map(|checkpoint| (stored_hash(&text), checkpoint))
                .map_err(|e| PgError::Corrupt(format!("decision checkpoint {id}: {e}")))
        })
        .collect()
}

/// Outcome of `audit verify` over every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedVerification {
    Intact {
        /// Per replica: decisions held and the head.
        replicas: Vec<(String, u64, ReplicaHead)>,
        checkpoints: usize,
        unsigned_before_key: usize,
    },
    /// The first problem found.
    Broken {
        replica_id: String,
        seq: i64,
        decision_id: String,
        problem: String,
    },
}

fn broken(
    replica_id: &str,
    seq: i64,
    decision_id: &str,
    problem: impl Into<String>,
) -> SharedVerification {
    SharedVerification::Broken {
        replica_id: replica_id.to_string(),
        seq,
        decision_id: decision_id.to_string(),
        problem: problem.into(),
    }
}

/// Recomputes every replica's hash chain and checks it against every
/// checkpoint (stored and `anchors`): each head named must still be there
/// with the same hash (a truncated chain fails), and with `key` every
/// checkpoint after the first signed one must carry a valid signature.
///
/// # Errors
/// [`PgError`] when the database cannot be read.
pub async fn verify(
    pg: &Pg,
    anchors: &[HeadsCheckpoint],
    key: Option<&VerifyingKey>,
) -> Result<SharedVerification, PgError> {
    let client = pg.client().await?;
    // One snapshot for every statement: a purge or an append meanwhile is
    // either wholly seen or not at all (no false alarm halfway).
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let outcome = verify_in(&client, anchors, key).await;
    let ended = client.batch_execute("ROLLBACK").await;
    let outcome = outcome?;
    ended?;
    Ok(outcome)
}

/// [`verify`] inside the caller's transaction.
async fn verify_in(
    client: &tokio_postgres::Client,
    anchors: &[HeadsCheckpoint],
    key: Option<&VerifyingKey>,
) -> Result<SharedVerification, PgError> {
    let chained = stored_checkpoints(client).await?;
    if let Some(problem) = checkpoint_chain_problem(&chained) {
        return Ok(broken("", 0, "", problem));
    }
    let stored: Vec<HeadsCheckpoint> = chained.into_iter().map(|(_, c)| c).collect();
    let mut unsigned_before_key = 0;
    // With a key, the newest checkpoint must be signed (checked once the
    // log is known to hold decisions).
    let mut newest_signed = false;
    if let Some(key) = key {
        let mut seen_signed = false;
        for checkpoint in &stored {
            let problem = match &checkpoint.signature {
                None if seen_signed => "unsigned checkpoint after signed ones",
                None => {
                    unsigned_before_key += 1;
                    continue;
                }
                Some(_) if !checkpoint.signed_by(key) => {
                    "checkpoint signature invalid for the configured key"
                }
                Some(_) => {
                    seen_signed = true;
                    continue;
                }
            };
            return Ok(broken(
                "",
                0,
                "",
                format!("checkpoint of {}: {problem}", checkpoint.at),
            ));
        }
        newest_signed = seen_signed;
        if let Some(bad) = anchors
            .iter()
            .find(|a| a.signature.is_some() && !a.signed_by(key))
        {
            return Ok(broken(
                "",
                0,
                "",
                format!(
                    "anchor of {}: signature invalid for the configured key",
                    bad.at
                ),
            ));
        }
    }
    // (replica, seq) → hash, from every checkpoint.
    let mut expected: HashMap<(String, i64), String> = HashMap::new();
    let mut latest: BTreeMap<String, i64> = BTreeMap::new();
    for head in stored.iter().chain(anchors).flat_map(|c| &c.heads) {
        if let Some(other) = expected.insert((head.replica_id.clone(), head.seq), head.hash.clone())
            && other != head.hash
        {
            return Ok(broken(
                &head.replica_id,
                head.seq,
                "",
                "two checkpoints of this seq disagree on its hash",
            ));
        }
        let max = latest.entry(head.replica_id.clone()).or_insert(head.seq);
        *max = (*max).max(head.seq);
    }
    let replica_rows = client
        .query(
            "SELECT replica_id FROM decisions GROUP BY replica_id
             UNION SELECT replica_id FROM decision_purges ORDER BY 1",
            &[],
        )
        .await?;
    let mut replicas: Vec<String> = Vec::new();
    for row in &replica_rows {
        replicas.push(row.try_get(0)?);
    }
    for name in latest.keys() {
        if !replicas.contains(name) {
            replicas.push(name.clone());
        }
    }
    let mut intact = Vec::new();
    for replica in &replicas {
        let anchor = client
            .query_opt(
                "SELECT through_seq, through_hash FROM decision_purges WHERE replica_id = $1",
                &[replica],
            )
            .await?;
        let (anchor_seq, anchor_hash): (i64, String) = match anchor {
            Some(row) => (row.try_get(0)?, row.try_get(1)?),
            None => (0, GENESIS.to_string()),
        };
        match expected.get(&(replica.clone(), anchor_seq)) {
            Some(cut) if *cut != anchor_hash => {
                return Ok(broken(
                    replica,
                    anchor_seq,
                    "",
                    "purge anchor does not match its checkpoint",
                ));
            }
            // Every purge (and copy) attests its cut in the transaction
            // that makes it: an anchor nothing vouches for was not made by
            // dialgate (a prefix deleted and an anchor forged).
            None if anchor_seq > 0 => {
                return Ok(broken(
                    replica,
                    anchor_seq,
                    "",
                    "purge anchor no checkpoint vouches for (rows deleted and an anchor forged?)",
                ));
            }
            _ => {}
        }
        let statement = client
            .prepare(&format!(
                "SELECT {PG_COLUMNS} FROM decisions WHERE replica_id = $1 ORDER BY seq"
            ))
            .await?;
        let rows = client
            .query_raw(
                &statement,
                [replica as &(dyn tokio_postgres::types::ToSql + Sync)],
            )
            .await?;
        tokio::pin!(rows);
        let mut expected_seq = anchor_seq + 1;
        let mut expected_prev = anchor_hash;
        let mut hasher = chain::RowHasher::default();
        let mut count = 0u64;
        while let Some(row) = rows.next().await {
            let shared = read_pg_row(&row?)?;
            let stored = &shared.row;
            let bad = |problem: &str| broken(replica, stored.seq, &stored.decision_id, problem);
            if stored.seq != expected_seq {
                return Ok(bad(&format!(
                    "decision(s) missing: expected seq {expected_seq}, found {}",
                    stored.seq
                )));
            }
            if stored.prev_hash != expected_prev {
                return Ok(bad(
                    "chain broken: prev_hash does not match the previous decision (inserted or removed row)",
                ));
            }
            if hasher.hash(stored) != shared.hash {
                return Ok(bad("content altered: hash does not match the row"));
            }
            if let Some(checkpointed) = expected.get(&(replica.clone(), stored.seq))
                && *checkpointed != shared.hash
            {
                return Ok(bad("rewritten: the row does not match its checkpoint"));
            }
            expected_seq += 1;
            expected_prev = shared.hash;
            count += 1;
        }
        let head_seq = expected_seq - 1;
        if let Some(max) = latest.get(replica)
            && *max > head_seq
        {
            return Ok(broken(
                replica,
                head_seq + 1,
                "",
                format!(
                    "truncated: a checkpoint covers seq {max} but the chain ends at seq {head_seq}"
                ),
            ));
        }
        intact.push((
            replica.clone(),
            count,
            ReplicaHead {
                replica_id: replica.clone(),
                seq: head_seq,
                hash: expected_prev,
            },
        ));
    }
    // Unsigned checkpoints "from before the key" would otherwise accept
    // every checkpoint stripped of its signature (and rewritten with a
    // rewritten chain): the key would protect nothing. A writer with the
    // key checkpoints the heads at start, at its first decisions and at
    // shutdown.
    if key.is_some() && !newest_signed && !intact.is_empty() {
        return Ok(broken(
            "",
            0,
            "",
            "a checkpoint key is configured but no stored checkpoint is signed with it: signatures removed (then checkpoints may have been rewritten with the chains), or the key was configured since the replicas last started (start one with the key: it signs a checkpoint of the heads it finds)",
        ));
    }
    Ok(SharedVerification::Intact {
        replicas: intact,
        checkpoints: stored.len(),
        unsigned_before_key,
    })
}

#[derive(Serialize)]
struct ExportedDecision<'a> {
    replica_id: &'a str,
    seq: i64,
    decision_id: &'a str,
    decided_at: Timestamp,
    request_id: &'a str,
    campaign_id: &'a str,
    controller: &'a str,
    called_number: &'a str,
    normalized_number: &'a str,
    caller_id: &'a str,
    verdict: &'a str,
    reasons: &'a [Reason],
    next_allowed_at: Option<Timestamp>,
    data_versions: &'a [String],
    latency_us: u64,
    api_key: &'a str,
    hash: &'a str,
}

const CSV_HEADER: &str = "replica_id,seq,decision_id,decided_at,request_id,campaign_id,controller,called_number,normalized_number,caller_id,verdict,reasons,next_allowed_at,data_versions,latency_us,api_key,hash";

/// Writes the matching decisions of every replica to `out`, in decision
/// time order, each with the replica that decided it; returns how many.
///
/// # Errors
/// [`PgError`] when the log cannot be read, or a row does not parse;
/// `std::io::Error` (as [`PgError::Setup`]) when the output cannot be written.
pub async fn export(
    pg: &Pg,
    filter: &ExportFilter,
    format: ExportFormat,
    out: &mut impl Write,
) -> Result<u64, PgError> {
    let client = pg.client().await?;
    let statement = client
        .prepare(&format!(
            "SELECT {PG_COLUMNS} FROM decisions
             WHERE ($1::text IS NULL OR normalized_number = $1 OR called_number = $1
                    OR normalized_number = ANY($5::text[]))
               AND ($2::bigint IS NULL OR decided_at_us >= $2)
               AND ($3::bigint IS NULL OR decided_at_us < $3)
               AND ($4::text IS NULL OR campaign_id = $4)
             ORDER BY decided_at_us, replica_id, seq"
        ))
        .await?;
    let since = filter.since.map(micros);
    let until = filter.until.map(micros);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &filter.number,
        &since,
        &until,
        &filter.campaign,
        &filter.numbers,
    ];
    let rows = client.query_raw(&statement, params).await?;
    tokio::pin!(rows);
    let io = |e: std::io::Error| PgError::Setup(format!("cannot write output: {e}"));
    if format == ExportFormat::Csv {
        writeln!(out, "{CSV_HEADER}").map_err(io)?;
    }
    let mut count = 0;
    while let Some(row) = rows.next().await {
        let shared = read_pg_row(&row?)?;
        let record = strict_record(&shared.row)?;
        let exported = ExportedDecision {
            replica_id: &shared.replica_id,
            seq: shared.row.seq,
            decision_id: &record.decision_id,
            decided_at: record.decided_at,
            request_id: &record.request_id,
            campaign_id: &record.campaign_id,
            controller: &record.controller,
            called_number: &record.called_number,
            normalized_number: &record.normalized_number,
            caller_id: &record.caller_id,
            verdict: record.verdict.as_str(),
            reasons: &record.reasons,
            next_allowed_at: record.next_allowed_at,
            data_versions: &record.data_versions,
            latency_us: record.latency_us,
            api_key: &record.api_key,
            hash: &shared.hash,
        };
        match format {
            ExportFormat::Jsonl => {
                serde_json::to_writer(&mut *out, &exported)
                    .map_err(|e| io(std::io::Error::other(e)))?;
                writeln!(out).map_err(io)?;
            }
            ExportFormat::Csv => write_csv_row(out, &exported).map_err(io)?,
        }
        count += 1;
    }
    out.flush().map_err(io)?;
    Ok(count)
}

fn write_csv_row(out: &mut impl Write, d: &ExportedDecision<'_>) -> std::io::Result<()> {
    let reasons = d
        .reasons
        .iter()
        .map(|r| format!("{}:{}", r.code.as_str(), r.detail))
        .collect::<Vec<_>>()
        .join("; ");
    let fields = [
        csv_field(d.replica_id),
        d.seq.to_string(),
        csv_field(d.decision_id),
        d.decided_at.to_string(),
        csv_field(d.request_id),
        csv_field(d.campaign_id),
        csv_field(d.controller),
        csv_field(d.called_number),
        csv_field(d.normalized_number),
        csv_field(d.caller_id),
        d.verdict.to_string(),
        csv_field(&reasons),
        d.next_allowed_at.map(|t| t.to_string()).unwrap_or_default(),
        csv_field(&d.data_versions.join(" ")),
        d.latency_us.to_string(),
        csv_field(d.api_key),
        d.hash.to_string(),
    ];
    writeln!(out, "{}", fields.join(","))
}

/// What a purge of the shared log removed, per replica: the rows and the
/// new anchor (the last removed row).
pub type SharedPurge = Vec<(String, u64, ReplicaHead)>;

/// Removes, from each replica's chain, the prefix of decisions made before
/// `before` (in batches: the replicas keep logging meanwhile), records each
/// cut as the chain's anchor and writes a checkpoint of the cuts.
///
/// # Errors
/// [`PgError`] when the log cannot be read or written.
pub async fn purge(
    pg: &Pg,
    before: Timestamp,
    key: Option<&SigningKey>,
) -> Result<SharedPurge, PgError> {
    let mut client = pg.client().await?;
    let needs: Vec<(String, i64)> = client
        .query(
            "SELECT replica_id, keep_decisions_us FROM replicas WHERE keep_decisions_us IS NOT NULL",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok::<_, PgError>((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, _>>()?;
    // A clock running ahead would cut inside what a replica still counts
    // (found by review on the local log): this host's clock must agree with
    // the database's, as every replica's must.
    super::shared_clock::probe(&client).await?;
    purge_allowed(before, Timestamp::now(), &needs)?;
    let replicas: Vec<String> = client
        .query("SELECT DISTINCT replica_id FROM decisions ORDER BY 1", &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let before_us = micros(before);
    let mut summary = Vec::new();
    for replica in replicas {
        // A chain is appended in time order: the cut is a prefix of seq, up
        // to the first row at or after `before`.
        // Rows the replica appends meanwhile come after the current last
        // one, so they are never in the cut either.
        let keep_from: i64 = client
            .query_one(
                "SELECT coalesce(min(seq) FILTER (WHERE decided_at_us >= $2), max(seq) + 1, 0)
                 FROM decisions WHERE replica_id = $1",
                &[&replica, &before_us],
            )
            .await?
            .try_get(0)?;
        let mut removed = 0u64;
        let mut anchor = None;
        loop {
            let tx = client.transaction().await?;
            let cut = tx
                .query_opt(
                    "SELECT seq, hash FROM decisions
                     WHERE replica_id = $1 AND seq < $2
                     ORDER BY seq LIMIT 1 OFFSET 9999",
                    &[&replica, &keep_from],
                )
                .await?;
            let cut = match cut {
                Some(row) => Some((row.try_get::<_, i64>(0)?, row.try_get::<_, String>(1)?)),
                None => tx
                    .query_opt(
                        "SELECT seq, hash FROM decisions
                         WHERE replica_id = $1 AND seq < $2
                         ORDER BY seq DESC LIMIT 1",
                        &[&replica, &keep_from],
                    )
                    .await?
                    .map(|row| Ok::<_, PgError>((row.try_get(0)?, row.try_get(1)?)))
                    .transpose()?,
            };
            let Some((seq, hash)) = cut else {
                tx.commit().await?;
                break;
            };
            removed += tx
                .execute(
                    "DELETE FROM decisions WHERE replica_id = $1 AND seq <= $2",
                    &[&replica, &seq],
                )
                .await?;
            tx.execute(
                "INSERT INTO decision_purges (replica_id, through_seq, through_hash) VALUES ($1, $2, $3)
                 ON CONFLICT (replica_id) DO UPDATE SET through_seq = $2, through_hash = $3",
                &[&replica, &seq, &hash],
            )
            .await?;
            let cut = ReplicaHead {
                replica_id: replica.clone(),
                seq,
                hash,
            };
            // Attested with the cut itself: verify tells it from a truncation.
            append_checkpoint(&tx, "audit purge", vec![cut.clone()], key).await?;
            tx.commit().await?;
            anchor = Some(cut);
        }
        if let Some(anchor) = anchor {
            summary.push((replica, removed, anchor));
        }
    }
    Ok(summary)
}

/// Refuses a cut at `before` inside what a replica recorded it needs
/// (`needs`: replica, microseconds back from `now`).
///
/// # Errors
/// [`PgError::Setup`] naming the replica and the oldest instant allowed.
fn purge_allowed(
    before: Timestamp,
    now: Timestamp,
    needs: &[(String, i64)],
) -> Result<(), PgError> {
    let Some((replica, keep_us)) = needs.iter().max_by_key(|(_, keep)| *keep) else {
        return Ok(());
    };
    let floor = now
        .checked_sub(jiff::SignedDuration::from_micros(*keep_us))
        .unwrap_or(Timestamp::UNIX_EPOCH);
    if before > floor {
        return Err(PgError::Setup(format!(
            "--before {before}: replica {replica:?} still needs the decisions made since {floor} (its longest attempt-cap window, idempotency window or record-keeping period, recorded at its last start): nothing purged"
        )));
    }
    Ok(())
}

/// What is wrong with the chain of stored checkpoints (with their hashes,
/// oldest first): the first names no predecessor, each other one names the
/// one stored before it.
fn checkpoint_chain_problem(chained: &[(String, HeadsCheckpoint)]) -> Option<String> {
    let mut previous: Option<&str> = None;
    for (i, (hash, checkpoint)) in chained.iter().enumerate() {
        if checkpoint.prev.as_deref() != previous {
            return Some(format!(
                "checkpoint of {} (the {}th stored): the checkpoint chain is broken (a checkpoint removed, inserted or altered)",
                checkpoint.at,
                i + 1
            ));
        }
        previous = Some(hash);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_purge_keeps_what_any_replica_needs() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let day_us = 86_400_000_000i64;
        let needs = vec![
            ("gw-a".to_string(), day_us),
            ("gw-cap".to_string(), 30 * day_us),
        ];
        let eight_days_ago = now - jiff::SignedDuration::from_hours(8 * 24);
        let err = purge_allowed(eight_days_ago, now, &needs)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"gw-cap\""), "{err}");
        assert!(
            purge_allowed(now - jiff::SignedDuration::from_hours(31 * 24), now, &needs).is_ok()
        );
        assert!(purge_allowed(now, now, &[]).is_ok());
    }

    #[test]
    fn test_heads_checkpoint_signature_covers_every_head() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let head = |replica: &str, seq| ReplicaHead {
            replica_id: replica.into(),
            seq,
            hash: "ab".repeat(32),
        };
        let checkpoint =
            HeadsCheckpoint::new(vec![head("gw-2", 5), head("gw-1", 9)], at, None, Some(&key));
        assert_eq!(checkpoint.heads[0].replica_id, "gw-1", "sorted");
        assert!(checkpoint.signed_by(&key.verifying_key()));
        let mut moved = checkpoint.clone();
        moved.heads[1].seq = 4;
        assert!(!moved.signed_by(&key.verifying_key()));
        let mut renamed = checkpoint.clone();
        renamed.heads[0].replica_id = "gw-3".into();
        assert!(!renamed.signed_by(&key.verifying_key()));
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(!checkpoint.signed_by(&other.verifying_key()));
        let json = serde_json::to_string(&checkpoint).unwrap();
        assert_eq!(
            serde_json::from_str::<HeadsCheckpoint>(&json).unwrap(),
            checkpoint
        );
    }

    #[test]
    fn test_checkpoints_are_chained() {
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut chained: Vec<(String, HeadsCheckpoint)> = Vec::new();
        for _ in 0..3 {
            let prev = chained.last().map(|(hash, _)| hash.clone());
            let checkpoint = HeadsCheckpoint::new(Vec::new(), at, prev, Some(&key));
            let text = serde_json::to_string(&checkpoint).unwrap();
            chained.push((stored_hash(&text), checkpoint));
        }
        assert!(checkpoint_chain_problem(&chained).is_none());
        assert!(chained[2].1.signed_by(&key.verifying_key()));
        let mut moved = chained[2].1.clone();
        moved.prev = Some("00".repeat(32));
        assert!(!moved.signed_by(&key.verifying_key()), "prev is signed");
        let mut middle_gone = chained.clone();
        middle_gone.remove(1);
        assert!(checkpoint_chain_problem(&middle_gone).is_some());
        assert!(
            checkpoint_chain_problem(&chained[1..]).is_some(),
            "the first removed"
        );
    }
}
