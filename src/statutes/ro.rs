//! Romania (compliance rules §7): treated as opt-in.

use super::{ConsentRule, Holiday, Rule, Statute};

pub(super) fn statute() -> Statute {
    let mut s = Statute::new("RO", "Europe/Bucharest");
    s.registry = vec![Rule::always(
        None,
        "RO: no national do-not-call registry found (UNVERIFIED)",
    )];
    s.consent = vec![Rule::always(
        ConsentRule::OPT_IN,
        "RO-AUTO: Law 506/2004 art. 12 (prior express consent for automated calls); RO-LIVE: no \
         specific statute for live calls found (UNVERIFIED), so dialgate requires consent",
    )];
    s.holidays = vec![
        Holiday::fixed("Anul Nou", 1, 1),
        Holiday::fixed("Anul Nou (a doua zi)", 1, 2),
        Holiday::fixed("Boboteaza", 1, 6).since_year(2024),
        Holiday::fixed("Sfântul Ioan", 1, 7).since_year(2024),
        Holiday::fixed("Ziua Unirii", 1, 24),
        Holiday::orthodox_easter("Vinerea Mare", -2),
        Holiday::orthodox_easter("Paștele", 0),
        Holiday::orthodox_easter("A doua zi de Paște", 1),
        Holiday::fixed("Ziua Muncii", 5, 1),
        Holiday::fixed("Ziua Copilului", 6, 1),
        Holiday::orthodox_easter("Rusaliile", 49),
        Holiday::orthodox_easter("A doua zi de Rusalii", 50),
        Holiday::fixed("Adormirea Maicii Domnului", 8, 15),
        Holiday::fixed("Sfântul Andrei", 11, 30),
        Holiday::fixed("Ziua Națională", 12, 1),
        Holiday::fixed("Crăciunul", 12, 25),
        Holiday::fixed("Crăciunul (a doua zi)", 12, 26),
    ];
    s
}
