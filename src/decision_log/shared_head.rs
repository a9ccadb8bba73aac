//! A replica's chain must never go backwards under its writer: after a
//! failover to an asynchronous standby, a restore or a deleted tail, the
//! database's head is behind what this writer committed (or what a
//! checkpoint vouched for), and writing on would reuse seqs and forget
//! committed ALLOWs from the cap count. The writer then refuses to write
//! until an operator acts (see docs/replicas-decisions.md).

use crate::store::postgres::PgError;

/// A chain position: seq and the hash of the row there.
pub(crate) type Head = (i64, String);

/// What the database holds at the position this writer last committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AtLast {
    /// The row is there with this hash.
    Row(String),
    /// No row: the purge anchor (the last row `audit purge` removed).
    Purged(Option<Head>),
}

/// Whether the database's chain `db_head` continues `last` (what this
/// writer committed or a checkpoint vouched for).
///
/// # Errors
/// [`PgError::Corrupt`] naming both heads when it does not.
pub(crate) fn check_continues(
    replica: &str,
    last: &Head,
    db_head: &Head,
    at_last: &AtLast,
) -> Result<(), PgError> {
    match went_backwards(last, db_head, at_last) {
        None => Ok(()),
        Some(why) => Err(PgError::Corrupt(format!(
            "the decision log chain of replica {replica:?} went backwards: seq {} (hash {}) was committed, but the database's chain ends at seq {} and {why} (failover to an asynchronous standby, restore from a backup, deleted rows?): no decision is logged until an operator acts, see docs/replicas-decisions.md",
            last.0, last.1, db_head.0
        ))),
    }
}

/// How a chain ending at `db_head`, holding `at_last` at `last`'s seq,
/// fails to continue `last`; `None` when it continues it. Shared by the
/// shared log and the local one (`writer`), which refuse alike.
pub(crate) fn went_backwards(
    last: &Head,
    db_head: &Head,
    at_last: &AtLast,
) -> Option<&'static str> {
    if last.0 == 0 {
        return None;
    }
    if db_head.0 < last.0 {
        return Some("is shorter");
    }
    match at_last {
        AtLast::Row(hash) if *hash == last.1 => None,
        AtLast::Row(_) => Some("holds another row at that seq"),
        AtLast::Purged(Some((through, hash)))
            if *through > last.0 || (*through == last.0 && *hash == last.1) =>
        {
            None
        }
        AtLast::Purged(_) => Some("has no row at that seq"),
    }
}

/// Reads what the database holds at `last` and checks the chain
/// continues it; see [`check_continues`].
///
/// # Errors
/// [`PgError`] when it cannot be read or does not continue `last`.
pub(crate) async fn require_continues(
    client: &tokio_postgres::Client,
    replica: &str,
    last: &Head,
    db_head: &Head,
) -> Result<(), PgError> {
    if last.0 == 0 {
        return Ok(());
    }
    let at_last = match client
        .query_opt(
            "SELECT hash FROM decisions WHERE replica_id = $1 AND seq = $2",
            &[&replica, &last.0],
        )
        .await?
    {
        Some(row) => AtLast::Row(row.try_get(0)?),
        None => AtLast::Purged(
            client
                .query_opt(
                    "SELECT through_seq, through_hash FROM decision_purges WHERE replica_id = $1",
                    &[&replica],
                )
                .await?
                .map(|row| Ok::<_, PgError>((row.try_get(0)?, row.try_get(1)?)))
                .transpose()?,
        ),
    };
    check_continues(replica, last, db_head, &at_last)
}

/// The highest head of `replica` any stored checkpoint vouches for.
///
/// # Errors
/// [`PgError`] when the checkpoints cannot be read (one that does not
/// parse among them).
pub(crate) async fn latest_checkpointed(
    client: &tokio_postgres::Client,
    replica: &str,
) -> Result<Option<Head>, PgError> {
    let row = client
        .query_opt(
            "SELECT (h->>'seq')::bigint, h->>'hash'
             FROM decision_checkpoints c, jsonb_array_elements(c.checkpoint::jsonb -> 'heads') h
             WHERE h->>'replica_id' = $1
             ORDER BY 1 DESC LIMIT 1",
            &[&replica],
        )
        .await?;
    row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: i64, hash: &str) -> Head {
        (seq, hash.to_string())
    }

    #[test]
    fn test_a_chain_behind_what_was_committed_is_refused() {
        let last = head(3, "c");
        let ok = |db: Head, at: AtLast| check_continues("gw-a", &last, &db, &at).is_ok();
        assert!(ok(head(3, "c"), AtLast::Row("c".into())));
        assert!(ok(head(9, "x"), AtLast::Row("c".into())), "others wrote on");
        assert!(
            !ok(head(1, "a"), AtLast::Purged(None)),
            "deleted tail: shorter"
        );
        assert!(
            !ok(head(3, "z"), AtLast::Row("z".into())),
            "rewritten: another row at the seq"
        );
        assert!(
            !ok(head(5, "e"), AtLast::Purged(None)),
            "a gap where the row was"
        );
        assert!(
            ok(head(5, "e"), AtLast::Purged(Some(head(4, "d")))),
            "purged"
        );
        assert!(ok(head(3, "c"), AtLast::Purged(Some(head(3, "c")))));
        assert!(!ok(head(3, "c"), AtLast::Purged(Some(head(3, "q")))));
        assert!(
            check_continues("gw-a", &head(0, "g"), &head(0, "g"), &AtLast::Purged(None)).is_ok()
        );
        let err = check_continues("gw-a", &last, &head(1, "a"), &AtLast::Purged(None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("went backwards") && err.contains("seq 3"),
            "{err}"
        );
    }
}
