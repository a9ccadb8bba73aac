//! Answers by request id, so a repeated CheckCall returns the original
//! decision and is logged once. Memory is bounded: entries live in two
//! generations; the older one is dropped when the newer one is `window` old
//! or holds `max_entries`. A repeat within `window` of the original (and
//! within `max_entries` newer requests) is always recognised.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::OnceCell;

type Generation<V> = Arc<DashMap<String, Arc<OnceCell<V>>>>;

/// Bounded cache of answers by request id.
#[derive(Debug)]
pub struct AnswerCache<V> {
    /// `[current, previous]`.
    generations: RwLock<[Generation<V>; 2]>,
    current_since: Mutex<Instant>,
    window: Duration,
    max_entries: usize,
}

impl<V: Send + Sync + 'static> AnswerCache<V> {
    pub fn new(window: Duration, max_entries: usize) -> AnswerCache<V> {
        AnswerCache {
            generations: RwLock::new([Generation::default(), Generation::default()]),
            current_since: Mutex::new(Instant::now()),
            window,
            max_entries: max_entries.max(1),
        }
    }

    /// Seeds an answer (decisions logged before a restart).
    pub fn insert(&self, request_id: String, outcome: V) {
        let generations = self.generations.read().expect("answer cache lock");
        generations[0].insert(request_id, Arc::new(OnceCell::new_with(Some(outcome))));
    }

    /// The cell holding (or about to hold) the answer to `request_id`.
    pub fn cell(&self, request_id: &str) -> Arc<OnceCell<V>> {
        self.rotate_if_due();
        let generations = self.generations.read().expect("answer cache lock");
        if let Some(cell) = generations[1].get(request_id) {
            return Arc::clone(&cell);
        }
        Arc::clone(&generations[0].entry(request_id.to_string()).or_default())
    }

    /// Entries held, over both generations.
    #[cfg(test)]
    fn len(&self) -> usize {
        let generations = self.generations.read().expect("answer cache lock");
        generations[0].len() + generations[1].len()
    }

    fn rotate_if_due(&self) {
        let due = {
            let since = self.current_since.lock().expect("answer cache clock");
            since.elapsed() >= self.window
                || self.generations.read().expect("answer cache lock")[0].len() >= self.max_entries
        };
        if !due {
            return;
        }
        let mut since = self.current_since.lock().expect("answer cache clock");
        let mut generations = self.generations.write().expect("answer cache lock");
        if since.elapsed() < self.window && generations[0].len() < self.max_entries {
            return; // another caller rotated first
        }
        let current = std::mem::take(&mut generations[0]);
        let expired = std::mem::replace(&mut generations[1], current);
        *since = Instant::now();
        drop(generations);
        drop(since);
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
    fn test_same_id_gives_same_cell() {
        let cache = AnswerCache::<String>::new(Duration::from_secs(3600), 100);
        assert!(Arc::ptr_eq(&cache.cell("x"), &cache.cell("x")));
    }
}
