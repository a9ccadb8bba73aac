//! The hash chain over logged decisions: each row's hash covers its canonical
//! content and the previous row's hash, so any altered, inserted or removed
//! row breaks the chain from that point on.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A row exactly as stored: the chain is computed over these column values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRow {
    pub seq: i64,
    pub decision_id: String,
    pub decided_at_us: i64,
    pub request_id: String,
    pub campaign_id: String,
    pub controller: String,
    pub called_number: String,
    pub normalized_number: String,
    pub caller_id: String,
    pub verdict: String,
    /// JSON array of `{code, detail}`.
    pub reasons: String,
    pub next_allowed_at_us: Option<i64>,
    /// JSON array of `registry@version` strings the decision rested on.
    pub data_versions: String,
    pub latency_us: i64,
    /// Name of the API key the dialer used (empty without authentication).
    pub api_key: String,
    pub prev_hash: String,
}

/// The hash of a row (lower-case hex SHA-256 of its canonical JSON).
pub fn row_hash(row: &StoredRow) -> String {
    let canonical = serde_json::to_vec(row).expect("a row serialises");
    hex::encode(Sha256::digest(&canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> StoredRow {
        StoredRow {
            seq: 1,
            decision_id: "d".into(),
            decided_at_us: 5,
            request_id: "r".into(),
            campaign_id: "c".into(),
            controller: "a".into(),
            called_number: "333".into(),
            normalized_number: "+39333".into(),
            caller_id: "".into(),
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
    fn test_hash_changes_with_any_field() {
        let base = row_hash(&row());
        assert_eq!(base.len(), 64);
        let mut changed = row();
        changed.verdict = "DENY".into();
        assert_ne!(row_hash(&changed), base);
        let mut changed = row();
        changed.prev_hash = "1".repeat(64);
        assert_ne!(row_hash(&changed), base);
        assert_eq!(row_hash(&row()), base);
    }
}
