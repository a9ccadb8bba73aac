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

/// `OUTSIDE_CALLING_HOURS` when `now` is outside the window; `memo`, when
/// given, answers repeated questions (with the same answer).
pub fn check_calling_window(
    input: &WindowInput<'_>,
    now: Timestamp,
    memo: Option<&WindowMemo>,
) -> Option<TimedDeny> {
    let check = match memo {
        Some(memo) => memo.check(input, now),
        None => calling::check(input, now),
    };
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
                    None => format!("no calling window for {} in the next weeks", input.region),
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

/// `ATTEMPT_LIMIT` when the cap is reached; `attempts` are earlier ALLOWs.
pub fn check_attempt_limit(
    limit: Option<AttemptLimit>,
    attempts: &[Timestamp],
    now: Timestamp,
) -> Option<TimedDeny> {
    let limit = limit?;
    let since = now - limit.window;
    let mut counted: Vec<Timestamp> = attempts
        .iter()
        .copied()
        .filter(|t| *t > since && *t <= now)
        .collect();
    if counted.len() < limit.max_attempts as usize {
        return None;
    }
    counted.sort();
    // The cap lifts when enough of the oldest attempts have left the window.
    let excess = counted.len() - limit.max_attempts as usize;
    let lifts_at = counted[excess] + limit.window;
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
}
