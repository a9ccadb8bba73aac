//! What a store following the shared journal (postgres backend) keeps about
//! it: the entry applied last, stored in the same transaction as the change
//! it made, and when it last confirmed it had applied every entry.

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction};

use std::collections::HashMap;

use super::{ContactStore, ContactView, StoreError, SubjectHash, Suppression, database_path};
use crate::number::NumberKey;

/// Stores `seq` as the journal entry applied last (inside the change's
/// transaction: a crash never applies an entry twice or skips one).
pub(super) fn store_journal_position(tx: &Transaction<'_>, seq: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO counters (key, value) VALUES ('journal_applied', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [seq],
    )?;
    Ok(())
}

/// The journal entry a thread is applying, and the number of the subject
/// it names (when it names one by number).
struct Applying {
    seq: i64,
    subject: Option<(SubjectHash, String)>,
}

thread_local! {
    /// The shared journal's entry this thread is applying: every store
    /// write it makes stores it as `counters.journal_applied` in its
    /// transaction (a thread-local: writes of other threads meanwhile,
    /// an export's trail event, do not claim the entry).
    static APPLYING: RefCell<Option<Applying>> = const { RefCell::new(None) };
}

/// In a write's transaction: the entry this thread is applying, if any,
/// becomes the applied one, and its subject's number is noted.
pub(super) fn record_application(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    APPLYING.with(|applying| {
        let applying = applying.borrow();
        let Some(applying) = applying.as_ref() else {
            return Ok(());
        };
        store_journal_position(tx, applying.seq)?;
        if let Some((subject, number)) = &applying.subject {
            tx.execute(
                "INSERT OR IGNORE INTO journal_subjects (subject, number) VALUES (?1, ?2)",
                rusqlite::params![subject.to_vec(), number],
            )?;
        }
        Ok(())
    })
}

/// Runs `apply` with every store write it makes (on this thread) recording
/// `seq` as the journal entry applied, and `subject`'s number.
pub(crate) fn with_journal_position<T>(
    seq: i64,
    subject: Option<(SubjectHash, String)>,
    apply: impl FnOnce() -> T,
) -> T {
    /// Clears the entry when dropped, also when `apply` panics (a pooled
    /// thread would otherwise claim it for its next, unrelated write).
    struct Cleared;
    impl Drop for Cleared {
        fn drop(&mut self) {
            APPLYING.with(|a| *a.borrow_mut() = None);
        }
    }
    APPLYING.with(|a| *a.borrow_mut() = Some(Applying { seq, subject }));
    let _cleared = Cleared;
    apply()
}

/// The opt-outs of a bulk import being applied, held in memory while the
/// import is stored: checks honour them from the moment they are read, so a
/// replica applying a large opt-out import keeps deciding.
#[derive(Debug, Default)]
pub(super) struct PendingOptOuts {
    /// Whether any is held: only then does a view look (one atomic load).
    any: std::sync::atomic::AtomicBool,
    by_key: std::sync::RwLock<HashMap<NumberKey, Vec<Suppression>>>,
}

impl PendingOptOuts {
    /// Adds the opt-outs held for `key` to its view.
    pub(super) fn extend_view(&self, key: NumberKey, view: &mut ContactView) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        if let Some(held) = self.by_key.read().expect("pending opt-outs lock").get(&key) {
            view.suppressions.extend(held.iter().cloned());
        }
    }
}

impl ContactStore {
    /// Holds `opt_outs` in memory (every view of their numbers shows them)
    /// until [`ContactStore::release_pending_opt_outs`].
    pub(crate) fn hold_pending_opt_outs(&self, opt_outs: &[(NumberKey, Suppression)]) {
        let mut held = self
            .pending_opt_outs
            .by_key
            .write()
            .expect("pending opt-outs lock");
        for (key, suppression) in opt_outs {
            let for_key = held.entry(*key).or_default();
            // Held again when an import is applied again after a failure.
            if !for_key
                .iter()
                .any(|s| s.suppression_id == suppression.suppression_id)
            {
                for_key.push(suppression.clone());
            }
        }
        self.pending_opt_outs.any.store(true, Ordering::Release);
    }

