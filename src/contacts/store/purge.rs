//! Retention purges (storage limitation, GDPR art. 5(1)(e)) and the store
//! side of `dialgate restore` (re-applying the erasure ledger).
//!
//! A purge deletes only records that can decide nothing any more, counted
//! from when they ended: consents revoked or expired, relationships ended,
//! opt-outs expired, each longer ago than its ceiling. Opt-outs in force and
//! ongoing records are never touched. One exception keeps the withdrawal
//! guard whole: the rules treat a consent's withdrawal as ending every
//! consent of that controller and purpose given before it (a CRM re-sync of
//! an old consent must not count again), so the latest withdrawn consent of
//! each controller, number and purpose stays, as a row stripped of its
//! evidence. Deleted rows leave the index at once (under the store's lock,
//! after the commit), and their contents leave the change trail, like an
//! erasure's; the trail gets one `retention.purged` event per run, with
//! counts only.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;
use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use super::super::compact::{Change, Table};
use super::super::{Consent, ContactIndex, ContactView, SubjectHash, Suppression};
use super::{ContactStore, SUPPRESSION_COLUMNS, StoreError, hashed_suppressions, us};
use crate::model::Purpose;
use crate::number::NumberKey;

/// The ceiling of one record type: days after a record ends until it is
/// deleted, by default and per controller (`None`: kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ceiling {
    pub default_days: Option<u32>,
    pub controllers: BTreeMap<String, u32>,
}

impl Ceiling {
    /// The days that apply to `controller`'s records.
    pub fn days(&self, controller: &str) -> Option<u32> {
        self.controllers
            .get(controller)
            .copied()
            .or(self.default_days)
    }

    /// Records of `controller` that ended before this instant are deleted.
    pub fn cutoff(&self, controller: &str, now: Timestamp) -> Option<Timestamp> {
        let days = self.days(controller)?;
        now.checked_sub(jiff::SignedDuration::from_hours(i64::from(days) * 24))
            .ok()
    }
}

/// The ceilings of the contact records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecordCeilings {
    pub consents: Ceiling,
    pub relationships: Ceiling,
    /// Expired opt-outs only: an opt-out in force is never deleted.
    pub opt_outs: Ceiling,
}

/// What a purge deleted (or, dry, would delete).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeCounts {
    pub consents_deleted: u64,
    /// Withdrawn consents past their ceiling kept (evidence deleted) because
    /// they are the latest withdrawal of their controller, number and purpose.
    pub withdrawals_kept: u64,
    /// Rectified consents past their ceiling kept (evidence deleted): their
    /// corrected values bind a CRM's re-sync of the same id. Rectified
    /// relationships past theirs are kept whole (they hold no evidence).
    pub corrections_kept: u64,
    pub relationships_deleted: u64,
    pub opt_outs_deleted: u64,
}

/// What a purge changed, for the index.
#[derive(Default)]
struct Purged {
    counts: PurgeCounts,
    forget: Vec<(NumberKey, Table, u32)>,
    /// Erased subjects whose hashed opt-outs changed, with what remains.
    hashed: Vec<(SubjectHash, Vec<Suppression>)>,
    highest: [i64; 3],
}

/// A consent past its ceiling, as read.
struct ConsentCandidate {
    rowid: i64,
    key: NumberKey,
    controller: String,
    purpose: String,
    id: String,
    number: String,
    cutoff_us: i64,
    /// Rectified (a row in `corrections`): kept, stripped of its evidence.
    rectified: bool,
}

/// A relationship or an opt-out past its ceiling, as read.
struct RowCandidate {
    rowid: i64,
    key: Option<NumberKey>,
    hash: Option<SubjectHash>,
    id: String,
    number: String,
    cutoff_us: i64,
}

#[derive(Default)]
struct Candidates {
    consents: Vec<ConsentCandidate>,
    relationships: Vec<(RowCandidate, NumberKey)>,
    opt_outs: Vec<RowCandidate>,
}

/// Reads the records that ended before their cutoff.
fn scan_candidates(
    conn: &rusqlite::Connection,
    ceilings: &RecordCeilings,
    now: Timestamp,
) -> Result<Candidates, StoreError> {
    let mut found = Candidates::default();
    let mut statement = conn.prepare(
        &format!(
            "SELECT rowid, number_key, controller, purpose, revoked_at_us, expires_at_us, consent_id, number,
               {RECTIFIED_CONSENT}
             FROM consents AS c WHERE revoked_at_us IS NOT NULL OR expires_at_us IS NOT NULL"
        ),
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let controller: String = row.get(2)?;
        let Some(cutoff) = ceilings.consents.cutoff(&controller, now) else {
            continue;
        };
        let revoked: Option<i64> = row.get(4)?;
        let expires: Option<i64> = row.get(5)?;
        let ended = match (revoked, expires) {
            (Some(r), Some(e)) => r.min(e),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => continue,
        };
        if ended >= us(cutoff) {
            continue;
        }
        found.consents.push(ConsentCandidate {
            rowid: row.get(0)?,
            key: NumberKey(row.get::<_, i64>(1)? as u64),
            controller,
            purpose: row.get(3)?,
            id: row.get(6)?,
            number: row.get(7)?,
            cutoff_us: us(cutoff),
            rectified: row.get(8)?,
        });
    }
    let mut statement = conn.prepare(&format!(
        "SELECT rowid, number_key, controller, ended_at_us, relationship_id, number
             FROM relationships AS r WHERE ended_at_us IS NOT NULL AND {NO_ONGOING_COPY}
               AND NOT {RECTIFIED_RELATIONSHIP}"
    ))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let controller: String = row.get(2)?;
        let Some(cutoff) = ceilings.relationships.cutoff(&controller, now) else {
            continue;
        };
        if row.get::<_, i64>(3)? >= us(cutoff) {
            continue;
        }
        let key = NumberKey(row.get::<_, i64>(1)? as u64);
        found.relationships.push((
            RowCandidate {
                rowid: row.get(0)?,
                key: Some(key),
                hash: None,
                id: row.get(4)?,
                number: row.get(5)?,
                cutoff_us: us(cutoff),
            },
            key,
        ));
    }
    let mut statement = conn.prepare(
        "SELECT rowid, number_key, number_hash, controller, expires_at_us, suppression_id, number
         FROM suppressions WHERE expires_at_us IS NOT NULL",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let controller: String = row.get(3)?;
        let Some(cutoff) = ceilings.opt_outs.cutoff(&controller, now) else {
            continue;
        };
        if row.get::<_, i64>(4)? >= us(cutoff) {
            continue;
        }
        found.opt_outs.push(RowCandidate {
            rowid: row.get(0)?,
            key: row.get::<_, Option<i64>>(1)?.map(|k| NumberKey(k as u64)),
            hash: row
                .get::<_, Option<Vec<u8>>>(2)?
                .and_then(|h| SubjectHash::try_from(h.as_slice()).ok()),
            id: row.get(5)?,
            number: row.get(6)?,
            cutoff_us: us(cutoff),
        });
    }
    Ok(found)
}

const EVIDENCE_GONE: &str = "retention: evidence deleted, withdrawal kept";
const CORRECTED_EVIDENCE_GONE: &str = "retention: evidence deleted, correction kept";

/// A consent (`c`) or a relationship (`r`) corrected in place: its narrowed
/// values (an earlier expiry or end) must outlive their ceiling. Deleted,
/// the CRM's next re-sync under the same id brought the wider copy back,
/// in force (found by review); kept, the re-sync is ignored (a consent) or
/// refused (a relationship), as before the purge.
/// The row is matched by its rowid and the record's id: a rowid an erased
/// record freed and a new record took must not inherit its correction
/// (found by review: another person's ended record was kept past its
/// ceiling). A correction written before the id was kept (`NULL`) matches
/// by rowid alone, on the safe side.
const RECTIFIED_CONSENT: &str = "EXISTS (SELECT 1 FROM corrections WHERE tbl = 'consents'
    AND row = c.rowid AND (record_id IS NULL OR record_id = c.consent_id))";
const RECTIFIED_RELATIONSHIP: &str = "EXISTS (SELECT 1 FROM corrections WHERE tbl = 'relationships'
    AND row = r.rowid AND (record_id IS NULL OR record_id = r.relationship_id))";

