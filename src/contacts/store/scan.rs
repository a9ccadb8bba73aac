//! Reading the store's rows into index slots: every row at load, the rows
//! other processes added at each refresh, one row for a correction. Every
//! value read back is checked; a row that does not read stops the scan.

use std::mem::MaybeUninit;

use rusqlite::Connection;

use jiff::Timestamp;

use super::raw_rows::RawRows;
use super::{
    ContactStore, PARALLEL_SCAN, StoreError, hashed_suppressions, last_rowid, purpose,
    relationship_kind, unknown,
};
use crate::contacts::compact::{Slot, Table};
use crate::contacts::{ContactIndex, RelationshipKind, SubjectHash};
use crate::number::NumberKey;

/// The most rows a scan reserves room for at once (2^28 slots, 11 GiB of
/// address space): rowids left by deletions, or out of range, would
/// otherwise reserve memory for rows that are not there. Room reserved is
/// address space only until a slot is written; less, or none, when the
/// system refuses that much (the vector then grows as it fills).
const MOST_RESERVED: usize = 1 << 28;

/// Room for `rows` slots (see [`MOST_RESERVED`]).
pub(super) fn room_for(rows: i64) -> Vec<Slot> {
    let rows = usize::try_from(rows).map_or(0, |rows| rows.min(MOST_RESERVED));
    let mut slots = Vec::new();
    if slots.try_reserve_exact(rows).is_err() {
        let _ = slots.try_reserve_exact(rows.min(1 << 20));
    }
    slots
}

/// Where a scan puts the slots it reads.
pub(super) trait SlotSink {
    fn put(&mut self, slot: Slot) -> Result<(), StoreError>;
}

impl SlotSink for Vec<Slot> {
    fn put(&mut self, slot: Slot) -> Result<(), StoreError> {
        self.push(slot);
        Ok(())
    }
}

/// A part of a vector's reserved room given to one scan: as many places
/// as the scanned rowids' range, which no scan can overfill (rowids are
/// unique).
struct Region<'a> {
    places: &'a mut [MaybeUninit<Slot>],
    filled: usize,
}

impl<'a> Region<'a> {
    fn new(places: &'a mut [MaybeUninit<Slot>]) -> Region<'a> {
        Region { places, filled: 0 }
    }
}

impl SlotSink for Region<'_> {
    fn put(&mut self, slot: Slot) -> Result<(), StoreError> {
        let place = self.places.get_mut(self.filled).ok_or_else(|| {
            StoreError::Unreadable("a scan read more rows than its range of rowids".into())
        })?;
        place.write(slot);
        self.filled += 1;
        Ok(())
    }
}

/// The names interned while scanning, most recent first: a scan meets a
/// few controllers, campaigns and suppliers over and over, and a row has
/// two of them, so one remembered name would miss on every other lookup.
#[derive(Default)]
pub(super) struct NameCache {
    recent: Vec<(Box<[u8]>, u32)>,
}

/// Names a [`NameCache`] remembers; past that the interner answers.
const NAME_CACHE_SIZE: usize = 16;

impl NameCache {
    /// The interned id of `name`, the text of column `column`. A name
    /// remembered is matched on its bytes; only a new one is checked to
    /// be UTF-8 (every remembered one was).
    fn id(&mut self, index: &ContactIndex, name: &[u8], column: usize) -> Result<u32, StoreError> {
        if name.is_empty() {
            // Interned first of all, as 0 (no supplier, no campaign).
            return Ok(0);
        }
        if let Some(at) = self.recent.iter().position(|(known, _)| **known == *name) {
            let id = self.recent[at].1;
            if at > 0 {
                // Move to the front: the next row most likely repeats it.
                self.recent[..=at].rotate_right(1);
            }
            return Ok(id);
        }
        let text = utf8(name, column)?;
        let id = index.records.names.intern(text)?;
        if self.recent.len() == NAME_CACHE_SIZE {
            self.recent.pop();
        }
        self.recent.insert(0, (name.into(), id));
        Ok(id)
    }
}

