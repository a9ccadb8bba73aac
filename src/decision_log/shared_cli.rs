//! `dialgate audit ...` on the shared database (`[store] backend =
//! "postgres"`): the same commands, over every replica's chain.

use std::path::Path;

use anyhow::{Context, bail};
use jiff::Timestamp;

use super::audit::{ExportFilter, ExportFormat};
use super::shared_audit::{self, HeadsCheckpoint, SharedVerification};
use crate::store::PostgresSettings;
use crate::store::postgres::Pg;

/// Runs `work` against the shared database on a runtime of its own.
fn with_database<T>(
    settings: &PostgresSettings,
    work: impl AsyncFnOnce(Pg) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let pg = Pg::connect(settings)
            .await
            .with_context(|| format!("cannot open the shared database {}", settings.shown_url()))?;
        work(pg).await
    })
}

/// `audit export`: every replica's decisions, in time order.
///
/// # Errors
/// When the database cannot be read or stdout written.
pub fn export(
    settings: &PostgresSettings,
    filter: &ExportFilter,
    format: ExportFormat,
) -> anyhow::Result<()> {
    with_database(settings, async |pg| {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        shared_audit::export(&pg, filter, format, &mut out).await?;
        Ok(())
    })
}

/// `audit checkpoint`: prints a checkpoint of every replica's head (signed
/// with `key`) for external anchoring, and stores it.
///
/// # Errors
/// When the database cannot be read or written.
pub fn checkpoint(
    settings: &PostgresSettings,
    key: Option<&ed25519_dalek::SigningKey>,
) -> anyhow::Result<()> {
    with_database(settings, async |pg| {
        let checkpoint = shared_audit::write_checkpoint(&pg, "audit checkpoint", key).await?;
        println!("{}", serde_json::to_string(&checkpoint)?);
        Ok(())
    })
}

/// `audit verify`: every replica's chain against every checkpoint (and
/// the `anchor` file, a saved `audit checkpoint`).
///
/// # Errors
/// When the log is not intact, or cannot be read.
pub fn verify(
    settings: &PostgresSettings,
    anchor: Option<&Path>,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> anyhow::Result<()> {
    let mut anchors = Vec::new();
    if let Some(path) = anchor {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--anchor {}: cannot read", path.display()))?;
        let checkpoint: HeadsCheckpoint = serde_json::from_str(text.trim()).with_context(|| {
            format!(
                "--anchor {}: not a checkpoint of the shared log (saved output of `audit checkpoint`)",
                path.display()
            )
        })?;
        anchors.push(checkpoint);
    }
    let outcome = with_database(settings, async |pg| {
        Ok(shared_audit::verify(&pg, &anchors, key).await?)
    })?;
    match outcome {
        SharedVerification::Intact {
            replicas,
            checkpoints,
            unsigned_before_key,
        } => {
            let total: u64 = replicas.iter().map(|(_, n, _)| n).sum();
            println!(
                "ok: {total} decisions of {} replica(s), every chain intact, {checkpoints} checkpoint(s) {}{}",
                replicas.len(),
                if key.is_some() {
                    "signed and matching"
                } else {
                    "matching (unsigned: no checkpoint key configured)"
                },
                if unsigned_before_key > 0 {
                    format!(" ({unsigned_before_key} of them unsigned (before the key))")
                } else {
                    String::new()
                }
            );
            for (replica, decisions, head) in replicas {
                println!(
                    "  {replica}: {decisions} decisions, head seq {} hash {}",
                    head.seq, head.hash
                );
            }
            Ok(())
        }
        SharedVerification::Broken {
            replica_id,
            seq,
            decision_id,
            problem,
        } => bail!(
            "decision log NOT intact: replica {replica_id:?} at seq {seq} (decision {decision_id}): {problem}"
        ),
    }
}

/// `audit purge`: cuts every replica's chain before `before` (the caller
/// checked the retention, cap and idempotency windows).
///
/// # Errors
/// When the database cannot be read or written.
pub fn purge(
    settings: &PostgresSettings,
    before: Timestamp,
    key: Option<&ed25519_dalek::SigningKey>,
) -> anyhow::Result<()> {
    let summary = with_database(settings, async |pg| {
        Ok(shared_audit::purge(&pg, before, key).await?)
    })?;
    if summary.is_empty() {
        println!("nothing to purge before {before}");
    }
    for (replica, removed, head) in summary {
        println!(
            "{replica}: purged {removed} decisions made before {before}; the chain now starts after seq {}",
            head.seq
        );
    }
    Ok(())
}
