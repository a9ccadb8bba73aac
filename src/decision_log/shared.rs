//! The decision log shared by every replica in PostgreSQL (`[store] backend
//! = "postgres"`). One writer task per replica batches the decisions
//! waiting and commits each batch in one transaction (synchronous commit),
//! before any of them is answered. In the same transaction it
//!
//! - takes the advisory locks of the batch's request ids and (controller,
//!   number) pairs, sorted (two replicas' batches never deadlock);
//! - finds the request ids some replica already decided: those decisions
//!   are answered again, not logged twice;
//! - counts the ALLOWs of every replica under the attempt caps: an ALLOW
//!   without a slot is logged and answered as a DENY (`ATTEMPT_LIMIT`);
//! - appends the rows to this replica's hash chain, rows keyed
//!   `(replica_id, seq)`.
//!
//! The writer's own connection holds a session advisory lock on its
//! replica id: a second process with the same id does not write (its
//! chain would fork). Any failure drops the connection; the next batch (or
//! the idle probe) reconnects, takes the lock again and re-reads the head.
//! Every wait is bounded by `unavailable_after`: the caller then answers
//! UNAVAILABLE, and `/readyz` reports 503 until a commit or probe succeeds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot};

use super::chain::{self, GENESIS};
use super::shared_audit;
use super::shared_clock::{self, DB_NOW_US, MAX_CLOCK_SKEW};
use super::shared_head::{self, Head};
use super::shared_rows::{
    PG_COLUMNS, attempts_lock, lock_order, read_pg_row, request_lock, stored_instant, strict_record,
};
use super::writer::stored_row;
use super::{DecisionRecord, LogConfig, LogCounters, LogError, StartupScan, StartupState, micros};
use crate::calling::AttemptLimit;
use crate::model::Verdict;
use crate::store::postgres::{Pg, PgError};

/// The class of the session advisory lock a replica's writer holds on its
/// replica id ("dglw"); the two-key form keeps it apart from the batch keys.
pub(crate) const WRITER_LOCK_CLASS: i32 = 0x6467_6c77;

/// How often an idle writer checks the database (readiness, reconnection).
const IDLE_PROBE: Duration = Duration::from_millis(500);

/// After a failed connection, batches fail at once for this long instead of
/// each waiting for another connection attempt.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// A decision waiting to be logged, with the caps its ALLOW must fit.
#[derive(Debug)]
pub struct Pending {
    /// Logged at its `decided_at` (the instant its attempt is kept at).
    pub record: DecisionRecord,
    /// The clock's reading the decision was made at: its caps count back
    /// from it (earlier than `decided_at` when the clock was set back
    /// within the tolerance).
    pub read_at: Timestamp,
    /// The attempt caps of the call (empty: an ALLOW is logged as decided).
    pub caps: SmallVec<[AttemptLimit; 2]>,
    /// An ALLOW counts against caps (some cap exists anywhere): even
    /// without caps of its own it takes the number's lock, so that no
    /// capped decision of another replica counts past it.
    pub counted: bool,
}

/// What the database made of a pending decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Logged as it is now (an ALLOW the caps refused became a DENY).
    Logged(DecisionRecord),
    /// A replica had already decided this request id: that decision.
    Earlier(DecisionRecord),
}

enum Job {
    Decide(Box<Pending>, oneshot::Sender<Result<Committed, LogError>>),
    Stop(std::sync::mpsc::Sender<()>),
}

/// Handle to this replica's writer of the shared log.
#[derive(Debug)]
pub struct SharedLog {
    sender: mpsc::Sender<Job>,
    counters: Arc<LogCounters>,
    wait: Duration,
}

/// What a writer keeps for its loop.
struct Writer {
    pg: Pg,
    /// The replica's data directory: the history of the shared database
    /// it decides on is recorded there (see `store::database_epoch`).
    data_dir: std::path::PathBuf,
    session: Option<Session>,
    /// The head this writer last committed (or found at start): kept
    /// across sessions, a reconnection must find the chain continuing it.
    last_committed: Head,
    retry_at: Instant,
    last_error: Option<Arc<PgError>>,
    counters: Arc<LogCounters>,
    idempotency_window: Duration,
    checkpoints: shared_audit::CheckpointSchedule,
}

/// The writer's own connection, holding the replica's lock, and its head.
struct Session {
    conn: Connection,
    head: (i64, String),
    statements: Statements,
}