impl ContactStore {
    /// The slots of the rows added since `watermarks` (which it advances),
    /// checking every value read back, in one vector; opt-outs kept by
    /// hash go straight to the index.
    ///
    /// Many rows are read on two threads straight into the room reserved
    /// for them (see [`Region`]): consents up to a middle rowid on this
    /// one; the opt-outs and the last consents on the other (its own
    /// connection, which sees every row up to the marks read first), about
    /// half the rows each. Joining two threads' vectors would copy every
    /// slot into memory the kernel must clear first (at 60 M records,
    /// 2.6 GB).
    pub(super) fn scan(
        &self,
        conn: &Connection,
        watermarks: &mut [i64; 3],
    ) -> Result<Vec<Slot>, StoreError> {
        let mut names = NameCache::default();
        // The last rows now: rows added meanwhile wait for the next scan.
        let last_consent = last_rowid(conn, "consents")?;
        let last_suppression = last_rowid(conn, "suppressions")?;
        let last_relationship = last_rowid(conn, "relationships")?;
        let first = watermarks[0];
        let consents = (last_consent - first).max(0);
        let suppressions = (last_suppression - watermarks[2]).max(0);
        let relationships = (last_relationship - watermarks[1]).max(0);
        // Saturating: a rowid at the end of SQLite's range (a row stored
        // outside dialgate) must not wrap the count. Beyond the room
        // reserved, one thread reads, and such a row stops the load
        // (`SlotError::RowOutOfRange`).
        let rows = consents
            .saturating_add(suppressions)
            .saturating_add(relationships);
        let mut slots = room_for(rows);
        let room = slots.capacity() as i64 >= rows;
        let erased = if consents.saturating_add(suppressions) > PARALLEL_SCAN && room {
            let middle =
                last_consent - ((consents + suppressions) / 2 - suppressions).clamp(0, consents);
            let after = watermarks[2];
            let spare = &mut slots.spare_capacity_mut()[..rows as usize];
            let lower_room = (middle - first).max(0) as usize;
            let upper_room = (suppressions + last_consent - middle) as usize;
            let (lower, rest) = spare.split_at_mut(lower_room);
            let (upper, related) = rest.split_at_mut(upper_room);
            let (lower_filled, (upper_filled, erased)) = std::thread::scope(|scope| {
                let other = scope.spawn(|| {
                    let reader = self.reader()?;
                    let mut names = NameCache::default();
                    let mut out = Region::new(upper);
                    let scanned = self
                        .scan_suppressions(&reader, &mut names, after, last_suppression, &mut out)
                        .and_then(|erased| {
                            self.scan_consents(
                                &reader,
                                &mut names,
                                middle,
                                last_consent,
                                &mut out,
                            )?;
                            Ok(erased)
                        });
                    self.readers.lock().expect("reader pool lock").push(reader);
                    scanned.map(|erased| (out.filled, erased))
                });
                let mut out = Region::new(lower);
                let lower = self.scan_consents(conn, &mut names, first, middle, &mut out);
                let upper = other.join().unwrap_or_else(|_| {
                    Err(StoreError::Unreadable("the scanning thread failed".into()))
                });
                lower?;
                Ok::<_, StoreError>((out.filled, upper?))
            })?;
            let mut out = Region::new(related);
            self.scan_relationships(conn, &mut names, watermarks[1], last_relationship, &mut out)?;
            let related_filled = out.filled;
            // Each region's slots follow the one before's (rows deleted
            // leave room at a region's end).
            let spare = &mut slots.spare_capacity_mut()[..rows as usize];
            let upper_start = lower_room;
            let related_start = lower_room + upper_room;
            spare.copy_within(upper_start..upper_start + upper_filled, lower_filled);
            spare.copy_within(
                related_start..related_start + related_filled,
                lower_filled + upper_filled,
            );
            // SAFETY: the first `lower_filled + upper_filled +
            // related_filled` places were written: each region's first
            // `filled`, moved down in order above.
            unsafe { slots.set_len(lower_filled + upper_filled + related_filled) };
            erased
        } else {
            let erased = self.scan_suppressions(
                conn,
                &mut names,
                watermarks[2],
                last_suppression,
                &mut slots,
            )?;
            self.scan_consents(conn, &mut names, first, last_consent, &mut slots)?;
            self.scan_relationships(
                conn,
                &mut names,
                watermarks[1],
                last_relationship,
                &mut slots,
            )?;
            erased
        };
        // Exactly the last rows now (lower than before if rows were
        // deleted): a row that later reuses a rowid is still read.
        watermarks[0] = last_consent;
        watermarks[2] = last_suppression;
        watermarks[1] = watermarks[1].max(last_relationship);
        let mut erased = erased;
        erased.sort_unstable();
        erased.dedup();
        for hash in erased {
            if let Ok(subject) = SubjectHash::try_from(hash.as_slice()) {
                self.index
                    .set_erased(subject, hashed_suppressions(conn, &subject)?)?;
            }
        }
        Ok(slots)
    }

