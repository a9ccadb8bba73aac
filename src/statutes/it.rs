//! Italy (compliance rules §1).

use jiff::civil::date;

use super::{
    CallerIdRules, CliType, ConsentRule, Exemptions, Holiday, Period, RegistryRequirement,
    ReservedPrefix, Rule, Statute,
};
use crate::calling::{Span, WeeklyHours};
use crate::model::{Purpose, RegistryKind};

pub(super) fn statute() -> Statute {
    let mut s = Statute::new("IT", "Europe/Rome");
    s.registry = vec![Rule::always(
        Some(RegistryRequirement {
            name: "RPO",
            kind: RegistryKind::Allowlist,
            valid_days: 15,
            exemptions: Exemptions {
                customer: Some(Period::Days(30)),
                ..Exemptions::default()
            },
        }),
        "IT-RPO-FRESH: DPR 27 Jan 2022 n. 26 art. 8 c.2 (a consultation is valid 15 days); \
         IT-RPO-SURVIVE (b): contract in force or ended at most 30 days earlier (RPO FAQ)",
    )];
    s.consent = vec![Rule::always(
        ConsentRule::OPT_OUT,
        "D.Lgs. 196/2003 art. 130 c.3-bis; L. 11 Jan 2018 n. 5 (opt-out through the RPO)",
    )];
    let mut days = WeeklyHours::weekdays(&[Span::hours(9, 20)]).days;
    days[5] = Some(vec![Span::hours(10, 19)]);
    s.hours = vec![Rule::since(
        date(2024, 9, 28),
        WeeklyHours {
            days,
            holidays: Some(Vec::new()),
            pre_holidays: Some(vec![Span::hours(10, 19)]),
        },
        "IT-HOURS: Garante code of conduct on telemarketing (provv. 148 of 7 Mar 2024, GU n. 73 \
         of 27 Mar 2024): Mon-Fri 09-20, Saturdays and days before holidays 10-19, never on \
         Sundays and holidays; operative from 28 Sep 2024 (press, UNVERIFIED against art. 19)",
    )];
    s.holidays = vec![
        Holiday::fixed("Capodanno", 1, 1),
        Holiday::fixed("Epifania", 1, 6),
        Holiday::easter("Pasqua", 0),
        Holiday::easter("Lunedi dell'Angelo", 1),
        Holiday::fixed("Festa della Liberazione", 4, 25),
        Holiday::fixed("Festa del Lavoro", 5, 1),
        Holiday::fixed("Festa della Repubblica", 6, 2),
        Holiday::fixed("Ferragosto", 8, 15),
        // L. 8 Oct 2025 n. 151 (GU n. 236 of 10 Oct 2025), amending L. 260/1949, from 2026.
        Holiday::fixed("San Francesco d'Assisi", 10, 4).since_year(2026),
        Holiday::fixed("Ognissanti", 11, 1),
        Holiday::fixed("Immacolata Concezione", 12, 8),
        Holiday::fixed("Natale", 12, 25),
        Holiday::fixed("Santo Stefano", 12, 26),
    ];
    s.caller_id = vec![Rule::always(
        CallerIdRules {
            reserved_prefixes: &[
                ReservedPrefix {
                    prefix: "0843",
                    purposes: &[Purpose::Statistical],
                    digits: (6, 12),
                },
                ReservedPrefix {
                    prefix: "0844",
                    purposes: &[Purpose::Marketing, Purpose::MarketResearch],
                    digits: (6, 12),
                },
            ],
            permitted_types: Some(&[
                CliType::FixedLine,
                CliType::Mobile,
                CliType::FixedLineOrMobile,
            ]),
            forbidden_types: &[],
            domestic_only: true,
            reserved_required: &[],
        },
        "IT-CLI-1..4: L. 5/2018 art. 2 and DPR 26/2022 art. 9 (CLI presented); AGCOM 156/18/CIR \
         (0843 statistical surveys, 0844 marketing and market research); AGCOM 60/25/CIR (only \
         Italian geographic and mobile numbers as voice CLI)",
    )];
    s
}
