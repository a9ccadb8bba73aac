//! Spain (compliance rules §5).

use jiff::civil::date;

use super::holidays::WeekendShift;
use super::{
    CallerIdRules, CliType, ConsentRegime, ConsentRule, Holiday, Period, ReservedPrefix, Rule,
    Statute,
};
use crate::calling::{Span, WeeklyHours};
use crate::model::Purpose;

/// Ley 10/2025: in force 28 Dec 2025 with 12 months to adapt. Whether the
/// consent renewal waits for the adaptation's end (28 Dec 2026) is not
/// clear; dialgate applies it from the law's entry into force (the stricter
/// reading, and the rule as the reference states it).
const RENEWAL_FROM: jiff::civil::Date = date(2025, 12, 28);
/// The end of Ley 10/2025's adaptation period: commercial calls present a
/// number of the range reserved for them (ES-SAC).
const COMMERCIAL_RANGE_FROM: jiff::civil::Date = date(2026, 12, 28);

pub(super) fn statute() -> Statute {
    let mut s = Statute::new("ES", "Europe/Madrid");
    s.registry = vec![Rule::always(
        None,
        "ES-ROBINSON: Lista Robinson is consulted only for people who did not consent; under \
         opt-in it is optional (configure it as a block-list to apply it)",
    )];
    let opt_in = ConsentRule {
        regime: ConsentRegime::OptIn,
        customer_exemption: Some(Period::Months(12)),
        consent_max_age: None,
        // ES-CONSENT (not for numbers on Lista Robinson) and ES-ROBINSON
        // (consulted before calling people who did not consent).
        stand_in_needs_list: Some("Lista Robinson (ES-ROBINSON: LOPDGDD art. 23.4)"),
    };
    s.consent = vec![
        Rule {
            value: opt_in,
            from: Some(date(2023, 6, 29)),
            until: Some(RENEWAL_FROM),
            source: "ES-CONSENT: Ley 11/2022 General de Telecomunicaciones art. 66.1.b (from 29 \
                     Jun 2023): prior consent, or a customer relationship ended at most 1 year \
                     earlier (secondary sources)",
        },
        Rule::since(
            RENEWAL_FROM,
            ConsentRule {
                consent_max_age: Some(Period::Months(24)),
                ..opt_in
            },
            "ES-CONSENT and ES-SAC: Ley 11/2022 art. 66.1.b; Ley 10/2025 (BOE 27 Dec 2025, in \
             force the next day, 12 months to adapt): a consent to commercial calls must be \
             renewed every 2 years (secondary sources; applied from the law's entry into force, not from the end of the \
             adaptation period: the stricter reading)",
        ),
    ];
    s.hours = vec![Rule::always(
        WeeklyHours {
            holidays: Some(Vec::new()),
            ..WeeklyHours::weekdays(&[Span::hours(9, 21)])
        },
        "ES-HOURS: TRLGDCU art. 96.2: no commercial calls before 09:00 or after 21:00, nor on \
         weekends or public holidays",
    )];
    // The national holidays (Estatuto de los Trabajadores art. 37.2; the
    // yearly resolution of the Dirección General de Trabajo in the BOE
    // lists each community's). Most of Spain's holidays are regional, and
    // three kinds are kept so widely that they are closed everywhere here
    // (the stricter reading; other regional and local days go in
    // `[destination.ES] extra_holidays`): Holy Thursday (every community
    // but Catalonia and, some years, Valencia), Easter Monday (Catalonia,
    // Valencia, the Balearics, Navarre, the Basque Country, La Rioja, some
    // years others), and the Monday after a national holiday falling on a
    // Sunday (moved there by many communities).
    let national = |h: Holiday| h.shifted(WeekendShift::SundayToMonday);
    s.holidays = vec![
        national(Holiday::fixed("Año Nuevo", 1, 1)),
        national(Holiday::fixed("Epifanía", 1, 6)),
        Holiday::easter("Jueves Santo (regional, nearly everywhere)", -3),
        Holiday::easter("Viernes Santo", -2),
        Holiday::easter("Lunes de Pascua (regional, in several communities)", 1),
        national(Holiday::fixed("Fiesta del Trabajo", 5, 1)),
        national(Holiday::fixed("Asunción", 8, 15)),
        national(Holiday::fixed("Fiesta Nacional", 10, 12)),
        national(Holiday::fixed("Todos los Santos", 11, 1)),
        national(Holiday::fixed("Día de la Constitución", 12, 6)),
        national(Holiday::fixed("Inmaculada Concepción", 12, 8)),
        national(Holiday::fixed("Navidad", 12, 25)),
    ];
    let cli_2025 = CallerIdRules {
        // Only what the order names: geographic and 800/900 numbers of
        // Spain's plan. Premium-rate (803/806/807), shared-cost
        // (901/902), personal (70x), UAN (51x), mobile and foreign
        // numbers are refused (the stricter reading; authorised short
        // numbers are not E.164 caller IDs).
        permitted_types: Some(&[CliType::FixedLine, CliType::TollFree]),
        domestic_only: true,
        ..CallerIdRules::default()
    };
    s.caller_id = vec![
        Rule {
            value: cli_2025,
            from: Some(date(2025, 6, 7)),
            until: Some(COMMERCIAL_RANGE_FROM),
            source: "ES-CLI-2025: Orden TDF/149/2025, from 7 Jun 2025: no mobile numbers as caller \
                     ID of commercial calls; 800/900 freephone and geographic numbers of Spain's \
                     plan only",
        },
        Rule::since(
            COMMERCIAL_RANGE_FROM,
            CallerIdRules {
                reserved_prefixes: &[ReservedPrefix {
                    prefix: "400",
                    purposes: &[Purpose::Marketing],
                    // Nine digits, 400XXXXXX.
                    digits: (9, 9),
                }],
                reserved_required: &[Purpose::Marketing],
                ..cli_2025
            },
            "ES-SAC and ES-CLI-2025: Ley 10/2025 de Servicios de Atención a la Clientela (BOE 27 \
             Dec 2025, in force 28 Dec 2025, 12 months to adapt): commercial calls must present \
             a specific numeric code distinct from customer-service numbers, and carriers block \
             those that do not; the range is 400 with nine digits (400XXXXXX), attributed by a \
             resolution of the Secretaría de Estado de Telecomunicaciones put to consultation on \
             4 Feb 2026 (secondary sources: El País, RTVE, 4 Feb 2026; the resolution's final \
             text and date were not verified): marketing calls present a 400 number, other \
             purposes the numbers of the 2025 order; applied from the end of the law's \
             adaptation period, 28 Dec 2026 (UNVERIFIED)",
        ),
    ];
    s
}
