//! United States (compliance rules §2): federal rules plus the states with
//! their own hours or caps.

use jiff::SignedDuration;
use jiff::civil::{Weekday, date};

use super::holidays::WeekendShift;
use super::{
    ConsentRule, Exemptions, Holiday, Period, RegistryRequirement, Rule, StateStatute, Statute,
};
use crate::calling::{AttemptLimit, Span, WeeklyHours};
use crate::model::RegistryKind;

fn three_a_day() -> AttemptLimit {
    AttemptLimit {
        max_attempts: 3,
        window: SignedDuration::from_hours(24),
    }
}

pub(super) fn statute() -> Statute {
    let mut s = Statute::new("US", "America/New_York");
    s.registry = vec![Rule::always(
        Some(RegistryRequirement {
            name: "DNC",
            kind: RegistryKind::Blocklist,
            valid_days: 31,
            exemptions: Exemptions {
                customer: Some(Period::Months(18)),
                inquiry: Some(Period::Months(3)),
                consent: true,
                consent_in_writing: true,
                consent_after_registration: false,
            },
        }),
        "US-DNC-NAT, US-DNC-FRESH, US-EBR: 16 CFR 310.4(b)(1)(iii)(B), 310.4(b)(3)(iv) (list at \
         most 31 days old), 47 CFR 64.1200(c)(2), (f)(5): established business relationship 18 \
         months after the last transaction, 3 months after an inquiry; 64.1200(c)(2)(ii): the \
         consumer's signed written agreement with this seller, naming the number (a consent \
         whose method is written_agreement)",
    )];
    s.consent = vec![Rule::always(
        ConsentRule::OPT_OUT,
        "US-DNC-NAT: TSR and TCPA (opt-out through the National DNC Registry)",
    )];
    s.hours = vec![Rule::always(
        WeeklyHours::every_day(&[Span::hours(8, 21)]),
        "US-HOURS: TSR 16 CFR 310.4(c), TCPA 47 CFR 64.1200(c)(1): 08:00-21:00 at the called \
         person's location",
    )];
    let eight_to_eight = WeeklyHours::every_day(&[Span::hours(8, 20)]);
    s.states = vec![
        StateStatute {
            code: "FL",
            hours: vec![Rule::since(
                date(2021, 7, 1),
                eight_to_eight.clone(),
                "US-STATE: Fla. Stat. 501.616(6)(a) (SB 1120, from 1 Jul 2021): 08:00-20:00",
            )],
            attempt_caps: vec![Rule::since(
                date(2021, 7, 1),
                three_a_day(),
                "US-STATE: Fla. Stat. 501.616(6)(b) (from 1 Jul 2021): at most 3 calls in 24 \
                 hours to the same person on the same subject (dialgate counts per controller)",
            )],
        },
        StateStatute {
            code: "OK",
            hours: vec![Rule::since(
                date(2022, 11, 1),
                eight_to_eight.clone(),
                "Okla. Stat. tit. 15 §775C.4 (Telephone Solicitation Act of 2022, from 1 Nov \
                 2022): 08:00-20:00 (secondary sources)",
            )],
            attempt_caps: vec![Rule::since(
                date(2022, 11, 1),
                three_a_day(),
                "Okla. Stat. tit. 15 §775C.4 (from 1 Nov 2022): at most 3 calls in 24 hours on \
                 the same subject (secondary sources)",
            )],
        },
        StateStatute {
            code: "MD",
            hours: vec![Rule::since(
                date(2024, 1, 1),
                eight_to_eight.clone(),
                "Md. Com. Law §14-4502 (Stop the Spam Calls Act of 2023, from 1 Jan 2024): \
                 08:00-20:00 (secondary sources)",
            )],
            attempt_caps: vec![Rule::since(
                date(2024, 1, 1),
                three_a_day(),
                "Md. Com. Law §14-4502 (from 1 Jan 2024): at most 3 calls in 24 hours on the same \
                 subject (secondary sources)",
            )],
        },
        StateStatute {
            code: "WA",
            hours: vec![Rule::always(
                eight_to_eight,
                "Rev. Code Wash. 80.36.390(2): 08:00-20:00 (secondary sources)",
            )],
            attempt_caps: Vec::new(),
        },
        StateStatute {
            code: "TX",
            hours: vec![Rule::always(
                WeeklyHours {
                    days: std::array::from_fn(|i| {
                        Some(vec![if i == 6 {
                            Span::hours(12, 21)
                        } else {
                            Span::hours(9, 21)
                        }])
                    }),
                    ..WeeklyHours::default()
                },
                "Tex. Bus. & Com. Code §301.051: 09:00-21:00 Monday to Saturday, 12:00-21:00 on \
                 Sunday (secondary sources)",
            )],
            attempt_caps: Vec::new(),
        },
        StateStatute {
            code: "CT",
            hours: vec![Rule::since(
                date(2023, 10, 1),
                WeeklyHours::every_day(&[Span::hours(9, 20)]),
                "Conn. Gen. Stat. §42-288a as amended in 2023 (Public Act 23-98, from 1 Oct 2023): telephonic sales calls 09:00-20:00 (secondary sources)",
            )],
            attempt_caps: Vec::new(),
        },
    ];
    s.holidays = vec![
        Holiday::fixed("New Year's Day", 1, 1).shifted(WeekendShift::NearestWeekday),
        Holiday::nth("Martin Luther King Jr. Day", 1, Weekday::Monday, 3),
        Holiday::nth("Washington's Birthday", 2, Weekday::Monday, 3),
        Holiday::nth("Memorial Day", 5, Weekday::Monday, 0),
        Holiday::fixed("Juneteenth", 6, 19)
            .shifted(WeekendShift::NearestWeekday)
            .since_year(2021),
        Holiday::fixed("Independence Day", 7, 4).shifted(WeekendShift::NearestWeekday),
        Holiday::nth("Labor Day", 9, Weekday::Monday, 1),
        Holiday::nth("Columbus Day", 10, Weekday::Monday, 2),
        Holiday::fixed("Veterans Day", 11, 11).shifted(WeekendShift::NearestWeekday),
        Holiday::nth("Thanksgiving Day", 11, Weekday::Thursday, 4),
        Holiday::fixed("Christmas Day", 12, 25).shifted(WeekendShift::NearestWeekday),
    ];
    s
}

