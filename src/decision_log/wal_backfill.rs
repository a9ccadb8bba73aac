//! Copies the decision log's WAL back into the database file on a thread of
//! its own, so the writer's commits rarely pay for it.
//!
//! SQLite checkpoints the WAL from the committing connection once it holds
//! 1,000 pages: the commit that crosses the mark copies them all and fsyncs
//! the database file, a stall of milliseconds that every decision queued
//! behind it waits out. This thread runs a PASSIVE checkpoint (it never
//! blocks the writer or readers) every interval, so when the writer's own
//! checkpoint comes, only the last few pages are left to copy. The writer's
//! checkpoint stays on: it is the one that completes with no commit running,
//! which lets SQLite start the WAL over instead of growing it.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Synchronous;

/// The running backfill thread; stops when dropped.
#[derive(Debug)]
pub struct WalBackfill {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WalBackfill {
    /// Starts backfilling the log at `path` every `interval`.
    ///
    /// # Errors
    /// When the thread's own connection cannot be opened or the thread
    /// cannot start.
    pub fn start(
        path: &Path,
        synchronous: Synchronous,
        interval: Duration,
    ) -> Result<WalBackfill, super::writer::OpenError> {
        let conn = super::open_connection(path, synchronous)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("decision-log-backfill".into())
            .spawn(move || {
                let mut failing = false;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    // (busy, WAL pages, pages copied); busy = 1 when the
                    // writer's own checkpoint runs: nothing to do then.
                    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                        row.get::<_, i64>(0)
                    });
                    match result {
                        Ok(_) if failing => {
                            failing = false;
                            tracing::info!("decision log WAL backfill works again");
                        }
                        Ok(_) => {}
                        Err(err) if !failing => {
                            failing = true;
                            tracing::warn!(error = %err, "decision log WAL backfill failed; the writer's own checkpoints still run");
                        }
                        Err(_) => {}
                    }
                }
            })
            .map_err(|cause| super::writer::OpenError::Thread {
                thread: "decision-log-backfill",
                cause,
            })?;
        Ok(WalBackfill {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for WalBackfill {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_frames(path: &Path) -> u64 {
        let wal = path.with_extension("db-wal");
        std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn test_backfill_copies_committed_pages_and_stops_on_drop() {
        let dir = std::env::temp_dir().join(format!("dialgate-backfill-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("decisions.db");
        let conn = crate::decision_log::open_connection(&path, Synchronous::Full).unwrap();
        // The writer's own checkpoint off, so only the backfill thread copies.
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (x TEXT); INSERT INTO t VALUES (zeroblob(100000));")
            .unwrap();
        assert!(wal_frames(&path) > 0);
        let backfill =
            WalBackfill::start(&path, Synchronous::Full, Duration::from_millis(5)).unwrap();
        let start = std::time::Instant::now();
        let db_len = || std::fs::metadata(&path).unwrap().len();
        while db_len() < 100_000 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Only a checkpoint writes to the database file in WAL mode.
        assert!(db_len() >= 100_000, "the pages reached the database file");
        drop(backfill);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
