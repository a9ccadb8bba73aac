//! The log writer: one thread owns the SQLite connection and commits queued
//! decisions in groups (one transaction and one fsync per group). Callers
//! wait for their group's commit; a full queue or a failed commit answers
//! with an error at once, so the gateway fails closed instead of piling up.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::LogConfig;
use super::chain::{self, StoredRow};
use super::wal_backfill::WalBackfill;
use super::{DecisionRecord, StartupScan, StartupState, from_micros, micros, open_connection};
use crate::histogram::LatencyHistogram;
use crate::history::LatencyHistory;
use crate::model::{Reason, Verdict};

/// Why a decision could not be logged (the dialer must not dial).
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("decision log backlog full")]
    Backlog,
    /// Shared: one failed group commit answers every decision in the group.
    #[error("decision log write failed: {0}")]
    Write(Arc<rusqlite::Error>),
    #[error("decision log did not confirm the write in time")]
    Timeout,
    #[error("decision log is closed")]
    Closed,
    /// The shared database did not commit the batch (`backend = "postgres"`);
    /// the cause is in the server log and `/status`, not in the answer.
    #[error("the shared database did not commit the decision")]
    Shared(Arc<crate::store::postgres::PgError>),
}

/// Why the decision log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("decision log database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error(transparent)]
    CheckpointKey(#[from] super::checkpoint::CheckpointError),
    #[error("cannot start the {thread} thread: {cause}")]
    Thread {
        thread: &'static str,
        cause: std::io::Error,
    },
    #[error("decision log: cannot read where a purge cut it: {0}")]
    Anchor(String),
    /// The database's chain does not reach what a checkpoint vouched for:
    /// writing on would forget committed ALLOWs from the attempt caps and
    /// give checkpointed seqs to new rows (see [`require_continues`]); the
    /// message names both heads and what to do.
    #[error("the decision log went backwards: {0}")]
    Behind(String),
    /// A stored value start-up cannot read as what it is (never taken as a
    /// default: see [`read_startup_state`]).
    #[error("decision log database: {0}")]
    Corrupt(String),
}

enum Job {
    Append(Box<DecisionRecord>, Ack),
    Stop,
}

/// Where the writer answers a record: its seq once committed, with the
/// row it became, or why not.
type Ack = oneshot::Sender<Result<Logged, LogError>>;

/// A committed record: its seq, and the row it became, handed back so that
/// the caller's thread frees it. Freed on the writer's thread, the texts a
/// worker allocated took mimalloc's slower free from another thread, and
/// the worker collected them later: a sixth of the writer's CPU in a
/// CheckCall profile.
#[derive(Debug)]
struct Logged {
    seq: i64,
    _row: Option<StoredRow>,
}

/// Counters of the writer, for `/status` and `/metrics`: the Prometheus
/// metrics are their one source (`registry` holds them, except
/// `commit_seconds`, which the server registers with the decision metrics).
#[derive(Debug)]
pub struct LogCounters {
    /// `dialgate_log_backlog`, `dialgate_log_written_total`,
    /// `dialgate_log_failed_batches_total`, `dialgate_log_batch_size`.
    pub registry: prometheus::Registry,
    /// Decisions queued for the writer and not yet answered.
    pub backlog: prometheus::IntGauge,
    /// Decisions committed since start.
    pub written: prometheus::IntCounter,
    /// Group commits that failed since start.
    pub failed_batches: prometheus::IntCounter,
    /// Decisions per successful group commit (its count: the commits).
    pub batch_size: prometheus::Histogram,
    pub last_batch_size: AtomicUsize,
    pub last_error: Mutex<Option<String>>,
    /// False after a failed commit, true again after a successful one.
    pub failing: std::sync::atomic::AtomicBool,
    /// How long each group commit took (inserts, commit and fsync): the
    /// part of every CheckCall's latency the disk decides. Prometheus'
    /// histogram for `/metrics`, the log-linear one for `/status` quantiles,
    /// and per minute for the page's charts.
    pub commit_seconds: prometheus::Histogram,
    pub commit_us: LatencyHistogram,
    pub commit_history: LatencyHistory,
}

impl LogCounters {
    /// Group commits that succeeded since start.
    pub fn batches(&self) -> u64 {
        self.batch_size.get_sample_count()
    }
}

impl Default for LogCounters {
    fn default() -> LogCounters {
        use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "dialgate_log_commit_seconds",
                "Duration of each decision-log group commit, fsync included",
            )
            .buckets(vec![
                0.0001, 0.00015, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.05,
                0.25, 1.0,
            ]),
        )
        .expect("valid metric");
        let counters = LogCounters {
            registry: prometheus::Registry::new(),
            backlog: IntGauge::new(
                "dialgate_log_backlog",
                "Decisions waiting for the log writer",
            )
            .expect("valid metric"),
            written: IntCounter::new(
                "dialgate_log_written_total",
                "Decisions committed to the log since start",
            )
            .expect("valid metric"),
            failed_batches: IntCounter::new(
                "dialgate_log_failed_batches_total",
                "Group commits that failed since start",
            )
            .expect("valid metric"),
            batch_size: Histogram::with_opts(
                HistogramOpts::new(
                    "dialgate_log_batch_size",
                    "Decisions per successful group commit",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ]),
            )
            .expect("valid metric"),
            last_batch_size: AtomicUsize::default(),
            last_error: Mutex::default(),
            failing: std::sync::atomic::AtomicBool::default(),
            commit_seconds,
            commit_us: LatencyHistogram::default(),
            commit_history: LatencyHistory::default(),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(counters.backlog.clone()),
            Box::new(counters.written.clone()),
            Box::new(counters.failed_batches.clone()),
            Box::new(counters.batch_size.clone()),
        ];
        for collector in collectors {
            counters
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        counters
    }
}

