//! The wall clock must not go back past the decisions already made. Every
//! rule reads it: a clock set back (a virtual machine restored from a
//! snapshot, a dead real-time-clock battery, an operator's typo) makes
//! stale registry data look fresh, reopens a closed calling window, and
//! moves attempts out of their caps' windows. A decision whose clock reads
//! earlier than the latest decision made (logged before a restart, or
//! made since) by more than `log.clock_step_tolerance_seconds` is refused
//! UNAVAILABLE until the clock catches up. Within the tolerance a call is
//! decided at the clock's reading and again at the latest instant, and
//! allowed only if both allow ([`ClockGuard::ahead_of`]): a window that
//! closed does not reopen for a clock stepped back by less than the
//! tolerance (found by review: with a margin shorter than the tolerance, a
//! call at 19:59:56 by a clock set back from 20:00:05 was allowed in
//! Italy), and one not yet open is not opened by the latest instant of a
//! clock that ran ahead (deciding at the latest instant alone did that).
//!
//! A clock stepped is refused too, either way, while the server runs,
//! idle or not: the wall clock and the clock that counts since boot
//! (suspends included) advance together, whatever NTP slews; only a step
//! moves one against the other. The wall clock's offset from the boot
//! clock is kept from start-up, and followed at each decision; a reading
//! whose offset differs from the one kept by more than the tolerance is
//! refused UNAVAILABLE ([`ClockRefused::Stepped`]) until the clock is set
//! right or dialgate restarts (a restart trusts the clock it finds). A
//! clock stepped ahead opens a calling window early and ages attempts out
//! of their caps; one set back two hours while the gateway was idle
//! reopened a window closed at 21:00 (found by reviews: the latest decision
//! was hours older, so the check against it passed). Which of the two
//! readings is right cannot be told here; neither is decided on.

use std::sync::atomic::{AtomicI64, Ordering};

use jiff::{SignedDuration, Timestamp};

use crate::clock::BootInstant;

/// The latest instant decided on, how far behind it the clock may read,
/// and the wall clock's offset from the boot clock.
#[derive(Debug)]
pub struct ClockGuard {
    latest_us: AtomicI64,
    tolerance_us: i64,
    /// Wall-clock microseconds minus boot-clock microseconds, at start-up
    /// and then at the latest decision.
    offset_us: AtomicI64,
}

/// Why no decision may be made at a clock's reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockRefused {
    /// Earlier than the latest decision by more than the tolerance.
    Behind { now: Timestamp, latest: Timestamp },
    /// Away from the time kept since start-up (the wall clock then, plus
    /// the boot clock's count since) by more than the tolerance: stepped.
    Stepped { now: Timestamp, kept: Timestamp },
}

/// The latest instant is written again only once the clock is this far
/// past it (fewer writes to a line every decision reads).
const STEP_US: i64 = 100_000;

/// The offset of the wall clock from the boot clock is written again only
/// once it moved by more than this (more than a kernel tick, less than the
/// smallest tolerance by far).
const OFFSET_STEP_US: u64 = 50_000;

impl ClockGuard {
    /// A guard from `latest`, the latest decision logged (none: the first),
    /// taking the clock as it reads now as the right time.
    pub fn new(latest: Option<Timestamp>, tolerance: SignedDuration) -> ClockGuard {
        ClockGuard::starting(latest, tolerance, Timestamp::now(), BootInstant::now())
    }

    /// A guard whose start-up read the wall clock at `wall` and the boot
    /// clock at `boot`.
    fn starting(
        latest: Option<Timestamp>,
        tolerance: SignedDuration,
        wall: Timestamp,
        boot: BootInstant,
    ) -> ClockGuard {
        ClockGuard {
            latest_us: AtomicI64::new(latest.map_or(i64::MIN, |at| at.as_microsecond())),
            tolerance_us: i64::try_from(tolerance.as_micros()).unwrap_or(i64::MAX),
            offset_us: AtomicI64::new(wall.as_microsecond().saturating_sub(boot_us(boot))),
        }
    }

    /// Refuses `now` earlier than the latest instant decided on by more
    /// than the tolerance, or stepped away from the time kept by more than
    /// the tolerance; remembers a later one, and the offset it reads.
    ///
    /// # Errors
    /// [`ClockRefused`]: no decision may be made at `now`.
    pub fn check(&self, now: Timestamp) -> Result<(), ClockRefused> {
        self.check_against(now, BootInstant::now())
    }

