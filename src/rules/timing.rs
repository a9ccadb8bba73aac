//! Time rules: the calling window in the called person's local time, and
//! the attempt cap. Both tell when waiting would help.

use jiff::Timestamp;

use crate::calling::{self, AttemptLimit, WindowCheck, WindowInput, WindowMemo};
use crate::model::{Reason, ReasonCode};

/// A time-based denial and the instant it lifts, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedDeny {
    pub reason: Reason,
    pub lifts_at: Option<Timestamp>,
}

/// `OUTSIDE_CALLING_HOURS` when `now` is outside the window, or inside it
/// but closer to its close than the destination's `close_margin` (a call
/// answered at 20:59:59 rings after 21:00); `memo`, when given, answers
/// repeated questions (with the same answer).
pub fn check_calling_window(
    input: &WindowInput<'_>,
    now: Timestamp,
    memo: Option<&WindowMemo>,
) -> Option<TimedDeny> {
    let check_at = |at: Timestamp| match memo {
        Some(memo) => memo.check(input, at),
        None => calling::check(input, at),
    };
    let mut check = check_at(now);
    let margin = input.destination.close_margin;
    // A window that closes within the margin is closed now, unless another
    // span begins where it ends (a day's hours running into the next day's).
    let mut follows = 0;
    while let WindowCheck::Inside { closes_at } = check
        && closes_at.duration_since(now) < margin
    {
        follows += 1;
        check = match check_at(closes_at) {
            WindowCheck::Inside { closes_at: later } if later > closes_at && follows < 8 => {
                WindowCheck::Inside { closes_at: later }
            }
            WindowCheck::Inside { .. } => WindowCheck::Outside { next_open: None },
            WindowCheck::Outside { next_open } => {
                return Some(closing(input, closes_at, margin, next_open));
            }
            other => other,
        };
    }
    match check {
        WindowCheck::Unrestricted | WindowCheck::Inside { .. } => None,
        WindowCheck::Outside { next_open } => Some(TimedDeny {
            reason: Reason::new(
                ReasonCode::OutsideCallingHours,
                match next_open {
                    Some(at) => format!(
                        "outside the calling window of {} ({}); next opens {at}",
                        input.region,
                        input.zones.join(", ")
                    ),
                    None => match calling::holidays_unknown(input, now) {
                        Some(year) => format!(
                            "the calling window sets hours for public holidays, and no public holiday of {} in {year} is known: list them in [destination.{}] extra_holidays",
                            input.region, input.region
                        ),
                        None => {
                            format!("no calling window for {} in the next weeks", input.region)
                        }
                    },
                },
            ),
            lifts_at: next_open,
        }),
        WindowCheck::UnknownZone => Some(TimedDeny {
            reason: Reason::new(
                ReasonCode::OutsideCallingHours,
                format!(
                    "local time of {} numbers unknown: calling window cannot be checked",
                    input.region
                ),
            ),
            lifts_at: None,
        }),
    }
}

/// The denial of a call the window would close on before it rings.
fn closing(
    input: &WindowInput<'_>,
    closes_at: Timestamp,
    margin: jiff::SignedDuration,
    next_open: Option<Timestamp>,
) -> TimedDeny {
    let next = match next_open {
        Some(at) => format!("next opens {at}"),
        None => "no calling window in the next weeks".to_string(),
    };
    TimedDeny {
        reason: Reason::new(
            ReasonCode::OutsideCallingHours,
            format!(
                "the calling window of {} ({}) closes at {closes_at}, within the {} s a call is given to ring (calling.window_margin_seconds); {next}",
                input.region,
                input.zones.join(", "),
                margin.as_secs()
            ),
        ),
        lifts_at: next_open,
    }
}

