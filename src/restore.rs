//! `dialgate restore --from DIR`: puts a backup's contact records back and
//! re-applies every erasure, opt-out and withdrawal the erasure ledger
//! recorded since the backup was made, so a backup cannot bring back what
//! they ended. Also the lock a running server holds on its data directory
//! (`serve.lock`), which restore and `retention purge` respect.
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

/// The lock file a running server holds in its data directory.
pub const LOCK_FILE: &str = "serve.lock";

/// An exclusive lock on a data directory: held by `serve` for its whole
/// life, and by `restore` and `retention purge` while they run.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

impl ServeLock {
    /// Takes the lock, or fails naming who holds it.
    ///
    /// # Errors
    /// When another process (a running server) holds it, or the file cannot be made.
    pub fn acquire(data_dir: &Path) -> anyhow::Result<ServeLock> {
        crate::private::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
        let path = data_dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let _ = crate::private::tighten(&path);
        match file.try_lock() {
            Ok(()) => Ok(ServeLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "data_dir {} is in use by another dialgate process holding {} (a running `dialgate serve`, or a restore or retention purge): stop the server first (e.g. systemctl stop dialgate)",
                data_dir.display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(err)) => {
                Err(err).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// How long before a backup started a ledger entry may lie and its change
/// still be missing from the backup (the entry is written just before the
/// change is committed): such entries are re-applied too (harmlessly, if
/// the backup has them).
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
    let manifest = retention::read_manifest(from)?;
    let backup_contacts = crate::contacts::database_path(from);
    if !backup_contacts.exists() {
        bail!(
            "{}: the backup has no contact store",
            backup_contacts.display()
        );
    }
    let salt = backup_salt(&backup_contacts)?;
    let ledger_path = &config.retention.erasure_ledger;
    if !ledger_path.exists() && !without_ledger {
        bail!(
            "the erasure ledger {} does not exist: without it, the erasures, opt-outs and withdrawals made after the backup would come back. Point retention.erasure_ledger at it; only if it is truly lost, pass --without-ledger (then re-apply them by hand: `trail export` of the lost store, if any, lists them). Nothing restored",
            ledger_path.display()
        );
    }
    let since = manifest.started_at - MARGIN;
    let entries: Vec<ledger::Entry> = ledger::read(&config.retention.erasure_ledger)?
        .into_iter()
        .filter(|e| e.at >= since)
        .collect();
    let foreign = entries.iter().filter(|e| e.salt != salt).count();
    if foreign > 0 {
        bail!(
            "{foreign} entries of the erasure ledger {} since the backup were written for another contact store (its subject salt differs from the backup's): they cannot be matched to numbers, so the erasures and opt-outs they record would come back; nothing restored",
            config.retention.erasure_ledger.display()
        );
    }
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
        let anchors: Vec<_> = checkpoint::read_one(&checkpoint::head_path(data_dir))?
            .into_iter()
            .collect();
        if let audit::Verification::Broken { seq, problem, .. } =
            audit::verify(&backup_log, &checkpoints, &anchors, key.as_ref())?
        {
            bail!(
                "the backup's decision log does not verify (seq {seq}: {problem}); with it `audit verify` would fail. Nothing restored. If {} is from a later log that is lost, decisions after the backup are gone: move that file aside to accept it, then restore again",
                checkpoint::head_path(data_dir).display()
            );
        }
    }

    // The contact store: the current one moved aside, the backup's copied in.
    let aside = data_dir.join(format!("before-restore-{}", now.strftime("%Y%m%dT%H%M%SZ")));
    let current = crate::contacts::database_path(data_dir);
    let mut moved = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", current.display()));
        if path.exists() {
            crate::private::create_dir_all(&aside)?;
            let target = aside.join(path.file_name().unwrap_or_default());
            std::fs::rename(&path, &target)
                .with_context(|| format!("cannot move {} aside", path.display()))?;
            moved.push(target);
        }
    }
    if !moved.is_empty() {
        restored.lines.push(format!(
            "the contact store that was in data_dir is in {} (delete it once the restore is checked: it holds personal data)",
            aside.display()
        ));
    }
    copy_private(&backup_contacts, &current)?;
    restored.lines.push(format!(
        "contact records restored from {} (backup started {})",
        from.display(),
        manifest.started_at
    ));
    if take_log {
        copy_private(&backup_log, &current_log)?;
        let checkpoints = checkpoint::checkpoints_path(from);
        if checkpoints.exists() {
            copy_private(&checkpoints, &checkpoint::checkpoints_path(data_dir))?;
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
                copy_private(&path, &target.join(name))?;
                restored.lines.push(format!(
                    "registry snapshot {} restored (none in data_dir)",
                    name.to_string_lossy()
                ));
            }
        }
    }

    // The ledger, entry by entry.
    let store =
        ContactStore::open_unindexed(data_dir).context("cannot open the restored contact store")?;
    if store.salt_fingerprint() != salt {
        bail!("the restored contact store's subject salt is not the backup's");
    }
    let wanted: std::collections::HashSet<_> = entries
        .iter()
        .filter_map(ledger::Entry::subject_hash)
        .collect();
    let numbers = store.numbers_by_hash(&wanted)?;
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
                            .revoke_consents(
                                key,
                                number,
                                &entry.controller,
                                entry.purpose,
                                revoked_at,
                                actor,
                            )
                            .with_context(|| failed("withdrawal"))?;
                    }
                    None => {
                        // The consent it ended is not in the backup (recorded
                        // after it): kept by hash, it still ends a consent a
                        // CRM records again.
                        store
                            .withdraw_by_hash(
                                &subject,
                                &entry.controller,
                                entry.purpose,
                                revoked_at,
                                actor,
                            )
                            .with_context(|| failed("withdrawal"))?;
                        restored.revocations_unmatched += 1;
                    }
                }
            }
            EntryKind::ImportCommitted => {}
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
    restored.lines.push(format!(
        "erasure ledger: {} entries since {since}: {} erasures ({} records erased, {} kept suppressed by hash only), {} opt-outs added, {} withdrawals ({} consents ended, {} kept by hash: their consents are not in the backup)",
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