/// A dedicated connection; dropping it closes the socket, which ends the
/// database session: its lock and any open transaction go with it.
struct Connection {
    client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Statements {
    lock: tokio_postgres::Statement,
    earlier: tokio_postgres::Statement,
    attempts: tokio_postgres::Statement,
    insert: tokio_postgres::Statement,
}

impl SharedLog {
    /// Opens this replica's writer: connects, takes the replica's lock (a
    /// second process with the same replica id is refused here), reads the
    /// chain head, and returns the ALLOWs of every replica inside the
    /// attempt window (for the in-memory ledger).
    ///
    /// # Errors
    /// [`PgError`] when the database cannot be used, the replica id is
    /// taken, or the checkpoint key cannot be read.
    pub async fn open(
        pg: &Pg,
        data_dir: &std::path::Path,
        config: &LogConfig,
        scan: StartupScan,
    ) -> Result<(SharedLog, StartupState), PgError> {
        let key = config
            .checkpoint_key_file
            .as_deref()
            .map(super::checkpoint::load_key)
            .transpose()
            .map_err(|e| PgError::Setup(e.to_string()))?;
        let session = pg
            .within(async {
                let session = open_session(pg, data_dir, None).await?;
                // Never behind what a checkpoint vouched for.
                if let Some(checkpointed) =
                    shared_head::latest_checkpointed(&session.conn.client, pg.replica_id()).await?
                {
                    shared_head::require_continues(
                        &session.conn.client,
                        pg.replica_id(),
                        &checkpointed,
                        &session.head,
                    )
                    .await?;
                }
                Ok(session)
            })
            .await?;
        record_needs(pg, &scan).await?;
        let startup = read_startup_state(pg, scan).await?;
        let counters = Arc::new(LogCounters::default());
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let writer = Writer {
            pg: pg.clone(),
            data_dir: data_dir.to_path_buf(),
            last_committed: session.head.clone(),
            session: Some(session),
            retry_at: Instant::now(),
            last_error: None,
            counters: Arc::clone(&counters),
            idempotency_window: Duration::from_secs(config.idempotency_window_seconds),
            checkpoints: shared_audit::CheckpointSchedule::new(
                key,
                Duration::from_secs(config.checkpoint_interval_seconds.max(1)),
            ),
        };
        tokio::spawn(writer.run(receiver, config.max_batch.max(1)));
        Ok((
            SharedLog {
                sender,
                counters,
                wait: pg.settings().unavailable_after,
            },
            startup,
        ))
    }

    /// Logs a decision durably (with its attempt slot and request id
    /// checked across replicas) and returns what was committed.
    ///
    /// # Errors
    /// [`LogError`] when the decision is not known to be durable within
    /// `unavailable_after`: the dialer must not dial.
    pub async fn decide(&self, pending: Pending) -> Result<Committed, LogError> {
        let (ack, done) = oneshot::channel();
        self.counters.backlog.inc();
        if let Err(err) = self.sender.try_send(Job::Decide(Box::new(pending), ack)) {
            self.counters.backlog.dec();
            return Err(match err {
                mpsc::error::TrySendError::Full(_) => LogError::Backlog,
                mpsc::error::TrySendError::Closed(_) => LogError::Closed,
            });
        }
        match tokio::time::timeout(self.wait, done).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LogError::Closed),
            Err(_) => Err(LogError::Timeout),
        }
    }

    /// The writer's counters.
    pub fn counters(&self) -> &LogCounters {
        &self.counters
    }

    /// Commits what is queued, writes a last checkpoint and stops the
    /// writer (waits at most a few `unavailable_after`).
    pub fn close(&self) {
        let (done, stopped) = std::sync::mpsc::channel();
        if self.sender.try_send(Job::Stop(done)).is_ok() {
            let _ = stopped.recv_timeout(self.wait * 3);
        }
    }
}

/// Opens the writer's connection: the replica's lock, the prepared
/// statements and the head of its chain, which must continue `last` (what
/// this writer committed before), on the history of the shared database
/// the replica decided on (`data_dir`'s record; see
/// `store::database_epoch`: after a failover or a restore, no decision).
async fn open_session(
    pg: &Pg,
    data_dir: &std::path::Path,
    last: Option<&Head>,
) -> Result<Session, PgError> {
    let (client, connection) = pg.dedicated().await?;
    let task = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "decision log connection ended");
        }
    });
    let conn = Connection { client, task };
    let replica = pg.replica_id();
    // Durable before the answer; and the server notices a vanished writer
    // (a partition) within seconds, releasing its lock for the reconnection
    // and, if it vanished inside a batch, the batch's locks (no batch is
    // idle in its transaction for long: it is abandoned after
    // `unavailable_after`).
    conn.client
        .batch_execute(
            "SET synchronous_commit = on; SET tcp_keepalives_idle = 5;
             SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3;
             SET tcp_user_timeout = 10000; SET idle_in_transaction_session_timeout = 5000",
        )
        .await?;
    // A batch its caller gave up on (after `unavailable_after`) stops
    // waiting and holding its locks by itself, and a backend whose client
    // vanished notices while it waits.
    let bound = pg.settings().unavailable_after.as_millis().max(1);
    conn.client
        .batch_execute(&format!(
            "SET lock_timeout = {bound}; SET statement_timeout = {bound}"
        ))
        .await?;
    if let Err(err) = conn
        .client
        .batch_execute("SET client_connection_check_interval = 1000")
        .await
    {
        // PostgreSQL before 14: the timeouts above still bound the wait.
        tracing::debug!(error = %err, "client_connection_check_interval not set");
    }
    // Named like the pool's connections: an operator (and the tests) can
    // find the writer in pg_stat_activity.
    conn.client
        .execute(
            "SELECT set_config('application_name', $1, false)",
            &[&format!("dialgate {replica} decision log")],
        )
        .await?;
    let locked: bool = conn
        .client
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2))",
            &[&WRITER_LOCK_CLASS, &replica],
        )
        .await?
        .try_get(0)?;
    if !locked {
        return Err(PgError::Setup(format!(
            "replica_id {replica:?} is already writing the decision log from another process: each replica needs its own replica_id"
        )));
    }
    crate::store::database_epoch::check(&conn.client, data_dir, replica).await?;
    let statements = Statements::prepare(&conn.client).await?;
    let head = read_head(&conn.client, replica).await?;
    if let Some(last) = last {
        shared_head::require_continues(&conn.client, replica, last, &head).await?;
    }
    Ok(Session {
        conn,
        head,
        statements,
    })
}

