//! Decision rows in the shared PostgreSQL log: the columns, reading a row
//! back (strictly: a row that does not parse is an error, never an answer),
//! and the lock keys batches take.

use sha2::{Digest, Sha256};

use super::DecisionRecord;
use super::chain::StoredRow;
use crate::store::postgres::PgError;

/// An instant stored in microseconds; out of range is [`PgError::Corrupt`]
/// (never read as 1970: an ALLOW would drop out of the cap count).
pub(crate) fn stored_instant(us: i64, what: &str) -> Result<jiff::Timestamp, PgError> {
    jiff::Timestamp::from_microsecond(us)
        .map_err(|_| PgError::Corrupt(format!("{what}: {us} µs is out of range")))
}

/// The columns of a shared row after `replica_id`, in table order.
pub(crate) const PG_COLUMNS: &str = "replica_id, seq, decision_id, decided_at_us, request_id, campaign_id, controller, \
    called_number, normalized_number, caller_id, verdict, reasons, next_allowed_at_us, data_versions, \
    latency_us, api_key, prev_hash, hash";

/// A row read back: which replica logged it, the row and its stored hash.
#[derive(Debug, Clone)]
pub(crate) struct SharedRow {
    pub replica_id: String,
    pub row: StoredRow,
    pub hash: String,
}

/// Reads a row selected with [`PG_COLUMNS`].
pub(crate) fn read_pg_row(row: &tokio_postgres::Row) -> Result<SharedRow, PgError> {
    Ok(SharedRow {
        replica_id: row.try_get(0)?,
        row: StoredRow {
            seq: row.try_get(1)?,
            decision_id: row.try_get(2)?,
            decided_at_us: row.try_get(3)?,
            request_id: row.try_get(4)?,
            campaign_id: row.try_get(5)?,
            controller: row.try_get(6)?,
            called_number: row.try_get(7)?,
            normalized_number: row.try_get(8)?,
            caller_id: row.try_get(9)?,
            verdict: row.try_get(10)?,
            reasons: row.try_get(11)?,
            next_allowed_at_us: row.try_get(12)?,
            data_versions: row.try_get(13)?,
            latency_us: row.try_get(14)?,
            api_key: row.try_get(15)?,
            prev_hash: row.try_get(16)?,
        },
        hash: row.try_get(17)?,
    })
}

/// The decision a stored row holds; a verdict, reasons, versions or an
/// instant that do not parse are [`PgError::Corrupt`] (never read as an
/// ALLOW, nor as 1970). The local log reads its rows alike
/// (`writer::record_from_row`).
pub(crate) fn strict_record(row: &StoredRow) -> Result<DecisionRecord, PgError> {
    super::writer::record_from_row(row).map_err(PgError::Corrupt)
}

/// The advisory lock key of a request id (two batches deciding it wait for
/// each other; the second then finds the first's decision).
pub(crate) fn request_lock(request_id: &str) -> i64 {
    lock_key(&["request", request_id])
}

/// The advisory lock key of a controller's attempts on a number.
pub(crate) fn attempts_lock(controller: &str, number: &str) -> i64 {
    lock_key(&["attempts", controller, number])
}

fn lock_key(parts: &[&str]) -> i64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(first)
}

/// The keys of a batch in the one order every replica takes them (a cycle
/// of waits between two batches is impossible), each once.
pub(crate) fn lock_order(mut keys: Vec<i64>) -> Vec<i64> {
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision_log::chain::GENESIS;
    use crate::model::Verdict;

    fn stored() -> StoredRow {
        StoredRow {
            seq: 1,
            decision_id: "d".into(),
            decided_at_us: 5,
            request_id: "r".into(),
            campaign_id: "c".into(),
            controller: "a".into(),
            called_number: "333".into(),
            normalized_number: "+39333".into(),
            caller_id: String::new(),
            verdict: "ALLOW".into(),
            reasons: "[]".into(),
            next_allowed_at_us: None,
            data_versions: "[]".into(),
            latency_us: 1,
            api_key: String::new(),
            prev_hash: GENESIS.into(),
        }
    }

    #[test]
    fn test_strict_record_refuses_what_does_not_parse() {
        assert_eq!(strict_record(&stored()).unwrap().verdict, Verdict::Allow);
        for broken in [
            StoredRow {
                verdict: "allow".into(),
                ..stored()
            },
            StoredRow {
                reasons: "{".into(),
                ..stored()
            },
            StoredRow {
                data_versions: "[1]".into(),
                ..stored()
            },
            StoredRow {
                decided_at_us: i64::MAX,
                ..stored()
            },
            StoredRow {
                next_allowed_at_us: Some(i64::MIN),
                ..stored()
            },
        ] {
            assert!(matches!(strict_record(&broken), Err(PgError::Corrupt(_))));
        }
    }

    #[test]
    fn test_an_out_of_range_instant_is_corrupt_not_1970() {
        assert!(matches!(
            stored_instant(i64::MAX, "decided_at_us"),
            Err(PgError::Corrupt(_))
        ));
        assert_eq!(stored_instant(5, "x").unwrap().as_microsecond(), 5);
    }

    #[test]
    fn test_lock_keys_are_distinct_and_ordered() {
        assert_ne!(request_lock("a"), attempts_lock("a", ""));
        assert_ne!(attempts_lock("ab", "c"), attempts_lock("a", "bc"));
        assert_eq!(request_lock("x"), request_lock("x"));
        let keys = lock_order(vec![3, -1, 3, 2]);
        assert_eq!(keys, vec![-1, 2, 3]);
    }
}