/// The US territories with region codes of their own in the numbering plan
/// (+1 787/939, 340, 671, 684, 670), each in its own time zone.
const TERRITORIES: [(&str, &str); 5] = [
    ("PR", "America/Puerto_Rico"),
    ("VI", "America/St_Thomas"),
    ("GU", "Pacific/Guam"),
    ("AS", "Pacific/Pago_Pago"),
    ("MP", "Pacific/Saipan"),
];

/// Whether the US Telemarketing Sales Rule reaches calls to `region`: the
/// US and its territories (its 5-year record keeping, 16 CFR 310.5).
pub fn tsr_reaches(region: &str) -> bool {
    region == "US" || TERRITORIES.iter().any(|(r, _)| *r == region)
}

/// The US territories: the federal calling window applies there (the TSR
/// reaches commerce in any territory, 15 U.S.C. 44; the TCPA's "United
/// States" includes them, 47 U.S.C. 153), so they are no longer
/// destinations without a statute and without a window (a consent
/// allowed a call to Puerto Rico at 03:00 there). They stay opt-in, which
/// is stricter than the national registry's opt-out: whether the National
/// DNC Registry's data covers their numbers is not verified here, and
/// without a registry a number would read as clear. So a call needs a
/// consent, inside 08:00-21:00 at the territory's clock.
pub(super) fn territory_statutes() -> Vec<Statute> {
    let us = statute();
    TERRITORIES
        .iter()
        .map(|&(region, zone)| {
            let mut s = Statute::new(region, zone);
            s.consent = vec![Rule::always(
                ConsentRule::OPT_IN,
                "US-TERRITORY: consent required (dialgate's reading, stricter than the \
                 national registry's opt-out, whose coverage of the territories' numbers is \
                 not verified here)",
            )];
            s.hours = vec![Rule::always(
                WeeklyHours::every_day(&[Span::hours(8, 21)]),
                "US-HOURS in a US territory: TSR 16 CFR 310.4(c) (the FTC Act's commerce \
                 includes commerce in any territory, 15 U.S.C. 44), TCPA 47 CFR 64.1200(c)(1) \
                 (47 U.S.C. 153: the United States includes the territories): 08:00-21:00 at \
                 the called person's location",
            )];
            s.caller_id.clone_from(&us.caller_id);
            s
        })
        .collect()
}
