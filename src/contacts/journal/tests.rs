//! The journal's checks of a bulk import's ids against a real PostgreSQL
//! (Debian's package, started in a temporary directory; skipped when it is
//! not installed, unless `DIALGATE_REQUIRE_POSTGRES` is set).

#[path = "../../../tests/it/postgres_server.rs"]
mod postgres_server;

use std::time::Duration;

use super::entry::{self, RecordRow};
use super::{Extra, JournalError, append, head, leave_out_present, new_batch, refuse_reused_ids};
use crate::contacts::StoreError;
use crate::store::PostgresSettings;
use crate::store::postgres::Pg;

fn opt_out(id: &str, subject: &str) -> RecordRow {
    RecordRow {
        kind: entry::SUPPRESSION,
        record_id: id.into(),
        subject: subject.repeat(32),
        controller: "acme".into(),
        body: serde_json::json!({"suppression_id": id, "controller": "acme", "campaign_id": ""})
            .to_string(),
        restrictive: true,
    }
}

async fn commit_import(pg: &Pg, rows: &[RecordRow]) -> i64 {
    let body = serde_json::json!({"actor": "test", "action": "suppressions.imported", "now_us": 0, "records": rows.len()});
    let extra = Extra {
        refuse_reused: true,
        ..Extra::default()
    };
    append(pg, entry::IMPORT, &body, rows, &extra)
        .await
        .unwrap()
}

/// An import (B) checks its ids before the journal lock; another (A),
/// giving one of B's opt-out ids to another number, commits while B's
/// check runs, unseen by it. B then left out every record whose id the
/// journal held, A's included, without comparing it: B's opt-out was
/// dropped as "already present", the check under the lock found nothing
/// of it left to compare, and B's number stayed callable on every
/// replica. Now B leaves out only what the entries up to the head it read
/// before its check hold; its copy stays, and the check under the lock
/// refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_copy_committed_during_the_check_is_not_left_out_unchecked() {
    let Some(server) = postgres_server::PgServer::start() else {
        return;
    };
    let pg = Pg::connect(&PostgresSettings {
        url: server.url(),
        replica_id: "test".into(),
        max_staleness: Duration::from_secs(5),
        unavailable_after: Duration::from_secs(10),
        ca_file: None,
    })
    .await
    .unwrap();
    commit_import(&pg, &[opt_out("S-0", "00")]).await;
    // B: its records written, the head read, its check passed.
    let mut client = pg.client().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let batch = new_batch(&tx, &[opt_out("S-1", "bb"), opt_out("S-0", "00")])
        .await
        .unwrap();
    let checked_through = head(&tx).await.unwrap();
    refuse_reused_ids(&tx, batch, None).await.unwrap();
    // A commits S-1 for another number, after B's check began.
    commit_import(&pg, &[opt_out("S-1", "aa")]).await;
    // B's copy of S-0, checked against entry 1, is left out; its S-1 stays.
    assert_eq!(
        leave_out_present(&tx, batch, checked_through)
            .await
            .unwrap(),
        1
    );
    let err = refuse_reused_ids(&tx, batch, Some(checked_through))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, JournalError::Store(StoreError::ReusedIds(ids)) if ids == "S-1"),
        "{err:?}"
    );
    // Left out against every entry, as before, nothing was left to refuse.
    assert_eq!(leave_out_present(&tx, batch, i64::MAX).await.unwrap(), 1);
    refuse_reused_ids(&tx, batch, Some(checked_through))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
}