/// What a purge of `candidates` would do, read through a read-only
/// connection: a dry run (`retention purge --dry-run`, `policy show`) never
/// takes the store's write lock, which the server's writes wait for.
fn dry_counts(
    conn: &rusqlite::Connection,
    candidates: &Candidates,
) -> Result<PurgeCounts, StoreError> {
    let mut counts = PurgeCounts::default();
    for c in &candidates.consents {
        let latest: Option<i64> = conn
            .query_row(
                "SELECT rowid FROM consents
                 WHERE number_key = ?1 AND controller = ?2 AND purpose = ?3 AND revoked_at_us IS NOT NULL
                 ORDER BY revoked_at_us DESC, rowid DESC LIMIT 1",
                params![c.key.0 as i64, c.controller, c.purpose],
                |r| r.get(0),
            )
            .optional()?;
        if latest == Some(c.rowid) || c.rectified {
            let stripped: Option<String> = conn
                .query_row(
                    "SELECT source FROM consents WHERE rowid = ?1 AND consent_id = ?2",
                    params![c.rowid, c.id],
                    |r| r.get(0),
                )
                .optional()?;
            if stripped
                .is_some_and(|source| source != EVIDENCE_GONE && source != CORRECTED_EVIDENCE_GONE)
            {
                if latest == Some(c.rowid) {
                    counts.withdrawals_kept += 1;
                } else {
                    counts.corrections_kept += 1;
                }
            }
        } else {
            counts.consents_deleted += 1;
        }
    }
    counts.relationships_deleted = candidates.relationships.len() as u64;
    counts.opt_outs_deleted = candidates.opt_outs.len() as u64;
    Ok(counts)
}

impl ContactStore {
    /// Deletes the records past their ceiling at `now` (see the module
    /// documentation); with `dry_run`, only counts them. Writes one trail
    /// event (`retention.purged`, counts and `details`) unless dry.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is deleted then.
    pub fn purge_retention(
        &self,
        ceilings: &RecordCeilings,
        now: Timestamp,
        dry_run: bool,
        actor: &str,
        details: serde_json::Value,
    ) -> Result<PurgeCounts, StoreError> {
        let candidates = self.candidates(ceilings, now)?;
        self.purge_candidates(&candidates, now, dry_run, actor, details)
    }

    /// Purges `candidates` (read earlier, without the lock).
    fn purge_candidates(
        &self,
        candidates: &Candidates,
        now: Timestamp,
        dry_run: bool,
        actor: &str,
        details: serde_json::Value,
    ) -> Result<PurgeCounts, StoreError> {
        if dry_run {
            let reader = self.reader()?;
            let counts = dry_counts(&reader, candidates);
            self.readers.lock().expect("reader pool lock").push(reader);
            return counts;
        }
        let purged = self.write(
            |tx| {
                let purged = self.purge_in(tx, candidates, now)?;
                let mut after = serde_json::to_value(purged.counts).unwrap_or_default();
                if let (Some(object), serde_json::Value::Object(extra)) =
                    (after.as_object_mut(), details)
                {
                    object.extend(extra);
                }
                tx.execute(
                    "INSERT INTO events (at_us, actor, action, subject, before, after) VALUES (?1, ?2, 'retention.purged', '', 'null', ?3)",
                    params![us(now), actor, after.to_string()],
                )?;
                Ok(purged)
            },
            |purged| {
                {
                    let mut watermarks = self.watermarks.lock().expect("watermark lock");
                    for (mark, highest) in watermarks.iter_mut().zip(purged.highest) {
                        *mark = (*mark).min(highest);
                    }
                }
                for (key, table, row) in &purged.forget {
                    self.index.records.change(
                        *key,
                        Change::Remove {
                            table: *table,
                            row: i64::from(*row),
                        },
                    );
                }
                for (subject, kept) in &purged.hashed {
                    // (A name the table cannot take: found again at start.)
                    let _ = self.index.set_erased(*subject, kept.clone());
                }
                // Deleted rows' numbers may be reused by SQLite.
                self.ids_epoch
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                self.ids.clear();
            },
        )?;
        Ok(purged.counts)
    }

    /// The records past their ceiling, read through a read-only connection
    /// (without the store's lock: the server's writes go on meanwhile).
    fn candidates(
        &self,
        ceilings: &RecordCeilings,
        now: Timestamp,
    ) -> Result<Candidates, StoreError> {
        let reader = self.reader()?;
        let found = scan_candidates(&reader, ceilings, now);
        self.readers.lock().expect("reader pool lock").push(reader);
        found
    }

    /// Deletes the candidates that are still what they were when read (same
    /// row, same id, still ended before their cutoff), keeping the latest
    /// withdrawal of each number, controller and purpose without evidence.
    fn purge_in(
        &self,
        tx: &Transaction<'_>,
        candidates: &Candidates,
        now: Timestamp,
    ) -> Result<Purged, StoreError> {
        let mut purged = Purged::default();
        let redacted =
            serde_json::json!({"redacted": format!("retention purge {now}")}).to_string();
        let redact = |action: &str, subject: &str, field: &str, id: &str| {
            tx.execute(
                &format!(
                    "UPDATE events SET before = CASE WHEN before = 'null' THEN before ELSE ?1 END, after = ?1
                     WHERE subject = ?2 AND action = ?3 AND json_extract(after, '$.{field}') = ?4"
                ),
                params![redacted, subject, action, id],
            )
        };

        for c in &candidates.consents {
            let subject = hex::encode(self.index.subject_hash(&c.number));
            // Decided from the rows as they are now, not as scanned: a
            // consent scanned as merely expired may have been withdrawn
            // since (and be the only withdrawal).
            let latest_withdrawal = {
                let latest: Option<i64> = tx
                    .query_row(
                        "SELECT rowid FROM consents
                         WHERE number_key = ?1 AND controller = ?2 AND purpose = ?3 AND revoked_at_us IS NOT NULL
                         ORDER BY revoked_at_us DESC, rowid DESC LIMIT 1",
                        params![c.key.0 as i64, c.controller, c.purpose],
                        |r| r.get(0),
                    )
                    .optional()?;
                latest == Some(c.rowid)
            };
            if latest_withdrawal || c.rectified {
                let marker = if latest_withdrawal {
                    EVIDENCE_GONE
                } else {
                    CORRECTED_EVIDENCE_GONE
                };
                let stripped = tx.execute(
                    "UPDATE consents SET source = ?3, method = '', notice_version = '', evidence_ref = ''
                     WHERE rowid = ?1 AND consent_id = ?2 AND source NOT IN (?4, ?5)",
                    params![c.rowid, c.id, marker, EVIDENCE_GONE, CORRECTED_EVIDENCE_GONE],
                )?;
                if stripped > 0 {
                    if latest_withdrawal {
                        purged.counts.withdrawals_kept += 1;
                    } else {
                        purged.counts.corrections_kept += 1;
                    }
                    redact("consent.recorded", &subject, "consent_id", &c.id)?;
                }
                continue;
            }
            // Still where it was scanned: a consent moved since (a
            // rectification, in place) and withdrawn under its new number
            // would be judged by its old one and deleted, the new number's
            // only withdrawal (found by review).
            let deleted = tx.execute(
                &format!(
                    "DELETE FROM consents AS c WHERE rowid = ?1 AND consent_id = ?2
                       AND min(coalesce(revoked_at_us, expires_at_us), coalesce(expires_at_us, revoked_at_us)) < ?3
                       AND number_key = ?4 AND controller = ?5 AND purpose = ?6 AND NOT {RECTIFIED_CONSENT}"
                ),
                params![c.rowid, c.id, c.cutoff_us, c.key.0 as i64, c.controller, c.purpose],
            )?;
            if deleted == 0 {
                continue;
            }
            redact("consent.recorded", &subject, "consent_id", &c.id)?;
            purged.counts.consents_deleted += 1;
            purged.forget.push((c.key, Table::Consent, row32(c.rowid)));
        }

        for (r, key) in &candidates.relationships {
            // Decided again from the rows as they are now: an ongoing copy
            // recorded since the scan keeps the end; one moved since (a
            // rectification) waits for the next purge, which finds it
            // where it is (the index forgets it under its scanned number).
            let deleted = tx.execute(
                &format!(
                    "DELETE FROM relationships AS r WHERE rowid = ?1 AND relationship_id = ?2 AND ended_at_us < ?3 AND number_key = ?4 AND {NO_ONGOING_COPY}
                       AND NOT {RECTIFIED_RELATIONSHIP}"
                ),
                params![r.rowid, r.id, r.cutoff_us, key.0 as i64],
            )?;
            if deleted == 0 {
                continue;
            }
            let subject = hex::encode(self.index.subject_hash(&r.number));
            redact("relationship.recorded", &subject, "relationship_id", &r.id)?;
            purged.counts.relationships_deleted += 1;
            purged
                .forget
                .push((*key, Table::Relationship, row32(r.rowid)));
        }

        let mut hashed: HashSet<SubjectHash> = HashSet::new();
        for o in &candidates.opt_outs {
            let deleted = tx.execute(
                "DELETE FROM suppressions WHERE rowid = ?1 AND suppression_id = ?2 AND expires_at_us < ?3",
                params![o.rowid, o.id, o.cutoff_us],
            )?;
            if deleted == 0 {
                continue;
            }
            let subject = match o.hash {
                Some(hash) => {
                    hashed.insert(hash);
                    hash
                }
                None => self.index.subject_hash(&o.number),
            };
            redact(
                "suppression.added",
                &hex::encode(subject),
                "suppression_id",
                &o.id,
            )?;
            purged.counts.opt_outs_deleted += 1;
            if let Some(key) = o.key {
                purged
                    .forget
                    .push((key, Table::Suppression, row32(o.rowid)));
            }
        }
        for subject in hashed {
            purged
                .hashed
                .push((subject, hashed_suppressions(tx, &subject)?));
        }
        let highest = |table: &str| -> rusqlite::Result<i64> {
            tx.query_row(
                &format!("SELECT COALESCE(MAX(rowid), 0) FROM {table}"),
                [],
                |r| r.get(0),
            )
        };
        purged.highest = [
            highest("consents")?,
            highest("relationships")?,
            highest("suppressions")?,
        ];
        Ok(purged)
    }

