//! `dialgate restore --from DIR`: puts a backup's contact records back and
//! re-applies every erasure, opt-out, withdrawal and rectification the
//! erasure ledger holds (the whole ledger: an entry's time is when it was
//! written, not when its change was committed), so a backup cannot bring
//! back what they ended. Also the lock a running server holds on its data
//! directory (`serve.lock`), which restore and `retention purge` respect,
//! and `restore.lock`, which keeps the CLI's store writers out of a restore.
//!
//! The restored store is built as `contacts.db.restoring` and renamed over
//! `contacts.db` last; from the first change to the end a
//! `restore-in-progress` marker keeps `serve` and the store's writers from
//! starting (run the restore again to finish). The registry's "opposed"
//! answers of the store moved aside are kept (the later day of each).
//!
//! The decision log is not rolled back: a log in `data_dir` is newer than
//! any backup and stays as it is (its hash chain intact); only when
//! `data_dir` has none is the backup's copied in, after checking that it
//! verifies against its own checkpoints and against `data_dir/head.json`
//! if one survived (a log that ends before a kept checkpoint would fail
//! `audit verify`: restore refuses instead).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use jiff::Timestamp;

use crate::config::Config;
use crate::contacts::ledger::{self, EntryKind};
use crate::contacts::{ContactStore, Suppression};
use crate::decision_log::{self, audit, checkpoint};
use crate::number::NumberKey;
use crate::retention;

pub use crate::serve_lock::{LOCK_FILE, ServeLock};

/// The lock file that keeps the CLI's writers of the contact store (the
/// consent and opt-out imports, rectification, registry imports of opposed
/// numbers) and a restore apart: they take it shared, restore exclusive.
pub const RESTORE_LOCK_FILE: &str = "restore.lock";

/// Written (and fsync'd) before a restore changes anything in data_dir and
/// removed as its last step: while it exists, `serve` and the commands that
/// write the contact store refuse to start (the store may be half restored).
pub const IN_PROGRESS: &str = "restore-in-progress";

/// The restored contact store while it is built (renamed over
/// `contacts.db` once whole).
pub const STAGING: &str = "contacts.db.restoring";

/// A lock on `restore.lock`: shared by the CLI's writers of the contact
/// store, exclusive by restore.
#[derive(Debug)]
pub struct RestoreLock {
    _file: File,
}

