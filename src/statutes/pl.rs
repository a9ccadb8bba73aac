//! Poland (compliance rules §7): opt-in, no national registry.

use jiff::civil::date;

use super::{ConsentRule, Holiday, Rule, Statute};

pub(super) fn statute() -> Statute {
    let mut s = Statute::new("PL", "Europe/Warsaw");
    s.registry = vec![Rule::always(
        None,
        "PL-DNC: no national do-not-call registry found (UNVERIFIED)",
    )];
    s.consent = vec![
        Rule::until(
            date(2024, 11, 10),
            ConsentRule::OPT_IN,
            "Prawo telekomunikacyjne art. 172 (until 9 Nov 2024): prior consent",
        ),
        Rule::since(
            date(2024, 11, 10),
            ConsentRule::OPT_IN,
            "PL-CONSENT: Prawo komunikacji elektronicznej art. 398 ust. 1 (from 10 Nov 2024): no \
             commercial calls without prior consent, B2B numbers included",
        ),
    ];
    s.holidays = vec![
        Holiday::fixed("Nowy Rok", 1, 1),
        Holiday::fixed("Trzech Króli", 1, 6),
        Holiday::easter("Wielkanoc", 0),
        Holiday::easter("Poniedziałek Wielkanocny", 1),
        Holiday::fixed("Święto Pracy", 5, 1),
        Holiday::fixed("Święto Konstytucji 3 Maja", 5, 3),
        Holiday::easter("Zielone Świątki", 49),
        Holiday::easter("Boże Ciało", 60),
        Holiday::fixed("Wniebowzięcie", 8, 15),
        Holiday::fixed("Wszystkich Świętych", 11, 1),
        Holiday::fixed("Święto Niepodległości", 11, 11),
        // Ustawa o dniach wolnych od pracy, amended in 2024: Wigilia from 2025.
        Holiday::fixed("Wigilia", 12, 24).since_year(2025),
        Holiday::fixed("Boże Narodzenie", 12, 25),
        Holiday::fixed("Drugi dzień Bożego Narodzenia", 12, 26),
    ];
    s
}