    /// The id of the erasure ledger this store's changes are recorded in
    /// (`None`: not bound yet).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn bound_ledger(&self) -> Result<Option<String>, StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        let id: Option<Vec<u8>> = conn
            .query_row("SELECT value FROM meta WHERE key = 'ledger_id'", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(id.map(|id| String::from_utf8_lossy(&id).into_owned()))
    }

    /// Binds the store to the erasure ledger `id` (replacing any earlier).
    ///
    /// # Errors
    /// [`StoreError`] when it cannot be stored.
    pub fn bind_ledger(&self, id: &str) -> Result<(), StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('ledger_id', ?1)",
            [id.as_bytes()],
        )?;
        Ok(())
    }

    /// A restore re-applying a rectification: deletes the consent or
    /// relationship `id` if it is still under the number whose hash is
    /// `subject` (and, with `purpose`, still of that purpose), which it was
    /// moved away from after the backup. Returns whether it did.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    pub fn remove_moved_record(
        &self,
        kind: &str,
        id: &str,
        subject: &SubjectHash,
        purpose: Option<crate::model::Purpose>,
        actor: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some((table, id_column)) = record_table(kind) else {
            return Ok(false);
        };
        let found: Option<(String, String)> = {
            let conn = self.conn.lock().expect("contact db lock");
            let purpose_column = if table == "consents" { "purpose" } else { "''" };
            conn.query_row(
                &format!("SELECT number, {purpose_column} FROM {table} WHERE {id_column} = ?1"),
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
        };
        let Some((number, stored_purpose)) = found else {
            return Ok(false);
        };
        if self.index.subject_hash(&number) != *subject
            || purpose.is_some_and(|p| p.as_str() != stored_purpose)
        {
            return Ok(false);
        }
        self.write(
            |tx| {
                let deleted = tx.execute(
                    &format!("DELETE FROM {table} WHERE {id_column} = ?1 AND number = ?2"),
                    params![id, number],
                )?;
                Self::event(
                    tx,
                    now,
                    actor,
                    "record.removed",
                    subject,
                    serde_json::Value::Null,
                    serde_json::json!({"table": table, "id": id, "reason": "restore: rectified after the backup, away from this number or purpose"}),
                )?;
                Ok(deleted > 0)
            },
            |_| {},
        )
    }

    /// Puts a rectification's corrected values on record `id` of `kind`
    /// ("consent" or "relationship") if it is still at `subject` and holds
    /// the values it was corrected `from` (a restore: the backup's copy
    /// predates the correction); returns whether it did.
    ///
    /// # Errors
    /// [`StoreError`] when it cannot be read or stored, or a value is not
    /// one the store knows.
    pub fn replay_correction(
        &self,
        kind: &str,
        id: &str,
        subject: &SubjectHash,
        (from, values): (
            Option<&crate::contacts::ledger::CorrectedValues>,
            &crate::contacts::ledger::CorrectedValues,
        ),
        actor: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some((table, id_column)) = record_table(kind) else {
            return Ok(false);
        };
        let number: Option<String> = {
            let conn = self.conn.lock().expect("contact db lock");
            conn.query_row(
                &format!("SELECT number FROM {table} WHERE {id_column} = ?1"),
                [id],
                |r| r.get(0),
            )
            .optional()?
        };
        if number.is_none_or(|n| self.index.subject_hash(&n) != *subject) {
            return Ok(false);
        }
        let micros = |at: Option<Timestamp>| at.map(|at| at.as_microsecond());
        let required = |at: Option<Timestamp>, what: &str| {
            at.map(Timestamp::as_microsecond).ok_or_else(|| {
                StoreError::Unreadable(format!(
                    "a corrected {kind} {id} without its {what} in the ledger"
                ))
            })
        };
        self.write(
            |tx| {
                // Only onto the values it was corrected from (a correction
                // computed from values changed since, which then failed,
                // is in the ledger too, and must not undo a later one).
                let changed = match (table, from) {
                    // The method too, where the entry holds it (entries
                    // written before it was kept leave it as it is).
                    ("consents", from) => tx.execute(
                        "UPDATE consents SET granted_at_us = ?2, expires_at_us = ?3, supplier = ?4,
                             method = COALESCE(?9, method)
                         WHERE consent_id = ?1 AND (?5 = 0 OR (granted_at_us = ?6
                             AND expires_at_us IS ?7 AND supplier = ?8
                             AND (?10 IS NULL OR method = ?10)))",
                        params![
                            id,
                            required(values.granted_at, "grant")?,
                            micros(values.expires_at),
                            values.supplier,
                            from.is_some(),
                            from.and_then(|f| micros(f.granted_at)),
                            from.and_then(|f| micros(f.expires_at)),
                            from.map(|f| f.supplier.as_str()),
                            values.method.as_deref(),
                            from.and_then(|f| f.method.as_deref()),
                        ],
                    )?,
                    (_, from) => {
                        super::relationship_kind(&values.kind)?;
                        tx.execute(
                            "UPDATE relationships SET kind = ?2, started_at_us = ?3, ended_at_us = ?4
                             WHERE relationship_id = ?1 AND (?5 = 0 OR (kind = ?6
                                 AND started_at_us = ?7 AND ended_at_us IS ?8))",
                            params![
                                id,
                                values.kind,
                                required(values.started_at, "start")?,
                                micros(values.ended_at),
                                from.is_some(),
                                from.map(|f| f.kind.as_str()),
                                from.and_then(|f| micros(f.started_at)),
                                from.and_then(|f| micros(f.ended_at)),
                            ],
                        )?
                    }
                };
                if changed > 0 {
                    // Rectified, as `rectify` marks it: the purge keeps it
                    // (found by review: a replayed correction was purged,
                    // and the CRM's re-sync of the id came back wide).
                    tx.execute(
                        &format!(
                            "INSERT INTO corrections (tbl, row, old_key, record_id)
                             SELECT ?2, rowid, number_key, ?1 FROM {table} WHERE {id_column} = ?1"
                        ),
                        params![id, table],
                    )?;
                    Self::event(
                        tx,
                        now,
                        actor,
                        "record.corrected",
                        subject,
                        serde_json::Value::Null,
                        serde_json::json!({"table": table, "id": id, "reason": "restore: rectified after the backup", "values": values}),
                    )?;
                }
                Ok(changed > 0)
            },
            |_| {},
        )
    }

    /// Forgets the ledger binding (bound again at the next start).
    ///
    /// # Errors
    /// [`StoreError`] when it cannot be stored.
    pub fn unbind_ledger(&self) -> Result<(), StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        conn.execute("DELETE FROM meta WHERE key = 'ledger_id'", [])?;
        Ok(())
    }

    /// Whether the store holds any consent, relationship or opt-out.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn holds_records(&self) -> Result<bool, StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        Ok(conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM consents) OR EXISTS (SELECT 1 FROM relationships) OR EXISTS (SELECT 1 FROM suppressions)",
            [],
            |r| r.get(0),
        )?)
    }

    /// The fingerprint of this store's subject salt (the erasure ledger's `salt`).
    pub fn salt_fingerprint(&self) -> String {
        super::super::ledger::salt_fingerprint(&self.index.salt)
    }

    /// The numbers the store holds (consents, relationships, opt-outs by
    /// number) whose salted hash is `wanted`, by hash: how a restore finds
    /// the numbers of the erasure ledger's entries (every stored number is
    /// hashed; only the matches are kept).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn numbers_by_hash(
        &self,
        wanted: &HashSet<SubjectHash>,
        in_answers_too: bool,
    ) -> Result<HashMap<SubjectHash, String>, StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        let mut statement = conn.prepare(
            "SELECT number FROM consents UNION SELECT number FROM relationships
             UNION SELECT number FROM suppressions WHERE number != ''",
        )?;
        let mut rows = statement.query([])?;
        let mut numbers = HashMap::new();
        while let Some(row) = rows.next()? {
            let number = super::text(row, 0)?;
            let hash = self.index.subject_hash(number);
            if wanted.contains(&hash) {
                numbers.insert(hash, number.to_string());
            }
        }
        // Registry answers hold a number too (by key): an erasure made
        // after a backup must find it there, or a restore brings the
        // erased subject's answers back (found by review). Only for a
        // restore: every answer's number is hashed.
        if !in_answers_too {
            return Ok(numbers);
        }
        let mut statement = conn.prepare("SELECT DISTINCT number_key FROM observations")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let key: i64 = row.get(0)?;
            let number = NumberKey(key as u64).to_e164();
            let hash = self.index.subject_hash(&number);
            if wanted.contains(&hash) {
                numbers.entry(hash).or_insert(number);
            }
        }
        Ok(numbers)
    }

    /// Stores an opt-out under a subject's hash only (no number): it binds
    /// every check of a number with that hash. Kept as it is when one with
    /// its id is stored. Returns whether it was new.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    pub fn suppress_by_hash(
        &self,
        subject: &SubjectHash,
        suppression: &Suppression,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let added = self.write(
            |tx| {
                let mut insert = tx.prepare(&format!(
                    "INSERT OR IGNORE INTO suppressions ({SUPPRESSION_COLUMNS}) VALUES (?1, ?2, ?3, '', NULL, ?4, ?5, ?6, ?7, ?8, ?9)"
                ))?;
                let mut inserted = insert_suppression_hashed(&mut insert, subject, suppression)? == 1;
                // Its id held by another opt-out (one the purge deleted, its
                // id reused since, and a restore brought back): kept under
                // an id of its own, not dropped (found by review: the
                // number was called after the restore).
                let mut suppression = suppression.clone();
                if !inserted && !self.holds_opt_out(tx, subject, &suppression)? {
                    suppression.suppression_id = format!(
                        "{}~restored-{}",
                        suppression.suppression_id,
                        us(suppression.created_at)
                    );
                    inserted = insert_suppression_hashed(&mut insert, subject, &suppression)? == 1;
                }
                drop(insert);
                if inserted {
                    let mut after = serde_json::to_value(&suppression).unwrap_or_default();
                    after.as_object_mut().map(|o| o.remove("number"));
                    Self::event(tx, suppression.created_at, actor, "suppression.added", subject, serde_json::Value::Null, after)?;
                }
                Ok((inserted, hashed_suppressions(tx, subject)?))
            },
            // (A name the table cannot take is found again at the next start.)
            |(_, kept)| {
                let _ = self.index.set_erased(*subject, kept.clone());
            },
        )?;
        Ok(added.0)
    }

    /// Whether the opt-out stored under `suppression`'s id is this one: the
    /// same subject, controller and campaign, in force at least as long.
    fn holds_opt_out(
        &self,
        tx: &rusqlite::Transaction<'_>,
        subject: &SubjectHash,
        suppression: &Suppression,
    ) -> rusqlite::Result<bool> {
        let stored = tx
            .query_row(
                "SELECT number, number_hash, controller, campaign_id, expires_at_us FROM suppressions WHERE suppression_id = ?1",
                [&suppression.suppression_id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<Vec<u8>>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((number, hash, controller, campaign_id, expires_at_us)) = stored else {
            return Ok(false);
        };
        let same_subject = match hash {
            Some(hash) => hash.as_slice() == subject.as_slice(),
            None => !number.is_empty() && self.index.subject_hash(&number) == *subject,
        };
        let lasts = match (expires_at_us, suppression.expires_at) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(stored), Some(wanted)) => stored >= us(wanted),
        };
        Ok(same_subject
            && controller == suppression.controller
            && campaign_id == suppression.campaign_id
            && lasts)
    }

    /// Writes one trail event without a subject (`backup.restored`).
    ///
    /// # Errors
    /// [`StoreError`] when it cannot be stored.
    pub fn note(
        &self,
        action: &str,
        actor: &str,
        now: Timestamp,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.write(
            |tx| {
                tx.execute(
                    "INSERT INTO events (at_us, actor, action, subject, before, after) VALUES (?1, ?2, ?3, '', 'null', ?4)",
                    params![us(now), actor, action, details.to_string()],
                )?;
                Ok(())
            },
            |()| {},
        )
    }
}

