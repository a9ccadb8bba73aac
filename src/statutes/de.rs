//! Germany (compliance rules §6): opt-in, no national registry.

use super::{CallerIdRules, ConsentRule, Holiday, Rule, Statute};

pub(super) fn statute() -> Statute {
    let mut s = Statute::new("DE", "Europe/Berlin");
    s.registry = vec![Rule::always(
        None,
        "DE: no national do-not-call registry (consent regime)",
    )];
    s.consent = vec![Rule::always(
        ConsentRule::OPT_IN,
        "DE-CONSENT: UWG §7(2) Nr. 1: advertising calls to consumers need prior express consent",
    )];
    s.caller_id = vec![Rule::always(
        CallerIdRules::default(),
        "DE-CLI: suppressing the caller number on advertising calls is forbidden (§102(2) TKG \
         2009; its place in the TKG 2021 UNVERIFIED)",
    )];
    s.holidays = vec![
        Holiday::fixed("Neujahr", 1, 1),
        Holiday::easter("Karfreitag", -2),
        Holiday::easter("Ostermontag", 1),
        Holiday::fixed("Tag der Arbeit", 5, 1),
        Holiday::easter("Christi Himmelfahrt", 39),
        Holiday::easter("Pfingstmontag", 50),
        Holiday::fixed("Tag der Deutschen Einheit", 10, 3),
        Holiday::fixed("1. Weihnachtstag", 12, 25),
        Holiday::fixed("2. Weihnachtstag", 12, 26),
    ];
    s
}
