//! The consent ids a first load inserted more than once, found without
//! sorting the store's rows: a first load inserts its consents with their
//! id index set aside, in file order, one rowid after the other, and must
//! keep the first of each id before the unique index is built again.
//!
//! Each insert is remembered as one 64-bit word: 40 bits of a hash of the
//! id above the insert's position. Sorted, the words of one id lie side by
//! side; only those sharing a hash are read back from the store and
//! compared (a shared hash of two ids is only a wasted read). Past
//! [`TRACKED`] inserts nothing is remembered and the caller falls back on
//! SQLite (see `store.rs` `index_unique_ids`).

use std::hash::BuildHasher;

/// Inserts remembered at most (8 bytes each: 128 MiB; unit tests: 4,096,
/// so that their larger loads take the fallback).
pub(crate) const TRACKED: usize = if cfg!(test) { 1 << 12 } else { 1 << 24 };

/// Bits of a word that hold the insert's position.
const POSITION_BITS: u32 = 24;

/// A record inserted after another of its id: the rowids of both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct IdCopy {
    pub first: i64,
    pub copy: i64,
}

#[derive(Debug, Default)]
pub(crate) struct RepeatedIds {
    /// Seeded anew for each load: a file cannot be made of ids that share
    /// hashes (each such run is read back and compared one by one).
    hasher: foldhash::quality::RandomState,
    words: Vec<u64>,
    /// The rowid of the first insert.
    first_rowid: i64,
    /// More inserts than [`TRACKED`]: nothing can be told.
    overflowed: bool,
}

impl RepeatedIds {
    /// Remembers an insert of `id` at `rowid`; inserts must come one rowid
    /// after the other, else nothing can be told.
    pub(crate) fn inserted(&mut self, id: &str, rowid: i64) {
        if self.overflowed {
            return;
        }
        let position = self.words.len();
        if position == 0 {
            self.first_rowid = rowid;
        }
        if position >= TRACKED || rowid != self.first_rowid + position as i64 {
            self.overflowed = true;
            self.words = Vec::new();
            return;
        }
        let hash = self.hasher.hash_one(id);
        self.words
            .push((hash >> POSITION_BITS << POSITION_BITS) | position as u64);
    }

    /// Every insert but the first of each id (in no order), each with the
    /// first of its id; `None` when they cannot be told (too many inserts,
    /// or not one rowid after the other). Rows are read back with `read`
    /// (only those whose hash another shares), `id` names a row's id, and
    /// `met` is called with the first row of each copy's id and the copy's
    /// (rows read anyway: a caller compares them there, without a second
    /// read).
    pub(crate) fn later_copies<R>(
        mut self,
        mut read: impl FnMut(i64) -> rusqlite::Result<R>,
        id: impl Fn(&R) -> &str,
        mut met: impl FnMut(&R, &R),
    ) -> rusqlite::Result<Option<Vec<IdCopy>>> {
        if self.overflowed {
            return Ok(None);
        }
        self.words.sort_unstable();
        let hash = |word: u64| word >> POSITION_BITS;
        let rowid = |word: u64| self.first_rowid + (word & ((1 << POSITION_BITS) - 1)) as i64;
        let mut later = Vec::new();
        for run in self.words.chunk_by(|a, b| hash(*a) == hash(*b)) {
            if run.len() < 2 {
                continue;
            }
            // The run is in insert order (position in the low bits): the
            // first row of each id read here is its first insert.
            let mut seen: Vec<(R, i64)> = Vec::new();
            for &word in run {
                let row = read(rowid(word))?;
                match seen.iter().find(|(first, _)| id(first) == id(&row)) {
                    Some((first_row, first)) => {
                        met(first_row, &row);
                        later.push(IdCopy {
                            first: *first,
                            copy: rowid(word),
                        });
                    }
                    None => seen.push((row, rowid(word))),
                }
            }
        }
        Ok(Some(later))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// The copies `repeated` tells in `conn`'s consents, and the ids of
    /// the rows `met` was called with (first, copy).
    #[allow(clippy::type_complexity)]
    fn told(
        repeated: RepeatedIds,
        conn: &Connection,
    ) -> (Option<Vec<IdCopy>>, Vec<(String, String)>) {
        let mut statement = conn
            .prepare("SELECT consent_id FROM consents WHERE rowid = ?1")
            .unwrap();
        let mut met = Vec::new();
        let copies = repeated
            .later_copies(
                |rowid| statement.query_row([rowid], |r| r.get::<_, String>(0)),
                |id| id.as_str(),
                |first, again| met.push((first.clone(), again.clone())),
            )
            .unwrap();
        (copies, met)
    }

    fn store(ids: &[&str]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE consents (consent_id TEXT NOT NULL)")
            .unwrap();
        for id in ids {
            conn.execute("INSERT INTO consents (consent_id) VALUES (?1)", [id])
                .unwrap();
        }
        conn
    }

    #[test]
    fn test_every_copy_after_the_first_of_an_id_is_found() {
        let ids = ["a", "b", "a", "c", "b", "a", "d"];
        let conn = store(&ids);
        let mut repeated = RepeatedIds::default();
        for (i, id) in ids.iter().enumerate() {
            repeated.inserted(id, i as i64 + 1);
        }
        let (later, met) = told(repeated, &conn);
        let mut later = later.unwrap();
        later.sort_unstable_by_key(|c| c.copy);
        let copy = |first, copy| IdCopy { first, copy };
        assert_eq!(later, vec![copy(1, 3), copy(2, 5), copy(1, 6)]);
        assert_eq!(met.len(), 3);
        assert!(met.iter().all(|(first, again)| first == again), "{met:?}");
    }

    #[test]
    fn test_ids_sharing_a_hash_are_told_apart_by_their_text() {
        // Every word made to share one hash: only the text tells the ids apart.
        let ids = ["x", "y", "x", "z"];
        let conn = store(&ids);
        let repeated = RepeatedIds {
            words: (0..4).collect(),
            first_rowid: 1,
            ..RepeatedIds::default()
        };
        let (later, met) = told(repeated, &conn);
        assert_eq!(later, Some(vec![IdCopy { first: 1, copy: 3 }]));
        assert_eq!(met, [("x".to_string(), "x".to_string())]);
    }

    #[test]
    fn test_nothing_is_told_when_rowids_skip_or_inserts_overflow() {
        let conn = store(&["a", "a"]);
        let mut skipped = RepeatedIds::default();
        skipped.inserted("a", 1);
        skipped.inserted("a", 3);
        assert_eq!(told(skipped, &conn).0, None);
        let mut full = RepeatedIds {
            words: vec![0; TRACKED],
            first_rowid: 1,
            ..RepeatedIds::default()
        };
        full.inserted("a", 1 + TRACKED as i64);
        assert_eq!(told(full, &conn).0, None);
    }
}
