//! The durable decision log: every CheckCall decision is committed to SQLite
//! (WAL, fsync per group commit) before the dialer gets its answer.
//!
//! - [`writer`]: the dedicated writer thread with group commit.
//! - [`chain`]: the hash chain that makes tampering evident.
//! - [`audit`]: export and verification (`dialgate audit ...`).
//! - [`wal_backfill`]: copies the WAL into the database off the writer thread.
//! - [`shared`]: with `[store] backend = "postgres"`, the log every replica
//!   shares (attempt caps and idempotency checked in the same transaction);
//!   [`shared_audit`] verifies, exports, purges and checkpoints it, and
//!   [`shared_copy`] copies a SQLite log into it.

pub mod audit;
pub mod chain;
pub mod checkpoint;
mod settings;
pub mod shared;
pub mod shared_audit;
pub mod shared_cli;
pub(crate) mod shared_clock;
pub mod shared_copy;
mod shared_head;
mod shared_rows;
pub mod wal_backfill;
pub mod writer;

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::model::{Reason, Verdict};
pub use settings::{LogConfig, Synchronous, US_TSR_RECORD_DAYS};
pub use shared_copy::copy_from_sqlite;
pub use writer::{LocalLog, LogCounters, LogError, OpenError};

/// The decision log a server writes: the local SQLite file (one gateway)
/// or the database every replica shares.
#[derive(Debug)]
pub enum DecisionLog {
    Local(LocalLog),
    Shared(shared::SharedLog),
}

impl DecisionLog {
    /// Opens the local SQLite log; see [`LocalLog::open`].
    ///
    /// # Errors
    /// [`OpenError`].
    pub fn open(
        path: &Path,
        config: &LogConfig,
        scan: StartupScan,
    ) -> Result<(DecisionLog, StartupState), OpenError> {
        LocalLog::open(path, config, scan).map(|(log, state)| (DecisionLog::Local(log), state))
    }

    /// The writer's counters (`/status`, `/metrics`, readiness).
    pub fn counters(&self) -> &LogCounters {
        match self {
            DecisionLog::Local(log) => log.counters(),
            DecisionLog::Shared(log) => log.counters(),
        }
    }

    /// Commits what is queued and stops the writer (blocking).
    pub fn close(&self) {
        match self {
            DecisionLog::Local(log) => log.close(),
            DecisionLog::Shared(log) => log.close(),
        }
    }
}

/// What the server reads back from the log at start-up.
#[derive(Debug, Clone, Copy)]
pub struct StartupScan {
    /// Decisions with a request id from here on answer repeats.
    pub idempotency_since: Timestamp,
    /// The most of them read back, newest first: what the answer cache
    /// keeps (two generations of `log.idempotency_max_entries`). Read
    /// whole, an hour of a busy gateway's decisions took gigabytes at
    /// start-up, and a gateway killed under load could not start again
    /// (found by review).
    pub recent_at_most: usize,
    /// ALLOW decisions from here on count against attempt caps (from
    /// `now`; measured from the latest decision logged instead when that
    /// is earlier, less `clock_step_tolerance`: a clock running ahead at
    /// start, set back later, must not leave ALLOWs that still count
    /// unread).
    pub attempts_since: Option<Timestamp>,
    /// When the scan starts.
    pub now: Timestamp,
    /// How far before the latest decision the clock may read
    /// (`log.clock_step_tolerance_seconds`).
    pub clock_step_tolerance: jiff::SignedDuration,
    /// How far back this server needs the log (caps, idempotency, records
    /// kept by law): with the shared log, recorded for `audit purge`.
    pub keep: jiff::SignedDuration,
}

/// The decisions read back at start-up.
#[derive(Debug, Default)]
pub struct StartupState {
    /// Decisions with a request id inside the idempotency window, oldest first.
    pub recent: Vec<DecisionRecord>,
    /// `(controller, E.164 number, decided_at)` of ALLOW decisions inside the attempt window.
    pub allowed: Vec<(String, String, Timestamp)>,
    /// The latest instant a logged decision was made at (the clock must
    /// not read earlier, see `clock_guard`); `None` from the shared log,
    /// which checks each replica's clock against the database's.
    pub latest: Option<Timestamp>,
}

/// The decision log database under `data_dir`.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("decisions.db")
}

/// One decision, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub decision_id: String,
    pub decided_at: Timestamp,
    pub request_id: String,
    pub campaign_id: String,
    pub controller: String,
    /// The number as the dialer sent it.
    pub called_number: String,
    /// E.164, empty when it could not be parsed.
    pub normalized_number: String,
    pub caller_id: String,
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    pub next_allowed_at: Option<Timestamp>,
    /// `registry@version` of every registry snapshot the decision rested on.
    pub data_versions: Vec<String>,
    pub latency_us: u64,
    /// Name of the API key the dialer used (empty without authentication).
    pub api_key: String,
}

/// Opens the log database, creating the schema if needed.
pub(crate) fn open_connection(
    path: &Path,
    synchronous: Synchronous,
) -> rusqlite::Result<Connection> {
    if let Some(dir) = path.parent() {
        let _ = crate::private::create_dir_all(dir);
    }
    // Owner-only; SQLite gives the -wal and -shm files the same mode.
    let _ = crate::private::touch(path);
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous.pragma())?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS decisions (
            seq INTEGER PRIMARY KEY,
            decision_id TEXT NOT NULL,
            decided_at_us INTEGER NOT NULL,
            request_id TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            controller TEXT NOT NULL,
            called_number TEXT NOT NULL,
            normalized_number TEXT NOT NULL,
            caller_id TEXT NOT NULL,
            verdict TEXT NOT NULL,
            reasons TEXT NOT NULL,
            next_allowed_at_us INTEGER,
            data_versions TEXT NOT NULL,
            latency_us INTEGER NOT NULL,
            api_key TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        ) STRICT;
        CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;",
    )?;
    Ok(conn)
}

pub(crate) fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub(crate) fn from_micros(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH)
}