/// `ATTEMPT_LIMIT` when the cap is reached; `attempts` are the ALLOWs
/// held. Those stamped after `now` count too (screening as of an earlier
/// `at`, or stamped ahead by another replica's clock): the cap cannot be
/// reached later than it was.
pub fn check_attempt_limit(
    limit: Option<AttemptLimit>,
    attempts: &[Timestamp],
    now: Timestamp,
) -> Option<TimedDeny> {
    let limit = limit?;
    let since = now - limit.window;
    let mut counted: Vec<Timestamp> = attempts.iter().copied().filter(|t| *t > since).collect();
    if counted.len() < limit.max_attempts as usize {
        return None;
    }
    counted.sort();
    // The cap lifts when enough of the oldest attempts have left the window.
    let excess = counted.len() - limit.max_attempts as usize;
    let lifts_at = counted[excess]
        .checked_add(limit.window)
        .unwrap_or(Timestamp::MAX);
    Some(TimedDeny {
        reason: Reason::new(
            ReasonCode::AttemptLimit,
            format!(
                "{} attempts in the last {} hours (cap {}); next attempt from {lifts_at}",
                counted.len(),
                limit.window.as_hours(),
                limit.max_attempts
            ),
        ),
        lifts_at: Some(lifts_at),
    })
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::calling::{DestinationRules, Span, WeeklyHours};

    #[test]
    fn test_attempt_limit_edges() {
        let limit = Some(AttemptLimit {
            max_attempts: 4,
            window: SignedDuration::from_hours(30 * 24),
        });
        let day = |d: i64| -> Timestamp {
            "2026-11-01T10:00:00Z".parse::<Timestamp>().unwrap()
                + SignedDuration::from_hours(24 * d)
        };
        let attempts = [day(0), day(1), day(2), day(3)];
        assert!(check_attempt_limit(limit, &attempts[..3], day(4)).is_none());
        let denied = check_attempt_limit(limit, &attempts, day(4)).unwrap();
        assert_eq!(denied.reason.code, ReasonCode::AttemptLimit);
        assert_eq!(
            denied.lifts_at,
            Some(day(30)),
            "when the oldest leaves the window"
        );
        assert!(check_attempt_limit(limit, &attempts, day(30)).is_none());
        assert!(check_attempt_limit(None, &attempts, day(4)).is_none());
    }

    fn paris(destination: &DestinationRules) -> WindowInput<'_> {
        WindowInput {
            region: "FR",
            zones: &["Europe/Paris"],
            zones_id: 1,
            state: None,
            destination,
            campaign: None,
            memo_key: 1,
        }
    }

    fn rules(hours: WeeklyHours, margin_seconds: i64) -> DestinationRules {
        DestinationRules {
            hours: Some(hours),
            close_margin: SignedDuration::from_secs(margin_seconds),
            ..DestinationRules::default()
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// A call answered ALLOW at 19:59:50 rang after 20:00 (found by
    /// review): a window that closes within the margin is closed.
    #[test]
    fn test_a_window_closing_within_the_margin_is_closed() {
        let weekdays = WeeklyHours::weekdays(&[Span::hours(9, 20)]);
        let thirty = rules(weekdays.clone(), 30);
        let late = check_calling_window(&paris(&thirty), at("2026-11-23T19:59:40+01:00"), None)
            .expect("closes in 20 s: denied");
        assert_eq!(late.reason.code, ReasonCode::OutsideCallingHours);
        assert_eq!(late.lifts_at, Some(at("2026-11-24T09:00:00+01:00")));
        assert!(
            late.reason.detail.contains("window_margin_seconds"),
            "{}",
            late.reason.detail
        );
        // Through the memo too: its answer at 19:59:20 (closing at 20:00)
        // is the one reused at 19:59:31.
        let memo = WindowMemo::default();
        for memo in [None, Some(&memo)] {
            assert!(
                check_calling_window(&paris(&thirty), at("2026-11-23T19:59:20+01:00"), memo)
                    .is_none(),
                "40 s left"
            );
            assert!(
                check_calling_window(&paris(&thirty), at("2026-11-23T19:59:31+01:00"), memo)
                    .is_some(),
                "29 s left"
            );
        }
        assert!(
            check_calling_window(
                &paris(&thirty),
                at("2026-11-23T19:59:20+01:00"),
                Some(&memo)
            )
            .is_none(),
            "the memo's answer at the close does not stick"
        );
        let none = rules(weekdays, 0);
        assert!(
            check_calling_window(&paris(&none), at("2026-11-23T19:59:59+01:00"), None).is_none()
        );
        // Hours running into the next day's do not close at midnight.
        let mut overnight = WeeklyHours::weekdays(&[Span::hours(9, 24)]);
        overnight.days[1] = Some(vec![Span::hours(0, 2), Span::hours(9, 24)]);
        let overnight = rules(overnight, 30);
        assert!(
            check_calling_window(&paris(&overnight), at("2026-11-23T23:59:50+01:00"), None)
                .is_none(),
            "Monday's hours run on into Tuesday's"
        );
        let closing =
            check_calling_window(&paris(&overnight), at("2026-11-24T01:59:45+01:00"), None)
                .expect("Tuesday 02:00 closes");
        assert_eq!(closing.lifts_at, Some(at("2026-11-24T09:00:00+01:00")));
    }
}