/// Withdrawals of consents known by the number's hash only: a restore
/// re-applies a withdrawal whose consent the backup does not hold (it was
/// recorded after the backup), so no number can be found for it. Each
/// becomes, in every view of a number with that hash, a consent withdrawn at
/// that instant: the rules then end every consent of that controller and
/// purpose given before it, as they do for a stored withdrawal.
#[derive(Debug, Default)]
pub(crate) struct HashedWithdrawals {
    by_subject: dashmap::DashMap<SubjectHash, Vec<(String, Option<Purpose>, Timestamp)>>,
    /// Whether any is held: only then does a view pay for the hash.
    any: std::sync::atomic::AtomicBool,
}

/// A relationship record `r` has no ongoing copy (the same controller,
/// kind and start): the contract API records an end as another record,
/// which is then that relationship's end, and deleted, the copy would
/// exempt again for ever (found by review).
const NO_ONGOING_COPY: &str = "NOT EXISTS (SELECT 1 FROM relationships AS o
    WHERE o.number_key = r.number_key AND o.controller = r.controller
      AND o.kind = r.kind AND o.started_at_us = r.started_at_us
      AND o.ended_at_us IS NULL)";

const PURPOSES: [Purpose; 4] = [
    Purpose::Marketing,
    Purpose::MarketResearch,
    Purpose::Statistical,
    Purpose::Profiling,
];

const WITHDRAWALS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS withdrawals_by_hash (
    subject BLOB NOT NULL,
    controller TEXT NOT NULL,
    purpose TEXT,
    revoked_at_us INTEGER NOT NULL
) STRICT;";

impl HashedWithdrawals {
    fn insert(
        &self,
        subject: SubjectHash,
        controller: String,
        purpose: Option<Purpose>,
        at: Timestamp,
    ) {
        self.by_subject
            .entry(subject)
            .or_default()
            .push((controller, purpose, at));
        self.any.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Adds the withdrawals of `e164`'s hash to its view.
    pub(crate) fn extend_view(&self, index: &ContactIndex, e164: &str, view: &mut ContactView) {
        if !self.any.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let Some(withdrawals) = self.by_subject.get(&index.subject_hash(e164)) else {
            return;
        };
        for (controller, purpose, at) in withdrawals.iter() {
            for purpose in PURPOSES
                .into_iter()
                .filter(|p| purpose.is_none_or(|q| q == *p))
            {
                view.consents.push(Consent {
                    consent_id: "withdrawal re-applied from the erasure ledger".into(),
                    controller: controller.clone(),
                    number: e164.to_string(),
                    purpose,
                    granted_at: *at,
                    revoked_at: Some(*at),
                    expires_at: None,
                    source: String::new(),
                    supplier: String::new(),
                    method: String::new(),
                    notice_version: String::new(),
                    evidence_ref: String::new(),
                    recorded_at: *at,
                });
            }
        }
    }
}

impl ContactStore {
    /// Loads the withdrawals kept by hash (at open).
    pub(super) fn load_withdrawals(&self) -> Result<(), StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        conn.execute_batch(WITHDRAWALS_SCHEMA)?;
        let mut statement = conn.prepare(
            "SELECT subject, controller, purpose, revoked_at_us FROM withdrawals_by_hash",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let subject: Vec<u8> = row.get(0)?;
            let subject = SubjectHash::try_from(subject.as_slice()).map_err(|_| {
                StoreError::Unreadable("withdrawals_by_hash: a subject is not a hash".into())
            })?;
            let purpose = row
                .get::<_, Option<String>>(2)?
                .map(|p| super::purpose(&p))
                .transpose()?;
            let at = super::ts_column(row, 3, "revoked_at_us")?;
            let controller: String = row.get(1)?;
            // Binding: respelled in the configuration, it would end nothing.
            self.index.note_binding_controller(&controller)?;
            self.withdrawals.insert(subject, controller, purpose, at);
        }
        Ok(())
    }

    /// The instants of the withdrawals kept by hash for `e164`, the
    /// controller and `purpose` (or every purpose), as the store holds them.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub(super) fn withdrawals_kept_by_hash(
        &self,
        e164: &str,
        controller: &str,
        purpose: Purpose,
    ) -> Result<Vec<Timestamp>, StoreError> {
        let subject = self.index.subject_hash(e164);
        let conn = self.conn.lock().expect("contact db lock");
        conn.execute_batch(WITHDRAWALS_SCHEMA)?;
        let mut statement = conn.prepare(
            "SELECT revoked_at_us FROM withdrawals_by_hash
             WHERE subject = ?1 AND controller = ?2 AND (purpose IS NULL OR purpose = ?3)",
        )?;
        let mut rows = statement.query(params![subject.to_vec(), controller, purpose.as_str()])?;
        let mut instants = Vec::new();
        while let Some(row) = rows.next()? {
            instants.push(super::ts_column(row, 0, "revoked_at_us")?);
        }
        Ok(instants)
    }

    /// Stores a withdrawal known by the number's hash only (see
    /// [`HashedWithdrawals`]).
    ///
    /// # Errors
    /// [`StoreError`]; nothing is stored then.
    pub fn withdraw_by_hash(
        &self,
        subject: &SubjectHash,
        controller: &str,
        purpose: Option<Purpose>,
        at: Timestamp,
        actor: &str,
    ) -> Result<(), StoreError> {
        self.write(
            |tx| {
                tx.execute_batch(WITHDRAWALS_SCHEMA)?;
                tx.execute(
                    "INSERT INTO withdrawals_by_hash (subject, controller, purpose, revoked_at_us) VALUES (?1, ?2, ?3, ?4)",
                    params![subject.to_vec(), controller, purpose.map(Purpose::as_str), us(at)],
                )?;
                Self::event(
                    tx,
                    Timestamp::now(),
                    actor,
                    "consent.revoked",
                    subject,
                    serde_json::Value::Null,
                    serde_json::json!({"controller": controller, "purpose": purpose.map(Purpose::as_str), "revoked_at": at, "consents_ended": 0, "kept_by_hash": true}),
                )?;
                Ok(())
            },
            |()| {
                // Binding (see `load_withdrawals`); a name the table cannot
                // take is found again at the next start.
                let _ = self.index.note_binding_controller(controller);
                self.withdrawals
                    .insert(*subject, controller.to_string(), purpose, at);
            },
        )
    }
}

