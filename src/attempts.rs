//! Per number and controller, the ALLOW decisions inside the attempt-cap
//! window: kept in memory (no SQL on the decision path), rebuilt from the
//! decision log at start-up, pruned as they age out.

use jiff::{SignedDuration, Timestamp};

use crate::calling::AttemptLimit;
use crate::model::{Reason, ReasonCode};
use crate::number::{ByNumber, NumberKey};

/// Why the caps refuse one more ALLOW at `now`, given the earlier ALLOWs
/// of the controller and number: the reason, and when a slot frees (`None`:
/// never, a cap of zero). Attempts stamped after `now` count too (another
/// replica decided a moment later but committed first), so the shared
/// database never lets more than the cap through. Every window is longer
/// by `slack` (the clock skew tolerated between replicas): an ALLOW stamped
/// by a clock up to `slack` off still counts, and the cap lifts `slack`
/// later.
pub fn refused_by_caps(
    limits: &[AttemptLimit],
    attempts: &[Timestamp],
    now: Timestamp,
    slack: SignedDuration,
) -> Option<(Reason, Option<Timestamp>)> {
    let slack = slack.max(SignedDuration::ZERO);
    let mut refusal: Option<(Reason, Option<Timestamp>)> = None;
    for limit in limits {
        let limit = &AttemptLimit {
            max_attempts: limit.max_attempts,
            window: limit.window + slack,
        };
        let since = now - limit.window;
        let mut counted: Vec<Timestamp> = attempts.iter().copied().filter(|t| *t > since).collect();
        if counted.len() < limit.max_attempts as usize {
            continue;
        }
        counted.sort();
        // The cap lifts when enough of the oldest attempts have left the window.
        let excess = counted.len() - limit.max_attempts as usize;
        // A stored instant near the end of time must not overflow (a
        // panic here stopped the log writer).
        let lifts_at = counted
            .get(excess)
            .map(|t| t.checked_add(limit.window).unwrap_or(Timestamp::MAX));
        let later = match (&refusal, lifts_at) {
            (None, _) => true,
            (Some((_, None)), _) => false,
            (Some(_), None) => true,
            (Some((_, Some(known))), Some(at)) => at > *known,
        };
        if later {
            let detail = match lifts_at {
                Some(at) => format!(
                    "{} attempts in the last {} hours (cap {}, counted over every replica); next attempt from {at}",
                    counted.len(),
                    limit.window.as_hours(),
                    limit.max_attempts
                ),
                None => format!(
                    "cap {} in {} hours",
                    limit.max_attempts,
                    limit.window.as_hours()
                ),
            };
            refusal = Some((Reason::new(ReasonCode::AttemptLimit, detail), lifts_at));
        }
    }
    refusal
}

/// Recent attempts by number, each with its controller.
#[derive(Debug)]
pub struct AttemptLedger {
    attempts: ByNumber<Vec<(String, Timestamp)>>,
    /// The latest attempt recorded, in µs (`i64::MIN`: none): what
    /// [`AttemptLedger::prune`] measures from when the clock reads later.
    latest_us: std::sync::atomic::AtomicI64,
}

