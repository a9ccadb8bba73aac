//! The last hour, server-side, for the supervisor page's charts: bounded
//! rings of per-period buckets (60 minutes; 60 seconds for the rate), kept
//! in atomics so that recording a decision takes no lock except once per
//! period when a bucket is reused.
//!
//! Bounded memory: a bucket holds counts by verdict, denials by reason (a
//! closed enum) and a latency histogram; nothing keyed by client strings.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::Serialize;

use crate::histogram::LatencyHistogram;
use crate::model::{Reason, ReasonCode, Verdict};

/// Minutes of history kept.
pub const MINUTES: usize = 60;
/// Seconds counted by the decisions-per-minute rate.
pub const RATE_SECONDS: usize = 60;

/// The current instant as seconds since the Unix epoch (the coarse clock:
/// buckets turn on seconds, not microseconds).
pub fn now_seconds() -> i64 {
    crate::clock::coarse_now().as_second()
}

/// A bucket's data: set back to empty when the bucket is reused.
pub trait Bucket: Default {
    fn clear(&self);
}

impl Bucket for AtomicU64 {
    fn clear(&self) {
        self.store(0, Ordering::Relaxed);
    }
}

impl Bucket for LatencyHistogram {
    fn clear(&self) {
        self.reset();
    }
}

struct Slot<T> {
    /// The period (seconds or minutes since the epoch) the data counts;
    /// `i64::MIN` while unused.
    period: AtomicI64,
    data: T,
}

/// A ring of `N` buckets, one per period, the newest overwriting the one
/// `N` periods older.
pub struct Ring<T> {
    slots: Box<[Slot<T>]>,
    reuse: Mutex<()>,
}

impl<T: Bucket> Ring<T> {
    pub fn new(len: usize) -> Ring<T> {
        Ring {
            slots: (0..len)
                .map(|_| Slot {
                    period: AtomicI64::new(i64::MIN),
                    data: T::default(),
                })
                .collect(),
            reuse: Mutex::new(()),
        }
    }

    fn slot(&self, period: i64) -> &Slot<T> {
        &self.slots[period.rem_euclid(self.slots.len() as i64) as usize]
    }

    /// The bucket of `period`, cleared first if it held an older period;
    /// `None` for a period older than the bucket's (already evicted).
    pub fn bucket(&self, period: i64) -> Option<&T> {
        let slot = self.slot(period);
        let held = slot.period.load(Ordering::Acquire);
        if held == period {
            return Some(&slot.data);
        }
        if held > period {
            return None;
        }
        let _reuse = self.reuse.lock().unwrap_or_else(|e| e.into_inner());
        let held = slot.period.load(Ordering::Acquire);
        if held < period {
            slot.data.clear();
            slot.period.store(period, Ordering::Release);
        } else if held > period {
            return None;
        }
        Some(&slot.data)
    }

    /// The bucket of `period` if the ring still holds it (read only).
    pub fn get(&self, period: i64) -> Option<&T> {
        let slot = self.slot(period);
        (slot.period.load(Ordering::Acquire) == period).then_some(&slot.data)
    }
}

impl<T> std::fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("len", &self.slots.len())
            .finish()
    }
}

/// One minute of decisions.
#[derive(Debug, Default)]
pub struct DecisionMinute {
    pub allow: AtomicU64,
    pub deny: AtomicU64,
    pub unavailable: AtomicU64,
    /// Denials by reason (indexed by [`ReasonCode::index`]; allow codes stay 0).
    pub deny_reasons: [AtomicU64; ReasonCode::ALL.len()],
    /// CheckCall latency, µs.
    pub latency: LatencyHistogram,
}

impl Bucket for DecisionMinute {
    fn clear(&self) {
        self.allow.store(0, Ordering::Relaxed);
        self.deny.store(0, Ordering::Relaxed);
        self.unavailable.store(0, Ordering::Relaxed);
        for count in &self.deny_reasons {
            count.store(0, Ordering::Relaxed);
        }
        self.latency.reset();
    }
}

