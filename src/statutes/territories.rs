//! Territories with a region code of their own in the numbering plan (and
//! so a destination of their own: +262, +590, +594, +596) whose law on
//! marketing calls is a country's statute here. Without this they had no
//! statute: opt-in, but no calling window and no cap, where France's
//! window (10-13, 14-20 on weekdays, never on holidays) and its 4 calls in
//! 30 days apply (found by review: a Réunion number with a consent was
//! allowed at 07:00 on a Sunday).
//!
//! Only the French overseas departments are listed. France's statute is
//! opt-in since 11 August 2026 (no registry needed) with a window and a
//! cap, where a destination without a statute had neither; it also lets an
//! ongoing contract stand in for consent (a customer relationship), which
//! a destination without a statute did not: French law governs there. The US territories (Puerto
//! Rico, the US Virgin Islands, Guam, ...) are not mapped to the US
//! statute: it is opt-out through the national registry, which would lift
//! the consent they require. They have statutes of their own, the federal
//! window in their own time zone and opt-in (`us::territory_statutes`).

use super::holidays::Holiday;

/// A territory whose calls another region's statute governs.
#[derive(Debug)]
pub struct Territory {
    /// Its own region code (ISO 3166, as the numbering plan names it).
    pub region: &'static str,
    /// The region whose statute applies there.
    pub governed_by: &'static str,
    /// Its main time zone: dated rules switch at its midnight.
    pub zone: &'static str,
    /// Public holidays of its own, on top of the statute's calendar.
    pub holidays: &'static [Holiday],
    pub source: &'static str,
}

/// The legal source of the French overseas departments' mapping.
const FRENCH_OVERSEAS: &str = "Constitution art. 73 (the laws of France apply in the overseas \
     departments: C. consom. L.223-1, D.223-9); commemoration of the abolition of slavery: loi \
     83-550 of 30 Jun 1983, décret 83-1003 of 23 Nov 1983 (Mayotte's 27 April from secondary \
     sources)";

static TERRITORIES: [Territory; 5] = [
    Territory {
        region: "GP",
        governed_by: "FR",
        zone: "America/Guadeloupe",
        holidays: &[Holiday::fixed("Abolition of slavery (Guadeloupe)", 5, 27)],
        source: FRENCH_OVERSEAS,
    },
    Territory {
        region: "MQ",
        governed_by: "FR",
        zone: "America/Martinique",
        holidays: &[Holiday::fixed("Abolition of slavery (Martinique)", 5, 22)],
        source: FRENCH_OVERSEAS,
    },
    Territory {
        region: "GF",
        governed_by: "FR",
        zone: "America/Cayenne",
        holidays: &[Holiday::fixed("Abolition of slavery (Guyane)", 6, 10)],
        source: FRENCH_OVERSEAS,
    },
    Territory {
        region: "RE",
        governed_by: "FR",
        zone: "Indian/Reunion",
        holidays: &[Holiday::fixed("Abolition of slavery (La Réunion)", 12, 20)],
        source: FRENCH_OVERSEAS,
    },
    Territory {
        region: "YT",
        governed_by: "FR",
        zone: "Indian/Mayotte",
        holidays: &[Holiday::fixed("Abolition of slavery (Mayotte)", 4, 27)],
        source: FRENCH_OVERSEAS,
    },
];

/// The territory `region` is, if it is one.
pub fn territory(region: &str) -> Option<&'static Territory> {
    TERRITORIES.iter().find(|t| t.region == region)
}

/// Every territory mapped.
pub fn all() -> &'static [Territory] {
    &TERRITORIES
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every territory names a known zone and a statute the product carries,
    /// and is a region of the numbering plan (else no number reaches it).
    #[test]
    fn test_territories_are_real_regions_with_statutes_and_zones() {
        for territory in all() {
            assert!(
                crate::tz_data::zone(territory.zone).is_ok(),
                "{}",
                territory.zone
            );
            let statute = super::super::statute(territory.region).expect("governed");
            assert_eq!(statute.region, territory.governed_by);
            assert!(
                crate::number::Region::parse(territory.region).is_some(),
                "{}",
                territory.region
            );
            assert_eq!(territory.holidays.len(), 1, "{}", territory.region);
        }
    }
}
