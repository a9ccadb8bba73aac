//! Rectification (GDPR art. 16): a consent or a relationship corrected in
//! place, under its id (decisions that cited it still name it), with the
//! record before and after in the change trail, the index updated in the
//! same step, and a row in `corrections` so that every other process's
//! index follows (its rowid scans only see new rows).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{
    CONSENT_COLUMNS, ContactStore, RELATIONSHIP_COLUMNS, StoreError, read_consent,
    read_relationship, us,
};
use crate::contacts::compact::{Slot, Table};
use crate::contacts::{Consent, Relationship};
use crate::number::NumberKey;

/// A stored record: its row, the number it is under and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored<T> {
    pub(super) row: i64,
    pub key: NumberKey,
    pub record: T,
}

/// One correction: the record as read, as it must become, and why.
#[derive(Debug, Clone)]
pub enum Rectification {
    Consent {
        before: Box<Stored<Consent>>,
        after: Box<(NumberKey, Consent)>,
        reason: String,
    },
    Relationship {
        before: Box<Stored<Relationship>>,
        after: Box<(NumberKey, Relationship)>,
        reason: String,
    },
}

/// The record at `row` as the store holds it now.
fn current(tx: &Connection, table: Table, row: i64) -> Result<Option<Current>, StoreError> {
    Ok(match table {
        Table::Consent => tx
            .query_row(
                &format!("SELECT {CONSENT_COLUMNS} FROM consents WHERE rowid = ?1"),
                [row],
                |r| Ok(read_consent(r)),
            )
            .optional()?
            .transpose()?
            .map(|(key, c)| Current::Consent(key, c)),
        Table::Relationship => tx
            .query_row(
                &format!("SELECT {RELATIONSHIP_COLUMNS} FROM relationships WHERE rowid = ?1"),
                [row],
                |r| Ok(read_relationship(r)),
            )
            .optional()?
            .transpose()?
            .map(|(key, r)| Current::Relationship(key, r)),
        Table::Suppression => None,
    })
}

#[derive(PartialEq)]
enum Current {
    Consent(NumberKey, Consent),
    Relationship(NumberKey, Relationship),
}

/// A record as the trail shows it: its fields, the number masked (the
/// trail holds no raw number; a corrected number shows as a change of its
/// masked form).
fn trail_json<T: serde::Serialize>(record: &T) -> serde_json::Value {
    let mut json = serde_json::to_value(record).unwrap_or_default();
    if let Some(number) = json.get_mut("number")
        && let Some(raw) = number.as_str()
    {
        *number = crate::number::mask(raw).into();
    }
    json
}

