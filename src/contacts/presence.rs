//! Which numbers may have contact records: a lock-free bit set in front of
//! the index's concurrent map. Most numbers checked have no records, and
//! saying so with a plain load, instead of taking the map's shard lock (an
//! atomic write), keeps the threads checking at once from contending for
//! the lock's cache line.
//!
//! One bit per hash slot, set before a number's records become visible and
//! never cleared: a clear bit means no records (no false "none"), a set bit
//! means "look in the map".

use std::sync::atomic::{AtomicU64, Ordering};

use crate::number::NumberKey;

/// Slots, as a power of two: 2^24 bits, 2 MiB. With a million numbers on
/// record ~6% of slots are set, so ~94% of numbers without records skip the map.
const SLOT_BITS: u32 = 24;

#[derive(Debug)]
pub struct Presence {
    words: Box<[AtomicU64]>,
}

impl Default for Presence {
    fn default() -> Presence {
        Presence {
            words: (0..(1usize << SLOT_BITS) / 64)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl Presence {
    /// The word and bit of a number's slot.
    fn slot(key: NumberKey) -> (usize, u64) {
        // The splitmix64 finaliser: nearby numbers land far apart.
        let mut h = key.0;
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        let slot = h >> (64 - SLOT_BITS);
        ((slot / 64) as usize, 1 << (slot % 64))
    }

    /// Marks a number as having records; call before they become visible.
    pub fn insert(&self, key: NumberKey) {
        let (word, bit) = Presence::slot(key);
        self.words[word].fetch_or(bit, Ordering::Release);
    }

    /// False only when the number has never had records.
    pub fn may_contain(&self, key: NumberKey) -> bool {
        let (word, bit) = Presence::slot(key);
        self.words[word].load(Ordering::Acquire) & bit != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_inserted_numbers_are_present_and_most_others_are_not() {
        let presence = Presence::default();
        let keys: Vec<NumberKey> = (0..10_000u64)
            .map(|i| NumberKey::from_e164(&format!("+39333{i:07}")).unwrap())
            .collect();
        for key in &keys[..5_000] {
            presence.insert(*key);
        }
        assert!(keys[..5_000].iter().all(|k| presence.may_contain(*k)));
        let false_positives = keys[5_000..]
            .iter()
            .filter(|k| presence.may_contain(**k))
            .count();
        // 5,000 of 16.7 M slots set: a handful of collisions at most.
        assert!(false_positives < 10, "{false_positives}");
    }
}
