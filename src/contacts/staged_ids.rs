//! The ids a staged import met more than once, told as it stages them, so
//! that its check of copies in the file (a `GROUP BY` of the staged rows,
//! see `store.rs` `refuse_reused_consent_ids` and
//! `ContactStore::refuse_reused_suppression_ids`) groups only the rows of
//! those ids rather than sorting every staged row (2.4 s of a 10 s import
//! of 2 M consents).
//!
//! Each id is remembered by a 64-bit hash (seeded anew for each import):
//! a table of about 9 to 18 bytes per id, up to 300 MB at [`TRACKED`]
//! ids. An id whose hash was met before is kept by its text, once: every
//! id met more than once is among those kept (with, rarely, an id met
//! once whose hash another shares, which the check then groups for
//! nothing; each id is kept by its own text, so two ids sharing a hash
//! are both kept when each is met again). Past [`TRACKED`] ids nothing is
//! promised and every row is grouped.

use std::hash::BuildHasher;

/// Ids remembered at most (unit tests: 4, so that their imports go past it
/// too).
pub(crate) const TRACKED: usize = if cfg!(test) { 4 } else { 1 << 24 };

#[derive(Debug, Default)]
pub(crate) struct StagedIds {
    hasher: foldhash::quality::RandomState,
    hashes: hashbrown::HashTable<u64>,
    /// Ids whose hash was met before, each once.
    again: std::collections::HashSet<String>,
    /// More ids than [`TRACKED`]: any may have been met twice.
    overflowed: bool,
}

impl StagedIds {
    /// Remembers a staged `id`.
    pub(crate) fn staged(&mut self, id: &str) {
        if self.overflowed {
            return;
        }
        if self.hashes.len() + self.again.len() >= TRACKED {
            self.overflowed = true;
            self.hashes = hashbrown::HashTable::new();
            self.again = std::collections::HashSet::new();
            return;
        }
        let hash = self.hasher.hash_one(id);
        match self.hashes.entry(hash, |h| *h == hash, |h| *h) {
            hashbrown::hash_table::Entry::Occupied(_) => {
                if !self.again.contains(id) {
                    self.again.insert(id.to_string());
                }
            }
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(hash);
            }
        }
    }

    /// The ids to group: every id met more than once is among them;
    /// `None` when they could not be told (every row must be grouped).
    pub(crate) fn repeated(&self) -> Option<&std::collections::HashSet<String>> {
        (!self.overflowed).then_some(&self.again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ids_met_more_than_once_are_told() {
        let mut ids = StagedIds::default();
        for id in ["a", "b", "a", "a"] {
            ids.staged(id);
        }
        let repeated: Vec<&String> = ids.repeated().unwrap().iter().collect();
        assert_eq!(repeated, ["a"], "each id kept once");
        let mut once = StagedIds::default();
        for id in ["a", "b", "c"] {
            once.staged(id);
        }
        assert!(once.repeated().unwrap().is_empty());
    }

    #[test]
    fn test_past_the_limit_nothing_is_told() {
        let mut ids = StagedIds::default();
        for id in ["a", "b", "c", "d", "e"] {
            ids.staged(id);
        }
        assert_eq!(ids.repeated(), None);
    }
}
