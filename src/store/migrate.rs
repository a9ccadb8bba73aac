//! `dialgate store migrate --to postgres`: copies an existing one-gateway
//! deployment (the SQLite and snapshot files under `server.data_dir`) into
//! the shared database named by `[store]`, one part after another, printing
//! one summary line per part.
//!
//! It holds the data directory's serve lock throughout (it refuses while a
//! `dialgate serve` runs there, and no server starts meanwhile). Each part
//! is safe to run again: what is already copied is skipped or refused with
//! a clear message. The first part that fails stops the migration (the
//! parts before it stay copied; running it again continues).
//!
//! A part is one line in [`parts`]: an async function of the database and
//! the data directory returning a summary that displays as one line.

use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use anyhow::Context;

use super::StoreBackend;
use super::postgres::Pg;
use crate::config::Config;

/// One part of the migration: its name and the work (not yet started).
pub struct Part<'a> {
    pub name: &'static str,
    work: Pin<Box<dyn Future<Output = anyhow::Result<String>> + 'a>>,
}

/// A part from any async copy that returns a displayable summary.
pub fn part<'a, S, E, F>(name: &'static str, work: F) -> Part<'a>
where
    F: Future<Output = Result<S, E>> + 'a,
    S: Display,
    E: Into<anyhow::Error>,
{
    Part {
        name,
        work: Box::pin(async move { work.await.map(|s| s.to_string()).map_err(Into::into) }),
    }
}

/// Who a migration's writes are attributed to.
fn actor(pg: &Pg) -> String {
    format!(
        "store migrate by {} on replica {}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        pg.replica_id()
    )
}

/// Every part, in order. To add one: one `part(...)` line.
fn parts<'a>(pg: &'a Pg, config: &'a Config, data_dir: &'a Path, by: &'a str) -> Vec<Part<'a>> {
    vec![
        part(
            "registry snapshots",
            crate::registry::shared_import::copy_from_sqlite(pg, &config.registries, data_dir, by),
        ),
        part("decision log", copy_decision_log(pg, config, data_dir)),
        part("contact records", copy_contact_records(pg, data_dir)),
    ]
}

/// The decision log part, its copied anchor signed with the checkpoint key
/// when one is configured (as the replicas sign theirs).
async fn copy_decision_log(pg: &Pg, config: &Config, data_dir: &Path) -> anyhow::Result<String> {
    let key = match &config.log.checkpoint_key_file {
        Some(path) => Some(crate::decision_log::checkpoint::load_key(path)?),
        None => None,
    };
    let copied = crate::decision_log::shared_copy::copy_from_sqlite(
        pg,
        data_dir,
        pg.replica_id(),
        key.as_ref(),
    )
    .await?;
    Ok(copied.to_string())
}

/// The contact records part: a store that already follows the journal
/// (copied before, or a replica's) is left as it is.
async fn copy_contact_records(pg: &Pg, data_dir: &Path) -> anyhow::Result<String> {
    if !crate::contacts::database_path(data_dir).exists() {
        return Ok("nothing to copy (no contact store)".to_string());
    }
    let applied = crate::contacts::ContactStore::open_unindexed(data_dir)?.journal_applied()?;
    if let Some(seq) = applied {
        return Ok(format!(
            "already copied (this data_dir follows the shared journal, at entry {seq}); nothing written"
        ));
    }
    let copied = crate::contacts::journal::copy_from_sqlite(pg, data_dir).await?;
    Ok(format!(
        "{} consents, {} relationships, {} opt-outs copied (journal entry {})",
        copied.consents, copied.relationships, copied.suppressions, copied.seq
    ))
}

/// Runs the migration; `report` gets one line per part as it finishes.
///
/// # Errors
/// A configuration without `[store] backend = "postgres"`, a data directory
/// in use, the database unreachable, or the first part that fails.
pub async fn to_postgres(config: &Config, mut report: impl FnMut(&str)) -> anyhow::Result<()> {
    let StoreBackend::Postgres(settings) = &config.store else {
        anyhow::bail!(
            "{}: store migrate --to postgres needs [store] backend = \"postgres\" (with url and replica_id) in the configuration; the SQLite files are read from server.data_dir",
            config.origin
        );
    };
    let data_dir = &config.server.data_dir;
    if !data_dir.is_dir() {
        anyhow::bail!(
            "server.data_dir {}: no such directory, nothing to migrate",
            data_dir.display()
        );
    }
    let _serving = crate::restore::ServeLock::acquire(data_dir)?;
    crate::restore::refuse_if_restoring(data_dir)?;
    let pg = Pg::connect(settings)
        .await
        .with_context(|| format!("cannot open the shared database {}", settings.shown_url()))?;
    let by = actor(&pg);
    for part in parts(&pg, config, data_dir, &by) {
        let summary = part.work.await.with_context(|| {
            format!(
                "{}: not migrated (the parts before it are; run again to continue)",
                part.name
            )
        })?;
        report(&format!("{}: {summary}", part.name));
    }
    Ok(())
}