/// The last row of a replica's chain, or its purge anchor, or genesis.
pub(crate) async fn read_head(
    client: &tokio_postgres::Client,
    replica: &str,
) -> Result<(i64, String), PgError> {
    if let Some(row) = client
        .query_opt(
            "SELECT seq, hash FROM decisions WHERE replica_id = $1 ORDER BY seq DESC LIMIT 1",
            &[&replica],
        )
        .await?
    {
        return Ok((row.try_get(0)?, row.try_get(1)?));
    }
    if let Some(row) = client
        .query_opt(
            "SELECT through_seq, through_hash FROM decision_purges WHERE replica_id = $1",
            &[&replica],
        )
        .await?
    {
        return Ok((row.try_get(0)?, row.try_get(1)?));
    }
    Ok((0, GENESIS.to_string()))
}

impl Statements {
    async fn prepare(client: &tokio_postgres::Client) -> Result<Statements, PgError> {
        Ok(Statements {
            // The database's clock before and after the locks: the first
            // reading is compared with this host's clock, the lock wait
            // between them does not hide a skew.
            lock: client
                .prepare(&format!(
                    "SELECT {DB_NOW_US}, dialgate_lock_keys($1), {DB_NOW_US}"
                ))
                .await?,
            // One index probe per request id (`decisions_by_request`): with
            // `request_id = ANY($1)` the generic plan walked the whole
            // idempotency window by time (60 ms at 60k rows, measured).
            earlier: client
                .prepare(&format!(
                    "SELECT {PG_COLUMNS} FROM unnest($1::text[]) AS k(wanted)
                     JOIN decisions ON request_id = k.wanted
                     WHERE request_id <> '' AND decided_at_us >= $2
                     ORDER BY decided_at_us, replica_id, seq"
                ))
                .await?,
            attempts: client
                .prepare(
                    "SELECT d.controller, d.normalized_number, d.decided_at_us
                     FROM decisions d
                     JOIN unnest($1::text[], $2::text[]) AS k(controller, number)
                       ON d.controller = k.controller AND d.normalized_number = k.number
                     WHERE d.verdict = 'ALLOW' AND d.decided_at_us > $3",
                )
                .await?,
            insert: client.prepare(INSERT_ROWS).await?,
        })
    }
}

/// Inserts a batch of one replica's rows, one array per column.
pub(crate) const INSERT_ROWS: &str =
    "INSERT INTO decisions (replica_id, seq, decision_id, decided_at_us, request_id,
        campaign_id, controller, called_number, normalized_number, caller_id, verdict,
        reasons, next_allowed_at_us, data_versions, latency_us, api_key, prev_hash, hash)
     SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::text[],
        $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
        $12::text[], $13::bigint[], $14::text[], $15::bigint[], $16::text[],
        $17::text[], $18::text[])";

type Ack = oneshot::Sender<Result<Committed, LogError>>;

