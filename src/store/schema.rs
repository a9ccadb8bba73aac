//! The shared database's schema: numbered migrations, applied once each,
//! in order, under an advisory lock (replicas starting together do not
//! race), each in its own transaction.

use super::postgres::PgError;

/// One step of the schema.
struct Migration {
    id: &'static str,
    sql: &'static str,
}

/// Every step, oldest first. Append only: a released step never changes.
const MIGRATIONS: &[Migration] = &[
    Migration {
        id: "0001_replicas",
        sql: include_str!("schema/0001_replicas.sql"),
    },
    Migration {
        id: "0002_decisions",
        sql: include_str!("schema/0002_decisions.sql"),
    },
    Migration {
        id: "0003_contacts",
        sql: include_str!("schema/0003_contacts.sql"),
    },
    Migration {
        id: "0004_registry",
        sql: include_str!("schema/0004_registry.sql"),
    },
    Migration {
        id: "0005_derived_ids",
        sql: include_str!("schema/0005_derived_ids.sql"),
    },
    Migration {
        id: "0006_database_history",
        sql: include_str!("schema/0006_database_history.sql"),
    },
];

/// The advisory lock key the migrations hold ("dialgate" in ASCII).
const MIGRATION_LOCK: i64 = 0x6469_616c_6761_7465;

/// Applies the steps this database lacks.
///
/// # Errors
/// [`PgError`] when a step fails (nothing of that step is kept).
pub(super) async fn migrate(client: &mut deadpool_postgres::Client) -> Result<(), PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS dialgate_schema (
             id text PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let applied: Vec<String> = tx
        .query("SELECT id FROM dialgate_schema", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for known in &applied {
        if !MIGRATIONS.iter().any(|m| m.id == known) {
            return Err(PgError::Setup(format!(
                "the database has schema step {known}, which this version does not know: a newer dialgate migrated it; run that version"
            )));
        }
    }
    for step in MIGRATIONS {
        if applied.iter().any(|id| id == step.id) {
            continue;
        }
        tx.batch_execute(step.sql)
            .await
            .map_err(|e| PgError::Setup(format!("schema step {}: {e}", step.id)))?;
        tx.execute("INSERT INTO dialgate_schema (id) VALUES ($1)", &[&step.id])
            .await?;
        tracing::info!(step = step.id, "shared database schema step applied");
    }
    tx.commit().await?;
    Ok(())
}