    /// Puts the slots of the opt-outs with `after < rowid <= upto` in
    /// `out`; returns the subject hashes of those kept by hash only
    /// (erased subjects).
    pub(super) fn scan_suppressions(
        &self,
        conn: &Connection,
        names: &mut NameCache,
        after: i64,
        upto: i64,
        out: &mut impl SlotSink,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut erased: Vec<Vec<u8>> = Vec::new();
        let mut record_names = crate::contacts::RecordNames::default();
        let mut rows = RawRows::prepare(
            conn,
            "SELECT rowid, number_key, number_hash, controller, campaign_id, created_at_us, expires_at_us
             FROM suppressions WHERE rowid > ?1 AND rowid <= ?2 ORDER BY rowid",
            after,
            upto,
        )?;
        while let Some(row) = rows.next()? {
            let Some(key) = row.optional_int(1)? else {
                if let Some(hash) = row.optional_blob(2)? {
                    erased.push(hash.to_vec());
                }
                continue;
            };
            let controller = names.id(&self.index, row.text(3)?, 3)?;
            let campaign = names.id(&self.index, row.text(4)?, 4)?;
            record_names.note_binding(controller, campaign);
            out.put(Slot::new(
                NumberKey(key as u64),
                Table::Suppression,
                row.int(0)?,
                0,
                controller,
                campaign,
                crate::contacts::Instants {
                    t0: instant(row.int(5)?, "created_at_us")?,
                    t1: optional_instant(row.optional_int(6)?, "expires_at_us")?,
                    t2: crate::contacts::OPEN,
                },
            )?)?;
        }
        self.index.note_record_names(&record_names);
        Ok(erased)
    }

    /// Puts the slots of the consents with `after < rowid <= upto` in `out`.
    pub(super) fn scan_consents(
        &self,
        conn: &Connection,
        names: &mut NameCache,
        after: i64,
        upto: i64,
        out: &mut impl SlotSink,
    ) -> Result<(), StoreError> {
        let mut rows = RawRows::prepare(
            conn,
            "SELECT rowid, number_key, controller, purpose, granted_at_us, revoked_at_us, expires_at_us, supplier, method
             FROM consents WHERE rowid > ?1 AND rowid <= ?2 ORDER BY rowid",
            after,
            upto,
        )?;
        let mut record_names = crate::contacts::RecordNames::default();
        while let Some(row) = rows.next()? {
            let controller = names.id(&self.index, row.text(2)?, 2)?;
            let revoked = optional_instant(row.optional_int(5)?, "revoked_at_us")?;
            if revoked == crate::contacts::OPEN {
                record_names.note(controller);
            } else {
                record_names.note_binding(controller, 0);
            }
            out.put(Slot::new(
                NumberKey(row.int(1)? as u64),
                Table::Consent,
                row.int(0)?,
                crate::contacts::consent_detail(purpose(utf8(row.text(3)?, 3)?)?, row.text(8)?),
                controller,
                names.id(&self.index, row.text(7)?, 7)?,
                crate::contacts::Instants {
                    t0: instant(row.int(4)?, "granted_at_us")?,
                    t1: revoked,
                    t2: optional_instant(row.optional_int(6)?, "expires_at_us")?,
                },
            )?)?;
        }
        self.index.note_record_names(&record_names);
        Ok(())
    }

    /// Puts the slots of the relationships with `after < rowid <= upto`
    /// in `out`.
    pub(super) fn scan_relationships(
        &self,
        conn: &Connection,
        names: &mut NameCache,
        after: i64,
        upto: i64,
        out: &mut impl SlotSink,
    ) -> Result<(), StoreError> {
        let mut rows = RawRows::prepare(
            conn,
            "SELECT rowid, number_key, controller, kind, started_at_us, ended_at_us
             FROM relationships WHERE rowid > ?1 AND rowid <= ?2 ORDER BY rowid",
            after,
            upto,
        )?;
        let mut record_names = crate::contacts::RecordNames::default();
        while let Some(row) = rows.next()? {
            let kind = match relationship_kind(utf8(row.text(3)?, 3)?)? {
                RelationshipKind::Customer => 0,
                RelationshipKind::Inquiry => 1,
            };
            let controller = names.id(&self.index, row.text(2)?, 2)?;
            record_names.note(controller);
            out.put(Slot::new(
                NumberKey(row.int(1)? as u64),
                Table::Relationship,
                row.int(0)?,
                kind,
                controller,
                0,
                crate::contacts::Instants {
                    t0: instant(row.int(4)?, "started_at_us")?,
                    t1: optional_instant(row.optional_int(5)?, "ended_at_us")?,
                    t2: crate::contacts::OPEN,
                },
            )?)?;
        }
        self.index.note_record_names(&record_names);
        Ok(())
    }
}

/// Text read back as UTF-8 (as rusqlite's getters check it).
fn utf8(bytes: &[u8], column: usize) -> Result<&str, StoreError> {
    std::str::from_utf8(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
            .into()
    })
}

/// An instant read back, in microseconds: out of range is an error, not
/// the epoch (as [`super::ts_column`]).
fn instant(us: i64, column: &'static str) -> Result<i64, StoreError> {
    Timestamp::from_microsecond(us)
        .map(|t| t.as_microsecond())
        .map_err(|_| unknown(column, us, "not an instant"))
}

/// An optional instant read back, as slots hold it
/// ([`crate::contacts::OPEN`] for none).
fn optional_instant(us: Option<i64>, column: &'static str) -> Result<i64, StoreError> {
    us.map_or(Ok(crate::contacts::OPEN), |us| instant(us, column))
}
