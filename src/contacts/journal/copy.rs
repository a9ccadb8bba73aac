//! Whole stores into the journal: `dialgate store migrate --to postgres`
//! ([`copy_from_sqlite`]) and bulk imports on the postgres backend
//! ([`import_file`]): the file is read and checked exactly as on SQLite,
//! into a scratch store, whose records then go into the journal as one
//! entry in one transaction (all or nothing). Every replica applies it as
//! one local bulk import.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;

use super::entry::{self, ConsentBody, ImportBody, RecordRow, RelationshipBody, SuppressionBody};
use super::{Extra, JournalError, SharedSalt, append, check_import, existing_salt, shared_salt};
use crate::contacts::import::ContactImportSummary;
use crate::contacts::store::AllRecords;
use crate::contacts::{ContactIndex, ContactStore};
use crate::store::postgres::Pg;

/// What a migration copied into the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopySummary {
    pub consents: usize,
    pub relationships: usize,
    pub suppressions: usize,
    /// The journal entry holding them.
    pub seq: i64,
}

/// The journal rows of every record of `all`.
fn rows(index: &ContactIndex, all: &AllRecords, actor: &str) -> Vec<RecordRow> {
    let subject = |e164: &str| hex::encode(index.subject_hash(e164));
    let mut rows =
        Vec::with_capacity(all.consents.len() + all.relationships.len() + all.suppressions.len());
    for consent in &all.consents {
        rows.push(RecordRow {
            kind: entry::CONSENT,
            record_id: consent.consent_id.clone(),
            subject: subject(&consent.number),
            controller: consent.controller.clone(),
            body: json(&ConsentBody::new(consent, actor)),
            restrictive: consent.revoked_at.is_some(),
        });
    }
    for relationship in &all.relationships {
        rows.push(RecordRow {
            kind: entry::RELATIONSHIP,
            record_id: relationship.relationship_id.clone(),
            subject: subject(&relationship.number),
            controller: relationship.controller.clone(),
            body: json(&RelationshipBody::new(relationship, actor)),
            restrictive: true,
        });
    }
    for (hash, suppression) in &all.suppressions {
        rows.push(RecordRow {
            kind: if hash.is_some() {
                entry::SUPPRESSION_HASHED
            } else {
                entry::SUPPRESSION
            },
            record_id: suppression.suppression_id.clone(),
            subject: match hash {
                Some(hash) => hex::encode(hash),
                None => subject(&suppression.number),
            },
            controller: suppression.controller.clone(),
            body: json(&SuppressionBody::new(suppression)),
            restrictive: true,
        });
    }
    rows
}

fn json(body: &impl serde::Serialize) -> String {
    serde_json::to_string(body).unwrap_or_default()
}

/// Copies the contact records (consents, relationships, opt-outs, those
/// kept by hash included) of the SQLite deployment in `data_dir` into the
/// journal as its first entry, with that store's subject salt; `data_dir`
/// then serves as a replica that applied it. Refused unless the journal is
/// empty, and while the store holds registry answers "opposed" or
/// withdrawals known by hash only (the copy cannot carry them yet). The
/// change trail is not copied (it stays in the local store of `data_dir`).
///
/// # Errors
/// [`JournalError::Refused`] when the journal is not empty; a failure of
/// either store (nothing is copied then).
pub async fn copy_from_sqlite(pg: &Pg, data_dir: &Path) -> Result<CopySummary, JournalError> {
    let store = ContactStore::open_unindexed(data_dir)?;
    // Both outweigh what the copy carries (an answer "opposed" outweighs
    // registry clearance, a withdrawal a consent): left out, replicas
    // would allow calls the SQLite deployment denies.
    let (opposed, withdrawals) = store.uncopyable_records()?;
    if opposed > 0 || withdrawals > 0 {
        return Err(JournalError::Refused(format!(
            "{} holds {opposed} registry answers \"opposed\" and {withdrawals} consent withdrawals known by hash only, which the copy cannot carry yet (replicas would allow calls this deployment denies): nothing copied; keep this deployment on SQLite for now",
            data_dir.display()
        )));
    }
    let all = store.all_records()?;
    let rows = rows(store.index(), &all, "store migrate");
    let body = serde_json::to_value(ImportBody {
        actor: "store migrate".into(),
        action: "records.migrated".into(),
        now_us: Timestamp::now().as_microsecond(),
        records: rows.len() as u64,
    })
    .unwrap_or_default();
    let extra = Extra {
        first_with_salt: Some(SharedSalt::of(&store)),
        ..Extra::default()
    };
    // No deadline: a large copy may take longer than `unavailable_after`.
    let seq = append(pg, entry::IMPORT, &body, &rows, &extra).await?;
    // What the follower checks on every poll (a rewound journal).
    let token: i64 = pg
        .client()
        .await?
        .query_one("SELECT token FROM contact_journal WHERE seq = $1", &[&seq])
        .await?
        .get(0);
    store.note_journal_tokens(&[(seq, token)])?;
    store.set_journal_applied(seq)?;
    let index = store.index();
    let numbers = all
        .consents
        .iter()
        .map(|c| &c.number)
        .chain(all.relationships.iter().map(|r| &r.number))
        .chain(
            all.suppressions
                .iter()
                .filter(|(h, _)| h.is_none())
                .map(|(_, s)| &s.number),
        );
    let noted: Vec<_> = numbers
        .map(|number| (index.subject_hash(number), number.clone()))
        .collect();
    store.note_subjects(&noted)?;
    Ok(CopySummary {
        consents: all.consents.len(),
        relationships: all.relationships.len(),
        suppressions: all.suppressions.len(),
        seq,
    })
}

/// The scratch directories of shared imports: `<prefix><pid>`.
const SCRATCH_PREFIX: &str = "contacts-import-shared-";

