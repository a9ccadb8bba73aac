//! A memo of calling-window answers, for the decision path: the window of a
//! destination, campaign and set of zones changes only at its edges, so an
//! answer found at `t0` holds for every instant up to the edge it names.
//! Without it each check converts `now` into every zone and rebuilds the
//! day's spans (holidays included), the largest cost of bulk screening.
//!
//! Keys are stable ids ([`crate::policy::Era::id`], the zone set's id, the
//! state code), never memory addresses; a memo belongs to one compiled
//! policy (the gateway that owns both is rebuilt together).
//!
//! Each thread also keeps the last answer it used: a list screened for one
//! campaign asks the same question number after number, and comparing the
//! key is cheaper than hashing it and locking a shard of the map.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use jiff::Timestamp;

use super::{WindowCheck, WindowInput, check};

/// Identifies a window input by stable ids: the policy era (destination
/// rules and campaign hours), the set of zones and the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    era: u32,
    zones: u32,
    state: [u8; 2],
}

impl Key {
    fn of(input: &WindowInput<'_>) -> Option<Key> {
        if input.memo_key == 0 {
            return None;
        }
        let state = match input.state.map(str::as_bytes) {
            None => [0, 0],
            Some(&[a, b]) => [a, b],
            Some(_) => return None,
        };
        Some(Key {
            era: input.memo_key,
            zones: input.zones_id,
            state,
        })
    }
}

/// An answer and the instants it holds for: `[from, until)`.
#[derive(Debug, Clone, Copy)]
struct Answer {
    from: Timestamp,
    until: Timestamp,
    check: WindowCheck,
}

/// Calling-window answers by input; see the module docs.
#[derive(Debug)]
pub struct WindowMemo {
    /// Tells this memo's answers from another's in the per-thread cache.
    id: u64,
    answers: DashMap<Key, Answer, foldhash::fast::RandomState>,
}

impl Default for WindowMemo {
    fn default() -> WindowMemo {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        WindowMemo {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            answers: DashMap::default(),
        }
    }
}

thread_local! {
    /// The last answer this thread used: `(memo id, key, answer)`.
    static LAST: Cell<Option<(u64, Key, Answer)>> = const { Cell::new(None) };
}

impl WindowMemo {
    /// The same answer as [`check`]`(input, now)`, memoised.
    pub fn check(&self, input: &WindowInput<'_>, now: Timestamp) -> WindowCheck {
        let Some(key) = Key::of(input) else {
            return check(input, now);
        };
        let holds = |answer: &Answer| answer.from <= now && now < answer.until;
        if let Some((id, last_key, answer)) = LAST.get()
            && id == self.id
            && last_key == key
            && holds(&answer)
        {
            return answer.check;
        }
        if let Some(answer) = self.answers.get(&key).map(|a| *a)
            && holds(&answer)
        {
            LAST.set(Some((self.id, key, answer)));
            return answer.check;
        }
        let answer = check(input, now);
        let until = match answer {
            // Inside until the window closes; outside until it next opens.
            WindowCheck::Inside { closes_at } => Some(closes_at),
            WindowCheck::Outside {
                next_open: Some(next_open),
            } => Some(next_open),
            // "Nowhere in the horizon" depends on where the horizon starts.
            WindowCheck::Outside { next_open: None } => None,
            WindowCheck::Unrestricted | WindowCheck::UnknownZone => Some(Timestamp::MAX),
        };
        if let Some(until) = until {
            let memoised = Answer {
                from: now,
                until,
                check: answer,
            };
            self.answers.insert(key, memoised);
            LAST.set(Some((self.id, key, memoised)));
        }
        answer
    }
}
