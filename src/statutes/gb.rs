//! United Kingdom (compliance rules §3).

use jiff::civil::Weekday;

use super::holidays::WeekendShift;
use super::{
    CallerIdRules, CliType, ConsentRule, Exemptions, Holiday, RegistryRequirement, Rule, Statute,
};
use crate::calling::{Span, WeeklyHours};
use crate::model::RegistryKind;

pub(super) fn statute() -> Statute {
    let mut s = Statute::new("GB", "Europe/London");
    s.registry = vec![Rule::always(
        Some(RegistryRequirement {
            name: "TPS",
            kind: RegistryKind::Blocklist,
            valid_days: 28,
            exemptions: Exemptions {
                consent: true,
                ..Exemptions::default()
            },
        }),
        "UK-TPS, UK-TPS-28: PECR reg. 21 (ICO live-calls guidance): no live marketing calls to \
         TPS/CTPS numbers unless the person told this caller they do not object; screen every \
         28 days",
    )];
    s.consent = vec![Rule::always(
        ConsentRule::OPT_OUT,
        "UK-TPS: PECR reg. 21 (opt-out through the TPS)",
    )];
    s.hours = vec![Rule::always(
        WeeklyHours::every_day(&[Span::hours(9, 21)]),
        "UK-HOURS: no statutory window found (UNVERIFIED); dialgate's default 09-21, narrow or \
         replace it with [destination.GB.calling_hours]",
    )];
    // The bank holidays of the three jurisdictions together (gov.uk/bank-
    // holidays: England and Wales, Scotland, Northern Ireland): a GB
    // number's nation is not known for a mobile, so the stricter reading
    // closes every one of them (found by review: a campaign closing bank
    // holidays called Edinburgh on 2 January, Belfast on 12 July).
    s.holidays = vec![
        Holiday::fixed("New Year's Day", 1, 1).shifted(WeekendShift::NextFreeWeekday),
        Holiday::fixed("2nd January (Scotland)", 1, 2).shifted(WeekendShift::NextFreeWeekday),
        Holiday::fixed("St Patrick's Day (Northern Ireland)", 3, 17)
            .shifted(WeekendShift::NextFreeWeekday),
        Holiday::easter("Good Friday", -2),
        Holiday::easter("Easter Monday (not Scotland)", 1),
        Holiday::nth("Early May bank holiday", 5, Weekday::Monday, 1),
        Holiday::nth("Spring bank holiday", 5, Weekday::Monday, 0),
        Holiday::fixed("Battle of the Boyne (Northern Ireland)", 7, 12)
            .shifted(WeekendShift::NextFreeWeekday),
        Holiday::nth("Summer bank holiday (Scotland)", 8, Weekday::Monday, 1),
        Holiday::nth("Summer bank holiday (not Scotland)", 8, Weekday::Monday, 0),
        Holiday::fixed("St Andrew's Day (Scotland)", 11, 30).shifted(WeekendShift::NextFreeWeekday),
        Holiday::fixed("Christmas Day", 12, 25).shifted(WeekendShift::NextFreeWeekday),
        Holiday::fixed("Boxing Day", 12, 26).shifted(WeekendShift::NextFreeWeekday),
    ];
    s.caller_id = vec![Rule::always(
        CallerIdRules {
            forbidden_types: &[CliType::PremiumRate],
            ..CallerIdRules::default()
        },
        "UK-CLI: Ofcom General Condition C6 (from 1 Oct 2018): a valid, dialable number the \
         caller may use; premium-rate numbers are not",
    )];
    s
}