impl Writer {
    async fn run(mut self, mut receiver: mpsc::Receiver<Job>, max_batch: usize) {
        let mut batch: Vec<(Box<Pending>, Ack)> = Vec::with_capacity(max_batch);
        let mut stopped = None;
        while stopped.is_none() {
            match tokio::time::timeout(IDLE_PROBE, receiver.recv()).await {
                Err(_) => {
                    self.probe().await;
                    continue;
                }
                Ok(None) => break,
                Ok(Some(Job::Stop(done))) => stopped = Some(done),
                Ok(Some(Job::Decide(pending, ack))) => batch.push((pending, ack)),
            }
            // Everything that queued while the last batch committed goes
            // into this one: the batch grows with the load, a lone call
            // never waits for company.
            while stopped.is_none() && batch.len() < max_batch {
                match receiver.try_recv() {
                    Ok(Job::Decide(pending, ack)) => batch.push((pending, ack)),
                    Ok(Job::Stop(done)) => stopped = Some(done),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit_batch(&mut batch).await;
            }
        }
        // Callers that queued behind the stop are told the log is closed.
        receiver.close();
        while let Ok(job) = receiver.try_recv() {
            if let Job::Decide(_, ack) = job {
                let _ = ack.send(Err(LogError::Closed));
                self.counters.backlog.dec();
            }
        }
        if self.session.is_some() {
            self.checkpoints.write_now(&self.pg).await;
        }
        self.session = None;
        if let Some(done) = stopped {
            let _ = done.send(());
        }
    }

    /// Reconnects a writer without a session, checks one that has one:
    /// readiness follows the database even when no call comes.
    async fn probe(&mut self) {
        let healthy = match &self.session {
            Some(session) => self
                .pg
                .within(shared_clock::probe(&session.conn.client))
                .await
                .map_err(Arc::new),
            None => self.session().await.map(|_| ()),
        };
        let healthy = match healthy {
            Ok(()) => true,
            Err(err) => {
                if !self.counters.failing.load(Ordering::Relaxed) {
                    tracing::error!(error = %err, "shared decision log unavailable");
                }
                *self.counters.last_error.lock().expect("log error lock") = Some(err.to_string());
                false
            }
        };
        if healthy {
            self.counters.failing.store(false, Ordering::Relaxed);
            if self.session.is_some() {
                self.checkpoints.write_if_due(&self.pg).await;
            }
        } else {
            self.session = None;
            self.counters.failing.store(true, Ordering::Relaxed);
        }
    }

    /// The session, reconnecting when there is none (not more often than
    /// every [`RECONNECT_PAUSE`]).
    async fn session(&mut self) -> Result<&mut Session, Arc<PgError>> {
        if self.session.is_none() {
            if Instant::now() < self.retry_at
                && let Some(err) = &self.last_error
            {
                return Err(Arc::clone(err));
            }
            let last = self.last_committed.clone();
            match self
                .pg
                .within(open_session(&self.pg, &self.data_dir, Some(&last)))
                .await
            {
                Ok(session) => {
                    tracing::info!(
                        head = session.head.0,
                        "decision log: connected to the shared database"
                    );
                    self.session = Some(session);
                }
                Err(err) => {
                    let err = Arc::new(err);
                    self.retry_at = Instant::now() + RECONNECT_PAUSE;
                    self.last_error = Some(Arc::clone(&err));
                    return Err(err);
                }
            }
        }
        Ok(self.session.as_mut().expect("session just opened"))
    }

    async fn commit_batch(&mut self, batch: &mut Vec<(Box<Pending>, Ack)>) {
        let size = batch.len();
        // Callers that gave up (they answered UNAVAILABLE) need no row.
        let (live, gone): (Vec<_>, Vec<_>) = batch.drain(..).partition(|(_, ack)| !ack.is_closed());
        self.counters.backlog.sub(gone.len() as i64);
        if live.is_empty() {
            return;
        }
        let (pendings, acks): (Vec<Pending>, Vec<Ack>) = live
            .into_iter()
            .map(|(pending, ack)| (*pending, ack))
            .unzip();
        let started = Instant::now();
        let since = Timestamp::now()
            .checked_sub(self.idempotency_window)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let replica = self.pg.replica_id().to_string();
        let pg = self.pg.clone();
        let result = match self.session().await {
            Err(err) => Err(err),
            Ok(session) => pg
                .within(commit(session, &replica, pendings, since))
                .await
                .map_err(Arc::new),
        };
        let took = started.elapsed();
        self.counters.commit_seconds.observe(took.as_secs_f64());
        self.counters.commit_us.record(took.as_micros() as u64);
        self.counters
            .commit_history
            .record(crate::history::now_seconds(), took.as_micros() as u64);
        self.counters.backlog.sub(acks.len() as i64);
        match result {
            Ok(committed) => {
                if let Some(session) = &self.session {
                    self.last_committed = session.head.clone();
                }
                let written = committed
                    .iter()
                    .filter(|c| matches!(c, Committed::Logged(_)))
                    .count();
                self.counters.written.inc_by(written as u64);
                self.counters.batch_size.observe(size as f64);
                self.counters
                    .last_batch_size
                    .store(size, std::sync::atomic::Ordering::Relaxed);
                self.counters.failing.store(false, Ordering::Relaxed);
                for (ack, outcome) in acks.into_iter().zip(committed) {
                    let _ = ack.send(Ok(outcome));
                }
                if self.session.is_some() {
                    self.checkpoints.write_if_due(&self.pg).await;
                }
            }
            Err(err) => {
                // Committed or not is unknown after a timeout: the next
                // batch starts from a fresh connection and the head as the
                // database has it.
                self.session = None;
                tracing::error!(error = %err, decisions = acks.len(), "shared decision log commit failed");
                self.counters.failed_batches.inc();
                self.counters.failing.store(true, Ordering::Relaxed);
                *self.counters.last_error.lock().expect("log error lock") = Some(err.to_string());
                for ack in acks {
                    let _ = ack.send(Err(LogError::Shared(Arc::clone(&err))));
                }
            }
        }
    }
}

/// One batch in one transaction; returns what became of each pending
/// decision, in order. The session's head moves only once it committed.
async fn commit(
    session: &mut Session,
    replica: &str,
    pendings: Vec<Pending>,
    idempotency_since: Timestamp,
) -> Result<Vec<Committed>, PgError> {
    let statements = &session.statements;
    // Read committed whatever the database's default: each lookup after the
    // locks must see what the batch that held them committed.
    let tx = session
        .conn
        .client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
        .start()
        .await?;
    let plan = BatchPlan::of(&pendings, MAX_CLOCK_SKEW);
    let sent = Timestamp::now();
    let clocks = tx.query_one(&statements.lock, &[&plan.locks]).await?;
    let received = Timestamp::now();
    let db_first = shared_clock::db_timestamp(clocks.try_get(0)?)?;
    let db_locked = shared_clock::db_timestamp(clocks.try_get(2)?)?;
    shared_clock::check_skew(
        shared_clock::clock_skew(sent, received, db_first, db_locked.duration_since(db_first)),
        MAX_CLOCK_SKEW,
    )?;
    let since_us = micros(idempotency_since);
    let attempts_since_us = plan.attempts_since.map(micros).unwrap_or(i64::MAX);
    let (earlier_rows, attempt_rows) = tokio::try_join!(
        async {
            if plan.request_ids.is_empty() {
                return Ok(Vec::new());
            }
            tx.query(&statements.earlier, &[&plan.request_ids, &since_us])
                .await
        },
        async {
            if plan.controllers.is_empty() {
                return Ok(Vec::new());
            }
            tx.query(
                &statements.attempts,
                &[&plan.controllers, &plan.numbers, &attempts_since_us],
            )
            .await
        },
    )?;
    let mut earlier: HashMap<String, DecisionRecord> = HashMap::new();
    for row in &earlier_rows {
        let shared = read_pg_row(row)?;
        let record = strict_record(&shared.row)?;
        earlier
            .entry(crate::idempotency::idempotency_key(
                &record.api_key,
                &record.request_id,
            ))
            .or_insert(record);
    }
    let mut attempts: HashMap<(String, String), Vec<Timestamp>> = HashMap::new();
    for row in &attempt_rows {
        let controller: String = row.try_get(0)?;
        let number: String = row.try_get(1)?;
        let at: i64 = row.try_get(2)?;
        attempts
            .entry((controller, number))
            .or_default()
            .push(stored_instant(at, "an ALLOW's decided_at_us")?);
    }
    let outcomes = settle(pendings, &mut earlier, &mut attempts, MAX_CLOCK_SKEW);
    let mut columns = Columns::default();
    let (mut seq, mut prev_hash) = session.head.clone();
    for outcome in &outcomes {
        if let Committed::Logged(record) = outcome {
            seq += 1;
            let row = stored_row(seq, record.clone(), prev_hash);
            let hash = chain::row_hash(&row);
            columns.push(row, hash.clone());
            prev_hash = hash;
        }
    }
    if columns.len() > 0 {
        columns.insert(&tx, &statements.insert, replica).await?;
    }
    tx.commit().await?;
    session.head = (seq, prev_hash);
    Ok(outcomes)
}

/// What a batch locks and reads before it decides.
#[derive(Debug, Default, PartialEq, Eq)]
struct BatchPlan {
    locks: Vec<i64>,
    request_ids: Vec<String>,
    controllers: Vec<String>,
    numbers: Vec<String>,
    /// The oldest instant any cap of the batch looks back to.
    attempts_since: Option<Timestamp>,
}

impl BatchPlan {
    /// The plan of `pendings`, their caps' windows longer by `slack`.
    fn of(pendings: &[Pending], slack: jiff::SignedDuration) -> BatchPlan {
        let mut plan = BatchPlan::default();
        let mut locks = Vec::new();
        // Each (controller, number) read once: the attempts query joins on
        // these pairs, a pair twice would count its ALLOWs twice.
        let mut pairs = std::collections::HashSet::new();
        for pending in pendings {
            let record = &pending.record;
            if !record.request_id.is_empty() {
                locks.push(request_lock(&record.request_id));
                plan.request_ids.push(record.request_id.clone());
            }
            if counted_allow(pending) {
                locks.push(attempts_lock(&record.controller, &record.normalized_number));
            }
            if needs_slot(pending) {
                if pairs.insert((&record.controller, &record.normalized_number)) {
                    plan.controllers.push(record.controller.clone());
                    plan.numbers.push(record.normalized_number.clone());
                }
                for cap in &pending.caps {
                    let since = pending.read_at.min(record.decided_at) - cap.window - slack;
                    plan.attempts_since = Some(plan.attempts_since.map_or(since, |s| s.min(since)));
                }
            }
        }
        plan.locks = lock_order(locks);
        plan
    }
}

/// An ALLOW that counts against the caps of its controller and number.
fn counted_allow(pending: &Pending) -> bool {
    pending.record.verdict == Verdict::Allow
        && (pending.counted || !pending.caps.is_empty())
        && !pending.record.normalized_number.is_empty()
}

/// An ALLOW that must fit under caps of its own.
fn needs_slot(pending: &Pending) -> bool {
    counted_allow(pending) && !pending.caps.is_empty()
}

/// Decides, in batch order and under the batch's locks, what becomes of
/// each pending decision: an earlier decision of its request id, or itself
/// (an ALLOW over a cap turned into a DENY). Pure: the database's rows are
/// in `earlier` and `attempts`, which take this batch's own rows as it goes.
fn settle(
    pendings: Vec<Pending>,
    earlier: &mut HashMap<String, DecisionRecord>,
    attempts: &mut HashMap<(String, String), Vec<Timestamp>>,
    slack: jiff::SignedDuration,
) -> Vec<Committed> {
    let mut outcomes = Vec::with_capacity(pendings.len());
    for pending in pendings {
        let slot = needs_slot(&pending);
        let Pending {
            mut record,
            caps,
            read_at,
            ..
        } = pending;
        let key = crate::idempotency::idempotency_key(&record.api_key, &record.request_id);
        if !record.request_id.is_empty()
            && let Some(first) = earlier.get(&key)
        {
            outcomes.push(Committed::Earlier(first.clone()));
            continue;
        }
        if slot {
            let key = (record.controller.clone(), record.normalized_number.clone());
            let taken = attempts.entry(key).or_default();
            let counted_from = read_at.min(record.decided_at);
            match crate::attempts::refused_by_caps(&caps, taken, counted_from, slack) {
                Some((reason, lifts_at)) => {
                    record.verdict = Verdict::Deny;
                    record.reasons = vec![reason];
                    record.next_allowed_at = lifts_at;
                }
                None => taken.push(record.decided_at),
            }
        }
        if !record.request_id.is_empty() {
            earlier.insert(key, record.clone());
        }
        outcomes.push(Committed::Logged(record));
    }
    outcomes
}

/// A batch's rows as one array per column (one INSERT for the batch).
#[derive(Default)]
pub(crate) struct Columns {
    seq: Vec<i64>,
    decision_id: Vec<String>,
    decided_at_us: Vec<i64>,
    request_id: Vec<String>,
    campaign_id: Vec<String>,
    controller: Vec<String>,
    called_number: Vec<String>,
    normalized_number: Vec<String>,
    caller_id: Vec<String>,
    verdict: Vec<String>,
    reasons: Vec<String>,
    next_allowed_at_us: Vec<Option<i64>>,
    data_versions: Vec<String>,
    latency_us: Vec<i64>,
    api_key: Vec<String>,
    prev_hash: Vec<String>,
    hash: Vec<String>,
}

impl Columns {
    pub(crate) fn len(&self) -> usize {
        self.seq.len()
    }