/// Removes the scratch directories of imports whose process is gone
/// (killed mid-import: they hold the file's records, numbers included).
fn remove_abandoned_scratch(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SCRATCH_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            tracing::warn!(path = %entry.path().display(), "removed the scratch store of an interrupted import");
        }
    }
}

/// A scratch directory removed when dropped (it holds the file's records).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A bulk import on the postgres backend: `consents` (else opt-outs) from
/// `file`, checked as on SQLite, then committed to the journal as one
/// entry in one transaction. Returns the summary and the entry's seq (none
/// for a dry run). Runs the database work on `runtime`.
///
/// # Errors
/// The file's first problem (nothing stored), a reused opt-out id, or a
/// database failure (nothing stored).
pub fn import_file(
    runtime: &tokio::runtime::Runtime,
    config: &crate::config::Config,
    pg: &Pg,
    file: &Path,
    consents: bool,
    dry_run: bool,
    actor: &str,
) -> anyhow::Result<(ContactImportSummary, Option<i64>)> {
    // A dry run writes nothing to the shared database, not even its first
    // salt (a later `store migrate` would then be refused).
    let salt = if dry_run {
        runtime
            .block_on(existing_salt(pg))?
            .unwrap_or_else(SharedSalt::new_deployment)
    } else {
        runtime.block_on(shared_salt(pg, SharedSalt::new_deployment()))?
    };
    let data_dir = &config.server.data_dir;
    crate::private::create_dir_all(data_dir)?;
    remove_abandoned_scratch(data_dir);
    let scratch = Scratch(data_dir.join(format!("{SCRATCH_PREFIX}{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&scratch.0);
    salt.seed(&scratch.0)?;
    let store = Arc::new(ContactStore::open_unindexed(&scratch.0)?);
    let now = Timestamp::now();
    let started = std::time::Instant::now();
    // Into the scratch store for real on a dry run too (it is removed
    // afterwards, and has no erasure ledger): its records are then checked
    // against the journal in a transaction rolled back.
    let mut summary = if consents {
        crate::contacts::import::import_consents(
            &store,
            file,
            actor,
            now,
            false,
            &crate::contacts::service::Spellings::configured(config),
        )?
    } else {
        let records = crate::contacts::service::Records::configured(config, Arc::clone(&store));
        crate::contacts::import::import_suppressions(&records, file, actor, now, false)?
    };
    let checked = started.elapsed();
    let all = store.all_records()?;
    let rows = rows(store.index(), &all, actor);
    let read = started.elapsed();
    if dry_run {
        let held = runtime.block_on(check_import(pg, &rows))?;
        let held = usize::try_from(held).unwrap_or(0).min(summary.stored);
        summary.already_present += held;
        summary.stored -= held;
        summary.dry_run = true;
        return Ok((summary, None));
    }
    let body = serde_json::to_value(ImportBody {
        actor: actor.to_string(),
        action: if consents {
            "consents.imported"
        } else {
            "suppressions.imported"
        }
        .into(),
        now_us: now.as_microsecond(),
        records: rows.len() as u64,
    })
    .unwrap_or_default();
    let extra = Extra {
        refuse_reused: true,
        ..Extra::default()
    };
    let seq = runtime.block_on(append(pg, entry::IMPORT, &body, &rows, &extra))?;
    // Those whose ids the journal held already were left out (see
    // `leave_out_present`): already present on every replica. Counted
    // after the commit: a failure to count only leaves the file's counts
    // (the entry is committed whatever).
    let kept = runtime.block_on(async {
        let client = pg.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM contact_journal_records r
                 JOIN contact_journal j ON j.batch = r.batch WHERE j.seq = $1",
                &[&seq],
            )
            .await?;
        Ok::<i64, JournalError>(row.get(0))
    });
    match kept {
        Ok(kept) => {
            let kept = usize::try_from(kept).unwrap_or(0).min(summary.stored);
            summary.already_present += summary.stored - kept;
            summary.stored = kept;
        }
        Err(err) => tracing::warn!(
            error = %err,
            seq,
            "the import is committed; the records it left out could not be counted"
        ),
    }
    let kept = summary.stored;
    tracing::info!(
        records = rows.len(),
        kept,
        seq,
        checked_ms = checked.as_millis() as u64,
        read_ms = (read - checked).as_millis() as u64,
        committed_ms = (started.elapsed() - read).as_millis() as u64,
        "bulk import committed to the shared contact journal"
    );
    Ok((summary, Some(seq)))
}

/// Records a registry's answers that `keys` are opposed for `controller`
/// on `at` (`registry import --opposed` on the postgres backend): one
/// journal entry, which every replica applies as one local change.
///
/// # Errors
/// [`JournalError`]: nothing was recorded.
pub async fn record_opposed(
    pg: &Pg,
    registry_id: &str,
    controller: &str,
    keys: &[crate::number::NumberKey],
    at: Timestamp,
) -> Result<i64, JournalError> {
    let salt = shared_salt(pg, SharedSalt::new_deployment()).await?.salt;
    let rows: Vec<RecordRow> = keys
        .iter()
        .map(|key| {
            let e164 = key.to_e164();
            RecordRow {
                kind: entry::OPPOSED,
                record_id: String::new(),
                subject: hex::encode(crate::contacts::salted_hash(&salt, &e164)),
                controller: controller.to_string(),
                body: serde_json::json!({ "number": e164 }).to_string(),
                restrictive: true,
            }
        })
        .collect();
    let body = serde_json::to_value(entry::OpposedBody {
        registry_id: registry_id.to_string(),
        controller: controller.to_string(),
        at_us: at.as_microsecond(),
    })
    .unwrap_or_default();
    append(pg, entry::OPPOSED, &body, &rows, &Extra::default()).await
}
