//! The opt-out ids a first load inserted so far, so that a copy of one is
//! told before it is inserted: a first load inserts its opt-outs with their
//! id index set aside, and a copy inserted, then deleted before the index
//! is built again, cost 15 µs or more (39 s for the 2.1 M copies of a file
//! of 10 M opt-outs).
//!
//! Each id is remembered as one 64-bit word: the top 40 bits of a hash of
//! the id (seeded anew for each load) above the offset of its row from the
//! load's first (a table of 9 bytes per slot, 151 MiB at 10 M ids). A word
//! met again is only a candidate: the caller reads the row back and the
//! ids are compared. An id whose 40 bits an earlier id has (a few in 10 M)
//! is remembered by its text. Past [`TRACKED`] ids, or rows that do not
//! come one after the other, nothing more can be promised: the caller
//! must then check the ids with SQLite (see `store.rs`
//! `BulkImport::settle_suppression_copies`).

use std::collections::HashMap;
use std::hash::BuildHasher;

/// Ids remembered at most (unit tests: 4, so that their loads go past it
/// too).
pub(crate) const TRACKED: usize = if cfg!(test) { 4 } else { 1 << OFFSET_BITS };

/// Bits of a word that hold the row's offset.
const OFFSET_BITS: u32 = 24;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

#[derive(Debug, Default)]
pub(crate) struct SeenIds {
    hasher: foldhash::quality::RandomState,
    words: hashbrown::HashTable<u64>,
    /// Ids whose 40 bits an earlier id has, with their rowids.
    sharing: HashMap<String, i64>,
    first_rowid: Option<i64>,
    /// Some id was not remembered: copies may have gone in unseen.
    incomplete: bool,
    /// Tests: every id hashed by this instead (to make ids share bits).
    #[cfg(test)]
    fixed: Option<fn(&str) -> u64>,
}

impl SeenIds {
    /// The row of `id` if it was inserted before, read with `read` (a
    /// row whose id, told by `id_of`, is another is not it).
    pub(crate) fn find<T, E>(
        &self,
        id: &str,
        mut read: impl FnMut(i64) -> Result<T, E>,
        id_of: impl Fn(&T) -> &str,
    ) -> Result<Option<T>, E> {
        let top = self.top_bits(id);
        let Some(word) = self
            .words
            .find(placement(top), |w| *w >> OFFSET_BITS == top)
        else {
            return Ok(None);
        };
        let Some(first) = self.first_rowid else {
            return Ok(None);
        };
        let row = read(first + (word & OFFSET_MASK) as i64)?;
        if id_of(&row) == id {
            return Ok(Some(row));
        }
        match self.sharing.get(id) {
            Some(&rowid) => read(rowid).map(Some),
            None => Ok(None),
        }
    }

    /// Remembers that `id` was inserted at `rowid` (after
    /// [`SeenIds::find`] found it nowhere).
    pub(crate) fn inserted(&mut self, id: &str, rowid: i64) {
        if self.incomplete {
            return;
        }
        let first = *self.first_rowid.get_or_insert(rowid);
        let offset = match rowid.checked_sub(first).map(u64::try_from) {
            Some(Ok(offset)) if offset <= OFFSET_MASK => offset,
            _ => return self.forget(),
        };
        if self.words.len() + self.sharing.len() >= TRACKED {
            return self.forget();
        }
        let top = self.top_bits(id);
        if self
            .words
            .find(placement(top), |w| *w >> OFFSET_BITS == top)
            .is_some()
        {
            self.sharing.insert(id.to_string(), rowid);
            return;
        }
        self.words
            .insert_unique(placement(top), top << OFFSET_BITS | offset, |w| {
                placement(*w >> OFFSET_BITS)
            });
    }

    /// Whether every id inserted was remembered: then no copy went in
    /// unseen.
    pub(crate) fn complete(&self) -> bool {
        !self.incomplete
    }

    fn forget(&mut self) {
        self.incomplete = true;
        self.words = hashbrown::HashTable::new();
        self.sharing = HashMap::new();
    }

    /// The top 40 bits of `id`'s hash.
    fn top_bits(&self, id: &str) -> u64 {
        #[cfg(test)]
        if let Some(fixed) = self.fixed {
            return fixed(id) >> OFFSET_BITS;
        }
        self.hasher.hash_one(id) >> OFFSET_BITS
    }
}

/// Where the table places a word's 40 bits: spread over all 64 (its
/// buckets are told by the low bits, its tags by the top 7).
fn placement(top: u64) -> u64 {
    top.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows by rowid, as the store would read them back.
    fn reader(rows: &[(i64, &'static str)]) -> impl FnMut(i64) -> Result<&'static str, String> {
        let rows = rows.to_vec();
        move |rowid| {
            rows.iter()
                .find(|(r, _)| *r == rowid)
                .map(|(_, id)| *id)
                .ok_or(format!("no row {rowid}"))
        }
    }

    fn find(seen: &SeenIds, id: &str, rows: &[(i64, &'static str)]) -> Option<&'static str> {
        seen.find(id, reader(rows), |row| row).unwrap()
    }

    #[test]
    fn test_an_id_inserted_is_found_at_its_row_and_others_are_not() {
        let mut seen = SeenIds::default();
        let rows = [(7, "a"), (8, "b")];
        assert_eq!(find(&seen, "a", &rows), None);
        seen.inserted("a", 7);
        seen.inserted("b", 8);
        assert_eq!(find(&seen, "a", &rows), Some("a"));
        assert_eq!(find(&seen, "b", &rows), Some("b"));
        assert_eq!(find(&seen, "c", &rows), None);
        assert!(seen.complete());
    }

    #[test]
    fn test_ids_sharing_their_bits_are_told_apart_by_their_text() {
        let mut seen = SeenIds {
            fixed: Some(|_| 42 << OFFSET_BITS),
            ..SeenIds::default()
        };
        let rows = [(1, "a"), (2, "b"), (3, "c")];
        seen.inserted("a", 1);
        assert_eq!(find(&seen, "b", &rows), None, "b shares a's bits only");
        seen.inserted("b", 2);
        assert_eq!(find(&seen, "a", &rows), Some("a"));
        assert_eq!(find(&seen, "b", &rows), Some("b"));
        assert_eq!(find(&seen, "c", &rows), None);
        assert!(seen.complete());
    }

    #[test]
    fn test_too_many_ids_or_rows_out_of_range_leave_it_incomplete() {
        let rows = [(1, "a")];
        let mut full = SeenIds::default();
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            full.inserted(id, i as i64 + 1);
        }
        assert!(!full.complete());
        assert_eq!(
            find(&full, "a", &rows),
            None,
            "nothing kept once incomplete"
        );
        let mut below = SeenIds::default();
        below.inserted("a", 5);
        below.inserted("b", 4);
        assert!(!below.complete());
        let mut far = SeenIds::default();
        far.inserted("a", 1);
        far.inserted("b", 2 + OFFSET_MASK as i64);
        assert!(!far.complete());
    }
}