impl ContactStore {
    /// The consent stored under `id`, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn consent_by_id(&self, id: &str) -> Result<Option<Stored<Consent>>, StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        conn.query_row(
            &format!("SELECT rowid, {CONSENT_COLUMNS} FROM consents WHERE consent_id = ?1"),
            [id],
            |r| Ok((r.get::<_, i64>(0)?, read_consent_after_rowid(r))),
        )
        .optional()?
        .map(|(row, read)| read.map(|(key, record)| Stored { row, key, record }))
        .transpose()
    }

    /// The relationship stored under `id`, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn relationship_by_id(&self, id: &str) -> Result<Option<Stored<Relationship>>, StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        conn.query_row(
            &format!(
                "SELECT rowid, {RELATIONSHIP_COLUMNS} FROM relationships WHERE relationship_id = ?1"
            ),
            [id],
            |r| Ok((r.get::<_, i64>(0)?, read_relationship_after_rowid(r))),
        )
        .optional()?
        .map(|(row, read)| read.map(|(key, record)| Stored { row, key, record }))
        .transpose()
    }

    /// The other records of `stored`'s relationship: the same number,
    /// controller, kind and start (the contract API records a
    /// relationship's end as another record, and the rules read them as
    /// one relationship).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn relationship_copies(
        &self,
        stored: &Stored<Relationship>,
    ) -> Result<Vec<Stored<Relationship>>, StoreError> {
        let conn = self.conn.lock().expect("contact db lock");
        let mut statement = conn.prepare(&format!(
            "SELECT rowid, {RELATIONSHIP_COLUMNS} FROM relationships
             WHERE {SAME_RELATIONSHIP} AND rowid != ?5 ORDER BY rowid"
        ))?;
        let record = &stored.record;
        let rows = statement.query_map(
            rusqlite::params![
                stored.key.0 as i64,
                record.controller,
                record.kind.as_str(),
                record.started_at.as_microsecond(),
                stored.row
            ],
            |r| Ok((r.get::<_, i64>(0)?, read_relationship_after_rowid(r))),
        )?;
        let mut copies = Vec::new();
        for row in rows {
            let (row, read) = row?;
            let (key, record) = read?;
            copies.push(Stored { row, key, record });
        }
        Ok(copies)
    }

    /// The instants at which the controller's consents of `purpose` for
    /// the number were withdrawn: stored with its consents, or kept by
    /// hash by a restore.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn withdrawals(
        &self,
        (key, e164): (NumberKey, &str),
        controller: &str,
        purpose: crate::model::Purpose,
    ) -> Result<Vec<jiff::Timestamp>, StoreError> {
        // Those a restore kept by hash (for numbers the backup did not
        // hold) bind too (found by review), read from the store: a store
        // opened without its index (`consent rectify`) has none in memory
        // (found by review: the command moved grants past them).
        let kept = self.withdrawals_kept_by_hash(e164, controller, purpose)?;
        let conn = self.conn.lock().expect("contact db lock");
        let mut statement = conn.prepare(
            "SELECT DISTINCT revoked_at_us FROM consents
             WHERE number_key = ?1 AND controller = ?2 AND purpose = ?3 AND revoked_at_us IS NOT NULL",
        )?;
        let instants = statement
            .query_map(params![key.0 as i64, controller, purpose.as_str()], |r| {
                r.get::<_, i64>(0)
            })?
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        let mut all = instants
            .into_iter()
            .map(|us| {
                jiff::Timestamp::from_microsecond(us)
                    .map_err(|_| super::unknown("revoked_at_us", us, "not an instant"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        all.extend(kept);
        Ok(all)
    }

    /// Applies `corrections` in one transaction, then to the index: all or
    /// none. A record that changed since it was read refuses the lot
    /// ([`StoreError::Changed`]): the corrections were computed from it.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    pub fn rectify(
        &self,
        corrections: &[Rectification],
        actor: &str,
        now: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        self.write(
            |tx| {
                refuse_parted_relationships(tx, corrections)?;
                let mut moves = Vec::with_capacity(corrections.len());
                for correction in corrections {
                    moves.push(self.rectify_one(tx, correction, actor, now)?);
                }
                Ok(moves)
            },
            |moves| {
                for (old_key, table, row, slot) in moves {
                    self.index.remove(*old_key, *table, *row);
                    self.index.add(*slot);
                }
            },
        )?;
        Ok(())
    }

    /// Rewrites one row; returns where its record was and its new slot.
    fn rectify_one(
        &self,
        tx: &Transaction<'_>,
        correction: &Rectification,
        actor: &str,
        now: jiff::Timestamp,
    ) -> Result<(NumberKey, Table, i64, Slot), StoreError> {
        let (table, row, old_key, new_key, id) = match correction {
            Rectification::Consent { before, after, .. } => (
                Table::Consent,
                before.row,
                before.key,
                after.0,
                &before.record.consent_id,
            ),
            Rectification::Relationship { before, after, .. } => (
                Table::Relationship,
                before.row,
                before.key,
                after.0,
                &before.record.relationship_id,
            ),
        };
        let expected = match correction {
            Rectification::Consent { before, .. } => {
                Current::Consent(before.key, before.record.clone())
            }
            Rectification::Relationship { before, .. } => {
                Current::Relationship(before.key, before.record.clone())
            }
        };
        if current(tx, table, row)? != Some(expected) {
            return Err(StoreError::Changed(id.clone()));
        }
        let (slot, action, before_json, after_json, reason, before_number, after_number) =
            match correction {
                Rectification::Consent {
                    before,
                    after,
                    reason,
                } => {
                    let c = &after.1;
                    tx.execute(
                        "UPDATE consents SET number = ?2, number_key = ?3, purpose = ?4,
                             granted_at_us = ?5, expires_at_us = ?6, source = ?7, supplier = ?8,
                             method = ?9, notice_version = ?10, evidence_ref = ?11
                         WHERE rowid = ?1",
                        params![
                            row,
                            c.number,
                            new_key.0 as i64,
                            c.purpose.as_str(),
                            us(c.granted_at),
                            c.expires_at.map(us),
                            c.source,
                            c.supplier,
                            c.method,
                            c.notice_version,
                            c.evidence_ref,
                        ],
                    )?;
                    (
                        self.index.consent_slot(new_key, row, c)?,
                        "consent.rectified",
                        trail_json(&before.record),
                        trail_json(c),
                        reason,
                        &before.record.number,
                        &c.number,
                    )
                }
                Rectification::Relationship {
                    before,
                    after,
                    reason,
                } => {
                    let r = &after.1;
                    tx.execute(
                        "UPDATE relationships SET number = ?2, number_key = ?3, kind = ?4,
                             started_at_us = ?5, ended_at_us = ?6
                         WHERE rowid = ?1",
                        params![
                            row,
                            r.number,
                            new_key.0 as i64,
                            r.kind.as_str(),
                            us(r.started_at),
                            r.ended_at.map(us),
                        ],
                    )?;
                    (
                        self.index.relationship_slot(new_key, row, r)?,
                        "relationship.rectified",
                        trail_json(&before.record),
                        trail_json(r),
                        reason,
                        &before.record.number,
                        &r.number,
                    )
                }
            };
        tx.execute(
            "INSERT INTO corrections (tbl, row, old_key, record_id) VALUES (?1, ?2, ?3, ?4)",
            params![
                match table {
                    Table::Consent => "consents",
                    _ => "relationships",
                },
                row,
                old_key.0 as i64,
                id
            ],
        )?;
        let mut after_json = after_json;
        if let Some(fields) = after_json.as_object_mut() {
            fields.insert("reason".into(), reason.as_str().into());
        }
        let new_subject = self.index.subject_hash(after_number);
        Self::event(
            tx,
            now,
            actor,
            action,
            &new_subject,
            before_json.clone(),
            after_json,
        )?;
        if before_number != after_number {
            // The record left the number it was recorded under: that
            // number's trail says so (and no longer shows it as held).
            let old_subject = self.index.subject_hash(before_number);
            Self::event(
                tx,
                now,
                actor,
                action,
                &old_subject,
                before_json,
                serde_json::json!({"moved_to_another_number": id, "reason": reason}),
            )?;
        }
        Ok((old_key, table, row, slot))
    }
}

/// [`read_consent`] of a row whose first column is the rowid.
fn read_consent_after_rowid(row: &rusqlite::Row<'_>) -> Result<(NumberKey, Consent), StoreError> {
    super::read_consent_at(row, 1)
}

/// [`read_relationship`] of a row whose first column is the rowid.
fn read_relationship_after_rowid(
    row: &rusqlite::Row<'_>,
) -> Result<(NumberKey, Relationship), StoreError> {
    super::read_relationship_at(row, 1)
}

/// The records of one relationship (the contract API records its end as
/// another record): the same number key, controller, kind and start, as
/// `?1` to `?4`. The rules read them as one (`exempting_relationship`).
const SAME_RELATIONSHIP: &str =
    "number_key = ?1 AND controller = ?2 AND kind = ?3 AND started_at_us = ?4";

/// Refuses corrections that move a relationship's number, kind or start
/// while another record of it (same number, controller, kind and start, see
/// [`ContactStore::relationship_copies`]) stays behind: one recorded after
/// the copies were read (found by review), parted from the move, would
/// exempt on its own. Read in the correction's transaction.
fn refuse_parted_relationships(
    tx: &Transaction<'_>,
    corrections: &[Rectification],
) -> Result<(), StoreError> {
    let moved_rows: std::collections::HashSet<i64> = corrections
        .iter()
        .filter_map(|c| match c {
            Rectification::Relationship { before, .. } => Some(before.row),
            Rectification::Consent { .. } => None,
        })
        .collect();
    for correction in corrections {
        let Rectification::Relationship { before, after, .. } = correction else {
            continue;
        };
        let old = &before.record;
        if after.0 == before.key && after.1.kind == old.kind && after.1.started_at == old.started_at
        {
            continue;
        }
        let mut statement = tx.prepare_cached(&format!(
            "SELECT rowid FROM relationships WHERE {SAME_RELATIONSHIP}"
        ))?;
        let rows = statement.query_map(
            rusqlite::params![
                before.key.0 as i64,
                old.controller,
                old.kind.as_str(),
                old.started_at.as_microsecond()
            ],
            |r| r.get::<_, i64>(0),
        )?;
        for row in rows {
            if !moved_rows.contains(&row?) {
                return Err(StoreError::Changed(old.relationship_id.clone()));
            }
        }
    }
    Ok(())
}