impl RestoreLock {
    fn open(data_dir: &Path) -> anyhow::Result<(File, PathBuf)> {
        crate::private::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
        let path = data_dir.join(RESTORE_LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let _ = crate::private::tighten(&path);
        Ok((file, path))
    }

    /// Taken by a command that writes the contact store (many at once may
    /// hold it): fails while a restore runs, or when one did not finish.
    ///
    /// # Errors
    /// When a restore runs or was interrupted.
    pub fn shared(data_dir: &Path) -> anyhow::Result<RestoreLock> {
        let (file, path) = RestoreLock::open(data_dir)?;
        match file.try_lock_shared() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "a `dialgate restore` is running on data_dir {} (it holds {}): run this once it has finished",
                data_dir.display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        refuse_if_restoring(data_dir)?;
        Ok(RestoreLock { _file: file })
    }

    fn exclusive(data_dir: &Path) -> anyhow::Result<RestoreLock> {
        let (file, path) = RestoreLock::open(data_dir)?;
        match file.try_lock() {
            Ok(()) => Ok(RestoreLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "a dialgate command is writing the contact store of data_dir {} (an import or a rectification holds {}): let it finish, then restore",
                data_dir.display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(err)) => {
                Err(err).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// Fails when a restore of `data_dir` began and did not finish (its
/// contact store may be empty or half restored).
///
/// # Errors
/// When `data_dir/restore-in-progress` exists.
pub fn refuse_if_restoring(data_dir: &Path) -> anyhow::Result<()> {
    let marker = data_dir.join(IN_PROGRESS);
    if marker.exists() {
        bail!(
            "{} exists: a `dialgate restore` of this data_dir did not finish, and its contact store may be empty or half restored. Run the same `dialgate restore --from DIR` again (nothing else starts until it has finished)",
            marker.display()
        );
    }
    Ok(())
}

/// Opens the erasure ledger for a process that writes `store`, and checks
/// that it is the ledger the store's erasures, opt-outs and withdrawals
/// were recorded in: a ledger lost and created again (empty) must be
/// noticed, or a later restore would bring them all back. A store not
/// bound yet is bound to it, unless it already holds records and the
/// ledger was only just created.
///
/// # Errors
/// When the ledger cannot be opened or is not the store's.
pub fn open_ledger(config: &Config, store: &ContactStore) -> anyhow::Result<ledger::Ledger> {
    let path = &config.retention.erasure_ledger;
    let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
    let opened = ledger::Ledger::open(path)
        .context("cannot open the erasure ledger (retention.erasure_ledger)")?;
    let lost = |what: &str| {
        anyhow::anyhow!(
            "the erasure ledger {} {what}: the erasures, opt-outs and withdrawals recorded in the original would come back with a restore. Put the original back (retention.erasure_ledger); if it is truly lost, `dialgate restore --from DIR --without-ledger` from the newest backup starts a new one (re-apply them by hand: `trail export` lists them). Nothing started",
            path.display()
        )
    };
    let Some(id) = opened.id() else {
        // A ledger of an earlier version (no id line), or not a file (a
        // FIFO, /dev/null): only for a store never bound to one. A bound
        // store's changes would be recorded where no restore finds them
        // (found by review).
        if let Some(bound) = store.bound_ledger()? {
            return Err(lost(&format!(
                "has no id (not a ledger file, or its first line is damaged), but this contact store's changes were recorded in ledger {bound}"
            )));
        }
        return Ok(opened);
    };
    match store.bound_ledger()? {
        Some(bound) if bound == id => Ok(opened),
        Some(bound) => Err(lost(&format!(
            "(id {id}) is not the one this contact store's changes were recorded in (id {bound})"
        ))),
        None => {
            // A store no ledger was ever bound to: new, or written by a
            // version without the ledger (an upgrade must not stop the
            // gateway). A ledger lost later is caught above (the store is
            // bound by then) and by restore (the backup's manifest). A new
            // store beside a ledger of another store's changes: the store
            // was lost (deleted, a new disk) and created again empty, its
            // opt-outs gone; bound silently, every opted-out number was
            // callable, and a restore later refused the new store's own
            // entries (found by review).
            if existed {
                let mine = store.salt_fingerprint();
                let others = ledger::read(path)
                    .context("cannot read the erasure ledger (retention.erasure_ledger)")?
                    .iter()
                    .filter(|entry| !entry.salt.is_empty() && entry.salt != mine)
                    .count();
                if others > 0 {
                    anyhow::bail!(
                        "the contact store is not bound to an erasure ledger (new, or created again), but the erasure ledger {} holds {others} erasures, opt-outs and withdrawals of another contact store: contacts.db was lost or replaced, and serving it would call every number opted out since. Restore it: `dialgate restore --from DIR` (the newest backup; the ledger's changes are re-applied). To start a new store on purpose, move the ledger aside first. Nothing started",
                        path.display()
                    );
                }
            }
            if !existed && store.holds_records()? {
                tracing::warn!(
                    ledger = %path.display(),
                    "the contact store holds records but no erasure ledger was bound to it (written by an earlier version): a new ledger starts now; backups made before this point are restored without the erasures, opt-outs and withdrawals recorded before it"
                );
            }
            store.bind_ledger(id)?;
            Ok(opened)
        }
    }
}

/// Fsyncs a directory (a rename or a new file in it made durable).
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync {}", dir.display()))
}

/// Copies `from` to `to` through `to.restoring` (fsync'd, renamed over it),
/// so an interrupted copy never leaves a partial `to`.
fn copy_atomic(from: &Path, to: &Path) -> anyhow::Result<()> {
    let temporary = PathBuf::from(format!("{}.restoring", to.display()));
    copy_private(from, &temporary)?;
    std::fs::rename(&temporary, to)
        .with_context(|| format!("cannot rename {} to {}", temporary.display(), to.display()))?;
    if let Some(parent) = to.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Removes a SQLite database file and its `-wal` and `-shm` files.
fn remove_database(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| format!("cannot remove {}", file.display()));
            }
        }
    }
    Ok(())
}

/// How long before a backup started a ledger entry written for another
/// contact store (another subject salt) is taken to be of a store the
/// backup does not descend from (and skipped) rather than refused.
const MARGIN: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// What a restore did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    pub entries: usize,
    pub erasures: usize,
    pub records_erased: u32,
    pub erasures_by_hash: usize,
    pub opt_outs_added: usize,
    pub revocations: usize,
    pub consents_ended: u32,
    pub revocations_unmatched: usize,
    /// Registry answers merged from the store that was in data_dir.
    pub observations_kept: usize,
    /// Records the backup still had under a number (or purpose) a
    /// rectification moved them away from: deleted.
    pub rectifications_undone: usize,
    /// Records the backup had from before a rectification that kept them
    /// in place: its corrected values put back.
    pub corrections_replayed: usize,
    /// Relationship ends the backup did not hold, recorded again.
    pub relationship_ends: usize,
    pub lines: Vec<String>,
}