/// Handle to the durable decision log.
#[derive(Debug)]
pub struct LocalLog {
    sender: SyncSender<Job>,
    counters: Arc<LogCounters>,
    write_timeout: Duration,
    thread: Mutex<Option<JoinHandle<()>>>,
    backfill: Mutex<Option<WalBackfill>>,
}

struct ChainHead {
    seq: i64,
    hash: String,
}

impl LocalLog {
    /// Opens the log at `path` and starts its writer thread. Also returns the
    /// decisions made since `recent_since` that carry a request id, so the
    /// gateway can answer repeats after a restart.
    ///
    /// # Errors
    /// [`OpenError`] when the database cannot be opened or read, the
    /// checkpoint key cannot be loaded, or the writer thread cannot start.
    pub fn open(
        path: &Path,
        config: &LogConfig,
        scan: StartupScan,
    ) -> Result<(LocalLog, StartupState), OpenError> {
        let conn = open_connection(path, config.synchronous)?;
        let files = OpenedFiles::of(path);
        let head = conn
            .query_row(
                "SELECT seq, hash FROM decisions ORDER BY seq DESC LIMIT 1",
                [],
                |row| {
                    Ok(ChainHead {
                        seq: row.get(0)?,
                        hash: row.get(1)?,
                    })
                },
            )
            .optional()?;
        // A purge that removed every row left its anchor: the chain goes on
        // from it (starting again at seq 1 would break `audit verify`).
        let head = match head {
            Some(head) => head,
            None => match super::audit::purge_anchor(&conn)
                .map_err(|err| OpenError::Anchor(err.to_string()))?
            {
                Some((seq, hash)) => ChainHead { seq, hash },
                None => ChainHead {
                    seq: 0,
                    hash: chain::GENESIS.to_string(),
                },
            },
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let checkpoints_path = super::checkpoint::checkpoints_path(dir);
        // Read whole or not at all: a checkpoints file that cannot be read
        // could hide that the database is behind it.
        let checkpoints = super::checkpoint::read_all(&checkpoints_path)?;
        let kept_head_path = super::checkpoint::head_path(dir);
        let kept_head = super::checkpoint::read_one(&kept_head_path)?;
        let newest = checkpoints
            .iter()
            .map(|c| (c, &checkpoints_path))
            .chain(kept_head.iter().map(|c| (c, &kept_head_path)))
            .max_by_key(|(c, _)| c.seq);
        if let Some((checkpoint, file)) = newest {
            require_continues(&conn, path, &head, checkpoint, file)?;
        }
        // How far back this server reads the log at start, for a purge
        // run with another configuration (`audit::kept_since`).
        let counted = [Some(scan.idempotency_since), scan.attempts_since]
            .into_iter()
            .flatten()
            .map(|since| scan.now.duration_since(since))
            .max()
            .unwrap_or_default();
        let keep = counted.saturating_add(scan.clock_step_tolerance);
        conn.execute(
            "INSERT OR REPLACE INTO log_meta (key, value) VALUES (?1, ?2)",
            rusqlite::params![super::audit::KEEP_KEY, keep.as_micros().to_string()],
        )?;
        let recent = read_startup_state(&conn, scan)?;
        // An optimisation only: without it the writer still checkpoints.
        let backfill = match config.wal_backfill_ms {
            0 => None,
            ms => WalBackfill::start(path, config.synchronous, Duration::from_millis(ms))
                .inspect_err(|err| {
                    tracing::warn!(error = %err, "decision log WAL backfill not started");
                })
                .ok(),
        };
        let (sender, receiver) = mpsc::sync_channel(config.queue_capacity);
        let counters = Arc::new(LogCounters::default());
        let thread_counters = Arc::clone(&counters);
        let key = config
            .checkpoint_key_file
            .as_deref()
            .map(super::checkpoint::load_key)
            .transpose()?;
        // The last checkpoint written: a start-up checkpoints the head it
        // inherits unless that is already done (and signed, with a key).
        let inherited_done = checkpoints
            .last()
            .is_some_and(|c| c.seq == head.seq && (key.is_none() || c.signature.is_some()));
        let keyed = key.is_some();
        let mut checkpointer = Checkpointer {
            path: checkpoints_path,
            head_path: kept_head_path,
            key,
            interval: Duration::from_secs(config.checkpoint_interval_seconds.max(1)),
            last_written: Instant::now(),
            // With a key, even the empty log gets a signed checkpoint: `audit
            // verify` requires the newest one to be signed, also before the
            // first interval is over or after a `kill -9` inside it.
            last_seq: if inherited_done || (head.seq == 0 && !keyed) {
                head.seq
            } else {
                -1
            },
        };
        checkpointer.write(&head, true);
        let grouping = Grouping {
            max_batch: config.max_batch,
            linger: Duration::from_micros(config.group_commit_linger_us),
        };
        let thread = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || {
                write_loop(
                    conn,
                    files,
                    receiver,
                    head,
                    grouping,
                    checkpointer,
                    &thread_counters,
                )
            })
            .map_err(|cause| OpenError::Thread {
                thread: "decision-log",
                cause,
            })?;
        Ok((
            LocalLog {
                sender,
                counters,
                write_timeout: Duration::from_millis(config.write_timeout_ms),
                thread: Mutex::new(Some(thread)),
                backfill: Mutex::new(backfill),
            },
            recent,
        ))
    }

