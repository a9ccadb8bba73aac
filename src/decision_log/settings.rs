//! The `[log]` section of the configuration: settings of the durable
//! decision log, owned here (the configuration re-exports them and checks
//! their ranges).

use std::path::PathBuf;

use serde::Deserialize;

/// Settings of the durable decision log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Decisions waiting for the writer before CheckCall answers UNAVAILABLE.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Most decisions committed in one transaction (group commit).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Under concurrent load, how long (µs) a commit may wait for more
    /// decisions to share its fsync; a lone caller never waits.
    #[serde(default = "default_linger_us")]
    pub group_commit_linger_us: u64,
    /// How often (ms) a background thread copies the log's WAL into the
    /// database, so commits rarely stall on a checkpoint; 0 = off.
    #[serde(default = "default_wal_backfill_ms")]
    pub wal_backfill_ms: u64,
    /// How long a repeated request_id may still get its original ALLOW: a
    /// dial decision is not reusable later (the window, opt-outs and caps
    /// may have changed); a DENY repeats for the whole idempotency window.
    #[serde(default = "default_allow_replay_seconds")]
    pub allow_replay_seconds: u64,
    /// How long a request_id is at least remembered as an idempotency key.
    #[serde(default = "default_idempotency_seconds")]
    pub idempotency_window_seconds: u64,
    /// Most request ids remembered per generation (memory bound; two generations).
    #[serde(default = "default_idempotency_entries")]
    pub idempotency_max_entries: usize,
    /// How long CheckCall waits for the log before answering UNAVAILABLE.
    #[serde(default = "default_log_timeout_ms")]
    pub write_timeout_ms: u64,
    /// `full`: fsync at every group commit (survives power loss);
    /// `normal`: fsync at checkpoints only (survives process crashes, not power loss).
    #[serde(default)]
    pub synchronous: Synchronous,
    /// How often the log's head is checkpointed (also at every shutdown).
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval_seconds: u64,
    /// Ed25519 seed (64 hex digits) that signs checkpoints; unsigned without it.
    #[serde(default)]
    pub checkpoint_key_file: Option<PathBuf>,
    /// Decisions are kept at least this long; `audit purge` refuses younger ones.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// How far the clock may read behind the latest decision before
    /// decisions stop (see `clock_guard`).
    #[serde(default = "default_clock_step_tolerance")]
    pub clock_step_tolerance_seconds: u64,
}

/// US TSR record keeping (16 CFR 310.5): 5 years, in days.
pub const US_TSR_RECORD_DAYS: u32 = 1826;

/// US TSR record keeping: 5 years.
fn default_retention_days() -> u32 {
    US_TSR_RECORD_DAYS
}

fn default_checkpoint_interval() -> u64 {
    60
}

/// SQLite durability level of the decision log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

impl Synchronous {
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

impl LogConfig {
    /// `clock_step_tolerance_seconds` as a duration.
    pub fn clock_step_tolerance(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(
            i64::try_from(self.clock_step_tolerance_seconds).unwrap_or(i64::MAX),
        )
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            queue_capacity: default_queue_capacity(),
            max_batch: default_max_batch(),
            group_commit_linger_us: default_linger_us(),
            wal_backfill_ms: default_wal_backfill_ms(),
            idempotency_window_seconds: default_idempotency_seconds(),
            allow_replay_seconds: default_allow_replay_seconds(),
            idempotency_max_entries: default_idempotency_entries(),
            write_timeout_ms: default_log_timeout_ms(),
            synchronous: Synchronous::Full,
            checkpoint_interval_seconds: default_checkpoint_interval(),
            checkpoint_key_file: None,
            retention_days: default_retention_days(),
            clock_step_tolerance_seconds: default_clock_step_tolerance(),
        }
    }
}

fn default_clock_step_tolerance() -> u64 {
    10
}

fn default_allow_replay_seconds() -> u64 {
    120
}

fn default_queue_capacity() -> usize {
    65_536
}
fn default_max_batch() -> usize {
    1024
}
fn default_wal_backfill_ms() -> u64 {
    20
}
fn default_linger_us() -> u64 {
    300
}
fn default_idempotency_seconds() -> u64 {
    3600
}
fn default_idempotency_entries() -> usize {
    1_000_000
}
fn default_log_timeout_ms() -> u64 {
    2_000
}