    /// [`ClockGuard::check`] with the boot clock read at `boot`.
    fn check_against(&self, now: Timestamp, boot: BootInstant) -> Result<(), ClockRefused> {
        let now_us = now.as_microsecond();
        let latest_us = self.latest_us.load(Ordering::Relaxed);
        self.refusal(now, boot, latest_us).map_or(Ok(()), Err)?;
        if now_us > latest_us.saturating_add(STEP_US) {
            self.latest_us.fetch_max(now_us, Ordering::Relaxed);
        }
        // Followed: slews and steps within the tolerance add up only
        // through decisions each within it of the one before. Written only
        // when it moved by more than 50 ms: screening reads the coarse
        // clock, up to a kernel tick (4-10 ms) behind the precise one, and
        // every decision reads this line.
        let offset_us = now_us.saturating_sub(boot_us(boot));
        if offset_us.abs_diff(self.offset_us.load(Ordering::Relaxed)) > OFFSET_STEP_US {
            self.offset_us.store(offset_us, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether `now` is refused (without remembering anything): readiness.
    pub fn refuses(&self, now: Timestamp) -> bool {
        self.refuses_at(now, BootInstant::now())
    }

    /// [`ClockGuard::refuses`] with the boot clock read at `boot`.
    fn refuses_at(&self, now: Timestamp, boot: BootInstant) -> bool {
        self.refusal(now, boot, self.latest_us.load(Ordering::Relaxed))
            .is_some()
    }

    /// Why a clock reading `now` (the boot clock reading `boot`) is
    /// refused: behind `latest_us` by more than the tolerance, or before
    /// 1970 (wrong whatever was logged, and the decision ids, time-ordered,
    /// cannot be made from it); or away from the time kept by more than the
    /// tolerance.
    fn refusal(&self, now: Timestamp, boot: BootInstant, latest_us: i64) -> Option<ClockRefused> {
        let now_us = now.as_microsecond();
        if now_us < latest_us.saturating_sub(self.tolerance_us) || now_us < 0 {
            return Some(ClockRefused::Behind {
                now,
                latest: Timestamp::from_microsecond(latest_us).unwrap_or(Timestamp::MAX),
            });
        }
        let kept_us = self
            .offset_us
            .load(Ordering::Relaxed)
            .saturating_add(boot_us(boot));
        if now_us.abs_diff(kept_us) > self.tolerance_us.unsigned_abs() {
            return Some(ClockRefused::Stepped {
                now,
                kept: Timestamp::from_microsecond(kept_us).unwrap_or(Timestamp::MIN),
            });
        }
        None
    }

    /// The latest instant decided on, when the clock reads earlier than it
    /// (set back within the tolerance): a call must be allowed at that
    /// instant too. Kept to within 0.1 s of the latest decision, so a clock
    /// moving forward normally never reads behind it.
    pub fn ahead_of(&self, now: Timestamp) -> Option<Timestamp> {
        let latest_us = self.latest_us.load(Ordering::Relaxed);
        (latest_us > now.as_microsecond())
            .then(|| Timestamp::from_microsecond(latest_us).ok())
            .flatten()
    }
}

/// A boot-clock reading in microseconds.
fn boot_us(boot: BootInstant) -> i64 {
    i64::try_from(boot.since_boot().as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// A guard whose start-up read the wall clock in 1970 at boot; checked
    /// with [`unstepped`], the boot clock moves with the wall clock, so
    /// only a clock behind the latest decision is refused.
    fn behind_only(latest: Option<Timestamp>, tolerance_s: i64) -> ClockGuard {
        ClockGuard::starting(
            latest,
            SignedDuration::from_secs(tolerance_s),
            Timestamp::UNIX_EPOCH,
            BootInstant::after_boot(Duration::ZERO),
        )
    }

    /// The boot clock's reading when the wall clock reads `now`, not
    /// stepped since 1970.
    fn unstepped(now: &str) -> BootInstant {
        let since = at(now).as_microsecond().max(0);
        BootInstant::after_boot(Duration::from_micros(since.unsigned_abs()))
    }

    #[test]
    fn test_a_clock_gone_back_past_the_tolerance_is_refused() {
        let guard = behind_only(Some(at("2026-11-27T10:00:00Z")), 10);
        let check = |now: &str| guard.check_against(at(now), unstepped(now));
        // Within the tolerance: allowed, and the latest instant named for
        // the second decision.
        assert!(check("2026-11-27T09:59:51Z").is_ok(), "within");
        assert_eq!(
            guard.ahead_of(at("2026-11-27T09:59:51Z")),
            Some(at("2026-11-27T10:00:00Z"))
        );
        assert_eq!(
            check("2026-11-27T09:59:49Z"),
            Err(ClockRefused::Behind {
                now: at("2026-11-27T09:59:49Z"),
                latest: at("2026-11-27T10:00:00Z"),
            })
        );
        // A later decision moves the mark; the clock then may not go back
        // behind it either.
        assert!(check("2026-11-27T11:00:00Z").is_ok());
        assert!(check("2026-11-27T10:30:00Z").is_err());
        assert!(check("2026-11-27T10:59:55Z").is_ok());
        assert_eq!(
            guard.ahead_of(at("2026-11-27T10:59:55Z")),
            Some(at("2026-11-27T11:00:00Z"))
        );
        assert!(check("2026-11-27T11:00:01Z").is_ok());
        assert_eq!(guard.ahead_of(at("2026-11-27T11:00:01Z")), None);
    }

    #[test]
    fn test_a_first_start_has_nothing_to_compare() {
        let guard = behind_only(None, 1);
        assert!(
            guard
                .check_against(
                    at("1971-01-01T00:00:00Z"),
                    unstepped("1971-01-01T00:00:00Z")
                )
                .is_ok()
        );
        assert!(
            guard
                .check_against(
                    at("1970-12-31T23:00:00Z"),
                    unstepped("1970-12-31T23:00:00Z")
                )
                .is_err()
        );
        // Before 1970 on a first start: refused (the decision id could not
        // be made; found by review).
        let first = behind_only(None, 1);
        assert!(
            first
                .check_against(
                    at("1969-12-31T23:59:59Z"),
                    unstepped("1969-12-31T23:59:59Z")
                )
                .is_err()
        );
        assert!(
            first
                .check_against(
                    at("1926-05-01T10:00:00Z"),
                    unstepped("1926-05-01T10:00:00Z")
                )
                .is_err()
        );
    }

    /// A clock stepped ahead while the server runs (an operator's `date
    /// -s`, a bad time source) is refused until set right; a slew within
    /// the tolerance and a suspend (both clocks count it) are not.
    #[test]
    fn test_a_clock_stepped_ahead_is_refused_until_set_right() {
        let started = Duration::from_secs(1_000);
        let guard = ClockGuard::starting(
            None,
            SignedDuration::from_secs(10),
            at("2026-11-28T08:00:00Z"),
            BootInstant::after_boot(started),
        );
        let after = |secs: u64| BootInstant::after_boot(started + Duration::from_secs(secs));
        assert!(
            guard
                .check_against(at("2026-11-28T09:00:00Z"), after(3_600))
                .is_ok()
        );
        // Stepped three hours ahead: 09:00:30 reads 12:00:30.
        assert_eq!(
            guard.check_against(at("2026-11-28T12:00:30Z"), after(3_630)),
            Err(ClockRefused::Stepped {
                now: at("2026-11-28T12:00:30Z"),
                kept: at("2026-11-28T09:00:30Z"),
            })
        );
        assert!(
            guard
                .refusal(at("2026-11-28T12:00:31Z"), after(3_631), i64::MIN)
                .is_some()
        );
        // Nine seconds ahead: within the tolerance.
        assert!(
            guard
                .check_against(at("2026-11-28T09:01:09Z"), after(3_660))
                .is_ok()
        );
        // Set right again (nine seconds back from the reading followed).
        assert!(
            guard
                .check_against(at("2026-11-28T09:02:00Z"), after(3_720))
                .is_ok()
        );
        // Ten hours suspended: both clocks moved on.
        assert!(
            guard
                .check_against(at("2026-11-28T19:02:00Z"), after(39_720))
                .is_ok()
        );
    }

    /// A clock set back two hours while no decision was made: the latest
    /// decision, hours older, does not tell; the boot clock does (found by
    /// review: a window closed at 21:00 reopened until 23:00).
    #[test]
    fn test_a_clock_set_back_while_idle_is_refused() {
        let started = Duration::from_secs(50);
        let guard = ClockGuard::starting(
            None,
            SignedDuration::from_secs(10),
            at("2026-11-30T11:00:00Z"),
            BootInstant::after_boot(started),
        );
        let after = |secs: u64| BootInstant::after_boot(started + Duration::from_secs(secs));
        assert!(
            guard
                .check_against(at("2026-11-30T12:00:00Z"), after(3_600))
                .is_ok()
        );
        // Idle until 19:30, then set back to 17:30; asked at 19:45.
        let set_back = at("2026-11-30T17:45:00Z");
        assert_eq!(
            guard.check_against(set_back, after(8 * 3_600 + 45 * 60)),
            Err(ClockRefused::Stepped {
                now: set_back,
                kept: at("2026-11-30T19:45:00Z"),
            })
        );
        assert!(guard.refuses_at(set_back, after(8 * 3_600 + 45 * 60)));
        // Drift within the tolerance, decision after decision, is followed.
        let mut wall = at("2026-11-30T12:00:00Z");
        for step in 1..=100u64 {
            wall = wall
                .checked_add(SignedDuration::from_secs(60) + SignedDuration::from_millis(500))
                .unwrap();
            assert!(
                guard.check_against(wall, after(3_600 + step * 60)).is_ok(),
                "{step}"
            );
        }
    }
}