impl super::BulkImport<'_> {
    /// Refuses, before the records are moved in, opt-out ids the import
    /// reuses for another opt-out (the check the move makes anyway): an
    /// import about to be refused must not be committed to the erasure
    /// ledger.
    ///
    /// # Errors
    /// [`StoreError::ReusedIds`] naming them, or a storage failure.
    pub fn refuse_reused_ids(&mut self, store: &ContactStore) -> Result<(), StoreError> {
        if self.first_load.is_some() {
            // Checked as each opt-out went in, or now for all at once.
            return self.refuse_reused_in_load();
        }
        self.flush()?;
        store.refuse_reused_suppression_ids(
            self.tx,
            self.copies_checked,
            self.staged_ids.suppressions.repeated(),
        )
    }
}

/// Binds an opt-out kept by hash (9 columns: id, controller, campaign,
/// hash, reason, source, added_by, created, expires) and runs `statement`.
fn insert_suppression_hashed(
    statement: &mut rusqlite::Statement<'_>,
    subject: &SubjectHash,
    suppression: &Suppression,
) -> rusqlite::Result<usize> {
    statement.execute(params![
        suppression.suppression_id,
        suppression.controller,
        suppression.campaign_id,
        subject.to_vec(),
        suppression.reason,
        suppression.source,
        suppression.added_by,
        us(suppression.created_at),
        suppression.expires_at.map(us),
    ])
}

fn row32(rowid: i64) -> u32 {
    u32::try_from(rowid).unwrap_or(u32::MAX)
}

