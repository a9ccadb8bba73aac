//! The opt-out ids a first load inserted so far, so that a copy of one is
//! told before it is inserted: a first load inserts its opt-outs with their
//! id index set aside, and a copy inserted, then deleted before the index
//! is built again, cost 15 µs or more (39 s for the 2.1 M copies of a file
//! of 10 M opt-outs).
//!
//! Each id is remembered as a 64-bit hash (seeded anew for each load)
//! with the rowid it was inserted at: 12 bytes and a control byte of the
//! table per id. A hash met again is only a candidate: the caller reads
//! the row back and compares the ids. Two ids sharing a hash, or more ids
//! than [`TRACKED`], and nothing more can be promised: the caller must
//! then check the ids with SQLite (see `store.rs`
//! `BulkImport::settle_suppression_copies`).

use std::collections::HashMap;
use std::hash::BuildHasher;

/// Ids remembered at most (about 220 MiB of table at 16 M; unit tests:
/// 4, so that their loads overflow it too).
pub(crate) const TRACKED: usize = if cfg!(test) { 4 } else { 1 << 24 };

#[derive(Debug, Default)]
pub(crate) struct SeenIds {
    hasher: foldhash::quality::RandomState,
    /// By hash: the offset of the rowid from `first_rowid`.
    offsets: HashMap<u64, u32, foldhash::fast::RandomState>,
    first_rowid: Option<i64>,
    /// Some id was not remembered: copies may have gone in unseen.
    incomplete: bool,
}

impl SeenIds {
    /// The rowid of an id remembered with `id`'s hash, if any: the row
    /// may hold another id sharing the hash (see [`SeenIds::shared`]).
    pub(crate) fn candidate(&self, id: &str) -> Option<i64> {
        let offset = self.offsets.get(&self.hasher.hash_one(id))?;
        Some(self.first_rowid? + i64::from(*offset))
    }

    /// Remembers that `id` was inserted at `rowid` (after
    /// [`SeenIds::candidate`] found none with its hash).
    pub(crate) fn inserted(&mut self, id: &str, rowid: i64) {
        if self.incomplete {
            return;
        }
        let first = *self.first_rowid.get_or_insert(rowid);
        let offset = rowid
            .checked_sub(first)
            .and_then(|offset| u32::try_from(offset).ok());
        match offset {
            Some(offset) if self.offsets.len() < TRACKED => {
                self.offsets.insert(self.hasher.hash_one(id), offset);
            }
            _ => self.forget(),
        }
    }

    /// An id was inserted whose hash another id has: it is not
    /// remembered, and copies of it may go in unseen.
    pub(crate) fn shared(&mut self) {
        self.forget();
    }

    /// Whether every id inserted was remembered: then no copy went in.
    pub(crate) fn complete(&self) -> bool {
        !self.incomplete
    }

    fn forget(&mut self) {
        self.incomplete = true;
        self.offsets = HashMap::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_an_id_inserted_is_found_at_its_rowid_and_others_are_not() {
        let mut seen = SeenIds::default();
        assert_eq!(seen.candidate("a"), None);
        seen.inserted("a", 7);
        seen.inserted("b", 9);
        assert_eq!(seen.candidate("a"), Some(7));
        assert_eq!(seen.candidate("b"), Some(9));
        assert_eq!(seen.candidate("c"), None);
        assert!(seen.complete());
    }

    #[test]
    fn test_too_many_ids_a_shared_hash_or_a_rowid_out_of_range_leave_it_incomplete() {
        let mut full = SeenIds::default();
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            full.inserted(id, i as i64 + 1);
        }
        assert!(!full.complete());
        assert_eq!(full.candidate("a"), None, "nothing kept once incomplete");
        let mut shared = SeenIds::default();
        shared.inserted("a", 1);
        shared.shared();
        assert!(!shared.complete());
        let mut below = SeenIds::default();
        below.inserted("a", 5);
        below.inserted("b", 4);
        assert!(!below.complete());
        let mut far = SeenIds::default();
        far.inserted("a", 1);
        far.inserted("b", 1 + (1 << 32));
        assert!(!far.complete());
    }
}