impl Default for AttemptLedger {
    fn default() -> AttemptLedger {
        AttemptLedger {
            attempts: ByNumber::default(),
            latest_us: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }
}

impl AttemptLedger {
    /// The attempts recorded for the controller and number.
    pub fn recent(&self, controller: &str, key: NumberKey) -> Vec<Timestamp> {
        self.attempts
            .get(&key)
            .map(|v| {
                v.iter()
                    .filter(|(c, _)| c == controller)
                    .map(|(_, t)| *t)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records an attempt (start-up rebuild from the log).
    pub fn record(&self, controller: &str, key: NumberKey, at: Timestamp) {
        self.note_latest(at);
        self.attempts
            .entry(key)
            .or_default()
            .push((controller.to_string(), at));
    }

    fn note_latest(&self, at: Timestamp) {
        self.latest_us
            .fetch_max(at.as_microsecond(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Records an attempt at `stamped` only if every cap, counted back
    /// from `now`, still allows it, atomically for this controller and
    /// number (two concurrent checks cannot both take the last slot).
    /// `stamped` is `now`, or the latest instant decided on when the clock
    /// reads earlier (see `Gateway::decide_and_log`).
    pub fn try_record(
        &self,
        controller: &str,
        key: NumberKey,
        limits: &[AttemptLimit],
        now: Timestamp,
        stamped: Timestamp,
    ) -> bool {
        let mut entry = self.attempts.entry(key).or_default();
        for limit in limits {
            let since = now - limit.window;
            let counted = entry
                .iter()
                .filter(|(c, t)| c == controller && *t > since)
                .count();
            if counted >= limit.max_attempts as usize {
                return false;
            }
        }
        entry.push((controller.to_string(), stamped));
        self.note_latest(stamped);
        true
    }

    /// Takes back an attempt whose decision could not be logged.
    pub fn forget(&self, controller: &str, key: NumberKey, at: Timestamp) {
        if let Some(mut entry) = self.attempts.get_mut(&key)
            && let Some(i) = entry.iter().position(|(c, t)| c == controller && *t == at)
        {
            entry.swap_remove(i);
        }
    }

    /// Drops attempts older than `window` before `now`, or before the
    /// latest attempt recorded when that is earlier: a clock running ahead
    /// (set back later) must not drop attempts a decision made once it is
    /// back still counts. Give `window` with the clock-step tolerance added
    /// (decisions may read the clock that much before the latest).
    pub fn prune(&self, window: SignedDuration, now: Timestamp) {
        let latest = self.latest_us.load(std::sync::atomic::Ordering::Relaxed);
        let anchor = Timestamp::from_microsecond(latest.min(now.as_microsecond())).unwrap_or(now);
        let since = anchor.checked_sub(window).unwrap_or(Timestamp::MIN);
        self.attempts.retain(|_, v| {
            v.retain(|(_, t)| *t > since);
            !v.is_empty()
        });
    }

    /// Numbers with attempts held.
    pub fn len(&self) -> usize {
        self.attempts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.attempts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_try_record_respects_the_cap_and_the_window() {
        let ledger = AttemptLedger::default();
        let key = NumberKey::from_e164("+33612345678").unwrap();
        let limit = [AttemptLimit {
            max_attempts: 2,
            window: SignedDuration::from_hours(24),
        }];
        let t0: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        assert!(ledger.try_record("acme", key, &limit, t0, t0));
        assert!(ledger.try_record(
            "acme",
            key,
            &limit,
            t0 + SignedDuration::from_hours(1),
            t0 + SignedDuration::from_hours(1)
        ));
        assert!(!ledger.try_record(
            "acme",
            key,
            &limit,
            t0 + SignedDuration::from_hours(2),
            t0 + SignedDuration::from_hours(2)
        ));
        assert!(
            ledger.try_record("beta", key, &limit, t0, t0),
            "per controller"
        );
        assert!(
            ledger.try_record(
                "acme",
                key,
                &limit,
                t0 + SignedDuration::from_hours(24),
                t0 + SignedDuration::from_hours(24)
            ),
            "the first left the window"
        );
        ledger.forget("acme", key, t0 + SignedDuration::from_hours(24));
        assert_eq!(
            ledger.recent("acme", key).len(),
            2,
            "older attempts are pruned by prune(), not by a cap"
        );
        ledger.prune(
            SignedDuration::from_hours(1),
            t0 + SignedDuration::from_hours(48),
        );
        assert!(ledger.is_empty());
    }

    /// A prune while the clock runs ahead keeps the attempts a decision
    /// made once it is set back still counts (found by review): it measures
    /// from the latest attempt recorded.
    #[test]
    fn test_a_prune_while_the_clock_runs_ahead_keeps_what_still_counts() {
        let ledger = AttemptLedger::default();
        let key = NumberKey::from_e164("+33612345678").unwrap();
        let day = SignedDuration::from_hours(24);
        let limit = [AttemptLimit {
            max_attempts: 1,
            window: day,
        }];
        let t0: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let allowed = t0 - SignedDuration::from_mins(23 * 60 + 30);
        ledger.record("acme", key, allowed);
        // The clock two hours ahead at a prune, then back at t0.
        ledger.prune(day, t0 + SignedDuration::from_hours(2));
        assert!(
            !ledger.try_record("acme", key, &limit, t0, t0),
            "still counted"
        );
        // Once later attempts are recorded (time passed for real), it ages
        // out as before.
        let other = NumberKey::from_e164("+33612345679").unwrap();
        ledger.record("acme", other, t0 + day);
        ledger.prune(day, t0 + day);
        assert!(ledger.recent("acme", key).is_empty());
        assert_eq!(ledger.recent("acme", other).len(), 1);
    }

    #[test]
    fn test_refused_by_caps_counts_later_stamps_and_names_the_latest_lift() {
        let t0: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let day = SignedDuration::from_hours(24);
        let limits = [
            AttemptLimit {
                max_attempts: 2,
                window: day,
            },
            AttemptLimit {
                max_attempts: 3,
                window: day * 30,
            },
        ];
        assert!(refused_by_caps(&limits, &[t0], t0, SignedDuration::ZERO).is_none());
        // Another replica's attempt stamped a millisecond after `now` counts.
        let later = t0 + SignedDuration::from_millis(1);
        let (reason, lifts) =
            refused_by_caps(&limits, &[t0, later], t0, SignedDuration::ZERO).unwrap();
        assert_eq!(reason.code, ReasonCode::AttemptLimit);
        assert_eq!(lifts, Some(t0 + day));
        // Both caps reached: the later lift is the one that matters.
        let old = t0 - SignedDuration::from_hours(48);
        let (_, lifts) =
            refused_by_caps(&limits, &[old, t0, later], t0, SignedDuration::ZERO).unwrap();
        assert_eq!(lifts, Some(old + day * 30));
        let zero = [AttemptLimit {
            max_attempts: 0,
            window: day,
        }];
        assert_eq!(
            refused_by_caps(&zero, &[], t0, SignedDuration::ZERO)
                .unwrap()
                .1,
            None
        );
        assert!(refused_by_caps(&[], &[t0, t0, t0], t0, SignedDuration::ZERO).is_none());
    }

    /// A campaign cap adds to the statute's, it does not replace it:
    /// 3 in 24 h and 4 in 30 days both hold.
    #[test]
    fn test_a_stored_attempt_at_the_end_of_time_does_not_overflow() {
        let limit = AttemptLimit {
            max_attempts: 1,
            window: SignedDuration::from_hours(24),
        };
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let last = Timestamp::MAX - SignedDuration::from_hours(1);
        let refused = refused_by_caps(&[limit], &[last], now, SignedDuration::from_millis(500));
        assert_eq!(refused.map(|(_, lifts)| lifts), Some(Some(Timestamp::MAX)));
    }

    #[test]
    fn test_every_cap_holds() {
        let ledger = AttemptLedger::default();
        let key = NumberKey::from_e164("+33612345678").unwrap();
        let limits = [
            AttemptLimit {
                max_attempts: 4,
                window: SignedDuration::from_hours(30 * 24),
            },
            AttemptLimit {
                max_attempts: 3,
                window: SignedDuration::from_hours(24),
            },
        ];
        let t0: Timestamp = "2026-11-02T10:00:00Z".parse().unwrap();
        let day = |d: i64| t0 + SignedDuration::from_hours(24 * d);
        assert!(ledger.try_record("acme", key, &limits, day(0), day(0)));
        assert!(ledger.try_record("acme", key, &limits, day(1), day(1)));
        assert!(ledger.try_record("acme", key, &limits, day(2), day(2)));
        assert!(ledger.try_record("acme", key, &limits, day(3), day(3)));
        assert!(
            !ledger.try_record("acme", key, &limits, day(4), day(4)),
            "the fifth in 30 days is refused although the daily cap allows it"
        );
    }
}