fn copy_private(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut source = File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut target = crate::private::create_file(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    std::io::copy(&mut source, &mut target)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    target.sync_all()?;
    Ok(())
}

/// The erasure ledger the store at `contacts` is bound to, if any.
///
/// # Errors
/// When the store cannot be read.
pub fn backup_bound_ledger(contacts: &Path) -> anyhow::Result<Option<String>> {
    let conn =
        rusqlite::Connection::open_with_flags(contacts, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", contacts.display()))?;
    let id: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = 'ledger_id'", [], |r| {
            r.get(0)
        })
        .map(Some)
        .or_else(|err| match err {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            err => Err(err),
        })
        .with_context(|| format!("cannot read {}", contacts.display()))?;
    Ok(id.map(|id| String::from_utf8_lossy(&id).into_owned()))
}

fn backup_salt(contacts: &Path) -> anyhow::Result<String> {
    let conn =
        rusqlite::Connection::open_with_flags(contacts, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", contacts.display()))?;
    let salt: Vec<u8> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'subject_salt'",
            [],
            |r| r.get(0),
        )
        .with_context(|| format!("{}: no subject salt", contacts.display()))?;
    Ok(ledger::salt_fingerprint(&salt))
}

/// Restores the backup in `from` into `config`'s data directory (the
/// server must be stopped) and re-applies the ledger; returns what it did.
///
/// # Errors
/// When the server runs, the backup is incomplete or unverifiable, the
/// ledger cannot be read or was written for another store; nothing is
/// changed in those cases. Errors while re-applying leave the backup in
/// place and name the entry: run restore again.
pub fn restore(
    config: &Config,
    from: &Path,
    without_ledger: bool,
    actor: &str,
    now: Timestamp,
) -> anyhow::Result<Restored> {
    let data_dir = &config.server.data_dir;
    let _lock = ServeLock::acquire(data_dir)?;
    let _writers = RestoreLock::exclusive(data_dir)?;
    let manifest = retention::read_manifest(from)?;
    let backup_contacts = crate::contacts::database_path(from);
    if !backup_contacts.exists() {
        bail!(
            "{}: the backup has no contact store",
            backup_contacts.display()
        );
    }
    let salt = backup_salt(&backup_contacts)?;
    // The ledger the backup's store was bound to, when its manifest does
    // not say (a manifest written without it, or edited): the store says.
    let expected_ledger = match &manifest.ledger_id {
        Some(id) => Some(id.clone()),
        None => backup_bound_ledger(&backup_contacts)?,
    };
    let ledger_path = &config.retention.erasure_ledger;
    if !ledger_path.exists() && !without_ledger {
        bail!(
            "the erasure ledger {} does not exist: without it, the erasures, opt-outs and withdrawals made after the backup would come back. Point retention.erasure_ledger at it; only if it is truly lost, pass --without-ledger (then re-apply them by hand: `trail export` of the lost store, if any, lists them). Nothing restored",
            ledger_path.display()
        );
    }
    // The whole ledger is re-applied, not only what it recorded after the
    // backup started: an entry's time is when it was written, and its
    // change may be committed long after (a bulk import's opt-outs, a
    // request waiting for the store's lock), after the backup copied the
    // store. Re-applying what the backup holds changes nothing.
    if let (Some(id), false) = (&expected_ledger, without_ledger) {
        let wanted = manifest.ledger_entries.unwrap_or(0);
        match ledger::identity(ledger_path)? {
            Some((found, entries)) if found == *id && entries >= wanted => {}
            Some((found, entries)) if found == *id => bail!(
                "the erasure ledger {} holds {entries} entries, fewer than the {wanted} it held when the backup was made: it was cut or replaced by an older copy, and the erasures, opt-outs and withdrawals it lost would come back. Restore the whole ledger; only if that is impossible, pass --without-ledger. Nothing restored",
                ledger_path.display()
            ),
            found => bail!(
                "the erasure ledger {} is not the one the backup was made with (ledger id {}, the backup's manifest says {id}): it was lost and created again, so the erasures, opt-outs and withdrawals it held would come back. Point retention.erasure_ledger at the original; only if it is truly lost, pass --without-ledger. Nothing restored",
                ledger_path.display(),
                found.map_or_else(|| "none".to_string(), |(found, _)| found)
            ),
        }
    }
    let since = manifest
        .started_at
        .checked_sub(MARGIN)
        .unwrap_or(Timestamp::MIN);
    let all: Vec<ledger::Entry> = ledger::read(&config.retention.erasure_ledger)?;
    let foreign = all
        .iter()
        .filter(|e| e.salt != salt && e.at >= since)
        .count();
    if foreign > 0 {
        bail!(
            "{foreign} entries of the erasure ledger {} since the backup were written for another contact store (its subject salt differs from the backup's): they cannot be matched to numbers, so the erasures and opt-outs they record would come back; nothing restored",
            config.retention.erasure_ledger.display()
        );
    }
    // Entries of a store the backup does not descend from, written before it.
    let entries: Vec<ledger::Entry> = all.into_iter().filter(|e| e.salt == salt).collect();
    let mut restored = Restored {
        entries: entries.len(),
        ..Restored::default()
    };

    // The decision log: checked before anything is changed.
    let current_log = decision_log::database_path(data_dir);
    let backup_log = decision_log::database_path(from);
    let take_log = !current_log.exists() && backup_log.exists();
    let key = config
        .log
        .checkpoint_key_file
        .as_deref()
        .map(checkpoint::load_key)
        .transpose()?
        .map(|k| k.verifying_key());
    if take_log {
        let checkpoints = checkpoint::read_all(&checkpoint::checkpoints_path(from))?;
        // The log that was in data_dir is gone; what vouched for it is not:
        // its kept head (with a key), and the newest of its checkpoints
        // (without a key there is no kept head: the backup's older log was
        // taken, and the ALLOWs made after the backup no longer counted
        // against the caps; found by review).
        let mut anchors: Vec<_> = checkpoint::read_one(&checkpoint::head_path(data_dir))?
            .into_iter()
            .collect();
        anchors.extend(
            checkpoint::read_all(&checkpoint::checkpoints_path(data_dir))?
                .into_iter()
                .max_by_key(|c| c.seq),
        );
        if let audit::Verification::Broken { seq, problem, .. } =
            audit::verify(&backup_log, &checkpoints, &anchors, key.as_ref())?
        {
            bail!(
                "the backup's decision log does not verify (seq {seq}: {problem}); with it `audit verify` would fail. Nothing restored. If {} or {} is from a later log that is lost, decisions after the backup are gone (and the ALLOWs among them no longer count against attempt caps): move the file aside to accept it, then restore again",
                checkpoint::head_path(data_dir).display(),
                checkpoint::checkpoints_path(data_dir).display()
            );
        }
    }

    // From here on data_dir is changed: until the marker is removed (the
    // last step), `serve` and the store's writers refuse to start.
    let marker = data_dir.join(IN_PROGRESS);
    {
        use std::io::Write as _;
        let mut file = crate::private::create_file(&marker)
            .with_context(|| format!("cannot create {}", marker.display()))?;
        writeln!(
            file,
            "restore from {} began {now}: run it again to finish",
            from.display()
        )?;
        file.sync_all()?;
    }
    sync_dir(data_dir)?;

    // The restored contact store is built beside the current one and only
    // renamed over it once whole.
    let current = crate::contacts::database_path(data_dir);
    let staging = data_dir.join(STAGING);
    remove_database(&staging)?;
    copy_private(&backup_contacts, &staging)?;
    if current.exists() {
        restored.observations_kept = merge_observations(&staging, &current)?;
    }
    let store = ContactStore::open_unindexed_file(&staging)
        .context("cannot open the restored contact store")?;
    if store.salt_fingerprint() != salt {
        bail!("the restored contact store's subject salt is not the backup's");
    }
    // Bound to the ledger in place (a new one, with --without-ledger).
    match ledger::Ledger::open(ledger_path)?.id() {
        Some(id) => store.bind_ledger(id)?,
        None => store.unbind_ledger()?,
    }
    let wanted: std::collections::HashSet<_> = entries
        .iter()
        .filter_map(ledger::Entry::subject_hash)
        .collect();
    let numbers = store.numbers_by_hash(&wanted, true)?;
    for (i, entry) in entries.iter().enumerate() {
        let failed = |what: &str| format!("ledger entry {} of {} ({what})", i + 1, entries.len());
        let Some(subject) = entry.subject_hash() else {
            bail!(
                "{}: subject {:?} is not a hash",
                failed("unreadable"),
                entry.subject
            );
        };
        let number = numbers.get(&subject);
        match entry.kind {
            EntryKind::Erasure => {
                restored.erasures += 1;
                if let Some(number) = number
                    && let Some(key) = NumberKey::from_e164(number)
                {
                    restored.records_erased += store
                        .erase(
                            key,
                            number,
                            &entry.controller,
                            actor,
                            now,
                            &serde_json::json!({"restore": "erasure re-applied from the erasure ledger"}),
                        )
                        .with_context(|| failed("erasure"))?;
                } else {
                    restored.erasures_by_hash += 1;
                    store
                        .suppress_by_hash(
                            &subject,
                            &Suppression {
                                suppression_id: format!(
                                    "ledger-erasure-{}-{}",
                                    &entry.subject[..16.min(entry.subject.len())],
                                    entry.at.as_microsecond()
                                ),
                                controller: entry.controller.clone(),
                                campaign_id: String::new(),
                                number: String::new(),
                                reason: "erasure request (GDPR art. 17): keep suppressed (re-applied from the erasure ledger)".into(),
                                source: "restore".into(),
                                added_by: actor.to_string(),
                                created_at: entry.at,
                                expires_at: None,
                            },
                            actor,
                        )
                        .with_context(|| failed("erasure"))?;
                }
            }
            EntryKind::OptOut => {
                let added = store
                    .suppress_by_hash(
                        &subject,
                        &Suppression {
                            suppression_id: entry.suppression_id.clone(),
                            controller: entry.controller.clone(),
                            campaign_id: entry.campaign_id.clone(),
                            number: String::new(),
                            reason: "opt-out re-applied from the erasure ledger".into(),
                            source: "restore".into(),
                            added_by: actor.to_string(),
                            created_at: entry.at,
                            expires_at: entry.expires_at,
                        },
                        actor,
                    )
                    .with_context(|| failed("opt-out"))?;
                restored.opt_outs_added += usize::from(added);
            }
            EntryKind::Revocation => {
                restored.revocations += 1;
                let revoked_at = entry.revoked_at.unwrap_or(entry.at);
                match number.and_then(|n| Some((n, NumberKey::from_e164(n)?))) {
                    Some((number, key)) => {
                        restored.consents_ended += store
                            .reapply_withdrawal(
                                key,
                                number,
                                &entry.controller,
                                entry.purpose,
                                revoked_at,
                                entry.at,
                                entry.binds_grants_until,
                                actor,
                            )
                            .with_context(|| failed("withdrawal"))?;
                    }
                    None => {
                        // The consent it ended is not in the backup (recorded
                        // after it): kept by hash, it still ends a consent a
                        // CRM records again.
                        // Dated at the latest grant it ended, where later:
                        // it binds copies of those consents.
                        store
                            .withdraw_by_hash(
                                &subject,
                                &entry.controller,
                                entry.purpose,
                                revoked_at.max(entry.binds_grants_until.unwrap_or(revoked_at)),
                                actor,
                            )
                            .with_context(|| failed("withdrawal"))?;
                        restored.revocations_unmatched += 1;
                    }
                }
            }
            EntryKind::Rectification => match &entry.corrected {
                // Kept in place: the corrected values put back on the
                // backup's copy (an earlier end must not come undone).
                Some(values) => {
                    let replayed = store
                        .replay_correction(
                            &entry.record_kind,
                            &entry.record_id,
                            &subject,
                            (entry.corrected_from.as_ref(), values),
                            actor,
                            now,
                        )
                        .with_context(|| failed("rectification"))?;
                    restored.corrections_replayed += usize::from(replayed);
                }
                None => {
                    let removed = store
                        .remove_moved_record(
                            &entry.record_kind,
                            &entry.record_id,
                            &subject,
                            entry.purpose,
                            actor,
                            now,
                        )
                        .with_context(|| failed("rectification"))?;
                    restored.rectifications_undone += usize::from(removed);
                }
            },
            EntryKind::RelationshipEnd => {
                // Only beside an ongoing copy the backup holds (checked by
                // the store): the end alone would exempt where the live
                // store may not (its write failed, or a purge removed it).
                let values = entry.corrected.as_ref();
                let kind = values
                    .and_then(|v| crate::contacts::RelationshipKind::parse(&v.kind))
                    .ok_or_else(|| {
                        anyhow::anyhow!("{}", failed("relationship end without its kind"))
                    })?;
                let (Some(started_at), Some(ended_at)) = (
                    values.and_then(|v| v.started_at),
                    values.and_then(|v| v.ended_at),
                ) else {
                    bail!("{}", failed("relationship end without its start and end"));
                };
                if let Some((number, key)) =
                    number.and_then(|n| Some((n, NumberKey::from_e164(n)?)))
                {
                    let recorded = store
                        .reapply_relationship_end(
                            key,
                            crate::contacts::Relationship {
                                relationship_id: entry.record_id.clone(),
                                controller: entry.controller.clone(),
                                number: number.to_string(),
                                kind,
                                started_at,
                                ended_at: Some(ended_at),
                                recorded_at: entry.at,
                            },
                            actor,
                        )
                        .with_context(|| failed("relationship end"))?;
                    restored.relationship_ends += usize::from(recorded);
                }
            }
            EntryKind::ImportCommitted => {}
            // `ledger::read` gives an `opt_outs` line's opt-outs one entry
            // each: never skipped if it did not.
            EntryKind::OptOuts => bail!("{}: opt-outs not read one by one", failed("unreadable")),
        }
    }
    store.note(
        "backup.restored",
        actor,
        now,
        serde_json::json!({
            "backup_started_at": manifest.started_at,
            "ledger_entries": restored.entries,
            "erasures": restored.erasures,
            "records_erased": restored.records_erased,
            "opt_outs_added": restored.opt_outs_added,
            "revocations": restored.revocations,
            "consents_ended": restored.consents_ended,
        }),
    )?;
    drop(store);
    finish_database(&staging)?;

    // The swap: the current store moved aside, the restored one renamed in.
    let aside = data_dir.join(format!("before-restore-{}", now.strftime("%Y%m%dT%H%M%SZ")));
    let mut moved = false;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = PathBuf::from(format!("{}{suffix}", current.display()));
        if path.exists() {
            crate::private::create_dir_all(&aside)?;
            let target = aside.join(path.file_name().unwrap_or_default());
            std::fs::rename(&path, &target)
                .with_context(|| format!("cannot move {} aside", path.display()))?;
            moved = true;
        }
    }
    if moved {
        restored.lines.push(format!(
            "the contact store that was in data_dir is in {} (delete it once the restore is checked: it holds personal data)",
            aside.display()
        ));
    }
    std::fs::rename(&staging, &current).with_context(|| {
        format!(
            "cannot rename {} to {}",
            staging.display(),
            current.display()
        )
    })?;
    sync_dir(data_dir)?;
    restored.lines.push(format!(
        "contact records restored from {} (backup started {})",
        from.display(),
        manifest.started_at
    ));
    if restored.rectifications_undone > 0 {
        restored.lines.push(format!(
            "{} records deleted: the backup had them under a number or purpose they were rectified away from after it (record them again under the right number if needed)",
            restored.rectifications_undone
        ));
    }
    if restored.corrections_replayed > 0 {
        restored.lines.push(format!(
            "{} records corrected again: rectified after the backup (their grant, expiry, supplier, method, kind, start or end)",
            restored.corrections_replayed
        ));
    }
    if restored.relationship_ends > 0 {
        restored.lines.push(format!(
            "{} relationship ends recorded again: recorded after the backup, which holds the ongoing relationship",
            restored.relationship_ends
        ));
    }
    if restored.observations_kept > 0 {
        restored.lines.push(format!(
            "{} registry answers (numbers found opposed) kept from the contact store that was in data_dir",
            restored.observations_kept
        ));
    }
    if take_log {
        copy_atomic(&backup_log, &current_log)?;
        let checkpoints = checkpoint::checkpoints_path(from);
        let target = checkpoint::checkpoints_path(data_dir);
        // Checkpoints of the log that is gone: kept aside, never
        // overwritten (nor left to fail `audit verify` of the backup's log).
        if target.exists() {
            crate::private::create_dir_all(&aside)?;
            let kept = aside.join(target.file_name().unwrap_or_default());
            std::fs::rename(&target, &kept)
                .with_context(|| format!("cannot move {} aside", target.display()))?;
            restored.lines.push(format!(
                "the checkpoints that were in data_dir (of a decision log that is gone) are in {}",
                kept.display()
            ));
        }
        if checkpoints.exists() {
            copy_atomic(&checkpoints, &target)?;
        }
        restored
            .lines
            .push("decision log restored from the backup (data_dir had none)".into());
    } else if current_log.exists() {
        restored.lines.push(
            "decision log kept as it was in data_dir (newer than the backup; never rolled back)"
                .into(),
        );
    }
    let snapshots = crate::registry::snapshots_dir(from);
    if snapshots.exists() {
        let target = crate::registry::snapshots_dir(data_dir);
        crate::private::create_dir_all(&target)?;
        for entry in std::fs::read_dir(&snapshots)? {
            let path = entry?.path();
            let Some(name) = path.file_name() else {
                continue;
            };
            if path.extension().is_some_and(|e| e == "snap") && !target.join(name).exists() {
                copy_atomic(&path, &target.join(name))?;
                restored.lines.push(format!(
                    "registry snapshot {} restored (none in data_dir): it holds the registry data as of the backup; import every answer and list received since (RPO answers, DNC change lists) before serving, or a number an answer since withheld reads as cleared",
                    name.to_string_lossy()
                ));
            }
        }
    }
    std::fs::remove_file(&marker).with_context(|| format!("cannot remove {}", marker.display()))?;
    sync_dir(data_dir)?;
    restored.lines.push(format!(
        "erasure ledger: all {} entries re-applied: {} erasures ({} records erased, {} kept suppressed by hash only), {} opt-outs added, {} withdrawals ({} consents ended, {} kept by hash: their consents are not in the backup)",
        restored.entries,
        restored.erasures,
        restored.records_erased,
        restored.erasures_by_hash,
        restored.opt_outs_added,
        restored.revocations,
        restored.consents_ended,
        restored.revocations_unmatched
    ));
    if current_log.exists() {
        let checkpoints = checkpoint::read_all(&checkpoint::checkpoints_path(data_dir))?;
        let anchors: Vec<_> = checkpoint::read_one(&checkpoint::head_path(data_dir))?
            .into_iter()
            .collect();
        restored.lines.push(
            match audit::verify(&current_log, &checkpoints, &anchors, key.as_ref())? {
                audit::Verification::Intact { decisions, .. } => {
                    format!("audit verify: ok ({decisions} decisions)")
                }
                audit::Verification::Broken { seq, problem, .. } => {
                    format!("audit verify: NOT intact at seq {seq}: {problem}")
                }
            },
        );
    }
    Ok(restored)
}