    /// Forgets the opt-outs held (they are in the index now, or the import
    /// failed and will be applied again).
    pub(crate) fn release_pending_opt_outs(&self) {
        self.pending_opt_outs.any.store(false, Ordering::Release);
        *self
            .pending_opt_outs
            .by_key
            .write()
            .expect("pending opt-outs lock") = HashMap::new();
    }

    /// The journal entry applied last (`None`: this store never followed one).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn journal_applied(&self) -> Result<Option<i64>, StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        Ok(conn
            .query_row(
                "SELECT value FROM counters WHERE key = 'journal_applied'",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The journal entry (seq, token) to check the journal against: the
    /// one applied last, with its token ([`ContactStore::note_journal_tokens`]).
    /// A store of an earlier version, whose applied entry's token was not
    /// noted, gives the entry it last noted after a whole fetch instead
    /// (older than the applied one when a fetch stopped midway).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub(crate) fn journal_checked(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        let value = |key: &str| -> Result<Option<i64>, StoreError> {
            Ok(conn
                .query_row("SELECT value FROM counters WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?)
        };
        if let Some(applied) = value("journal_applied")? {
            let token: Option<i64> = conn
                .query_row(
                    "SELECT token FROM journal_tokens WHERE seq = ?1",
                    [applied],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(token) = token {
                return Ok(Some((applied, token)));
            }
            // An earlier version's store: the entry it noted after its last
            // whole fetch, which is the applied one unless that version
            // stopped midway through a fetch: the entries after the noted
            // one could then not be checked, and a restored journal holding
            // others in their place would be followed past them.
            let noted = value("journal_checked_seq")?.zip(value("journal_checked_token")?);
            if let Some((seq, _)) = noted
                && seq != applied
            {
                return Err(StoreError::Unreadable(format!(
                    "this store applied shared journal entry {applied}, but an earlier version noted only entry {seq} as checked (it stopped midway through applying): entries {} to {applied} cannot be checked against the journal; stop this replica, empty its data_dir and start it again",
                    seq + 1
                )));
            }
            return Ok(noted);
        }
        Ok(value("journal_checked_seq")?.zip(value("journal_checked_token")?))
    }

    /// Notes the tokens of journal entries (seq, token) about to be
    /// applied, before any is: the entry at the applied position is then
    /// always the one checked against the journal, also after a fetch
    /// that stopped midway. Tokens of entries before the first one given,
    /// but the one just before it (applied last), are dropped.
    ///
    /// # Errors
    /// [`StoreError`] when they cannot be stored.
    pub(crate) fn note_journal_tokens(&self, tokens: &[(i64, i64)]) -> Result<(), StoreError> {
        let Some(first) = tokens.iter().map(|(seq, _)| *seq).min() else {
            return Ok(());
        };
        let mut conn = self.conn.lock().expect("contact db lock");
        let tx = conn.transaction()?;
        for (seq, token) in tokens {
            tx.execute(
                "INSERT OR REPLACE INTO journal_tokens (seq, token) VALUES (?1, ?2)",
                [seq, token],
            )?;
        }
        tx.execute("DELETE FROM journal_tokens WHERE seq < ?1", [first - 1])?;
        tx.commit()?;
        Ok(())
    }

    /// How many registry answers "opposed" and withdrawals known by hash
    /// only the store holds (what a copy into the shared journal cannot
    /// carry yet).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub(crate) fn uncopyable_records(&self) -> Result<(i64, i64), StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        let count = |table: &str| -> Result<i64, StoreError> {
            let exists: i64 = conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )?;
            if exists == 0 {
                return Ok(0);
            }
            Ok(conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
        };
        Ok((count("observations")?, count("withdrawals_by_hash")?))
    }