    /// Logs a decision durably; returns its sequence number once committed.
    ///
    /// # Errors
    /// [`LogError`] when the decision is not known to be durable.
    pub async fn append(&self, record: DecisionRecord) -> Result<i64, LogError> {
        let (ack, done) = oneshot::channel();
        self.counters.backlog.inc();
        if let Err(err) = self.sender.try_send(Job::Append(Box::new(record), ack)) {
            self.counters.backlog.dec();
            return Err(match err {
                TrySendError::Full(_) => LogError::Backlog,
                TrySendError::Disconnected(_) => LogError::Closed,
            });
        }
        match tokio::time::timeout(self.write_timeout, done).await {
            Ok(Ok(result)) => result.map(|logged| logged.seq),
            Ok(Err(_)) => Err(LogError::Closed),
            Err(_) => Err(LogError::Timeout),
        }
    }

    /// The writer's counters.
    pub fn counters(&self) -> &LogCounters {
        &self.counters
    }

    /// Commits everything queued, then stops the writer thread.
    pub fn close(&self) {
        // The writer's last checkpoint then runs alone.
        drop(self.backfill.lock().expect("log backfill lock").take());
        let _ = self.sender.send(Job::Stop);
        if let Some(thread) = self.thread.lock().expect("log thread lock").take() {
            let _ = thread.join();
        }
    }
}

/// Refuses a database whose chain does not continue `checkpoint` (the
/// newest of `checkpoints.jsonl` and `head.json`): one that ends before it
/// (a deleted tail, an older `decisions.db` copied in, the last commits lost
/// to a power loss with `synchronous = "normal"`) or holds another row at
/// its seq. Writing on would rebuild the attempt ledger without ALLOWs that
/// were dialled (a cap exceeded: a wrong ALLOW) and fork the chain at
/// checkpointed seqs. The shared log refuses alike (`shared_head`).
///
/// # Errors
/// [`OpenError::Behind`] naming both heads; [`OpenError::Database`] or
/// [`OpenError::Anchor`] when the database cannot be read.
fn require_continues(
    conn: &Connection,
    database: &Path,
    head: &ChainHead,
    checkpoint: &super::checkpoint::Checkpoint,
    file: &Path,
) -> Result<(), OpenError> {
    use super::shared_head::{AtLast, went_backwards};
    if checkpoint.seq <= 0 {
        return Ok(());
    }
    let at_last = match conn
        .query_row(
            "SELECT hash FROM decisions WHERE seq = ?1",
            [checkpoint.seq],
            |r| r.get::<_, String>(0),
        )
        .optional()?
    {
        Some(hash) => AtLast::Row(hash),
        None => AtLast::Purged(
            super::audit::purge_anchor(conn).map_err(|err| OpenError::Anchor(err.to_string()))?,
        ),
    };
    let checkpointed = (checkpoint.seq, checkpoint.hash.clone());
    let db_head = (head.seq, head.hash.clone());
    match went_backwards(&checkpointed, &db_head, &at_last) {
        None => Ok(()),
        Some(why) => Err(OpenError::Behind(format!(
            "{} vouches for seq {} (hash {}), but {} ends at seq {} (hash {}) and {why} (rows deleted, an older decisions.db copied in, a power loss with log.synchronous = \"normal\"?). Not started: the ALLOWs of the missing decisions would no longer count against attempt caps. Put back a log that reaches seq {} (`dialgate restore --from BACKUP` with this decisions.db moved aside); `dialgate audit verify` names the problem. Only to accept the loss: move {} (and head.json) aside",
            file.display(),
            checkpointed.0,
            checkpointed.1,
            database.display(),
            db_head.0,
            db_head.1,
            checkpointed.0,
            file.display()
        ))),
    }
}

/// Writes checkpoints of the head at an interval and at the end.
struct Checkpointer {
    path: std::path::PathBuf,
    /// With a key: the latest signed checkpoint, kept apart from the others.
    head_path: std::path::PathBuf,
    key: Option<ed25519_dalek::SigningKey>,
    interval: Duration,
    last_written: Instant,
    last_seq: i64,
}

impl Checkpointer {
    fn write(&mut self, head: &ChainHead, force: bool) {
        if head.seq == self.last_seq || (!force && self.last_written.elapsed() < self.interval) {
            return;
        }
        let checkpoint = super::checkpoint::Checkpoint::new(
            head.seq,
            &head.hash,
            jiff::Timestamp::now(),
            self.key.as_ref(),
        );
        match super::checkpoint::append(&self.path, &checkpoint) {
            Ok(()) => {
                self.last_seq = head.seq;
                self.last_written = Instant::now();
                if self.key.is_some()
                    && let Err(err) = super::checkpoint::write_head(&self.head_path, &checkpoint)
                {
                    tracing::error!(error = %err, "decision log head copy not written");
                }
            }
            Err(err) => tracing::error!(error = %err, "decision log checkpoint not written"),
        }
    }
}

/// How the writer groups decisions into one commit.
#[derive(Debug, Clone, Copy)]
struct Grouping {
    max_batch: usize,
    /// Longest wait for more decisions after the first one of a batch.
    linger: Duration,
}

/// The log's files as the writer opened them (device and inode): a file
/// unlinked, renamed or replaced under the running server still takes
/// SQLite's commits, which then reach no log a restart reads (found by
/// review: decisions answered after `rm decisions.db` were in no log).
/// Checked after every group commit (a `stat` of each, about a
/// microsecond); a change fails the group and every later one.
struct OpenedFiles(Vec<(std::path::PathBuf, Option<(u64, u64)>)>);