    /// Inserts the rows with [`INSERT_ROWS`] prepared as `insert`.
    pub(crate) async fn insert(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        insert: &tokio_postgres::Statement,
        replica: &str,
    ) -> Result<u64, tokio_postgres::Error> {
        tx.execute(
            insert,
            &[
                &replica,
                &self.seq,
                &self.decision_id,
                &self.decided_at_us,
                &self.request_id,
                &self.campaign_id,
                &self.controller,
                &self.called_number,
                &self.normalized_number,
                &self.caller_id,
                &self.verdict,
                &self.reasons,
                &self.next_allowed_at_us,
                &self.data_versions,
                &self.latency_us,
                &self.api_key,
                &self.prev_hash,
                &self.hash,
            ],
        )
        .await
    }

    pub(crate) fn push(&mut self, row: chain::StoredRow, hash: String) {
        self.seq.push(row.seq);
        self.decision_id.push(row.decision_id);
        self.decided_at_us.push(row.decided_at_us);
        self.request_id.push(row.request_id);
        self.campaign_id.push(row.campaign_id);
        self.controller.push(row.controller);
        self.called_number.push(row.called_number);
        self.normalized_number.push(row.normalized_number);
        self.caller_id.push(row.caller_id);
        self.verdict.push(row.verdict);
        self.reasons.push(row.reasons);
        self.next_allowed_at_us.push(row.next_allowed_at_us);
        self.data_versions.push(row.data_versions);
        self.latency_us.push(row.latency_us);
        self.api_key.push(row.api_key);
        self.prev_hash.push(row.prev_hash);
        self.hash.push(hash);
    }
}

/// Records how far back this replica needs the log (for `audit purge`)
/// and its longest cap window (for copying a SQLite log in).
async fn record_needs(pg: &Pg, scan: &StartupScan) -> Result<(), PgError> {
    let client = pg.client().await?;
    let us = |d: jiff::SignedDuration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let keep_us = us(scan.keep);
    let cap_window_us = scan
        .attempts_since
        .map(|since| us(Timestamp::now().duration_since(since)));
    pg.within(async {
        client
            .execute(
                "UPDATE replicas SET keep_decisions_us = $2, cap_window_us = $3 WHERE replica_id = $1",
                &[&pg.replica_id(), &keep_us, &cap_window_us],
            )
            .await?;
        Ok(())
    })
    .await
}

/// The decisions of every replica the server needs at start: the ALLOWs
/// inside the attempt window (the idempotency cache starts empty: the
/// database answers repeats).
async fn read_startup_state(pg: &Pg, scan: StartupScan) -> Result<StartupState, PgError> {
    let mut state = StartupState::default();
    let Some(since) = scan.attempts_since else {
        return Ok(state);
    };
    let client = pg.client().await?;
    let rows = pg
        .within(async {
            Ok(client
                .query(
                    "SELECT controller, normalized_number, decided_at_us FROM decisions
                     WHERE verdict = 'ALLOW' AND decided_at_us >= $1",
                    &[&micros(since)],
                )
                .await?)
        })
        .await?;
    for row in rows {
        state.allowed.push((
            row.try_get(0)?,
            row.try_get(1)?,
            stored_instant(row.try_get(2)?, "an ALLOW's decided_at_us")?,
        ));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::model::{Reason, ReasonCode};

    fn pending(request_id: &str, verdict: Verdict, at: Timestamp, capped: bool) -> Pending {
        Pending {
            read_at: at,
            record: DecisionRecord {
                decision_id: format!("d-{request_id}-{}", at.as_microsecond()),
                decided_at: at,
                request_id: request_id.into(),
                campaign_id: "fr".into(),
                controller: "acme".into(),
                called_number: "0612345678".into(),
                normalized_number: "+33612345678".into(),
                caller_id: String::new(),
                verdict,
                reasons: Vec::new(),
                next_allowed_at: None,
                data_versions: Vec::new(),
                latency_us: 1,
                api_key: String::new(),
            },
            counted: true,
            caps: if capped {
                SmallVec::from_slice(&[AttemptLimit {
                    max_attempts: 2,
                    window: SignedDuration::from_hours(24),
                }])
            } else {
                SmallVec::new()
            },
        }
    }

    fn verdicts(outcomes: &[Committed]) -> Vec<(&'static str, Verdict)> {
        outcomes
            .iter()
            .map(|c| match c {
                Committed::Logged(r) => ("logged", r.verdict),
                Committed::Earlier(r) => ("earlier", r.verdict),
            })
            .collect()
    }

    #[test]
    fn test_settle_never_allows_more_than_the_cap() {
        let t0: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let mut attempts = HashMap::new();
        // Another replica already took one slot, stamped after this batch's decisions.
        attempts.insert(
            ("acme".to_string(), "+33612345678".to_string()),
            vec![t0 + SignedDuration::from_millis(5)],
        );
        let outcomes = settle(
            vec![
                pending("", Verdict::Allow, t0, true),
                pending("", Verdict::Allow, t0, true),
                pending("", Verdict::Deny, t0, true),
                pending("", Verdict::Allow, t0, false),
            ],
            &mut HashMap::new(),
            &mut attempts,
            SignedDuration::ZERO,
        );
        assert_eq!(
            verdicts(&outcomes),
            vec![
                ("logged", Verdict::Allow),
                ("logged", Verdict::Deny),
                ("logged", Verdict::Deny),
                ("logged", Verdict::Allow),
            ]
        );
        let Committed::Logged(refused) = &outcomes[1] else {
            unreachable!()
        };
        assert_eq!(refused.reasons[0].code, ReasonCode::AttemptLimit);
        assert_eq!(
            refused.next_allowed_at,
            Some(t0 + SignedDuration::from_hours(24))
        );
    }

    #[test]
    fn test_settle_answers_a_request_id_once() {
        let t0: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let mut earlier = HashMap::new();
        let mut first = pending("r1", Verdict::Deny, t0, false).record;
        first.reasons = vec![Reason::new(ReasonCode::AttemptLimit, "x")];
        earlier.insert(crate::idempotency::idempotency_key("", "r1"), first.clone());
        // Another API key's "r1" is another request (ids are each key's own).
        let mut other_key = pending("r1", Verdict::Allow, t0, false);
        other_key.record.api_key = "floor-2".into();
        let outcomes = settle(
            vec![
                pending("r1", Verdict::Allow, t0, true),
                pending("r2", Verdict::Allow, t0, false),
                pending("r2", Verdict::Deny, t0, false),
                other_key,
            ],
            &mut earlier,
            &mut HashMap::new(),
            SignedDuration::ZERO,
        );
        assert_eq!(outcomes[0], Committed::Earlier(first));
        assert!(matches!(&outcomes[1], Committed::Logged(r) if r.verdict == Verdict::Allow));
        assert!(
            matches!((&outcomes[1], &outcomes[2]), (Committed::Logged(a), Committed::Earlier(b)) if a == b),
            "a repeat inside one batch answers the first"
        );
        assert!(
            matches!(&outcomes[3], Committed::Logged(r) if r.api_key == "floor-2"),
            "{:?}",
            outcomes[3]
        );
    }

    #[test]
    fn test_batch_plan_locks_sorted_and_once() {
        let t0: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let plan = BatchPlan::of(
            &[
                pending("b", Verdict::Allow, t0, true),
                pending("a", Verdict::Allow, t0, true),
                pending("", Verdict::Deny, t0, true),
            ],
            SignedDuration::ZERO,
        );
        assert_eq!(
            plan.locks.len(),
            3,
            "two request ids, one (controller, number)"
        );
        assert!(plan.locks.windows(2).all(|w| w[0] < w[1]));
        let uncapped = BatchPlan::of(
            &[pending("", Verdict::Allow, t0, false)],
            SignedDuration::ZERO,
        );
        assert_eq!(
            uncapped.locks.len(),
            1,
            "an uncapped ALLOW that counts locks its number"
        );
        assert!(uncapped.controllers.is_empty(), "and reads no attempts");
        assert_eq!(
            (plan.controllers.len(), plan.numbers.len()),
            (1, 1),
            "two calls to one number read its attempts once (else counted twice)"
        );
        assert_eq!(
            plan.attempts_since,
            Some(t0 - SignedDuration::from_hours(24))
        );
    }

    /// A replica whose clock runs ahead by less than the tolerance still
    /// counts an ALLOW another replica stamped just inside the window.
    #[test]
    fn test_settle_counts_allows_within_the_clock_tolerance_of_the_window() {
        let t0: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let day = SignedDuration::from_hours(24);
        let edge = t0 - day - SignedDuration::from_millis(300);
        let attempts = || {
            HashMap::from([(
                ("acme".to_string(), "+33612345678".to_string()),
                vec![edge, t0 - SignedDuration::from_hours(1)],
            )])
        };
        let strict = settle(
            vec![pending("", Verdict::Allow, t0, true)],
            &mut HashMap::new(),
            &mut attempts(),
            MAX_CLOCK_SKEW,
        );
        assert_eq!(verdicts(&strict), vec![("logged", Verdict::Deny)]);
        let Committed::Logged(refused) = &strict[0] else {
            unreachable!()
        };
        assert_eq!(refused.next_allowed_at, Some(edge + day + MAX_CLOCK_SKEW));
        let loose = settle(
            vec![pending("", Verdict::Allow, t0, true)],
            &mut HashMap::new(),
            &mut attempts(),
            SignedDuration::ZERO,
        );
        assert_eq!(verdicts(&loose), vec![("logged", Verdict::Allow)]);
        let plan = BatchPlan::of(&[pending("", Verdict::Allow, t0, true)], MAX_CLOCK_SKEW);
        assert_eq!(plan.attempts_since, Some(t0 - day - MAX_CLOCK_SKEW));
    }

    /// Cap 4, 2 ALLOWs already logged, two calls to the number in one
    /// batch: both ALLOW (the attempts query, a join on the plan's pairs,
    /// returns each logged ALLOW once per pair: once).
    #[test]
    fn test_two_calls_to_one_number_in_a_batch_count_the_logged_allows_once() {
        let t0: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let capped = |id: &str| {
            let mut p = pending(id, Verdict::Allow, t0, true);
            p.caps[0].max_attempts = 4;
            p
        };
        let batch = vec![capped("r1"), capped("r2")];
        let plan = BatchPlan::of(&batch, MAX_CLOCK_SKEW);
        let logged = [
            t0 - SignedDuration::from_hours(2),
            t0 - SignedDuration::from_hours(1),
        ];
        // What the attempts query returns: the logged ALLOWs of each pair.
        let mut attempts: HashMap<(String, String), Vec<Timestamp>> = HashMap::new();
        for (controller, number) in plan.controllers.iter().zip(&plan.numbers) {
            attempts
                .entry((controller.clone(), number.clone()))
                .or_default()
                .extend(logged);
        }
        let outcomes = settle(batch, &mut HashMap::new(), &mut attempts, MAX_CLOCK_SKEW);
        assert_eq!(
            verdicts(&outcomes),
            vec![("logged", Verdict::Allow), ("logged", Verdict::Allow)]
        );
    }
}