/// Keeps the registry's "opposed" answers of the store in data_dir (which
/// the ledger does not record) in the restored one, the later day per row:
/// rolling them back would lift a DENY. Merged before the ledger is
/// re-applied, so erasures remove them again. Returns the rows merged.
fn merge_observations(staging: &Path, current: &Path) -> anyhow::Result<usize> {
    let conn = rusqlite::Connection::open(staging)
        .with_context(|| format!("cannot open {}", staging.display()))?;
    conn.execute(
        "ATTACH DATABASE ?1 AS current",
        [current.to_string_lossy().as_ref()],
    )
    .with_context(|| format!("cannot open {}", current.display()))?;
    let has_table: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM current.sqlite_master WHERE type = 'table' AND name = 'observations'",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(0);
    }
    let merged = conn
        .execute(
            "INSERT INTO main.observations (registry_id, controller, number_key, first_not_cleared_us)
             SELECT registry_id, controller, number_key, first_not_cleared_us FROM current.observations WHERE true
             ON CONFLICT (registry_id, controller, number_key)
             DO UPDATE SET first_not_cleared_us = max(first_not_cleared_us, excluded.first_not_cleared_us)
             WHERE excluded.first_not_cleared_us > first_not_cleared_us",
            [],
        )
        .with_context(|| format!("cannot merge the registry answers of {}", current.display()))?;
    if merged > 0 {
        conn.execute(
            "INSERT INTO main.counters (key, value) VALUES ('observations_version', 1)
             ON CONFLICT (key) DO UPDATE SET value = value + 1",
            [],
        )?;
    }
    Ok(merged)
}