/// The last hour of decisions, per minute, and the last minute per second.
#[derive(Debug)]
pub struct DecisionHistory {
    minutes: Ring<DecisionMinute>,
    seconds: Ring<AtomicU64>,
}

impl Default for DecisionHistory {
    fn default() -> Self {
        DecisionHistory {
            minutes: Ring::new(MINUTES),
            seconds: Ring::new(RATE_SECONDS),
        }
    }
}

impl DecisionHistory {
    /// Counts a logged decision made at `now` (seconds since the epoch).
    pub fn record(&self, now: i64, verdict: Verdict, reasons: &[Reason], latency_us: u64) {
        if let Some(second) = self.seconds.bucket(now) {
            second.fetch_add(1, Ordering::Relaxed);
        }
        let Some(minute) = self.minutes.bucket(now.div_euclid(60)) else {
            return;
        };
        match verdict {
            Verdict::Allow => {
                minute.allow.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Deny => {
                minute.deny.fetch_add(1, Ordering::Relaxed);
                for reason in reasons.iter().filter(|r| r.code.is_deny()) {
                    minute.deny_reasons[reason.code.index()].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        minute.latency.record(latency_us);
    }

    /// Counts a CheckCall answered UNAVAILABLE at `now`.
    pub fn record_unavailable(&self, now: i64) {
        if let Some(minute) = self.minutes.bucket(now.div_euclid(60)) {
            minute.unavailable.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Decisions logged in the 60 seconds up to `now` (this second included).
    pub fn last_minute(&self, now: i64) -> u64 {
        (0..RATE_SECONDS as i64)
            .filter_map(|back| self.seconds.get(now - back))
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    /// The minute buckets, oldest first, ending with the current minute.
    pub fn minutes(&self, now: i64) -> impl Iterator<Item = (i64, Option<&DecisionMinute>)> {
        let current = now.div_euclid(60);
        (0..MINUTES as i64)
            .rev()
            .map(move |back| (current - back, self.minutes.get(current - back)))
    }
}

/// The last hour of a latency, per minute (the decision log's commits).
#[derive(Debug)]
pub struct LatencyHistory {
    minutes: Ring<LatencyHistogram>,
}

impl Default for LatencyHistory {
    fn default() -> Self {
        LatencyHistory {
            minutes: Ring::new(MINUTES),
        }
    }
}

impl LatencyHistory {
    pub fn record(&self, now: i64, micros: u64) {
        if let Some(minute) = self.minutes.bucket(now.div_euclid(60)) {
            minute.record(micros);
        }
    }

    /// The minute's histogram, if any was recorded in it.
    pub fn minute(&self, minute: i64) -> Option<&LatencyHistogram> {
        self.minutes.get(minute)
    }
}

/// One minute of the history, as `/status` shows it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct MinuteView {
    /// The minute's start.
    pub at: jiff::Timestamp,
    pub allow: u64,
    pub deny: u64,
    pub unavailable: u64,
    /// Denials by reason: deny codes only, zero counts left out.
    pub deny_by_reason: std::collections::BTreeMap<&'static str, u64>,
    /// CheckCall latency quantiles over the minute, µs (0 without decisions).
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    /// Decision-log group commit quantiles over the minute, µs.
    pub commit_p50_us: u64,
    pub commit_p99_us: u64,
}

/// The last hour, per minute, oldest first (for `/status`).
#[derive(Debug, Serialize)]
pub struct HistoryView {
    pub minute_seconds: u32,
    pub minutes: Vec<MinuteView>,
}

impl HistoryView {
    /// The view of `decisions` and `commits` at `now` (seconds since the epoch).
    pub fn of(decisions: &DecisionHistory, commits: &LatencyHistory, now: i64) -> HistoryView {
        let minutes = decisions
            .minutes(now)
            .map(|(minute, bucket)| {
                let at = jiff::Timestamp::from_second(minute * 60)
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let commit = commits.minute(minute);
                let mut view = MinuteView {
                    at,
                    allow: 0,
                    deny: 0,
                    unavailable: 0,
                    deny_by_reason: std::collections::BTreeMap::new(),
                    latency_p50_us: 0,
                    latency_p99_us: 0,
                    commit_p50_us: commit.map_or(0, |h| h.quantile(0.50)),
                    commit_p99_us: commit.map_or(0, |h| h.quantile(0.99)),
                };
                if let Some(b) = bucket {
                    view.allow = load(&b.allow);
                    view.deny = load(&b.deny);
                    view.unavailable = load(&b.unavailable);
                    view.deny_by_reason = ReasonCode::ALL
                        .iter()
                        .filter(|code| code.is_deny())
                        .map(|code| (code.as_str(), load(&b.deny_reasons[code.index()])))
                        .filter(|(_, n)| *n > 0)
                        .collect();
                    view.latency_p50_us = b.latency.quantile(0.50);
                    view.latency_p99_us = b.latency.quantile(0.99);
                }
                view
            })
            .collect();
        HistoryView {
            minute_seconds: 60,
            minutes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(code: ReasonCode) -> Reason {
        Reason {
            code,
            detail: String::new(),
        }
    }

    #[test]
    fn test_ring_reuses_a_bucket_for_a_newer_period_only() {
        let ring: Ring<AtomicU64> = Ring::new(3);
        ring.bucket(10).unwrap().fetch_add(5, Ordering::Relaxed);
        assert_eq!(ring.get(10).unwrap().load(Ordering::Relaxed), 5);
        // Period 13 takes 10's bucket, cleared.
        ring.bucket(13).unwrap().fetch_add(1, Ordering::Relaxed);
        assert!(ring.get(10).is_none());
        assert_eq!(ring.get(13).unwrap().load(Ordering::Relaxed), 1);
        // A late write for the evicted period is dropped, not counted in 13.
        assert!(ring.bucket(10).is_none());
        assert_eq!(ring.get(13).unwrap().load(Ordering::Relaxed), 1);
    }

    #[test]
    fn test_last_minute_counts_a_burst_at_once_and_forgets_it_after_60_seconds() {
        let history = DecisionHistory::default();
        let t = 1_800_000_000;
        for _ in 0..301 {
            history.record(t, Verdict::Allow, &[reason(ReasonCode::RegistryClear)], 100);
        }
        assert_eq!(history.last_minute(t), 301);
        assert_eq!(history.last_minute(t + 59), 301);
        assert_eq!(history.last_minute(t + 60), 0);
    }

    #[test]
    fn test_minutes_split_by_verdict_and_count_deny_reasons_only() {
        let history = DecisionHistory::default();
        let commits = LatencyHistory::default();
        // A minute's start.
        let t = 30_000_000 * 60;
        history.record(t, Verdict::Allow, &[reason(ReasonCode::RegistryClear)], 100);
        history.record(
            t + 61,
            Verdict::Deny,
            &[
                reason(ReasonCode::RegistryNotCovered),
                reason(ReasonCode::OutsideCallingHours),
            ],
            200,
        );
        history.record_unavailable(t + 61);
        commits.record(t + 61, 700);
        let view = HistoryView::of(&history, &commits, t + 62);
        assert_eq!(view.minutes.len(), MINUTES);
        let last = &view.minutes[MINUTES - 1];
        let before = &view.minutes[MINUTES - 2];
        assert_eq!(before.at.as_second(), t);
        assert_eq!((before.allow, before.deny), (1, 0));
        assert!(before.deny_by_reason.is_empty(), "no allow reasons");
        assert_eq!((last.allow, last.deny, last.unavailable), (0, 1, 1));
        assert_eq!(last.deny_by_reason.len(), 2);
        assert_eq!(last.deny_by_reason["REGISTRY_NOT_COVERED"], 1);
        assert!((200..=225).contains(&last.latency_p99_us));
        assert!((700..=790).contains(&last.commit_p50_us));
        assert!(view.minutes[..MINUTES - 2].iter().all(|m| m.allow == 0));
        // An hour later it is all gone.
        let view = HistoryView::of(&history, &commits, t + 3700);
        assert!(view.minutes.iter().all(|m| m.allow + m.deny == 0));
    }
}