impl OpenedFiles {
    fn of(database: &Path) -> OpenedFiles {
        let wal = std::path::PathBuf::from(format!("{}-wal", database.display()));
        OpenedFiles(
            [database.to_path_buf(), wal]
                .into_iter()
                .map(|path| {
                    let id = file_id(&path);
                    (path, id)
                })
                .collect(),
        )
    }

    /// The first file that is no longer the one opened, and why (the
    /// write-ahead log taken as it is first seen when it was not there at
    /// the open).
    fn changed(&mut self) -> Option<String> {
        self.0.iter_mut().find_map(|(path, opened)| {
            let Some(opened) = *opened else {
                *opened = file_id(path);
                return None;
            };
            match file_id(path) {
                Some(now) if now == opened => None,
                Some(_) => Some(format!(
                    "{} was replaced under the running server: commits go to a file no restart reads; restart it (the start checks the log against its checkpoints)",
                    path.display()
                )),
                None => Some(format!(
                    "{} was removed or renamed under the running server: commits go to a file no restart reads; put it back and restart",
                    path.display()
                )),
            }
        })
    }
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn write_loop(
    mut conn: Connection,
    mut files: OpenedFiles,
    receiver: Receiver<Job>,
    mut head: ChainHead,
    grouping: Grouping,
    mut checkpointer: Checkpointer,
    counters: &LogCounters,
) {
    let mut batch = Vec::with_capacity(grouping.max_batch);
    let mut acks = Vec::with_capacity(grouping.max_batch);
    let mut rows = RowMaker::default();
    // Group commit adapts to the load: when the last commit carried several
    // decisions, concurrent callers are waiting, so wait (briefly, at most the
    // linger) for half as many again before paying for the next fsync. Half:
    // waiting for all of them would hold the writer idle until the callers
    // just answered come back. A lone caller never waits.
    let mut expected = 1usize;
    loop {
        let mut stop = false;
        match receiver.recv() {
            Ok(Job::Append(record, ack)) => batch.push((record, ack)),
            Ok(Job::Stop) | Err(_) => stop = true,
        }
        let deadline = Instant::now() + grouping.linger;
        while !stop && batch.len() < grouping.max_batch {
            let next = if batch.len() < expected {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    receiver.try_recv().map_err(|_| ())
                } else {
                    receiver.recv_timeout(left).map_err(|_| ())
                }
            } else {
                receiver.try_recv().map_err(|_| ())
            };
            match next {
                Ok(Job::Append(record, ack)) => batch.push((record, ack)),
                Ok(Job::Stop) => stop = true,
                Err(()) => break,
            }
        }
        expected = (batch.len() / 2).max(1);
        if !batch.is_empty() {
            let size = batch.len();
            let started = Instant::now();
            let committed =
                commit(&mut conn, &head, &mut batch, &mut acks, &mut rows).and_then(|new_head| {
                    match files.changed() {
                        None => Ok(new_head),
                        Some(why) => Err(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                            Some(why),
                        )),
                    }
                });
            let took = started.elapsed();
            counters.commit_seconds.observe(took.as_secs_f64());
            counters.commit_us.record(took.as_micros() as u64);
            counters
                .commit_history
                .record(crate::history::now_seconds(), took.as_micros() as u64);
            // Records the commit did not reach still hold their acknowledgement.
            acks.extend(batch.drain(..).map(|(_, ack)| ack));
            match committed {
                Ok(new_head) => {
                    let first_seq = head.seq + 1;
                    head = new_head;
                    counters.written.inc_by(size as u64);
                    counters.batch_size.observe(size as f64);
                    counters.last_batch_size.store(size, Ordering::Relaxed);
                    counters.failing.store(false, Ordering::Relaxed);
                    let mut rows_made = rows.made.drain(..);
                    for (i, ack) in acks.drain(..).enumerate() {
                        let _ = ack.send(Ok(Logged {
                            seq: first_seq + i as i64,
                            _row: rows_made.next(),
                        }));
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, decisions = size, "decision log commit failed");
                    counters.failed_batches.inc();
                    counters.failing.store(true, Ordering::Relaxed);
                    *counters.last_error.lock().expect("log error lock") = Some(err.to_string());
                    rows.made.clear();
                    let err = Arc::new(err);
                    for ack in acks.drain(..) {
                        let _ = ack.send(Err(LogError::Write(Arc::clone(&err))));
                    }
                }
            }
            counters.backlog.sub(size as i64);
            checkpointer.write(&head, false);
        }
        if stop {
            break;
        }
    }
    checkpointer.write(&head, true);
    if let Err(err) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %err, "decision log checkpoint on close failed");
    }
}

type Pending = (Box<DecisionRecord>, Ack);

/// Commits the batch's records in one transaction, in order, chained from
/// `head`; the records are consumed, their acknowledgements kept in `acks`.
fn commit(
    conn: &mut Connection,
    head: &ChainHead,
    batch: &mut Vec<Pending>,
    acks: &mut Vec<Ack>,
    rows: &mut RowMaker,
) -> rusqlite::Result<ChainHead> {
    // BEGIN and COMMIT as cached statements: `Connection::transaction` would
    // parse them again for every group.
    conn.prepare_cached("BEGIN")?.execute([])?;
    let inserted = insert_rows(conn, head, batch, acks, rows)
        .and_then(|new_head| conn.prepare_cached("COMMIT")?.execute([]).map(|_| new_head));
    if inserted.is_err() {
        // Nothing of the group is kept: the chain head stays where it was.
        let _ = conn.execute_batch("ROLLBACK");
    }
    inserted
}