/// Folds a closed SQLite database's WAL into its file (one file to rename)
/// and fsyncs it.
fn finish_database(path: &Path) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .with_context(|| format!("cannot checkpoint {}", path.display()))?;
    if !mode.eq_ignore_ascii_case("delete") {
        bail!("{}: its WAL could not be folded in (busy)", path.display());
    }
    drop(conn);
    File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot fsync {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry's "opposed" answers are not in the ledger: a restore
    /// keeps the later day of each from the store it moves aside (rolling
    /// one back would let a consent given in between lift the DENY).
    #[test]
    fn test_opposed_answers_of_the_store_moved_aside_are_kept() {
        let backup = tempfile::tempdir().unwrap();
        let current = tempfile::tempdir().unwrap();
        let key = NumberKey::from_e164("+393331234567").unwrap();
        let other = NumberKey::from_e164("+393331234568").unwrap();
        let day = |d: &str| -> Timestamp { d.parse().unwrap() };
        ContactStore::open_unindexed(backup.path())
            .unwrap()
            .record_opposed("it-rpo", "acme", &[key], day("2026-01-01T00:00:00Z"))
            .unwrap();
        let later = ContactStore::open_unindexed(current.path()).unwrap();
        later
            .record_opposed("it-rpo", "acme", &[key, other], day("2026-06-01T00:00:00Z"))
            .unwrap();
        drop(later);
        let merged = merge_observations(
            &crate::contacts::database_path(backup.path()),
            &crate::contacts::database_path(current.path()),
        )
        .unwrap();
        assert_eq!(merged, 2);
        let conn =
            rusqlite::Connection::open(crate::contacts::database_path(backup.path())).unwrap();
        let days: Vec<i64> = conn
            .prepare("SELECT first_not_cleared_us FROM observations ORDER BY number_key")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let june = day("2026-06-01T00:00:00Z").as_microsecond();
        assert_eq!(days, vec![june, june]);
    }

    /// The CLI's writers of the contact store and a restore exclude each
    /// other (serve.lock alone did not keep an import out of a restore);
    /// writers do not exclude each other.
    #[test]
    fn test_writers_and_a_restore_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let first = RestoreLock::shared(dir.path()).unwrap();
        let second = RestoreLock::shared(dir.path()).unwrap();
        let err = RestoreLock::exclusive(dir.path()).unwrap_err().to_string();
        assert!(err.contains("import"), "{err}");
        drop((first, second));
        let restoring = RestoreLock::exclusive(dir.path()).unwrap();
        let err = RestoreLock::shared(dir.path()).unwrap_err().to_string();
        assert!(err.contains("restore"), "{err}");
        drop(restoring);
        std::fs::write(dir.path().join(IN_PROGRESS), "x").unwrap();
        let err = RestoreLock::shared(dir.path()).unwrap_err().to_string();
        assert!(err.contains(IN_PROGRESS), "{err}");
    }
}
