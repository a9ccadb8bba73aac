//! The registries' answers that a number is opposed for a controller
//! (`registry import --opposed`), held in memory by number: the latest day
//! per registry, controller and number. Looked up on every check of an
//! allow-list's number once any answer is held, so a lookup allocates
//! nothing (keyed by strings, it made two of them each time).

use jiff::Timestamp;
use smallvec::SmallVec;

use crate::number::NumberKey;

/// One registry's latest "opposed" answer for one controller.
#[derive(Debug)]
struct Observation {
    registry_id: Box<str>,
    controller: Box<str>,
    at: Timestamp,
}

/// The answers held, by number.
#[derive(Debug, Default)]
pub struct Observations {
    by_number: dashmap::DashMap<NumberKey, SmallVec<[Observation; 1]>, foldhash::fast::RandomState>,
}

impl Observations {
    /// The latest day `registry_id` answered `key` as opposed for `controller`.
    pub fn latest(&self, registry_id: &str, controller: &str, key: NumberKey) -> Option<Timestamp> {
        self.by_number.get(&key)?.iter().find_map(|o| {
            (&*o.registry_id == registry_id && &*o.controller == controller).then_some(o.at)
        })
    }

    /// Holds an answer; the later day is kept.
    pub fn record(&self, registry_id: &str, controller: &str, key: NumberKey, at: Timestamp) {
        let mut held = self.by_number.entry(key).or_default();
        match held
            .iter_mut()
            .find(|o| &*o.registry_id == registry_id && &*o.controller == controller)
        {
            Some(observation) => observation.at = observation.at.max(at),
            None => held.push(Observation {
                registry_id: registry_id.into(),
                controller: controller.into(),
                at,
            }),
        }
    }

    /// Forgets the answers about `key` for `controller` (empty: every
    /// controller), as an erasure deletes them.
    pub fn forget(&self, key: NumberKey, controller: &str) {
        if controller.is_empty() {
            self.by_number.remove(&key);
            return;
        }
        self.by_number.remove_if_mut(&key, |_, held| {
            held.retain(|o| &*o.controller != controller);
            held.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_the_latest_answer_per_registry_and_controller_is_kept_and_forgotten_by_scope() {
        let observations = Observations::default();
        let (a, b) = (NumberKey(1), NumberKey(2));
        let day = |d: i64| Timestamp::from_second(d * 86_400).unwrap();
        observations.record("it-rpo", "acme", a, day(3));
        observations.record("it-rpo", "acme", a, day(1));
        observations.record("it-rpo", "globex", a, day(2));
        observations.record("other", "acme", a, day(5));
        observations.record("it-rpo", "acme", b, day(4));
        assert_eq!(observations.latest("it-rpo", "acme", a), Some(day(3)));
        assert_eq!(observations.latest("it-rpo", "globex", a), Some(day(2)));
        assert_eq!(observations.latest("other", "acme", a), Some(day(5)));
        assert_eq!(observations.latest("other", "globex", a), None);
        assert_eq!(observations.latest("it-rpo", "acme", NumberKey(3)), None);
        observations.forget(a, "acme");
        assert_eq!(observations.latest("it-rpo", "acme", a), None);
        assert_eq!(observations.latest("other", "acme", a), None);
        assert_eq!(observations.latest("it-rpo", "globex", a), Some(day(2)));
        observations.forget(a, "");
        assert_eq!(observations.latest("it-rpo", "globex", a), None);
        assert_eq!(observations.latest("it-rpo", "acme", b), Some(day(4)));
    }
}