/// The table and id column of a ledger entry's record kind ("consent" or
/// "relationship").
fn record_table(kind: &str) -> Option<(&'static str, &'static str)> {
    match kind {
        "consent" => Some(("consents", "consent_id")),
        "relationship" => Some(("relationships", "relationship_id")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contacts::{Consent, Relationship, RelationshipKind};
    use crate::model::Purpose;
    use crate::rules::valid_consent;

    const MARKETING: crate::rules::Asking<'static> = crate::rules::Asking {
        controller: "acme",
        purpose: Purpose::Marketing,
        consent_max_age: None,
        suppliers: &[],
    };

    const NUMBER: &str = "+390212345678";

    fn key() -> NumberKey {
        NumberKey::from_e164(NUMBER).unwrap()
    }

    fn now() -> Timestamp {
        "2026-11-25T10:00:00Z".parse().unwrap()
    }

    fn days_ago(days: i64) -> Timestamp {
        now() - jiff::SignedDuration::from_hours(24 * days)
    }

    fn consent(id: &str, granted_days_ago: i64) -> Consent {
        Consent {
            consent_id: id.into(),
            controller: "acme".into(),
            number: NUMBER.into(),
            purpose: Purpose::Marketing,
            granted_at: days_ago(granted_days_ago),
            revoked_at: None,
            expires_at: None,
            source: "web form".into(),
            supplier: String::new(),
            method: "checkbox".into(),
            notice_version: "v1".into(),
            evidence_ref: format!("recording-{id}"),
            recorded_at: days_ago(granted_days_ago),
        }
    }

    fn ceilings(days: u32) -> RecordCeilings {
        let ceiling = Ceiling {
            default_days: Some(days),
            controllers: BTreeMap::new(),
        };
        RecordCeilings {
            consents: ceiling.clone(),
            relationships: ceiling.clone(),
            opt_outs: ceiling,
        }
    }

    /// Rectifies the stored consent `id`: `change` applied to it, under `to`.
    fn rectify_consent(
        store: &ContactStore,
        id: &str,
        to: NumberKey,
        change: impl FnOnce(&mut Consent),
    ) {
        use crate::contacts::store::rectify::Rectification;
        let before = store.consent_by_id(id).unwrap().unwrap();
        let mut after = before.record.clone();
        change(&mut after);
        store
            .rectify(
                &[Rectification::Consent {
                    before: Box::new(before),
                    after: Box::new((to, after)),
                    reason: "corrected".into(),
                }],
                "t",
                now(),
            )
            .unwrap();
    }

    /// A consent scanned as expired, moved to another number and withdrawn
    /// there before the purge's transaction, was deleted as judged under
    /// its old number: the new number's only withdrawal (found by review).
    #[test]
    fn test_a_purge_leaves_a_consent_moved_since_its_scan() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        let mut expired = consent("c-1", 500);
        expired.expires_at = Some(days_ago(400));
        store.record_consent(key(), expired, "t").unwrap();
        let candidates = store.candidates(&ceilings(30), now()).unwrap();
        assert_eq!(candidates.consents.len(), 1);
        let other = "+390212345679";
        let other_key = NumberKey::from_e164(other).unwrap();
        rectify_consent(&store, "c-1", other_key, |c| c.number = other.into());
        store
            .revoke_consents(other_key, other, "acme", None, days_ago(1), "t")
            .unwrap();
        let counts = store
            .purge_candidates(&candidates, now(), false, "t", serde_json::json!({}))
            .unwrap();
        assert_eq!(counts.consents_deleted, 0, "{counts:?}");
        assert!(
            store
                .view(other_key, other)
                .consents
                .iter()
                .any(|c| c.revoked_at.is_some()),
            "the new number keeps its withdrawal"
        );
    }

    /// A ledgered opt-out put back by a restore under an id another opt-out
    /// holds (an expired one the purge deleted, its id reused since, in the
    /// backup) was dropped by `INSERT OR IGNORE`, and the number called
    /// (found by review). It is kept under an id of its own; the same
    /// opt-out already held is not added twice.
    #[test]
    fn test_a_restored_opt_out_is_kept_when_its_id_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        let other = "+390212345679";
        let opt_out = |number: &str, expires_at: Option<Timestamp>| Suppression {
            suppression_id: "crm-9".into(),
            controller: "acme".into(),
            campaign_id: String::new(),
            number: number.into(),
            reason: "asked".into(),
            source: "call".into(),
            added_by: "t".into(),
            created_at: days_ago(10),
            expires_at,
        };
        // The backup's row: crm-9, another number.
        assert!(
            store
                .add_suppression(NumberKey::from_e164(other).unwrap(), opt_out(other, None))
                .unwrap()
        );
        let subject = store.index.subject_hash(NUMBER);
        let restored = Suppression {
            number: String::new(),
            ..opt_out(NUMBER, None)
        };
        assert!(
            store
                .suppress_by_hash(&subject, &restored, "restore")
                .unwrap()
        );
        assert!(
            crate::rules::suppression(&store.view(key(), NUMBER), "acme", "c", now()).is_some(),
            "the number stays suppressed"
        );
        // Put back again: already held under its own id.
        assert!(
            !store
                .suppress_by_hash(&subject, &restored, "restore")
                .unwrap()
        );
        // Held under its id for this number (the same opt-out): not added.
        let same = store.index.subject_hash(other);
        assert!(
            !store
                .suppress_by_hash(
                    &same,
                    &Suppression {
                        number: String::new(),
                        ..opt_out(other, None)
                    },
                    "restore"
                )
                .unwrap()
        );
    }

    /// A relationship's end recorded as a second record (the contract's
    /// RecordRelationship): purged once old, it left the ongoing copy
    /// exempting for ever (found by review). It stays while the copy does.
    #[test]
    fn test_a_purge_keeps_a_relationship_end_while_its_ongoing_copy_stays() {
        use crate::contacts::{Relationship, RelationshipKind};
        use crate::rules::exempting_relationship;
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        let record = |id: &str, ended: Option<Timestamp>| Relationship {
            relationship_id: id.into(),
            controller: "acme".into(),
            number: NUMBER.into(),
            kind: RelationshipKind::Customer,
            started_at: days_ago(900),
            ended_at: ended,
            recorded_at: days_ago(900),
        };
        store
            .record_relationship(key(), record("r1", None), "t")
            .unwrap();
        store
            .record_relationship(key(), record("r2", Some(days_ago(400))), "t")
            .unwrap();
        let counts = store
            .purge_retention(&ceilings(30), now(), false, "t", serde_json::json!({}))
            .unwrap();
        assert_eq!(counts.relationships_deleted, 0, "{counts:?}");
        // The CRM re-sends its ongoing record (a re-sync): the kept end
        // still ends it. Purging the pair (tried, found by review) let the
        // re-sent record exempt for ever.
        store
            .record_relationship(key(), record("r1b", None), "t")
            .unwrap();
        let customer = crate::statutes::Exemptions {
            customer: Some(crate::statutes::Period::Months(12)),
            ..crate::statutes::Exemptions::default()
        };
        assert!(
            exempting_relationship(&store.view(key(), NUMBER), &customer, "acme", now()).is_none()
        );
        // An ongoing copy recorded after the purge picked the end: kept too.
        store
            .record_relationship(key(), record("r3", Some(days_ago(500))), "t")
            .unwrap();
        let mut started_later = record("r4", Some(days_ago(450)));
        started_later.started_at = days_ago(800);
        store
            .record_relationship(key(), started_later.clone(), "t")
            .unwrap();
        let candidates = store.candidates(&ceilings(30), now()).unwrap();
        started_later.relationship_id = "r5".into();
        started_later.ended_at = None;
        store
            .record_relationship(key(), started_later, "t")
            .unwrap();
        let counts = store
            .purge_candidates(&candidates, now(), false, "t", serde_json::json!({}))
            .unwrap();
        assert_eq!(counts.relationships_deleted, 0, "{counts:?}");
        let exemptions = crate::statutes::Exemptions {
            customer: Some(crate::statutes::Period::Months(12)),
            ..crate::statutes::Exemptions::default()
        };
        let view = store.view(key(), NUMBER);
        assert!(
            exempting_relationship(&view, &exemptions, "acme", now()).is_none(),
            "ended 400 days ago: {view:?}"
        );
    }

    /// The controllers whose records bind (opt-outs, withdrawals) are told
    /// from the others, for the spelling check at start (found by review:
    /// a withdrawal respelled away let the registry's ALLOW through).
    #[test]
    fn test_the_names_of_binding_records_are_noted() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        store.record_consent(key(), consent("c-1", 5), "t").unwrap();
        assert!(store.index().record_names().binding.is_empty());
        assert_eq!(store.index().record_names().controllers, ["acme"]);
        store
            .revoke_consents(key(), NUMBER, "acme", None, days_ago(1), "t")
            .unwrap();
        assert_eq!(store.index().record_names().binding, ["acme"]);
        // A withdrawal a restore kept by hash binds too (found by review).
        let hash = store.index().subject_hash("+393339999999");
        store
            .withdraw_by_hash(&hash, "beta", None, days_ago(1), "t")
            .unwrap();
        assert_eq!(store.index().record_names().binding, ["acme", "beta"]);
        drop(store);
        let store = ContactStore::open(dir.path()).unwrap();
        assert_eq!(
            store.index().record_names().binding,
            ["acme", "beta"],
            "read back"
        );
        // An opt-out kept by hash after an erasure, before and after a
        // restart.
        store
            .add_suppression(
                key(),
                Suppression {
                    suppression_id: "s-gamma".into(),
                    controller: "gamma".into(),
                    campaign_id: String::new(),
                    number: NUMBER.into(),
                    reason: "asked".into(),
                    source: "phone".into(),
                    added_by: "t".into(),
                    created_at: days_ago(2),
                    expires_at: None,
                },
            )
            .unwrap();
        store
            .erase(key(), NUMBER, "", "t", now(), &serde_json::Value::Null)
            .unwrap();
        assert!(
            store
                .view(key(), NUMBER)
                .suppressions
                .iter()
                .any(|s| s.controller == "gamma")
        );
        drop(store);
        let store = ContactStore::open(dir.path()).unwrap();
        assert_eq!(
            store.index().record_names().binding,
            ["beta", "gamma"],
            "kept by hash, read back (the erasure removed acme's withdrawal)"
        );
    }

    /// The trap: the rules treat a withdrawal as ending every consent given
    /// before it, also one a CRM records again later. A purge that deleted
    /// every old withdrawn consent let such a re-synced consent ALLOW.
    #[test]
    fn test_a_purge_keeps_the_latest_withdrawal_so_a_resynced_consent_stays_ended() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        store
            .record_consent(key(), consent("c-old", 500), "t")
            .unwrap();
        store
            .revoke_consents(key(), NUMBER, "acme", None, days_ago(300), "t")
            .unwrap();
        store
            .record_consent(key(), consent("c-1", 400), "t")
            .unwrap();
        store
            .revoke_consents(
                key(),
                NUMBER,
                "acme",
                Some(Purpose::Marketing),
                days_ago(100),
                "t",
            )
            .unwrap();
        let counts = store
            .purge_retention(&ceilings(30), now(), false, "t", serde_json::json!({}))
            .unwrap();
        assert_eq!(counts.consents_deleted, 1, "{counts:?}");
        // Marketing's latest withdrawal, and the markers of the other three
        // purposes the first (all-purpose) withdrawal left.
        assert_eq!(counts.withdrawals_kept, 4, "{counts:?}");
        // The CRM re-syncs the consent withdrawn 100 days ago.
        store
            .record_consent(key(), consent("c-1-again", 400), "t")
            .unwrap();
        let view = store.view(key(), NUMBER);
        assert_eq!(
            valid_consent(&view, &MARKETING, now()).map(|c| &c.consent_id),
            None,
            "{view:?}"
        );
        // The same after a restart (the index rebuilt from the store).
        drop(store);
        let store = ContactStore::open(dir.path()).unwrap();
        let view = store.view(key(), NUMBER);
        assert!(valid_consent(&view, &MARKETING, now()).is_none());
        // The kept withdrawal has no evidence, in the store or the trail.
        let records = store.subject_records(key(), NUMBER, "").unwrap();
        let kept = records
            .consents
            .iter()
            .find(|c| c.consent_id == "c-1")
            .unwrap();
        assert_eq!((kept.evidence_ref.as_str(), kept.method.as_str()), ("", ""));
        let trail = serde_json::to_string(&store.trail().unwrap()).unwrap();
        assert!(!trail.contains("recording-c-1\""), "{trail}");
        assert!(!trail.contains("recording-c-old"), "{trail}");
        assert!(trail.contains("recording-c-1-again"), "{trail}");
        assert!(trail.contains("retention.purged"));
        // A consent given after the withdrawal counts.
        store
            .record_consent(key(), consent("c-new", 10), "t")
            .unwrap();
        let view = store.view(key(), NUMBER);
        assert_eq!(
            valid_consent(&view, &MARKETING, now()).map(|c| c.consent_id.as_str()),
            Some("c-new")
        );
    }

    /// The candidates are read without the lock: a row deleted meanwhile
    /// (an erasure) whose number SQLite gives to a new record must not take
    /// the new record with it.
    #[test]
    fn test_a_row_reused_since_it_was_read_is_not_purged() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        let mut old = consent("c-old", 900);
        old.expires_at = Some(days_ago(400));
        store.record_consent(key(), old, "t").unwrap();
        let candidates = store.candidates(&ceilings(30), now()).unwrap();
        assert_eq!(candidates.consents.len(), 1);
        store
            .erase(key(), NUMBER, "", "t", now(), &serde_json::Value::Null)
            .unwrap();
        let other = "+390212345679";
        let other_key = NumberKey::from_e164(other).unwrap();
        let mut fresh = consent("c-fresh", 10);
        fresh.number = other.into();
        store.record_consent(other_key, fresh, "t").unwrap();
        let counts = store
            .purge_candidates(&candidates, now(), false, "t", serde_json::json!({}))
            .unwrap();
        assert_eq!(counts, PurgeCounts::default());
        let view = store.view(other_key, other);
        assert_eq!(
            valid_consent(&view, &MARKETING, now()).map(|c| c.consent_id.as_str()),
            Some("c-fresh")
        );
    }

    /// The candidates are read without the lock: a consent scanned as
    /// merely expired and withdrawn before the purge's transaction is then
    /// the only withdrawal and must stay (a re-synced older consent would
    /// ALLOW otherwise).
    #[test]
    fn test_a_consent_withdrawn_since_the_scan_keeps_its_withdrawal() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        let mut old = consent("c-1", 900);
        old.expires_at = Some(days_ago(400));
        store.record_consent(key(), old, "t").unwrap();
        let candidates = store.candidates(&ceilings(30), now()).unwrap();
        assert_eq!(candidates.consents.len(), 1);
        store
            .revoke_consents(
                key(),
                NUMBER,
                "acme",
                Some(Purpose::Marketing),
                days_ago(1),
                "t",
            )
            .unwrap();
        let counts = store
            .purge_candidates(&candidates, now(), false, "t", serde_json::json!({}))
            .unwrap();
        assert_eq!(counts.consents_deleted, 0, "{counts:?}");
        store
            .record_consent(key(), consent("c-resynced", 300), "t")
            .unwrap();
        let view = store.view(key(), NUMBER);
        assert!(
            valid_consent(&view, &MARKETING, now()).is_none(),
            "{view:?}"
        );
    }

    /// A withdrawal that ended a stored consent needs no marker (also when
    /// its instant has nanoseconds the store does not keep); one that ended
    /// none gets a withdrawn row per purpose in its scope, once.
    #[test]
    fn test_a_withdrawal_is_guarded_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        store
            .record_consent(key(), consent("c-1", 400), "t")
            .unwrap();
        let at = days_ago(100) + jiff::SignedDuration::from_nanos(123);
        let rows = |store: &ContactStore| store.view(key(), NUMBER).consents.len();
        store
            .revoke_consents(key(), NUMBER, "acme", Some(Purpose::Marketing), at, "t")
            .unwrap();
        assert_eq!(rows(&store), 1, "the stored consent carries it");
        store
            .revoke_consents(key(), NUMBER, "acme", None, at, "t")
            .unwrap();
        assert_eq!(
            rows(&store),
            4,
            "a marker for each of the other three purposes"
        );
        store
            .revoke_consents(key(), NUMBER, "acme", None, at, "t")
            .unwrap();
        assert_eq!(rows(&store), 4, "already guarded");
        let view = store.view(key(), NUMBER);
        for purpose in PURPOSES {
            let asking = crate::rules::Asking {
                controller: "acme",
                purpose,
                consent_max_age: None,
                suppliers: &[],
            };
            assert!(valid_consent(&view, &asking, now()).is_none());
        }
    }

    /// A withdrawal dated in the past ended, live, every consent recorded
    /// before it was made, whatever its grant: re-applied by a restore, it
    /// ends them too (it ended only those granted before it: the backup's
    /// consent came back).
    #[test]
    fn test_a_reapplied_backdated_withdrawal_ends_what_it_ended_live() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        store.record_consent(key(), consent("c-5", 5), "t").unwrap();
        store
            .reapply_withdrawal(
                key(),
                NUMBER,
                "acme",
                Some(Purpose::Marketing),
                days_ago(8),
                days_ago(1),
                None,
                "t",
            )
            .unwrap();
        let view = store.view(key(), NUMBER);
        assert!(
            valid_consent(&view, &MARKETING, now()).is_none(),
            "{view:?}"
        );
    }

    /// A correction that narrowed a consent (an earlier expiry) or ended a
    /// relationship was lost when the purge deleted the record past its
    /// ceiling: the CRM's stale copy re-sent under the same id (ignored
    /// before: the id was held) was stored wide again and allowed (found by
    /// review). Rectified records are kept (a consent stripped of its
    /// evidence), so the re-sync changes nothing after the purge either.
    #[test]
    fn test_a_rectified_record_outlives_its_ceiling() {
        use crate::contacts::store::rectify::Rectification;
        use crate::rules::exempting_relationship;
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        store
            .record_consent(key(), consent("c-1", 500), "t")
            .unwrap();
        rectify_consent(&store, "c-1", key(), |c| c.expires_at = Some(days_ago(100)));
        let rel = Relationship {
            relationship_id: "r1".into(),
            controller: "acme".into(),
            number: NUMBER.into(),
            kind: RelationshipKind::Customer,
            started_at: days_ago(900),
            ended_at: None,
            recorded_at: days_ago(900),
        };
        store.record_relationship(key(), rel.clone(), "t").unwrap();
        let before = store.relationship_by_id("r1").unwrap().unwrap();
        let mut ended = before.record.clone();
        ended.ended_at = Some(days_ago(400));
        store
            .rectify(
                &[Rectification::Relationship {
                    before: Box::new(before),
                    after: Box::new((key(), ended)),
                    reason: "contract ended long ago".into(),
                }],
                "t",
                now(),
            )
            .unwrap();
        let customer = crate::statutes::Exemptions {
            customer: Some(crate::statutes::Period::Months(12)),
            ..crate::statutes::Exemptions::default()
        };
        let dry = store
            .purge_retention(&ceilings(30), now(), true, "t", serde_json::json!({}))
            .unwrap();
        let counts = store
            .purge_retention(&ceilings(30), now(), false, "t", serde_json::json!({}))
            .unwrap();
        assert_eq!(dry, counts);
        assert_eq!(
            (
                counts.consents_deleted,
                counts.corrections_kept,
                counts.relationships_deleted
            ),
            (0, 1, 0),
            "{counts:?}"
        );
        let kept = store.consent_by_id("c-1").unwrap().unwrap();
        assert_eq!(kept.record.source, CORRECTED_EVIDENCE_GONE);
        assert!(kept.record.evidence_ref.is_empty());
        // The CRM's nightly re-sync of both, wide as it holds them.
        assert!(
            !store
                .record_consent(key(), consent("c-1", 500), "t")
                .unwrap()
        );
        assert!(store.record_relationship(key(), rel, "t").is_err());
        let view = store.view(key(), NUMBER);
        assert!(valid_consent(&view, &MARKETING, now()).is_none());
        assert!(exempting_relationship(&view, &customer, "acme", now()).is_none());
        // A second purge finds nothing more to do.
        let again = store
            .purge_retention(&ceilings(30), now(), false, "t", serde_json::json!({}))
            .unwrap();
        assert_eq!(again, PurgeCounts::default());
    }

    /// A correction is matched by the record's id too: a rowid an erased
    /// rectified record freed, taken by another person's record, did not
    /// make that record rectified, kept past its ceiling (found by review).
    #[test]
    fn test_a_reused_rowid_does_not_inherit_a_correction() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        store
            .record_consent(key(), consent("c-1", 500), "t")
            .unwrap();
        rectify_consent(&store, "c-1", key(), |c| c.expires_at = Some(days_ago(100)));
        store
            .erase(key(), NUMBER, "", "t", now(), &serde_json::Value::Null)
            .unwrap();
        let other = "+390212345679";
        let other_key = NumberKey::from_e164(other).unwrap();
        let mut ended = consent("c-other", 900);
        ended.number = other.into();
        ended.expires_at = Some(days_ago(400));
        store.record_consent(other_key, ended, "t").unwrap();
        let reused: bool = store
            .conn
            .lock()
            .unwrap()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM corrections AS k JOIN consents AS c ON c.rowid = k.row
                  WHERE k.tbl = 'consents' AND c.consent_id = 'c-other')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(reused, "the test needs the rowid taken again");
        let counts = store
            .purge_retention(&ceilings(30), now(), false, "t", serde_json::json!({}))
            .unwrap();
        assert_eq!(
            (counts.consents_deleted, counts.corrections_kept),
            (1, 0),
            "{counts:?}"
        );
    }

    /// A correction a restore replays (made after the backup) marks the
    /// record rectified too: it was purged past its ceiling, and the CRM's
    /// re-sync of the id came back wide, in force (found by review).
    #[test]
    fn test_a_correction_replayed_by_a_restore_outlives_its_ceiling() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        store
            .record_consent(key(), consent("c-1", 500), "t")
            .unwrap();
        let subject = store.index.subject_hash(NUMBER);
        let from = crate::contacts::ledger::CorrectedValues {
            granted_at: Some(days_ago(500)),
            ..Default::default()
        };
        let values = crate::contacts::ledger::CorrectedValues {
            granted_at: Some(days_ago(500)),
            expires_at: Some(days_ago(100)),
            ..Default::default()
        };
        assert!(
            store
                .replay_correction(
                    "consent",
                    "c-1",
                    &subject,
                    (Some(&from), &values),
                    "t",
                    now()
                )
                .unwrap()
        );
        drop(store);
        let store = ContactStore::open(dir.path()).unwrap();
        let counts = store
            .purge_retention(&ceilings(30), now(), false, "t", serde_json::json!({}))
            .unwrap();
        assert_eq!(
            (counts.consents_deleted, counts.corrections_kept),
            (0, 1),
            "{counts:?}"
        );
        assert!(
            !store
                .record_consent(key(), consent("c-1", 500), "t")
                .unwrap()
        );
        let view = store.view(key(), NUMBER);
        assert!(
            valid_consent(&view, &MARKETING, now()).is_none(),
            "{view:?}"
        );
    }

    /// A withdrawal dated before the grant of a consent it ends (a date
    /// without a time, local time sent as UTC) ended it, but bound only
    /// copies granted before its date: the CRM's re-sync of the same
    /// consent counted again (found by review). A marker at the ended
    /// grant binds the copy, live, after a reopen and when a restore
    /// re-applies the withdrawal; a consent given later still counts, and
    /// the ended consent keeps its end for instants before the grant.
    #[test]
    fn test_a_withdrawal_dated_before_the_grant_binds_a_resynced_copy() {
        for reapplied in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = ContactStore::open(dir.path()).unwrap();
            store.record_consent(key(), consent("c-5", 5), "t").unwrap();
            let ended = if reapplied {
                store
                    // The ledger's record of the grant it bound.
                    .reapply_withdrawal(
                        key(),
                        NUMBER,
                        "acme",
                        None,
                        days_ago(6),
                        days_ago(1),
                        Some(days_ago(5)),
                        "t",
                    )
                    .unwrap()
            } else {
                store
                    .revoke_consents(key(), NUMBER, "acme", None, days_ago(6), "t")
                    .unwrap()
            };
            assert_eq!(ended, 1);
            store
                .record_consent(key(), consent("c-5-resync", 5), "t")
                .unwrap();
            let view = store.view(key(), NUMBER);
            assert_eq!(
                valid_consent(&view, &MARKETING, now()).map(|c| c.consent_id.as_str()),
                None,
                "reapplied {reapplied}: {view:#?}"
            );
            drop(store);
            let store = ContactStore::open(dir.path()).unwrap();
            let view = store.view(key(), NUMBER);
            assert!(
                valid_consent(&view, &MARKETING, now()).is_none(),
                "reopened: {view:#?}"
            );
            // A consent given after the withdrawal counts.
            store.record_consent(key(), consent("c-4", 4), "t").unwrap();
            let view = store.view(key(), NUMBER);
            assert_eq!(
                valid_consent(&view, &MARKETING, now()).map(|c| c.consent_id.as_str()),
                Some("c-4")
            );
        }
    }

    /// A withdrawal arriving after a later one (a CRM's backfill) lowered
    /// the later one's date to its own: the latest withdrawal then read as
    /// the earlier, and a consent granted between the two counted (found by
    /// review). Each withdrawal keeps its date, in the store and the index.
    #[test]
    fn test_an_earlier_withdrawal_arriving_late_keeps_the_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        store
            .revoke_consents(
                key(),
                NUMBER,
                "acme",
                Some(Purpose::Marketing),
                days_ago(10),
                "t",
            )
            .unwrap();
        store
            .revoke_consents(
                key(),
                NUMBER,
                "acme",
                Some(Purpose::Marketing),
                days_ago(30),
                "t",
            )
            .unwrap();
        store
            .record_consent(key(), consent("between", 20), "t")
            .unwrap();
        let view = store.view(key(), NUMBER);
        assert!(
            valid_consent(&view, &MARKETING, now()).is_none(),
            "withdrawn 10 days ago: {view:?}"
        );
        drop(store);
        let store = ContactStore::open(dir.path()).unwrap();
        let view = store.view(key(), NUMBER);
        assert!(
            valid_consent(&view, &MARKETING, now()).is_none(),
            "{view:?}"
        );
    }

    /// A restore re-applies the whole ledger: a withdrawal ends only the
    /// consents granted at or before it, never a newer one in the backup.
    #[test]
    fn test_a_reapplied_withdrawal_leaves_later_consents_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        store
            .record_consent(key(), consent("c-old", 400), "t")
            .unwrap();
        store
            .record_consent(key(), consent("c-new", 10), "t")
            .unwrap();
        for _ in 0..2 {
            store
                .reapply_withdrawal(
                    key(),
                    NUMBER,
                    "acme",
                    Some(Purpose::Marketing),
                    days_ago(100),
                    days_ago(100),
                    None,
                    "t",
                )
                .unwrap();
        }
        drop(store);
        let store = ContactStore::open(dir.path()).unwrap();
        let records = store.subject_records(key(), NUMBER, "").unwrap();
        let revoked = |id: &str| {
            records
                .consents
                .iter()
                .find(|c| c.consent_id == id)
                .unwrap()
                .revoked_at
        };
        assert_eq!(revoked("c-old"), Some(days_ago(100)));
        assert_eq!(revoked("c-new"), None);
        assert_eq!(records.consents.len(), 2, "no marker: c-old carries it");
        let view = store.view(key(), NUMBER);
        assert_eq!(
            valid_consent(&view, &MARKETING, now()).map(|c| c.consent_id.as_str()),
            Some("c-new")
        );
    }

    /// A dry run counts through a read-only connection: it never waits for
    /// the store's write lock (which the server's opt-outs need), and works
    /// while another process holds it.
    #[test]
    fn test_a_dry_run_takes_no_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        store
            .record_consent(key(), consent("c-1", 400), "t")
            .unwrap();
        store
            .revoke_consents(
                key(),
                NUMBER,
                "acme",
                Some(Purpose::Marketing),
                days_ago(200),
                "t",
            )
            .unwrap();
        let mut expired = consent("c-2", 900);
        expired.controller = "beta".into();
        expired.expires_at = Some(days_ago(60));
        store.record_consent(key(), expired, "t").unwrap();
        let writer =
            rusqlite::Connection::open(crate::contacts::database_path(dir.path())).unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = std::time::Instant::now();
        let dry = store
            .purge_retention(&ceilings(30), now(), true, "t", serde_json::json!({}))
            .unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        writer.execute_batch("ROLLBACK").unwrap();
        let expect = PurgeCounts {
            consents_deleted: 1,
            withdrawals_kept: 1,
            corrections_kept: 0,
            relationships_deleted: 0,
            opt_outs_deleted: 0,
        };
        assert_eq!(dry, expect);
        let done = store
            .purge_retention(&ceilings(30), now(), false, "t", serde_json::json!({}))
            .unwrap();
        assert_eq!(done, expect);
        let again = store
            .purge_retention(&ceilings(30), now(), true, "t", serde_json::json!({}))
            .unwrap();
        assert_eq!(
            again,
            PurgeCounts::default(),
            "the kept withdrawal is not counted again"
        );
    }

    /// Nothing in force is deleted; records ended inside the ceiling stay;
    /// a dry run changes nothing; deleted rows leave the index at once, and a
    /// row number SQLite reuses does not merge with a deleted record.
    #[test]
    fn test_only_records_ended_past_the_ceiling_go_and_the_index_follows() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContactStore::open(dir.path()).unwrap();
        store
            .record_consent(key(), consent("in-force", 900), "t")
            .unwrap();
        let mut expired = consent("expired", 900);
        expired.controller = "beta".into();
        expired.expires_at = Some(days_ago(60));
        store.record_consent(key(), expired, "t").unwrap();
        for (id, ended) in [
            ("r-old", Some(60)),
            ("r-recent", Some(10)),
            ("r-ongoing", None),
        ] {
            store
                .record_relationship(
                    key(),
                    Relationship {
                        relationship_id: id.into(),
                        controller: "acme".into(),
                        number: NUMBER.into(),
                        kind: RelationshipKind::Customer,
                        // Another relationship than the ended ones (an
                        // ongoing copy of one keeps its end, see
                        // `test_a_purge_keeps_a_relationship_end_while_its_ongoing_copy_stays`).
                        started_at: days_ago(if ended.is_none() { 800 } else { 900 }),
                        ended_at: ended.map(days_ago),
                        recorded_at: days_ago(900),
                    },
                    "t",
                )
                .unwrap();
        }
        let opt_out = |id: &str, expires: Option<i64>| Suppression {
            suppression_id: id.into(),
            controller: "beta".into(),
            campaign_id: String::new(),
            number: NUMBER.into(),
            reason: "asked".into(),
            source: "phone".into(),
            added_by: "t".into(),
            created_at: days_ago(900),
            expires_at: expires.map(days_ago),
        };
        store
            .add_suppression(key(), opt_out("s-expired", Some(60)))
            .unwrap();
        store
            .add_suppression(key(), opt_out("s-forever", None))
            .unwrap();
        let dry = store
            .purge_retention(&ceilings(30), now(), true, "t", serde_json::json!({}))
            .unwrap();
        let expect = PurgeCounts {
            consents_deleted: 1,
            withdrawals_kept: 0,
            corrections_kept: 0,
            relationships_deleted: 1,
            opt_outs_deleted: 1,
        };
        assert_eq!(dry, expect);
        assert_eq!(
            store.view(key(), NUMBER).relationships.len(),
            3,
            "dry: nothing changed"
        );
        let done = store
            .purge_retention(&ceilings(30), now(), false, "t", serde_json::json!({}))
            .unwrap();
        assert_eq!(done, expect);
        let ids = |view: &crate::contacts::ContactView| {
            let mut ids: Vec<String> = view
                .consents
                .iter()
                .map(|c| c.consent_id.clone())
                .chain(view.relationships.iter().map(|r| r.relationship_id.clone()))
                .chain(view.suppressions.iter().map(|s| s.suppression_id.clone()))
                .collect();
            ids.sort();
            ids
        };
        let kept = ["in-force", "r-ongoing", "r-recent", "s-forever"];
        assert_eq!(ids(&store.view(key(), NUMBER)), kept);
        assert_eq!(
            store
                .purge_retention(&ceilings(30), now(), false, "t", serde_json::json!({}))
                .unwrap(),
            PurgeCounts::default(),
            "a second run finds nothing"
        );
        // The deleted opt-out was the highest row: a new opt-out of
        // another controller takes its number and must keep its own scope.
        let mut everyone = opt_out("s-everyone", None);
        everyone.controller = String::new();
        store.add_suppression(key(), everyone).unwrap();
        let view = store.view(key(), NUMBER);
        let s = view
            .suppressions
            .iter()
            .find(|s| s.suppression_id == "s-everyone")
            .unwrap();
        assert!(s.applies_to("acme", "any", now()), "{s:?}");
        drop(store);
        let store = ContactStore::open(dir.path()).unwrap();
        let mut after_restart = kept.to_vec();
        after_restart.push("s-everyone");
        after_restart.sort_unstable();
        assert_eq!(ids(&store.view(key(), NUMBER)), after_restart);
    }
}
