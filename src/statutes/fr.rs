//! France (compliance rules §4): Bloctel opt-out until 10 August 2026,
//! opt-in from 11 August 2026.

use jiff::SignedDuration;
use jiff::civil::date;

use super::{
    CallerIdRules, CliType, ConsentRegime, ConsentRule, Exemptions, Holiday, Period,
    RegistryRequirement, Rule, Statute,
};
use crate::calling::{AttemptLimit, Span, WeeklyHours};
use crate::model::RegistryKind;

/// Loi n° 2025-594 of 30 June 2025, art. 13 III: opt-in from this day.
pub(super) const OPT_IN_FROM: jiff::civil::Date = date(2026, 8, 11);

pub(super) fn statute() -> Statute {
    let mut s = Statute::new("FR", "Europe/Paris");
    let contract = Period::Days(0);
    s.registry = vec![
        Rule::until(
            OPT_IN_FROM,
            Some(RegistryRequirement {
                name: "Bloctel",
                kind: RegistryKind::Allowlist,
                valid_days: 30,
                exemptions: Exemptions {
                    customer: Some(contract),
                    ..Exemptions::default()
                },
            }),
            "FR-BLOCTEL, FR-BLOCTEL-FRESH: C. consom. L.223-1 (before 11 Aug 2026); purged file \
             valid 30 days (secondary sources); calls under a current contract exempt",
        ),
        Rule::since(
            OPT_IN_FROM,
            None,
            "FR-OPTIN: loi n° 2025-594 of 30 Jun 2025 art. 13 III: Bloctel ends on 11 Aug 2026",
        ),
    ];
    s.consent = vec![
        Rule::until(
            OPT_IN_FROM,
            ConsentRule::OPT_OUT,
            "C. consom. L.223-1 as in force until 10 Aug 2026 (Bloctel opt-out)",
        ),
        Rule::since(
            OPT_IN_FROM,
            ConsentRule {
                regime: ConsentRegime::OptIn,
                customer_exemption: Some(contract),
                consent_max_age: None,
                stand_in_needs_list: None,
            },
            "FR-OPTIN: loi n° 2025-594 of 30 Jun 2025 art. 13 III, C. consom. L.223-1 amended: \
             no telephone prospecting without prior consent, except within an ongoing contract",
        ),
    ];
    s.hours = vec![Rule::since(
        date(2023, 3, 1),
        WeeklyHours {
            holidays: Some(Vec::new()),
            ..WeeklyHours::weekdays(&[Span::hours(10, 13), Span::hours(14, 20)])
        },
        "FR-HOURS: C. consom. art. D.223-9 (décret 2022-1313, from 1 Mar 2023): Mon-Fri \
         10-13 and 14-20, never on weekends or public holidays",
    )];
    s.attempt_caps = vec![Rule::since(
        date(2023, 3, 1),
        AttemptLimit {
            max_attempts: 4,
            window: SignedDuration::from_hours(30 * 24),
        },
        "FR-FREQ: C. consom. art. D.223-9 al. 3: at most 4 calls or attempts in 30 days",
    )];
    s.holidays = vec![
        Holiday::fixed("Jour de l'an", 1, 1),
        Holiday::easter("Lundi de Paques", 1),
        Holiday::fixed("Fete du Travail", 5, 1),
        Holiday::fixed("Victoire 1945", 5, 8),
        Holiday::easter("Ascension", 39),
        Holiday::easter("Lundi de Pentecote", 50),
        Holiday::fixed("Fete nationale", 7, 14),
        Holiday::fixed("Assomption", 8, 15),
        Holiday::fixed("Toussaint", 11, 1),
        Holiday::fixed("Armistice", 11, 11),
        Holiday::fixed("Noel", 12, 25),
    ];
    s.caller_id = vec![Rule::since(
        date(2023, 1, 1),
        CallerIdRules {
            forbidden_types: &[CliType::Mobile],
            ..CallerIdRules::default()
        },
        "FR-CLI: ARCEP numbering plan from 1 Jan 2023: no 06/07 mobile numbers as caller ID \
         of call centres",
    )];
    s
}

/// Saint-Barthélemy, Saint-Martin and Saint-Pierre-et-Miquelon: overseas
/// collectivities (Constitution art. 74) with region codes of their own.
/// Without a statute they had no window and no cap (found by review: a
/// consent allowed a call to Saint-Martin at 07:00 on a Sunday, and a
/// fifth call in 30 days). Whether France's consumer code applies there
/// as in the departments is not verified here, so they take France's
/// window, holidays, caps and caller-ID rules (each only denies) and stay
/// opt-in without the contract that stands in for consent in France.
pub(super) fn collectivity_statutes() -> Vec<Statute> {
    let france = statute();
    [
        (
            "BL",
            "America/St_Barthelemy",
            Some(Holiday::fixed(
                "Abolition of slavery (Saint-Barthélemy)",
                10,
                9,
            )),
        ),
        (
            "MF",
            "America/Marigot",
            Some(Holiday::fixed("Abolition of slavery (Saint-Martin)", 5, 28)),
        ),
        ("PM", "America/Miquelon", None),
    ]
    .into_iter()
    .map(|(region, zone, own_holiday)| {
        let mut s = Statute::new(region, zone);
        s.consent = vec![Rule::always(
            ConsentRule::OPT_IN,
            "FR-COLLECTIVITY: consent required (dialgate's reading: France's law in an art. 74 \
             collectivity is not verified here; no contract stands in)",
        )];
        s.hours.clone_from(&france.hours);
        s.holidays.clone_from(&france.holidays);
        s.holidays.extend(own_holiday);
        s.attempt_caps.clone_from(&france.attempt_caps);
        s.caller_id.clone_from(&france.caller_id);
        s
    })
    .collect()
}
