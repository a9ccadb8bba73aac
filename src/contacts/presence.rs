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

/// Slots at least, as a power of two: 2^24 bits, 2 MiB. With a million
/// numbers on record ~6% of slots are set, so ~94% of numbers without
/// records skip the map.
const MIN_SLOT_BITS: u32 = 24;
/// Slots at most: 2^32 bits, 512 MiB.
const MAX_SLOT_BITS: u32 = 32;

#[derive(Debug)]
pub struct Presence {
    words: Box<[AtomicU64]>,
    bits: u32,
}

impl Default for Presence {
    fn default() -> Presence {
        Presence::for_numbers(0)
    }
}

impl Presence {
    /// The word and bit of a number's slot.
    /// A filter for up to `numbers` numbers: at least four slots per number
    /// (at most ~22% of them set), within the bounds above.
    pub fn for_numbers(numbers: usize) -> Presence {
        let wanted = (numbers as u64).saturating_mul(4).max(1);
        let bits = (64 - (wanted - 1).leading_zeros()).clamp(MIN_SLOT_BITS, MAX_SLOT_BITS);
        Presence {
            words: (0..(1usize << bits) / 64)
                .map(|_| AtomicU64::new(0))
                .collect(),
            bits,
        }
    }

    fn slot(&self, key: NumberKey) -> (usize, u64) {
        // The splitmix64 finaliser: nearby numbers land far apart.
        let mut h = key.0;
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        let slot = h >> (64 - self.bits);
        ((slot / 64) as usize, 1 << (slot % 64))
    }

    /// Marks a number as having records; call before they become visible.
    pub fn insert(&self, key: NumberKey) {
        let (word, bit) = self.slot(key);
        self.words[word].fetch_or(bit, Ordering::Release);
    }

    /// False only when the number has never had records.
    pub fn may_contain(&self, key: NumberKey) -> bool {
        let (word, bit) = self.slot(key);
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

    /// 50 million numbers saturated the fixed 2^24-slot filter, so every
    /// check on a number without records searched the index.
    #[test]
    fn test_the_filter_is_sized_for_the_numbers_loaded() {
        assert_eq!(Presence::for_numbers(0).bits, MIN_SLOT_BITS);
        assert_eq!(Presence::for_numbers(1_000_000).bits, 24);
        assert_eq!(Presence::for_numbers(100_000_000).bits, 29);
        assert_eq!(Presence::for_numbers(usize::MAX).bits, MAX_SLOT_BITS);
        let presence = Presence::for_numbers(100_000);
        let keys: Vec<NumberKey> = (0..100_000u64)
            .map(|i| NumberKey::from_e164(&format!("+39347{i:07}")).unwrap())
            .collect();
        for key in &keys {
            presence.insert(*key);
        }
        assert!(keys.iter().all(|k| presence.may_contain(*k)));
    }
}
