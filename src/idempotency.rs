//! Answers by request id, so a repeated CheckCall returns the original
//! decision and is logged once. Memory is bounded: entries live in two
//! generations; the older one is dropped when the newer one is `window` old
//! or holds `max_entries`. A repeat within `window` of the original (and
//! within `max_entries` newer requests) is always recognised.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::sync::OnceCell;

/// Request ids are chosen by authenticated dialers; a seeded fast hash is
/// enough here, and SipHash cost more per CheckCall than the lookup itself.
type Generation<V> = Arc<DashMap<String, Arc<OnceCell<V>>, foldhash::quality::RandomState>>;

/// The key a request id is remembered under: the API key's name and the
/// id. Ids are each key's own: another key's id is another request
/// (found by review: a key scoped to one brand could spend another
/// brand's predictable ids, its calls then refused ALREADY_EXISTS).
pub fn idempotency_key(api_key: &str, request_id: &str) -> String {
    format!("{}:{api_key}{request_id}", api_key.len())
}

/// Bounded cache of answers by request id.
#[derive(Debug)]
pub struct AnswerCache<V> {
    /// `[current, previous]`.
    generations: RwLock<[Generation<V>; 2]>,
    /// Entries in the current generation (changed under its read lock,
    /// reset under the write lock): counting them with `DashMap::len` locked
    /// every shard on every call.
    current_entries: AtomicUsize,
    /// When the current generation started, in nanoseconds after `epoch`.
    current_since_ns: AtomicU64,
    epoch: Instant,
    window: Duration,
    max_entries: usize,
}

impl<V: Send + Sync + 'static> AnswerCache<V> {
    pub fn new(window: Duration, max_entries: usize) -> AnswerCache<V> {
        AnswerCache {
            generations: RwLock::new([Generation::default(), Generation::default()]),
            current_entries: AtomicUsize::new(0),
            current_since_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            window,
            max_entries: max_entries.max(1),
        }
    }

    /// Seeds an answer (decisions logged before a restart).
    pub fn insert(&self, request_id: String, outcome: V) {
        self.rotate_if_due();
        let generations = self.generations.read().expect("answer cache lock");
        let cell = Arc::new(OnceCell::new_with(Some(outcome)));
        if generations[0].insert(request_id, cell).is_none() {
            self.current_entries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The cell holding (or about to hold) the answer to `request_id`.
    pub fn cell(&self, request_id: &str) -> Arc<OnceCell<V>> {
        self.rotate_if_due();
        let generations = self.generations.read().expect("answer cache lock");
        if let Some(cell) = generations[1].get(request_id) {
            return Arc::clone(&cell);
        }
        match generations[0].entry(request_id.to_string()) {
            Entry::Occupied(cell) => Arc::clone(cell.get()),
            Entry::Vacant(vacant) => {
                self.current_entries.fetch_add(1, Ordering::Relaxed);
                Arc::clone(&vacant.insert(Arc::default()))
            }
        }
    }

    /// Entries held, over both generations.
    #[cfg(test)]
    fn len(&self) -> usize {
        let generations = self.generations.read().expect("answer cache lock");
        generations[0].len() + generations[1].len()
    }

    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn due(&self) -> bool {
        let since = self.current_since_ns.load(Ordering::Relaxed);
        let window = u64::try_from(self.window.as_nanos()).unwrap_or(u64::MAX);
        self.elapsed_ns().saturating_sub(since) >= window
            || self.current_entries.load(Ordering::Relaxed) >= self.max_entries
    }

    fn rotate_if_due(&self) {
        if !self.due() {
            return;
        }
        let mut generations = self.generations.write().expect("answer cache lock");
        if !self.due() {
            return; // another caller rotated first
        }
        let current = std::mem::take(&mut generations[0]);
        let expired = std::mem::replace(&mut generations[1], current);
        self.current_entries.store(0, Ordering::Relaxed);
        self.current_since_ns
            .store(self.elapsed_ns(), Ordering::Relaxed);
        drop(generations);
        // Freeing up to `max_entries` answers takes long (hundreds of
        // milliseconds for a million): on a thread of its own, not while every caller
        // waits for the lock, nor on the async worker that happened to rotate.
        // Should the thread not start, the answers are freed here.
        let _ = std::thread::Builder::new()
            .name("answer-cache-free".into())
            .spawn(move || drop(expired));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(id: &str) -> String {
        id.to_string()
    }

    #[test]
    fn test_repeats_survive_one_rotation_then_expire() {
        let cache = AnswerCache::new(Duration::from_secs(3600), 2);
        cache.insert("a".into(), outcome("1"));
        assert_eq!(cache.cell("a").get().unwrap(), "1");
        cache.cell("b");
        // "c" finds the current generation full: rotation keeps a and b in the previous one.
        cache.cell("c");
        assert_eq!(cache.cell("a").get().unwrap(), "1");
        cache.cell("d");
        cache.cell("e");
        assert!(
            cache.cell("a").get().is_none(),
            "dropped after two rotations"
        );
        assert!(cache.len() <= 4);
    }

    #[test]
    fn test_a_generation_older_than_the_window_rotates_out() {
        // A window long enough that the calls between two sleeps never
        // span it, even on a loaded machine.
        let cache = AnswerCache::new(Duration::from_millis(500), 1_000);
        cache.insert("a".into(), outcome("1"));
        std::thread::sleep(Duration::from_millis(600));
        // The first call after the window rotates: "a" is kept one more.
        cache.cell("b");
        assert_eq!(cache.cell("a").get().unwrap(), "1");
        std::thread::sleep(Duration::from_millis(600));
        cache.cell("c");
        assert!(cache.cell("a").get().is_none(), "dropped after two windows");
        assert!(cache.cell("c").get().is_none());
    }

    #[test]
    fn test_same_id_gives_same_cell() {
        let cache = AnswerCache::<String>::new(Duration::from_secs(3600), 100);
        assert!(Arc::ptr_eq(&cache.cell("x"), &cache.cell("x")));
    }
}
