//! Applying one journal entry to the local store, with the store's own
//! methods and the values the origin chose: the same change on every
//! replica. The entry's seq is stored as applied in the transaction of the
//! change (a bulk import, which applying again stores nothing twice, stores
//! it after).

use jiff::Timestamp;

use super::entry::{self, EraseBody, ImportBody, RecordRow};
use super::{Hint, Journal, JournalError, Outcome, RECORD_PAGE};

/// How long an applied import's opt-outs may take to reach the index.
const INDEXED_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);
use crate::contacts::store::with_journal_position;
use crate::contacts::{ContactStore, SubjectHash, Suppression};
use crate::number::NumberKey;

fn corrupt(seq: i64, problem: impl Into<String>) -> JournalError {
    JournalError::Corrupt {
        seq,
        problem: problem.into(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(seq: i64, body: &str) -> Result<T, JournalError> {
    // Never the error's text: serde_json quotes the value it met (a
    // number, personal data, must not reach logs or gRPC errors).
    serde_json::from_str(body).map_err(|e| {
        corrupt(
            seq,
            format!(
                "body does not parse ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })
}

fn key_of(seq: i64, e164: &str) -> Result<NumberKey, JournalError> {
    NumberKey::from_e164(e164).ok_or_else(|| corrupt(seq, "a record's number is not E.164"))
}

fn subject_of(seq: i64, hex_subject: &str) -> Result<SubjectHash, JournalError> {
    hex::decode(hex_subject)
        .ok()
        .and_then(|bytes| SubjectHash::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| corrupt(seq, "a record's subject is not a 32-byte hex hash"))
}

/// The opt-out an erasure keeps by hash (as [`crate::contacts::ContactStore::erase`] makes it).
fn kept_opt_out(erase: &EraseBody, now: Timestamp) -> Suppression {
    Suppression {
        suppression_id: erase.keep_id.clone(),
        controller: erase.controller.clone(),
        campaign_id: String::new(),
        number: String::new(),
        reason: "erasure request (GDPR art. 17): keep suppressed".into(),
        source: "EraseSubject".into(),
        added_by: erase.actor.clone(),
        created_at: now,
        expires_at: None,
    }
}

/// The subject and number a record names, to note: the subject must be
/// the number's salted hash. A row whose hash names another number would
/// map that hash to this one, and a later erasure of the hash would erase
/// this number instead of the person who asked (found by review): the
/// entry is corrupt, and decisions stop.
fn noted(
    store: &ContactStore,
    seq: i64,
    hex_subject: &str,
    number: &str,
) -> Result<Option<(SubjectHash, String)>, JournalError> {
    let subject = subject_of(seq, hex_subject)?;
    if store.index().subject_hash(number) != subject {
        return Err(corrupt(
            seq,
            "a record's subject is not the salted hash of its number",
        ));
    }
    Ok(Some((subject, number.to_string())))
}

impl Journal {
    /// Reads `limit` records of `batch` from position `from`; the position
    /// to read from next (the last one read plus one) comes with them.
    fn records(
        &self,
        batch: i64,
        from: i32,
        limit: i64,
    ) -> Result<(Vec<RecordRow>, i32), JournalError> {
        self.block_on(async {
            let client = self.pg.client().await?;
            let rows = client
                .query(
                    "SELECT kind, record_id, subject, controller, body::text, pos
                     FROM contact_journal_records WHERE batch = $1 AND pos >= $2
                     ORDER BY pos LIMIT $3",
                    &[&batch, &from, &limit],
                )
                .await?;
            let next = rows
                .last()
                .map_or(from, |r| r.get::<_, i32>(5).saturating_add(1));
            let records = rows
                .iter()
                .map(|r| {
                    let kind: String = r.get(0);
                    (
                        r.get::<_, i32>(5),
                        kind,
                        RecordRow {
                            kind: "",
                            record_id: r.get(1),
                            subject: r.get(2),
                            controller: r.get(3),
                            body: r.get(4),
                            restrictive: true,
                        },
                    )
                })
                .map(|(_, kind, mut row)| {
                    row.kind = match kind.as_str() {
                        entry::CONSENT => entry::CONSENT,
                        entry::SUPPRESSION => entry::SUPPRESSION,
                        entry::SUPPRESSION_HASHED => entry::SUPPRESSION_HASHED,
                        entry::RELATIONSHIP => entry::RELATIONSHIP,
                        entry::REVOKE => entry::REVOKE,
                        entry::OPPOSED => entry::OPPOSED,
                        _ => "unknown",
                    };
                    row
                })
                .collect();
            Ok((records, next))
        })
    }

    /// Applies entry `seq`.
    pub(super) fn apply_entry(
        &self,
        seq: i64,
        batch: i64,
        kind: &str,
        body: &str,
        hint: Option<&Hint>,
    ) -> Result<Outcome, JournalError> {
        match kind {
            entry::RECORDS => {
                let (rows, _) = self.records(batch, 0, RECORD_PAGE)?;
                let mut outcome = Outcome::Done;
                let mut wrote = false;
                let last = rows.len().saturating_sub(1);
                for (i, row) in rows.into_iter().enumerate() {
                    // Only the last record's change marks the entry applied.
                    let position = if i == last { seq } else { seq - 1 };
                    let (done, write) = self.apply_record(seq, position, row)?;
                    outcome = done;
                    wrote = write && i == last;
                }
                if !wrote {
                    self.store.set_journal_applied(seq)?;
                }
                Ok(outcome)
            }
            entry::ERASE => self.apply_erase(seq, &parse::<EraseBody>(seq, body)?, hint),
            entry::IMPORT => self.apply_import(seq, batch, &parse::<ImportBody>(seq, body)?),
            entry::OPPOSED => {
                self.apply_opposed(seq, batch, &parse::<entry::OpposedBody>(seq, body)?)
            }
            other => Err(corrupt(seq, format!("kind {other:?} is not known"))),
        }
    }

    /// Applies one record of entry `seq`, its change storing `position` as
    /// the entry applied; says whether it wrote (and so stored it).
    fn apply_record(
        &self,
        seq: i64,
        position: i64,
        row: RecordRow,
    ) -> Result<(Outcome, bool), JournalError> {
        let store = &self.store;
        match row.kind {
            entry::CONSENT => {
                let (consent, actor) = parse::<entry::ConsentBody>(seq, &row.body)?
                    .consent()
                    .map_err(|e| corrupt(seq, e))?;
                let key = key_of(seq, &consent.number)?;
                let noted = noted(&self.store, seq, &row.subject, &consent.number)?;
                let inserted = with_journal_position(position, noted, || {
                    store.record_consent(key, consent, &actor)
                })?;
                Ok((Outcome::Inserted(inserted), true))
            }
            entry::SUPPRESSION => {
                let suppression = parse::<entry::SuppressionBody>(seq, &row.body)?
                    .suppression()
                    .map_err(|e| corrupt(seq, e))?;
                let key = key_of(seq, &suppression.number)?;
                let noted = noted(&self.store, seq, &row.subject, &suppression.number)?;
                let inserted = with_journal_position(position, noted, || {
                    store.add_suppression(key, suppression)
                })?;
                Ok((Outcome::Inserted(inserted), true))
            }
            entry::SUPPRESSION_HASHED => {
                let suppression = parse::<entry::SuppressionBody>(seq, &row.body)?
                    .suppression()
                    .map_err(|e| corrupt(seq, e))?;
                let subject = subject_of(seq, &row.subject)?;
                let actor = suppression.added_by.clone();
                let inserted = with_journal_position(position, None, || {
                    store.suppress_by_hash(&subject, &suppression, &actor)
                })?;
                Ok((Outcome::Inserted(inserted), true))
            }
            entry::RELATIONSHIP => {
                let (relationship, actor) = parse::<entry::RelationshipBody>(seq, &row.body)?
                    .relationship()
                    .map_err(|e| corrupt(seq, e))?;
                // Two replicas may journal one id at once: the first wins
                // everywhere, the second is skipped everywhere.
                if store
                    .relationship_by_id(&relationship.relationship_id)?
                    .is_some()
                {
                    return Ok((Outcome::Inserted(false), false));
                }
                let key = key_of(seq, &relationship.number)?;
                let noted = noted(&self.store, seq, &row.subject, &relationship.number)?;
                with_journal_position(position, noted, || {
                    store.record_relationship(key, relationship, &actor)
                })?;
                Ok((Outcome::Inserted(true), true))
            }
            entry::REVOKE => {
                let revoke = parse::<entry::RevokeBody>(seq, &row.body)?
                    .revoke()
                    .map_err(|e| corrupt(seq, e))?;
                let key = key_of(seq, &revoke.number)?;
                let noted = noted(&self.store, seq, &row.subject, &revoke.number)?;
                let ended = with_journal_position(position, noted, || {
                    store.revoke_consents_as(
                        key,
                        &revoke.number,
                        &revoke.controller,
                        revoke.purpose,
                        revoke.at,
                        &revoke.actor,
                        revoke.now,
                        &revoke.marker_seed,
                    )
                })?;
                Ok((Outcome::Count(ended), true))
            }
            other => Err(corrupt(seq, format!("record kind {other:?} is not known"))),
        }
    }

    /// Applies registry answers "opposed": one local change for them all.
    fn apply_opposed(
        &self,
        seq: i64,
        batch: i64,
        opposed: &entry::OpposedBody,
    ) -> Result<Outcome, JournalError> {
        #[derive(serde::Deserialize)]
        struct Number {
            number: String,
        }
        let at = entry::ts("at_us", opposed.at_us).map_err(|e| corrupt(seq, e))?;
        let mut keys = Vec::new();
        let mut subjects = Vec::new();
        let mut from = 0;
        loop {
            let (rows, next) = self.records(batch, from, RECORD_PAGE)?;
            if rows.is_empty() {
                break;
            }
            from = next;
            for row in rows {
                if row.kind != entry::OPPOSED {
                    return Err(corrupt(
                        seq,
                        format!("record kind {:?} in an opposed entry", row.kind),
                    ));
                }
                let number = parse::<Number>(seq, &row.body)?.number;
                keys.push(key_of(seq, &number)?);
                subjects.extend(noted(&self.store, seq, &row.subject, &number)?);
            }
        }
        with_journal_position(seq, None, || {
            self.store
                .record_opposed(&opposed.registry_id, &opposed.controller, &keys, at)
        })?;
        // An erasure (which names the hash only) finds these numbers.
        for chunk in subjects.chunks(50_000) {
            self.store.note_subjects(chunk)?;
        }
        Ok(Outcome::Count(keys.len() as u32))
    }

    /// Applies an erasure: by the number when this replica holds it (or
    /// the origin said it), else only the opt-out kept by hash.
    fn apply_erase(
        &self,
        seq: i64,
        erase: &EraseBody,
        hint: Option<&Hint>,
    ) -> Result<Outcome, JournalError> {
        let subject = subject_of(seq, &erase.subject)?;
        let now = entry::ts("now_us", erase.now_us).map_err(|e| corrupt(seq, e))?;
        let known = match hint {
            Some(hint) if hint.seq_of == Some(seq) => Some(hint.e164.clone()),
            _ => match self.store.noted_number(&subject)? {
                Some(number) => Some(number),
                // Records this store holds from before it noted numbers
                // (a migrated data_dir): every stored number is hashed.
                None => self
                    .store
                    .numbers_by_hash(&std::iter::once(subject).collect(), false)?
                    .remove(&subject),
            },
        };
        match known {
            Some(e164) => {
                let key = key_of(seq, &e164)?;
                let erased = with_journal_position(seq, None, || {
                    self.store.erase_as(
                        key,
                        &e164,
                        &erase.controller,
                        &erase.actor,
                        now,
                        &erase.verification,
                        erase.keep_id.clone(),
                    )
                })?;
                Ok(Outcome::Count(erased))
            }
            None => {
                let keep = kept_opt_out(erase, now);
                with_journal_position(seq, None, || {
                    self.store.suppress_by_hash(&subject, &keep, &erase.actor)
                })?;
                Ok(Outcome::Count(0))
            }
        }
    }

    /// Applies a bulk import: its consents and opt-outs as one local bulk
    /// import, its relationships and opt-outs kept by hash one by one. The
    /// opt-outs are held in memory while the import is stored (checks
    /// honour them at once: the replica stays fresh and keeps deciding).
    /// The import is read whole first (about 300 bytes per record).
    fn apply_import(
        &self,
        seq: i64,
        batch: i64,
        import: &ImportBody,
    ) -> Result<Outcome, JournalError> {
        let now = entry::ts("now_us", import.now_us).map_err(|e| corrupt(seq, e))?;
        let mut consents = Vec::new();
        let mut suppressions = Vec::new();
        let mut later = Vec::new();
        let mut subjects = Vec::new();
        let mut from = 0;
        loop {
            let (rows, next) = self.records(batch, from, RECORD_PAGE)?;
            if rows.is_empty() {
                break;
            }
            from = next;
            for row in rows {
                match row.kind {
                    entry::CONSENT => {
                        let (consent, _) = parse::<entry::ConsentBody>(seq, &row.body)?
                            .consent()
                            .map_err(|e| corrupt(seq, e))?;
                        subjects.extend(noted(&self.store, seq, &row.subject, &consent.number)?);
                        consents.push((key_of(seq, &consent.number)?, consent));
                    }
                    entry::SUPPRESSION => {
                        let suppression = parse::<entry::SuppressionBody>(seq, &row.body)?
                            .suppression()
                            .map_err(|e| corrupt(seq, e))?;
                        subjects.extend(noted(
                            &self.store,
                            seq,
                            &row.subject,
                            &suppression.number,
                        )?);
                        suppressions.push((key_of(seq, &suppression.number)?, suppression));
                    }
                    _ => later.push(row),
                }
            }
        }
        // Opt-outs kept by hash (and relationships) are applied after:
        // with any of them, the entry counts as applied only at the end.
        let held = !suppressions.is_empty() && later.is_empty();
        let opt_outs: Vec<(NumberKey, String, String)> = suppressions
            .iter()
            .map(|(key, s)| (*key, s.number.clone(), s.suppression_id.clone()))
            .collect();
        if held {
            self.store.hold_pending_opt_outs(&suppressions);
            self.preapplied
                .store(seq, std::sync::atomic::Ordering::Release);
        }
        // What the entry holds: the import's records less those the
        // journal held already (left out when it was committed).
        let held_records = consents.len() + suppressions.len() + later.len();
        let outcome = self
            .store
            .bulk_import(&import.actor, &import.action, now, |bulk| {
                bulk.applying_committed();
                for (key, consent) in consents.drain(..) {
                    bulk.consent(key, consent)?;
                }
                for (key, suppression) in suppressions.drain(..) {
                    bulk.suppression(key, suppression)?;
                }
                Ok(Some((
                    (),
                    serde_json::json!({
                        "shared_journal_entry": seq,
                        "records": held_records,
                        "records_in_import": import.records,
                    }),
                )))
            })
            // The opt-outs count only once they are verifiably in the
            // index (a refresh of another thread may be compacting them).
            .and_then(|outcome| {
                self.store
                    .wait_indexed(&opt_outs, INDEXED_WITHIN)
                    .map(|()| outcome)
            });
        // Whatever happened, this entry is not applied yet: the follower
        // confirms freshness again only once it is. The opt-outs held stay
        // held when it failed (applying it again holds them again).
        self.preapplied
            .store(0, std::sync::atomic::Ordering::Release);
        let counts = match outcome {
            Ok(outcome) => outcome.map(|(_, counts)| counts).unwrap_or_default(),
            // Never skipped (the origin committed it, opt-outs the operator
            // was told are recorded): decisions stop until it is applied.
            Err(err) => {
                tracing::error!(seq, error = %err, "shared contact journal: a committed bulk import cannot be applied here: decisions stop until it is (fix the cause, e.g. the data_dir's disk, and the replica retries)");
                return Err(err.into());
            }
        };
        if held {
            self.store.release_pending_opt_outs();
        }
        for chunk in subjects.chunks(50_000) {
            self.store.note_subjects(chunk)?;
        }
        for row in later {
            self.apply_record(seq, seq - 1, row)?;
        }
        self.store.set_journal_applied(seq)?;
        Ok(Outcome::Count(counts.stored as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that does not parse is reported without the value met
    /// (it could be a number: personal data).
    #[test]
    fn test_a_parse_error_does_not_quote_the_value() {
        let err = parse::<entry::SuppressionBody>(3, r#"{"number": 4915111111111}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("entry 3"), "{err}");
        assert!(!err.contains("4915111111111"), "{err}");
        let err = subject_of(3, "4915111111111").unwrap_err().to_string();
        assert!(!err.contains("4915111111111"), "{err}");
    }
}
