//! Table-driven tests of calling windows across their edges, all with `now` passed in.

use super::*;

/// The statute's window rules in force in November 2026.
fn statutory(region: &str) -> DestinationRules {
    let statute = crate::statutes::statute(region);
    let day = jiff::civil::date(2026, 11, 1);
    DestinationRules {
        hours: statute
            .and_then(|s| crate::statutes::in_force(&s.hours, day))
            .map(|r| r.value.clone()),
        extra_holidays: Vec::new(),
        states: statute
            .map(|s| {
                s.states
                    .iter()
                    .filter_map(|st| {
                        crate::statutes::in_force(&st.hours, day)
                            .map(|r| (st.code.to_string(), r.value.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        close_margin: jiff::SignedDuration::ZERO,
    }
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn check_at(
    region: &str,
    zones: &[&str],
    state: Option<&str>,
    campaign: Option<&WeeklyHours>,
    now: &str,
) -> WindowCheck {
    let destination = statutory(region);
    check(
        &WindowInput {
            region,
            zones,
            zones_id: 0,
            state,
            destination: &destination,
            campaign,
            memo_key: 0,
        },
        at(now),
    )
}

fn outside_until(next: &str) -> WindowCheck {
    WindowCheck::Outside {
        next_open: Some(at(next)),
    }
}

fn inside_until(closes: &str) -> WindowCheck {
    WindowCheck::Inside {
        closes_at: at(closes),
    }
}

const ROME: &[&str] = &["Europe/Rome"];

#[test]
fn test_italy_table() {
    // Instants are local times in Rome written with their offset (+01:00 in winter, +02:00 in summer).
    let cases = [
        (
            "Monday 08:59",
            "2026-11-23T08:59:00+01:00",
            outside_until("2026-11-23T09:00:00+01:00"),
        ),
        (
            "Monday 09:00",
            "2026-11-23T09:00:00+01:00",
            inside_until("2026-11-23T20:00:00+01:00"),
        ),
        (
            "Monday 19:59",
            "2026-11-23T19:59:00+01:00",
            inside_until("2026-11-23T20:00:00+01:00"),
        ),
        (
            "Monday 20:00",
            "2026-11-23T20:00:00+01:00",
            outside_until("2026-11-24T09:00:00+01:00"),
        ),
        (
            "Saturday 09:30",
            "2026-11-28T09:30:00+01:00",
            outside_until("2026-11-28T10:00:00+01:00"),
        ),
        (
            "Saturday 18:59",
            "2026-11-28T18:59:00+01:00",
            inside_until("2026-11-28T19:00:00+01:00"),
        ),
        (
            "Saturday 19:00 to Monday",
            "2026-11-28T19:00:00+01:00",
            outside_until("2026-11-30T09:00:00+01:00"),
        ),
        (
            "Sunday noon",
            "2026-11-29T12:00:00+01:00",
            outside_until("2026-11-30T09:00:00+01:00"),
        ),
        (
            "Monday 7 Dec, pre-holiday 09:30",
            "2026-12-07T09:30:00+01:00",
            outside_until("2026-12-07T10:00:00+01:00"),
        ),
        (
            "pre-holiday 19:00 to after the holiday",
            "2026-12-07T19:00:00+01:00",
            outside_until("2026-12-09T09:00:00+01:00"),
        ),
        (
            "8 Dec holiday",
            "2026-12-08T12:00:00+01:00",
            outside_until("2026-12-09T09:00:00+01:00"),
        ),
        (
            "Saturday 5 Dec evening to the pre-holiday Monday",
            "2026-12-05T20:00:00+01:00",
            outside_until("2026-12-07T10:00:00+01:00"),
        ),
        (
            "Easter Monday 2026",
            "2026-04-06T12:00:00+02:00",
            outside_until("2026-04-07T09:00:00+02:00"),
        ),
        (
            "Easter Monday 2025",
            "2025-04-21T12:00:00+02:00",
            outside_until("2025-04-22T09:00:00+02:00"),
        ),
        (
            "Easter Monday 2027",
            "2027-03-29T12:00:00+02:00",
            outside_until("2027-03-30T09:00:00+02:00"),
        ),
        (
            "Christmas to 28 Dec",
            "2026-12-24T19:30:00+01:00",
            outside_until("2026-12-28T09:00:00+01:00"),
        ),
        // Europe switches to summer time on Sunday 29 March 2026: Monday 30th 09:00 is +02:00.
        (
            "across the DST switch",
            "2026-03-28T19:00:00+01:00",
            outside_until("2026-03-30T09:00:00+02:00"),
        ),
        (
            "day after the DST switch",
            "2026-03-30T19:30:00+02:00",
            inside_until("2026-03-30T20:00:00+02:00"),
        ),
    ];
    for (name, now, expected) in cases {
        assert_eq!(check_at("IT", ROME, None, None, now), expected, "{name}");
    }
}

#[test]
fn test_france_lunch_gap_weekends_and_holidays() {
    let paris: &[&str] = &["Europe/Paris"];
    let cases = [
        (
            "12:59",
            "2026-11-23T12:59:00+01:00",
            inside_until("2026-11-23T13:00:00+01:00"),
        ),
        (
            "13:00 lunch",
            "2026-11-23T13:00:00+01:00",
            outside_until("2026-11-23T14:00:00+01:00"),
        ),
        (
            "14:00",
            "2026-11-23T14:00:00+01:00",
            inside_until("2026-11-23T20:00:00+01:00"),
        ),
        (
            "Friday 20:00 to Monday",
            "2026-11-27T20:00:00+01:00",
            outside_until("2026-11-30T10:00:00+01:00"),
        ),
        (
            "11 November",
            "2026-11-11T11:00:00+01:00",
            outside_until("2026-11-12T10:00:00+01:00"),
        ),
    ];
    for (name, now, expected) in cases {
        assert_eq!(check_at("FR", paris, None, None, now), expected, "{name}");
    }
}

#[test]
fn test_us_zones_dst_and_state_overlay() {
    let ny: &[&str] = &["America/New_York"];
    // US DST starts Sunday 8 March 2026 at 02:00 local.
    assert_eq!(
        check_at("US", ny, Some("NY"), None, "2026-03-08T07:59:00-04:00"),
        outside_until("2026-03-08T08:00:00-04:00")
    );
    assert_eq!(
        check_at("US", ny, Some("NY"), None, "2026-03-07T20:59:00-05:00"),
        inside_until("2026-03-07T21:00:00-05:00")
    );
    // Florida closes at 20:00.
    assert_eq!(
        check_at("US", ny, Some("FL"), None, "2026-11-23T20:30:00-05:00"),
        outside_until("2026-11-24T08:00:00-05:00")
    );
    // Unknown area code: every zone and every state overlay; 08:00 in Honolulu is 13:00 in New York.
    let all: &[&str] = &[
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Phoenix",
        "America/Los_Angeles",
        "America/Anchorage",
        "America/Adak",
        "Pacific/Honolulu",
    ];
    // Texas opens at 09:00, which is 14:00 in New York when it is 09:00 in Honolulu.
    assert_eq!(
        check_at("US", all, None, None, "2026-11-23T12:00:00-05:00"),
        outside_until("2026-11-23T14:00:00-05:00")
    );
    // ... and 20:00 (Florida, Oklahoma, Maryland, Washington) in New York closes the window.
    assert_eq!(
        check_at("US", all, None, None, "2026-11-23T14:00:00-05:00"),
        inside_until("2026-11-23T20:00:00-05:00")
    );
}

#[test]
fn test_campaign_hours_only_narrow_and_unknown_zone_fails_closed() {
    let mut evenings = WeeklyHours::default();
    evenings.days[0] = Some(vec![Span::parse("18:00-22:00").unwrap()]);
    assert_eq!(
        check_at(
            "IT",
            ROME,
            None,
            Some(&evenings),
            "2026-11-23T17:00:00+01:00"
        ),
        outside_until("2026-11-23T18:00:00+01:00")
    );
    assert_eq!(
        check_at(
            "IT",
            ROME,
            None,
            Some(&evenings),
            "2026-11-23T19:00:00+01:00"
        ),
        inside_until("2026-11-23T20:00:00+01:00"),
        "the statutory 20:00 still closes"
    );
    assert_eq!(
        check_at("JP", &[], None, None, "2026-11-23T12:00:00Z"),
        WindowCheck::Unrestricted
    );
    assert_eq!(
        check_at("JP", &[], None, Some(&evenings), "2026-11-23T12:00:00Z"),
        WindowCheck::UnknownZone
    );
}

#[test]
fn test_span_parse() {
    assert_eq!(
        Span::parse("09:00-20:00"),
        Some(Span {
            start: 540,
            end: 1200
        })
    );
    assert_eq!(
        Span::parse("00:00-24:00"),
        Some(Span {
            start: 0,
            end: 1440
        })
    );
    for bad in [
        "20:00-09:00",
        "9-20",
        "09:00-24:01",
        "25:00-26:00",
        "09:60-10:00",
        "",
    ] {
        assert_eq!(Span::parse(bad), None, "{bad}");
    }
}

/// The memo gives the same answer as the rule at every minute of 11 days
/// that cross window edges, a holiday and a DST change, in one zone and in
/// several, asked forwards and then backwards.
#[test]
fn test_memo_answers_as_the_rule_does() {
    let mut evenings = WeeklyHours::default();
    evenings.days[0] = Some(vec![Span::parse("18:00-22:00").unwrap()]);
    let italy = statutory("IT");
    let us = statutory("US");
    let us_zones: &[&str] = &["America/New_York", "America/Chicago"];
    let inputs = [
        ("IT", ROME, None, &italy, None),
        ("IT", ROME, None, &italy, Some(&evenings)),
        ("US", us_zones, Some("FL"), &us, None),
        ("US", &[][..], None, &us, None),
    ];
    for (i, (region, zones, state, destination, campaign)) in inputs.into_iter().enumerate() {
        let input = WindowInput {
            region,
            zones,
            zones_id: i as u32 + 1,
            state,
            destination,
            campaign,
            memo_key: i as u32 + 1,
        };
        let memo = WindowMemo::default();
        // 2026-10-24 to 2026-11-03: the end of summer time and All Saints' Day.
        let start = at("2026-10-24T00:00:00Z");
        let minutes: Vec<i64> = (0..11 * 24 * 60).collect();
        for minute in minutes.iter().chain(minutes.iter().rev()) {
            let now = start + jiff::SignedDuration::from_mins(*minute);
            assert_eq!(
                memo.check(&input, now),
                check(&input, now),
                "{region} {zones:?} at {now}"
            );
        }
    }
}

/// A window edge inside the hour skipped by a change to summer time is
/// taken on the strict side: an end at the instant before the gap, a start
/// after it (found by review: hours ending 02:30 in Toronto on 8 March
/// 2026 were open at 03:10, past the jump, until 03:30). In the hour
/// repeated in autumn, an end is its first occurrence and a start its
/// second.
#[test]
fn test_window_edges_inside_a_skipped_or_repeated_hour_are_strict() {
    const TORONTO: &[&str] = &["America/Toronto"];
    let sunday = |span: &str| {
        let mut hours = WeeklyHours::default();
        hours.days[6] = Some(vec![Span::parse(span).unwrap()]);
        hours
    };
    let night = sunday("00:00-02:30");
    assert!(
        matches!(
            check_at("CA", TORONTO, None, Some(&night), "2026-03-08T07:10:00Z"),
            WindowCheck::Outside { .. }
        ),
        "03:10 EDT, after the jump"
    );
    assert_eq!(
        check_at("CA", TORONTO, None, Some(&night), "2026-03-08T06:10:00Z"),
        inside_until("2026-03-08T06:30:00Z"),
        "01:10 EST: open until the end read on the strict side"
    );
    let early = sunday("02:30-05:00");
    assert_eq!(
        check_at("CA", TORONTO, None, Some(&early), "2026-03-08T07:10:00Z"),
        outside_until("2026-03-08T07:30:00Z"),
        "a start in the gap opens after it"
    );
    // 1 November 2026: 01:00-02:00 EDT is followed by 01:00-02:00 EST.
    let fold_end = sunday("00:00-01:30");
    assert!(
        matches!(
            check_at("CA", TORONTO, None, Some(&fold_end), "2026-11-01T05:40:00Z"),
            WindowCheck::Outside { .. }
        ),
        "01:40 EDT, past the first 01:30"
    );
    let fold_start = sunday("01:30-04:00");
    assert_eq!(
        check_at(
            "CA",
            TORONTO,
            None,
            Some(&fold_start),
            "2026-11-01T05:40:00Z"
        ),
        outside_until("2026-11-01T06:30:00Z"),
        "a start in the repeated hour: its second occurrence"
    );
}