    /// Records `seq` as applied on its own (an entry that changed nothing
    /// here, or after a bulk import, which applying again stores nothing twice).
    ///
    /// # Errors
    /// [`StoreError`] when it cannot be stored.
    pub(crate) fn set_journal_applied(&self, seq: i64) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().expect("contact db lock");
        let tx = conn.transaction()?;
        store_journal_position(&tx, seq)?;
        tx.commit()?;
        Ok(())
    }

    /// Decisions stop at once (not after `max_staleness`) until
    /// [`ContactStore::journal_repaired`]: an entry could not be applied
    /// (retrying later is what waiting would do), or the journal is not
    /// the one this store applied.
    pub(crate) fn stop_deciding_on_journal(&self) {
        self.journal_broken.store(true, Ordering::Release);
    }

    /// The whole journal was applied again: the stop of
    /// [`ContactStore::stop_deciding_on_journal`] ends (a probe's
    /// confirmation while an entry is being applied does not end it).
    pub(crate) fn journal_repaired(&self) {
        self.journal_broken.store(false, Ordering::Release);
    }

    /// Waits until every opt-out of `opt_outs` (number, id) is in the index
    /// (a refresh of another thread may have taken the imported rows into a
    /// compaction not finished yet), for at most `limit`.
    ///
    /// # Errors
    /// [`StoreError::Unreadable`] naming how many are still missing.
    pub(crate) fn wait_indexed(
        &self,
        opt_outs: &[(NumberKey, String, String)],
        limit: Duration,
    ) -> Result<(), StoreError> {
        let deadline = Instant::now() + limit;
        loop {
            // A compaction that took the rows holds this until they are in.
            self.index.records.wait_for_compaction();
            let missing = opt_outs
                .iter()
                .filter(|(key, e164, id)| {
                    !self
                        .view_indexed(*key, e164)
                        .suppressions
                        .iter()
                        .any(|s| &s.suppression_id == id)
                })
                .count();
            if missing == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Unreadable(format!(
                    "{missing} imported opt-outs are not in the index after {limit:?}"
                )));
            }
            if let Err(err) = self.refresh() {
                tracing::warn!(error = %err, "imported opt-outs not loaded yet");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// From now on, `failing_for` counts from the last confirmation that
    /// the whole journal is applied, and the gateway allows `max_staleness`.
    pub fn follow_journal(&self, max_staleness: Duration) {
        let _ = self.behind_limit.set(max_staleness);
        self.journal_followed.store(true, Ordering::Release);
    }

    /// Every journal entry committed by `as_of` is applied here.
    pub(crate) fn confirm_journal(&self, as_of: crate::clock::BootInstant) {
        let ms = as_of.saturating_duration_since(self.opened).as_millis() as u64 + 1;
        self.journal_confirmed_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// How old the last confirmation is (since the store opened if there
    /// was none); `None` when no journal is followed.
    pub(super) fn journal_behind(&self) -> Option<Duration> {
        if !self.journal_followed.load(Ordering::Acquire) {
            return None;
        }
        let confirmed = match self.journal_confirmed_ms.load(Ordering::Acquire) {
            0 => Duration::ZERO,
            ms => Duration::from_millis(ms - 1),
        };
        let behind = self.opened.elapsed().saturating_sub(confirmed);
        if self.journal_broken.load(Ordering::Acquire) {
            // Past any limit: decisions stop now.
            let limit = self.behind_limit.get().copied().unwrap_or_default();
            return Some(behind.max(limit + Duration::from_secs(1)));
        }
        Some(behind)
    }

    /// How far behind the records may be before decisions stop: the
    /// journal's `max_staleness` when one is followed, else `default`.
    pub fn behind_limit(&self, default: Duration) -> Duration {
        self.behind_limit.get().copied().unwrap_or(default)
    }

    /// Notes the numbers of subjects the journal named (a bulk import's).
    ///
    /// # Errors
    /// [`StoreError`] when they cannot be stored.
    pub(crate) fn note_subjects(
        &self,
        subjects: &[(SubjectHash, String)],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().expect("contact db lock");
        let tx = conn.transaction()?;
        {
            let mut statement = tx.prepare_cached(
                "INSERT OR IGNORE INTO journal_subjects (subject, number) VALUES (?1, ?2)",
            )?;
            for (subject, number) in subjects {
                statement.execute(rusqlite::params![subject.to_vec(), number])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The number noted for `subject`, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub(crate) fn noted_number(&self, subject: &SubjectHash) -> Result<Option<String>, StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        Ok(conn
            .query_row(
                "SELECT number FROM journal_subjects WHERE subject = ?1",
                [subject.to_vec()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// This store's subject salt.
    pub(crate) fn subject_salt(&self) -> [u8; 32] {
        self.index.salt
    }

    /// How an import derives the ids of records given none.
    pub fn derived_ids(&self) -> &crate::contacts::derived_ids::DerivedIds {
        &self.derived_ids
    }

    /// Creates the contact database in `data_dir` with `salt` as its
    /// subject salt and `scheme` as its way of deriving ids (a shared
    /// database's, which every replica must use alike), unless it exists
    /// (then its own stay).
    ///
    /// # Errors
    /// [`StoreError`] when it cannot be created.
    pub fn seed_salt(
        data_dir: &Path,
        salt: &[u8; 32],
        scheme: crate::contacts::derived_ids::Scheme,
    ) -> Result<(), StoreError> {
        let path = database_path(data_dir);
        if path.exists() {
            return Ok(());
        }
        let _ = crate::private::create_dir_all(data_dir);
        let _ = crate::private::touch(&path);
        let conn = Connection::open(&path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT",
        )?;
        // With the salt in one transaction, as `open` writes them (a store
        // with a salt and no scheme derives unsalted ids).
        let tx = conn.unchecked_transaction()?;
        if let Some(stored) = scheme.stored() {
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('derived_ids', ?1)",
                [stored.as_bytes().to_vec()],
            )?;
        }
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('subject_salt', ?1)",
            [salt.to_vec()],
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// Every record a store holds (a migration into the shared journal, or a
/// bulk import staged in a scratch store).
#[derive(Debug, Default)]
pub struct AllRecords {
    pub consents: Vec<super::Consent>,
    pub relationships: Vec<super::Relationship>,
    /// With the subject's hash when kept by hash only (erased).
    pub suppressions: Vec<(Option<super::SubjectHash>, super::Suppression)>,
}

impl ContactStore {
    /// Reads every consent, relationship and opt-out, in storage order.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read or a row does not parse.
    pub(crate) fn all_records(&self) -> Result<AllRecords, StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        let mut all = AllRecords::default();
        let mut statement = conn.prepare(&format!(
            "SELECT {} FROM consents ORDER BY rowid",
            super::CONSENT_COLUMNS
        ))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            all.consents.push(super::read_consent(row)?.1);
        }
        let mut statement = conn.prepare(&format!(
            "SELECT {} FROM relationships ORDER BY rowid",
            super::RELATIONSHIP_COLUMNS
        ))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            all.relationships.push(super::read_relationship(row)?.1);
        }
        let mut statement = conn.prepare(&format!(
            "SELECT {} FROM suppressions ORDER BY rowid",
            super::SUPPRESSION_COLUMNS
        ))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let (key, hash, suppression) = super::read_suppression(row)?;
            let hash = match (key, hash) {
                (Some(_), _) => None,
                (None, Some(hash)) => {
                    Some(super::SubjectHash::try_from(hash.as_slice()).map_err(|_| {
                        super::unknown("number_hash", hex::encode(&hash), "not a 32-byte hash")
                    })?)
                }
                (None, None) => {
                    return Err(super::unknown(
                        "number_hash",
                        &suppression.suppression_id,
                        "an opt-out with neither number nor hash",
                    ));
                }
            };
            all.suppressions.push((hash, suppression));
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::contacts::{Consent, Relationship, RelationshipKind};
    use crate::model::Purpose;
    use crate::number::NumberKey;

    fn consent(id: &str, number: &str) -> Consent {
        let at: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
        Consent {
            consent_id: id.into(),
            controller: "acme".into(),
            number: number.into(),
            purpose: Purpose::Marketing,
            granted_at: at,
            revoked_at: None,
            expires_at: None,
            source: "web".into(),
            supplier: String::new(),
            method: "checkbox".into(),
            notice_version: "v1".into(),
            evidence_ref: "e-1".into(),
            recorded_at: at,
        }
    }

    /// The journal is checked at the applied position, by the token noted
    /// before it was applied; a store of an earlier version that noted an
    /// older entry than the applied one (it stopped midway through a
    /// fetch) cannot be checked and is refused.
    #[test]
    fn test_the_entry_checked_is_the_applied_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        assert_eq!(store.journal_checked().unwrap(), None);
        store
            .note_journal_tokens(&[(1, 10), (2, 20), (3, 30)])
            .unwrap();
        store.set_journal_applied(2).unwrap();
        assert_eq!(store.journal_checked().unwrap(), Some((2, 20)));
        // The next fetch keeps the applied entry's token, drops older ones.
        store.note_journal_tokens(&[(3, 31), (4, 40)]).unwrap();
        assert_eq!(store.journal_checked().unwrap(), Some((2, 20)));
        store.set_journal_applied(4).unwrap();
        assert_eq!(store.journal_checked().unwrap(), Some((4, 40)));
        // An earlier version's store: applied 7, noted 6 as checked.
        let conn = rusqlite::Connection::open(dir.path().join("contacts.db")).unwrap();
        conn.execute_batch(
            "DELETE FROM journal_tokens;
             INSERT OR REPLACE INTO counters (key, value) VALUES ('journal_applied', 7),
                 ('journal_checked_seq', 6), ('journal_checked_token', 60);",
        )
        .unwrap();
        let err = store.journal_checked().unwrap_err().to_string();
        assert!(err.contains("entries 7 to 7 cannot be checked"), "{err}");
        conn.execute(
            "UPDATE counters SET value = 7 WHERE key = 'journal_checked_seq'",
            [],
        )
        .unwrap();
        assert_eq!(store.journal_checked().unwrap(), Some((7, 60)));
    }

    /// The applied position is stored by the change's own transaction: a
    /// change that fails stores neither (applied again after a restart,
    /// never skipped), one that commits stores both (never applied twice);
    /// writes of another thread meanwhile do not claim the entry.
    #[test]
    fn test_the_applied_entry_commits_with_its_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        assert_eq!(store.journal_applied().unwrap(), None);
        let number = "+390212345678";
        let key = NumberKey::from_e164(number).unwrap();
        let subject = store.index().subject_hash(number);
        with_journal_position(7, Some((subject, number.to_string())), || {
            store.record_consent(key, consent("c-1", number), "t")
        })
        .unwrap();
        assert_eq!(store.journal_applied().unwrap(), Some(7));
        assert_eq!(
            store.noted_number(&subject).unwrap().as_deref(),
            Some(number)
        );

        let relationship = Relationship {
            relationship_id: "r-1".into(),
            controller: "acme".into(),
            number: number.into(),
            kind: RelationshipKind::Customer,
            started_at: Timestamp::UNIX_EPOCH,
            ended_at: None,
            recorded_at: Timestamp::UNIX_EPOCH,
        };
        store
            .record_relationship(key, relationship.clone(), "t")
            .unwrap();
        assert_eq!(
            store.journal_applied().unwrap(),
            Some(7),
            "a write outside an application claims no entry"
        );
        // The same id again fails: entry 8 is not recorded as applied.
        let failed = with_journal_position(8, None, || {
            store.record_relationship(key, relationship, "t")
        });
        assert!(failed.is_err());
        assert_eq!(store.journal_applied().unwrap(), Some(7));

        // An erasure forgets the noted number with the records.
        with_journal_position(9, None, || {
            store.erase_as(
                key,
                number,
                "",
                "t",
                Timestamp::now(),
                &serde_json::Value::Null,
                "keep-1".into(),
            )
        })
        .unwrap();
        assert_eq!(store.journal_applied().unwrap(), Some(9));
        assert_eq!(store.noted_number(&subject).unwrap(), None);
    }

    /// Opt-outs held while an import is stored are in every view of their
    /// number, and gone once released.
    #[test]
    fn test_held_opt_outs_are_in_the_view_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        let number = "+390212345678";
        let key = NumberKey::from_e164(number).unwrap();
        let opt_out = Suppression {
            suppression_id: "s-1".into(),
            controller: String::new(),
            campaign_id: String::new(),
            number: number.into(),
            reason: "objected".into(),
            source: "file".into(),
            added_by: "t".into(),
            created_at: Timestamp::UNIX_EPOCH,
            expires_at: None,
        };
        assert!(store.view(key, number).suppressions.is_empty());
        store.hold_pending_opt_outs(&[(key, opt_out.clone())]);
        assert_eq!(store.view(key, number).suppressions, vec![opt_out]);
        store.release_pending_opt_outs();
        assert!(store.view(key, number).suppressions.is_empty());
    }

    /// Held opt-outs are released only once verifiably in the index: the
    /// wait covers a compaction that took the rows (another thread's
    /// refresh), and an opt-out that never reaches the index is an error,
    /// the held copy still honoured.
    #[test]
    fn test_held_opt_outs_wait_for_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(ContactStore::open(dir.path()).unwrap());
        let number = "+390212345678";
        let key = NumberKey::from_e164(number).unwrap();
        let opt_out = |id: &str| Suppression {
            suppression_id: id.into(),
            controller: String::new(),
            campaign_id: String::new(),
            number: number.into(),
            reason: "objected".into(),
            source: "file".into(),
            added_by: "t".into(),
            created_at: Timestamp::UNIX_EPOCH,
            expires_at: None,
        };
        store.hold_pending_opt_outs(&[(key, opt_out("s-1")), (key, opt_out("s-2"))]);
        let wanted = vec![(key, number.to_string(), "s-1".to_string())];
        let compacting = std::sync::Arc::new(std::sync::Barrier::new(2));
        let other = {
            let store = std::sync::Arc::clone(&store);
            let compacting = std::sync::Arc::clone(&compacting);
            let opt_out = opt_out("s-1");
            std::thread::spawn(move || {
                let compaction = store.index.records.begin_compaction();
                compacting.wait();
                std::thread::sleep(Duration::from_millis(200));
                store.add_suppression(key, opt_out).unwrap();
                drop(compaction);
            })
        };
        compacting.wait();
        store
            .wait_indexed(&wanted, Duration::from_secs(30))
            .unwrap();
        assert!(
            store
                .view_indexed(key, number)
                .suppressions
                .iter()
                .any(|s| s.suppression_id == "s-1")
        );
        other.join().unwrap();
        let never = vec![(key, number.to_string(), "s-2".to_string())];
        assert!(
            store
                .wait_indexed(&never, Duration::from_millis(100))
                .is_err()
        );
        assert!(
            store
                .view(key, number)
                .suppressions
                .iter()
                .any(|s| s.suppression_id == "s-2"),
            "still held"
        );
    }

    /// A panic while applying an entry does not leave the thread claiming
    /// it for its next, unrelated write.
    #[test]
    fn test_the_applied_entry_is_cleared_after_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        let number = "+390212345678";
        let key = NumberKey::from_e164(number).unwrap();
        let panicked = std::panic::catch_unwind(|| {
            with_journal_position(5, None, || -> () { panic!("applying failed") })
        });
        assert!(panicked.is_err());
        store
            .record_consent(key, consent("c-1", number), "t")
            .unwrap();
        assert_eq!(store.journal_applied().unwrap(), None);
    }

    /// A new replica's store takes the shared salt and way of deriving
    /// ids; an existing store keeps its own (the journal then refuses it
    /// if they differ).
    #[test]
    fn test_a_seeded_store_uses_the_shared_salt() {
        use crate::contacts::derived_ids::{DerivedIds, Scheme};
        for scheme in [Scheme::Unsalted, Scheme::Salted] {
            let dir = tempfile::tempdir().unwrap();
            ContactStore::seed_salt(dir.path(), &[7; 32], scheme).unwrap();
            let store = ContactStore::open(dir.path()).unwrap();
            assert_eq!(store.subject_salt(), [7; 32]);
            assert_eq!(store.derived_ids(), &DerivedIds::new(scheme, [7; 32]));
            drop(store);
            let other = match scheme {
                Scheme::Unsalted => Scheme::Salted,
                Scheme::Salted => Scheme::Unsalted,
            };
            ContactStore::seed_salt(dir.path(), &[8; 32], other).unwrap();
            let store = ContactStore::open(dir.path()).unwrap();
            assert_eq!(store.derived_ids(), &DerivedIds::new(scheme, [7; 32]));
        }
    }

    /// A store made now derives ids salted; one made before (a salt and no
    /// `derived_ids`) keeps deriving them unsalted, and a scheme this
    /// version does not know is refused rather than guessed.
    #[test]
    fn test_a_new_store_derives_salted_ids_and_an_old_one_keeps_its_own() {
        use crate::contacts::derived_ids::Scheme;
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        assert_eq!(store.derived_ids().scheme(), Scheme::Salted);
        let salt = store.subject_salt();
        drop(store);
        let conn = Connection::open(super::database_path(dir.path())).unwrap();
        conn.execute("DELETE FROM meta WHERE key = 'derived_ids'", [])
            .unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        assert_eq!(store.derived_ids().scheme(), Scheme::Unsalted);
        assert_eq!(store.subject_salt(), salt);
        drop(store);
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('derived_ids', CAST('peppered' AS BLOB))",
            [],
        )
        .unwrap();
        let err = ContactStore::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("derived_ids") && err.contains("peppered"),
            "{err}"
        );
    }
}