fn insert_rows(
    conn: &Connection,
    head: &ChainHead,
    batch: &mut Vec<Pending>,
    acks: &mut Vec<Ack>,
    rows: &mut RowMaker,
) -> rusqlite::Result<ChainHead> {
    let mut seq = head.seq;
    let mut prev_hash = head.hash.clone();
    let mut insert = conn.prepare_cached(
        "INSERT INTO decisions (seq, decision_id, decided_at_us, request_id, campaign_id, controller,
            called_number, normalized_number, caller_id, verdict, reasons, next_allowed_at_us,
            data_versions, latency_us, api_key, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?;
    let mut pending = batch.drain(..);
    while let Some((record, ack)) = pending.next() {
        acks.push(ack);
        seq += 1;
        let row = rows.row(seq, *record, prev_hash);
        let hash = rows.hasher.hash(&row);
        let inserted = insert.execute(params![
            row.seq,
            row.decision_id,
            row.decided_at_us,
            row.request_id,
            row.campaign_id,
            row.controller,
            row.called_number,
            row.normalized_number,
            row.caller_id,
            row.verdict,
            row.reasons,
            row.next_allowed_at_us,
            row.data_versions,
            row.latency_us,
            row.api_key,
            row.prev_hash,
            hash,
        ]);
        if let Err(err) = inserted {
            // Every caller of the group hears of the failure.
            acks.extend(pending.map(|(_, ack)| ack));
            return Err(err);
        }
        rows.made.push(row);
        prev_hash = hash;
    }
    Ok(ChainHead {
        seq,
        hash: prev_hash,
    })
}

/// Makes the writer's rows: [`stored_row`], with the JSON of the reasons
/// and data versions written again only when they differ from the last
/// row's (consecutive decisions mostly share them), and the rows hashed
/// with one [`chain::RowHasher`].
#[derive(Debug, Default)]
struct RowMaker {
    /// The rows of the group being committed, in order, for [`Logged`].
    made: Vec<StoredRow>,
    hasher: chain::RowHasher,
    reasons: Option<(Vec<Reason>, String)>,
    data_versions: Option<(Vec<String>, String)>,
}

impl RowMaker {
    fn row(&mut self, seq: i64, mut record: DecisionRecord, prev_hash: String) -> StoredRow {
        let json = JsonColumns {
            reasons: json_as_before(&mut self.reasons, std::mem::take(&mut record.reasons)),
            data_versions: json_as_before(
                &mut self.data_versions,
                std::mem::take(&mut record.data_versions),
            ),
        };
        row_of(seq, record, json, prev_hash)
    }
}

/// A record's reasons and data versions as their columns hold them.
struct JsonColumns {
    reasons: String,
    data_versions: String,
}

/// The JSON of `value`: the last one's again when `value` equals it.
fn json_as_before<T: serde::Serialize + PartialEq>(
    last: &mut Option<(T, String)>,
    value: T,
) -> String {
    match last {
        Some((before, json)) if *before == value => json.clone(),
        _ => {
            let json = serde_json::to_string(&value).expect("a decision's JSON columns serialise");
            *last = Some((value, json.clone()));
            json
        }
    }
}

pub(crate) fn stored_row(seq: i64, record: DecisionRecord, prev_hash: String) -> StoredRow {
    let json = JsonColumns {
        reasons: serde_json::to_string(&record.reasons).expect("reasons serialise"),
        data_versions: serde_json::to_string(&record.data_versions).expect("versions serialise"),
    };
    row_of(seq, record, json, prev_hash)
}

fn row_of(seq: i64, record: DecisionRecord, json: JsonColumns, prev_hash: String) -> StoredRow {
    StoredRow {
        seq,
        decided_at_us: micros(record.decided_at),
        verdict: record.verdict.as_str().to_string(),
        reasons: json.reasons,
        next_allowed_at_us: record.next_allowed_at.map(micros),
        data_versions: json.data_versions,
        latency_us: record.latency_us as i64,
        decision_id: record.decision_id,
        request_id: record.request_id,
        campaign_id: record.campaign_id,
        controller: record.controller,
        called_number: record.called_number,
        normalized_number: record.normalized_number,
        caller_id: record.caller_id,
        api_key: record.api_key,
        prev_hash,
    }
}

/// Rebuilds a record from its stored row.
pub(crate) fn record_from_row(row: &StoredRow) -> Result<DecisionRecord, String> {
    let corrupt = |what: &str| {
        format!(
            "decision {} (seq {}): {what} does not parse",
            row.decision_id, row.seq
        )
    };
    let verdict = match row.verdict.as_str() {
        "ALLOW" => Verdict::Allow,
        "DENY" => Verdict::Deny,
        _ => return Err(corrupt("verdict")),
    };
    let reasons: Vec<Reason> =
        serde_json::from_str(&row.reasons).map_err(|_| corrupt("reasons"))?;
    let data_versions: Vec<String> =
        serde_json::from_str(&row.data_versions).map_err(|_| corrupt("data_versions"))?;
    let instant = |us: i64, field: &str| {
        jiff::Timestamp::from_microsecond(us).map_err(|_| {
            format!(
                "decision {} (seq {}) {field}: {us} µs is out of range",
                row.decision_id, row.seq
            )
        })
    };
    Ok(DecisionRecord {
        decision_id: row.decision_id.clone(),
        decided_at: instant(row.decided_at_us, "decided_at_us")?,
        request_id: row.request_id.clone(),
        campaign_id: row.campaign_id.clone(),
        controller: row.controller.clone(),
        called_number: row.called_number.clone(),
        normalized_number: row.normalized_number.clone(),
        caller_id: row.caller_id.clone(),
        verdict,
        reasons,
        next_allowed_at: row
            .next_allowed_at_us
            .map(|us| instant(us, "next_allowed_at_us"))
            .transpose()?,
        data_versions,
        latency_us: row.latency_us.max(0) as u64,
        api_key: row.api_key.clone(),
    })
}

/// The columns of a stored row, in table order, for `SELECT`.
pub(crate) const ROW_COLUMNS: &str = "seq, decision_id, decided_at_us, request_id, campaign_id, controller, \
    called_number, normalized_number, caller_id, verdict, reasons, next_allowed_at_us, data_versions, \
    latency_us, api_key, prev_hash, hash";

/// Reads a row selected with [`ROW_COLUMNS`]; returns it and its stored hash.
pub(crate) fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(StoredRow, String)> {
    Ok((
        StoredRow {
            seq: row.get(0)?,
            decision_id: row.get(1)?,
            decided_at_us: row.get(2)?,
            request_id: row.get(3)?,
            campaign_id: row.get(4)?,
            controller: row.get(5)?,
            called_number: row.get(6)?,
            normalized_number: row.get(7)?,
            caller_id: row.get(8)?,
            verdict: row.get(9)?,
            reasons: row.get(10)?,
            next_allowed_at_us: row.get(11)?,
            data_versions: row.get(12)?,
            latency_us: row.get(13)?,
            api_key: row.get(14)?,
            prev_hash: row.get(15)?,
        },
        row.get(16)?,
    ))
}

/// The decisions start-up needs, newest first until the windows' start.
///
/// # Errors
/// [`OpenError::Corrupt`] for a row whose `decided_at_us` is out of range:
/// read as 1970 (as [`from_micros`] would), it made the latest decision
/// 1970 and so disabled the clock-step guard, or ended the scan early and
/// left ALLOWs out of the cap count. The shared log refuses alike
/// (`stored_instant`).
fn read_startup_state(conn: &Connection, scan: StartupScan) -> Result<StartupState, OpenError> {
    // Newest first along the primary key, stopping at the oldest instant
    // needed: no index on time is needed and start-up reads only the window.
    let oldest = scan
        .attempts_since
        .map_or(scan.idempotency_since, |a| a.min(scan.idempotency_since));
    let mut oldest_us = micros(oldest);
    let idempotency_us = micros(scan.idempotency_since);
    let mut attempts_us = scan.attempts_since.map(micros);
    let mut first = true;
    let mut statement = conn.prepare(&format!(
        "SELECT {ROW_COLUMNS} FROM decisions ORDER BY seq DESC"
    ))?;
    let mut rows = statement.query([])?;
    let mut state = StartupState::default();
    let mut latest_us = None;
    // The row read before (the next newer one): each row read must be the
    // one it follows in the chain, so that a row deleted from the window
    // (a number's ALLOWs removed to "reset" its cap) stops the start
    // rather than leaving its ALLOWs uncounted (found by review).
    let mut newer: Option<(i64, String)> = None;
    // Each row's content against its own hash, as `audit verify` checks:
    // linked rows whose verdict, number or controller was edited (two
    // ALLOWs turned DENY to free a cap) still follow one another (found
    // by review: two calls over a cap of 2 after such an edit).
    let mut hasher = super::chain::RowHasher::default();
    while let Some(row) = rows.next()? {
        let (mut row, hash) = read_row(row)?;
        if hasher.hash(&row) != hash {
            return Err(OpenError::Corrupt(format!(
                "seq {}: its content does not match its hash (the row was altered): the attempt caps and repeated requests rest on every row; `dialgate audit verify` shows where, restore the log from a backup",
                row.seq
            )));
        }
        if let Some((newer_seq, newer_prev)) = &newer
            && (row.seq != newer_seq - 1 || hash != *newer_prev)
        {
            return Err(OpenError::Corrupt(format!(
                "seq {newer_seq} does not follow seq {} (a row deleted or altered): the attempt caps and repeated requests rest on every row; `dialgate audit verify` shows where the chain breaks, restore the log from a backup",
                row.seq
            )));
        }
        // Taken, not copied: nothing below reads it.
        newer = Some((row.seq, std::mem::take(&mut row.prev_hash)));
        let allowed = match row.verdict.as_str() {
            "ALLOW" => true,
            "DENY" => false,
            other => {
                return Err(OpenError::Corrupt(format!(
                    "seq {}: verdict {other:?} is neither ALLOW nor DENY (an ALLOW read otherwise would not count against the caps); `dialgate audit verify` shows whether the row was altered, restore the log from a backup",
                    row.seq
                )));
            }
        };
        if jiff::Timestamp::from_microsecond(row.decided_at_us).is_err() {
            return Err(OpenError::Corrupt(format!(
                "seq {}: decided_at_us {} µs is out of range (not read as 1970: the clock-step guard and the attempt caps rest on it); `dialgate audit verify` shows whether the row was altered, restore the log from a backup",
                row.seq, row.decided_at_us
            )));
        }
        // Every row read, the first older one included (a clock set back
        // wrote rows earlier than those before them).
        latest_us = latest_us.max(Some(row.decided_at_us));
        if std::mem::take(&mut first)
            && let Some(since) = attempts_us
        {
            // A clock running ahead now (set back later, by less than the
            // guard lets pass) would look back from too late: the caps'
            // window also from the last decision logged, less the
            // tolerance, whichever reaches further.
            let window = micros(scan.now).saturating_sub(since);
            let anchored = row
                .decided_at_us
                .saturating_sub(
                    scan.clock_step_tolerance
                        .as_micros()
                        .try_into()
                        .unwrap_or(i64::MAX),
                )
                .saturating_sub(window);
            attempts_us = Some(since.min(anchored));
            oldest_us = oldest_us.min(anchored);
        }
        if row.decided_at_us < oldest_us {
            break;
        }
        if row.decided_at_us >= idempotency_us
            && !row.request_id.is_empty()
            && state.recent.len() < scan.recent_at_most
        {
            state
                .recent
                .push(record_from_row(&row).map_err(OpenError::Corrupt)?);
        }
        if attempts_us.is_some_and(|since| row.decided_at_us >= since) && allowed {
            state.allowed.push((
                row.controller.clone(),
                row.normalized_number.clone(),
                from_micros(row.decided_at_us),
            ));
        }
    }
    state.recent.reverse();
    state.latest = latest_us.map(from_micros);
    Ok(state)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Verdict;
    use jiff::{SignedDuration, Timestamp};

    /// An ALLOW of one French number for acme, made at `at`.
    pub(crate) fn allow(at: Timestamp) -> DecisionRecord {
        DecisionRecord {
            decision_id: "d-1".into(),
            decided_at: at,
            request_id: String::new(),
            campaign_id: "fr".into(),
            controller: "acme".into(),
            called_number: "+33612345678".into(),
            normalized_number: "+33612345678".into(),
            caller_id: "+33162000000".into(),
            verdict: Verdict::Allow,
            reasons: Vec::new(),
            next_allowed_at: None,
            data_versions: Vec::new(),
            latency_us: 1,
            api_key: String::new(),
        }
    }

    /// The writer's rows, their reasons and data versions written again
    /// only when they change, are the rows each record makes alone, and
    /// hash alike, whatever came before.
    #[test]
    fn test_the_writers_rows_are_the_records_own() {
        let at = Timestamp::from_second(1_767_225_600).unwrap();
        let reason = |code, detail: &str| Reason::new(code, detail);
        let with = |reasons: Vec<Reason>, versions: &[&str]| {
            let mut record = allow(at);
            record.reasons = reasons;
            record.data_versions = versions.iter().map(|v| v.to_string()).collect();
            record
        };
        let records = [
            with(vec![], &["it-rpo@1"]),
            with(vec![], &["it-rpo@1"]),
            with(
                vec![reason(
                    crate::model::ReasonCode::RegistryListed,
                    "listed \"x\"",
                )],
                &["it-rpo@1"],
            ),
            with(vec![], &["it-rpo@2", "policy@3"]),
            with(vec![], &["it-rpo@2", "policy@3"]),
            with(
                vec![reason(
                    crate::model::ReasonCode::RegistryListed,
                    "listed \"x\"",
                )],
                &[],
            ),
        ];
        let mut rows = RowMaker::default();
        for (seq, record) in (1..).zip(records) {
            let alone = stored_row(seq, record.clone(), chain::GENESIS.into());
            let made = rows.row(seq, record, chain::GENESIS.into());
            assert_eq!(made, alone, "row {seq}");
            assert_eq!(
                rows.hasher.hash(&made),
                chain::row_hash(&alone),
                "row {seq}"
            );
        }
    }

    fn scan(now: Timestamp, window: SignedDuration) -> StartupScan {
        StartupScan {
            idempotency_since: now - SignedDuration::from_hours(1),
            recent_at_most: 1000,
            attempts_since: Some(now - window),
            now,
            clock_step_tolerance: SignedDuration::from_secs(10),
            keep: SignedDuration::from_hours(24 * 365),
        }
    }

    /// A start with the clock running ahead (before NTP sets it back)
    /// read the caps' window from too late and left out ALLOWs that still
    /// count once the clock is back (found by review): the window reaches
    /// back from the latest decision logged too.
    #[tokio::test]
    async fn test_a_start_with_the_clock_ahead_reads_every_allow_that_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.db");
        let day = SignedDuration::from_hours(24);
        let t0: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let config = LogConfig::default();
        let allowed = t0 - SignedDuration::from_mins(23 * 60 + 30);
        let (log, _) = LocalLog::open(&path, &config, scan(allowed, day)).unwrap();
        log.append(allow(allowed)).await.unwrap();
        log.close();
        drop(log);
        // The clock two hours ahead at start.
        let (log, startup) = LocalLog::open(
            &path,
            &config,
            scan(t0 + SignedDuration::from_hours(2), day),
        )
        .unwrap();
        assert_eq!(
            startup.allowed,
            vec![("acme".to_string(), "+33612345678".to_string(), allowed)]
        );
        log.close();
        drop(log);
        // Read back as before when the clock is right and the ALLOW has left
        // the window since the latest decision.
        let (log, _) = LocalLog::open(&path, &config, scan(allowed + day * 2, day)).unwrap();
        log.append(allow(allowed + day * 2)).await.unwrap();
        log.close();
        drop(log);
        let (_, startup) = LocalLog::open(&path, &config, scan(allowed + day * 2, day)).unwrap();
        assert_eq!(startup.allowed.len(), 1, "{:?}", startup.allowed);
    }

    /// Start-up read back every decision of the idempotency window, whatever
    /// the answer cache keeps: an hour of a busy gateway's decisions took
    /// gigabytes, and a gateway killed under load could not start again
    /// (found by review). It reads the newest the cache keeps, and every
    /// ALLOW the caps need.
    #[tokio::test]
    async fn test_start_up_reads_back_what_the_answer_cache_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.db");
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let day = SignedDuration::from_hours(24);
        let config = LogConfig::default();
        let (log, _) = LocalLog::open(&path, &config, scan(now, day)).unwrap();
        for i in 0..25 {
            let mut record = allow(now + SignedDuration::from_secs(i));
            record.request_id = format!("r-{i}");
            log.append(record).await.unwrap();
        }
        log.close();
        drop(log);
        let later = now + SignedDuration::from_mins(1);
        let scan = StartupScan {
            recent_at_most: 10,
            ..scan(later, day)
        };
        let (_, startup) = LocalLog::open(&path, &config, scan).unwrap();
        let ids: Vec<&str> = startup
            .recent
            .iter()
            .map(|r| r.request_id.as_str())
            .collect();
        assert_eq!(ids, (15..25).map(|i| format!("r-{i}")).collect::<Vec<_>>());
        assert_eq!(startup.allowed.len(), 25);
    }

    /// A stored `decided_at_us` out of range was read as 1970: the latest
    /// decision became 1970 (the clock-step guard off) and the scan could
    /// end before ALLOWs that still count (found by review). Start-up fails.
    #[tokio::test]
    async fn test_an_out_of_range_instant_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.db");
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let day = SignedDuration::from_hours(24);
        let config = LogConfig::default();
        let (log, _) = LocalLog::open(&path, &config, scan(now, day)).unwrap();
        log.append(allow(now)).await.unwrap();
        log.close();
        drop(log);
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE decisions SET decided_at_us = ?1", [i64::MAX])
            .unwrap();
        let err = LocalLog::open(&path, &config, scan(now, day)).unwrap_err();
        // Its hash no longer matches (checked first); a row rehashed
        // along with the edit is refused for the instant itself.
        assert!(
            matches!(err, OpenError::Corrupt(_))
                && (err.to_string().contains("out of range")
                    || err.to_string().contains("does not match its hash")),
            "{err}"
        );
    }

    /// A row deleted from the window the start reads, or a verdict that
    /// reads back as neither ALLOW nor DENY, left ALLOWs out of the caps
    /// with nothing said (found by review: 2 of 3 ALLOWs counted after
    /// `DELETE ... WHERE seq = 2`; none after a verdict altered). The start
    /// fails instead.
    #[tokio::test]
    async fn test_a_row_deleted_or_altered_in_the_window_fails_the_start() {
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let day = SignedDuration::from_hours(24);
        let config = LogConfig::default();
        for (alteration, named) in [
            ("DELETE FROM decisions WHERE seq = 2", "does not follow"),
            (
                "UPDATE decisions SET verdict = 'ALLOV' WHERE seq = 2",
                "seq 2: its content does not match its hash",
            ),
            // Linked still, but edited: an ALLOW turned DENY frees a cap,
            // one moved to another number or back in time leaves the
            // caps' count (found by review).
            (
                "UPDATE decisions SET verdict = 'DENY' WHERE seq = 2",
                "seq 2: its content does not match its hash",
            ),
            (
                "UPDATE decisions SET normalized_number = '+393339999999' WHERE seq = 3",
                "seq 3: its content does not match its hash",
            ),
            (
                "UPDATE decisions SET decided_at_us = decided_at_us - 172800000000 WHERE seq = 2",
                "seq 2: its content does not match its hash",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("decisions.db");
            let (log, _) = LocalLog::open(&path, &config, scan(now, day)).unwrap();
            for i in 0..3 {
                log.append(allow(now + SignedDuration::from_secs(i)))
                    .await
                    .unwrap();
            }
            log.close();
            drop(log);
            let (_, startup) = LocalLog::open(&path, &config, scan(now, day)).unwrap();
            assert_eq!(startup.allowed.len(), 3);
            Connection::open(&path)
                .unwrap()
                .execute(alteration, [])
                .unwrap();
            let err = LocalLog::open(&path, &config, scan(now, day)).unwrap_err();
            assert!(
                matches!(err, OpenError::Corrupt(_)) && err.to_string().contains(named),
                "{alteration}: {err}"
            );
        }
    }

    /// A log file removed or replaced under the running server took the
    /// commits, answered as durable, that no restart would read (found by
    /// review: `append` after `rm decisions.db` returned `Ok`). The writer
    /// fails every group from then on.
    #[tokio::test]
    async fn test_a_log_removed_under_the_writer_fails_its_commits() {
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let day = SignedDuration::from_hours(24);
        let config = LogConfig::default();
        for wal in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("decisions.db");
            let (log, _) = LocalLog::open(&path, &config, scan(now, day)).unwrap();
            log.append(allow(now)).await.unwrap();
            let removed = if wal {
                std::path::PathBuf::from(format!("{}-wal", path.display()))
            } else {
                path.clone()
            };
            std::fs::rename(&removed, dir.path().join("moved")).unwrap();
            let err = log.append(allow(now)).await.unwrap_err();
            assert!(
                err.to_string().contains("removed or renamed"),
                "{}: {err}",
                removed.display()
            );
            // And every later group (the head stays where the log is).
            assert!(log.append(allow(now)).await.is_err());
            log.close();
        }
    }
}
