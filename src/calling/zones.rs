//! Where a called number is, in time: its candidate time zones (and, for
//! NANP numbers, its state). A number that may be in several zones gets all
//! of them, and the calling window is their intersection (the strictest).

/// IANA zones by region; the first is the main one. Regions missing here
/// have no known local time: a calling window for them fails closed.
const REGION_ZONES: &[(&str, &[&str])] = &[
    ("IT", &["Europe/Rome"]),
    ("SM", &["Europe/San_Marino"]),
    ("VA", &["Europe/Vatican"]),
    ("FR", &["Europe/Paris"]),
    ("ES", &["Europe/Madrid", "Atlantic/Canary"]),
    (
        "PT",
        &["Europe/Lisbon", "Atlantic/Madeira", "Atlantic/Azores"],
    ),
    ("GB", &["Europe/London"]),
    ("IE", &["Europe/Dublin"]),
    ("DE", &["Europe/Berlin"]),
    ("AT", &["Europe/Vienna"]),
    ("CH", &["Europe/Zurich"]),
    ("BE", &["Europe/Brussels"]),
    ("NL", &["Europe/Amsterdam"]),
    ("LU", &["Europe/Luxembourg"]),
    ("PL", &["Europe/Warsaw"]),
    ("RO", &["Europe/Bucharest"]),
    ("GR", &["Europe/Athens"]),
    ("SE", &["Europe/Stockholm"]),
    ("DK", &["Europe/Copenhagen"]),
    ("NO", &["Europe/Oslo"]),
    ("FI", &["Europe/Helsinki"]),
    ("CZ", &["Europe/Prague"]),
    ("SK", &["Europe/Bratislava"]),
    ("HU", &["Europe/Budapest"]),
    ("SI", &["Europe/Ljubljana"]),
    ("HR", &["Europe/Zagreb"]),
    ("MT", &["Europe/Malta"]),
    (
        "US",
        &[
            "America/New_York",
            "America/Chicago",
            "America/Denver",
            "America/Phoenix",
            "America/Los_Angeles",
            "America/Anchorage",
            "America/Adak",
            "Pacific/Honolulu",
        ],
    ),
    (
        "CA",
        &[
            "America/St_Johns",
            "America/Halifax",
            "America/Toronto",
            "America/Winnipeg",
            "America/Regina",
            "America/Edmonton",
            "America/Vancouver",
        ],
    ),
];

const ET: &[&str] = &["America/New_York"];
const CT: &[&str] = &["America/Chicago"];
const MT: &[&str] = &["America/Denver"];
const AZ: &[&str] = &["America/Phoenix"];
const PT: &[&str] = &["America/Los_Angeles"];

/// US area codes whose state and zone(s) are known; any other area code is
/// treated as possibly anywhere in the US (all zones, every state overlay).
/// Area codes that straddle a zone line list both zones.
const NANP: &[(&[u16], &str, &[&str])] = &[
    (
        &[
            212, 315, 332, 347, 516, 518, 585, 607, 631, 646, 680, 716, 718, 838, 845, 914, 917,
            929, 934,
        ],
        "NY",
        ET,
    ),
    (
        &[201, 551, 609, 640, 732, 848, 856, 862, 908, 973],
        "NJ",
        ET,
    ),
    (
        &[
            215, 223, 267, 272, 412, 445, 484, 570, 610, 717, 724, 814, 878,
        ],
        "PA",
        ET,
    ),
    (&[339, 351, 413, 508, 617, 774, 781, 857, 978], "MA", ET),
    (&[203, 475, 860, 959], "CT", ET),
    (&[229, 404, 470, 478, 678, 706, 762, 770, 912], "GA", ET),
    (&[202], "DC", ET),
    (&[276, 434, 540, 571, 703, 757, 804, 826, 948], "VA", ET),
    (&[240, 301, 410, 443, 667], "MD", ET),
    (&[252, 336, 704, 743, 828, 910, 919, 980, 984], "NC", ET),
    (&[803, 839, 843, 854, 864], "SC", ET),
    (
        &[
            216, 220, 234, 326, 330, 380, 419, 440, 513, 567, 614, 740, 937,
        ],
        "OH",
        ET,
    ),
    (
        &[231, 248, 269, 313, 517, 586, 616, 734, 810, 947, 989],
        "MI",
        ET,
    ),
    (
        &[
            239, 305, 321, 352, 386, 407, 561, 656, 689, 727, 754, 772, 786, 813, 863, 904, 941,
            954,
        ],
        "FL",
        ET,
    ),
    (&[448, 850], "FL", &["America/New_York", "America/Chicago"]),
    (
        &[
            217, 224, 309, 312, 331, 447, 464, 618, 630, 708, 773, 779, 815, 847, 872,
        ],
        "IL",
        CT,
    ),
    (
        &[
            210, 214, 254, 281, 325, 346, 361, 409, 430, 469, 512, 682, 713, 726, 737, 806, 817,
            830, 832, 903, 936, 940, 945, 956, 972, 979,
        ],
        "TX",
        CT,
    ),
    (&[915], "TX", MT),
    (&[218, 320, 507, 612, 651, 763, 952], "MN", CT),
    (&[262, 414, 534, 608, 715, 920], "WI", CT),
    (&[314, 417, 573, 636, 660, 816], "MO", CT),
    (&[225, 318, 337, 504, 985], "LA", CT),
    (&[205, 251, 256, 334, 659, 938], "AL", CT),
    (&[319, 515, 563, 641, 712], "IA", CT),
    (&[405, 539, 580, 918], "OK", CT),
    (&[479, 501, 870], "AR", CT),
    (&[228, 601, 662, 769], "MS", CT),
    (&[303, 719, 720, 970, 983], "CO", MT),
    (&[385, 435, 801], "UT", MT),
    (&[505, 575], "NM", MT),
    (&[406], "MT", MT),
    (&[307], "WY", MT),
    (&[480, 520, 602, 623], "AZ", AZ),
    (&[928], "AZ", &["America/Phoenix", "America/Denver"]),
    (
        &[
            209, 213, 279, 310, 323, 341, 350, 408, 415, 424, 442, 510, 530, 559, 562, 619, 626,
            628, 650, 657, 661, 669, 707, 714, 747, 760, 805, 818, 820, 831, 840, 858, 909, 916,
            925, 949, 951,
        ],
        "CA",
        PT,
    ),
    (&[206, 253, 360, 425, 509, 564], "WA", PT),
    (&[702, 725, 775], "NV", PT),
    (&[458, 503, 971], "OR", PT),
    (&[541], "OR", &["America/Los_Angeles", "America/Denver"]),
    (&[907], "AK", &["America/Anchorage", "America/Adak"]),
    (&[808], "HI", &["Pacific/Honolulu"]),
];

/// Where a number is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Whereabouts {
    /// Candidate IANA zones (at least one), or empty when unknown.
    pub zones: &'static [&'static str],
    /// The state, when the region has state rules and the area code is known.
    pub state: Option<&'static str>,
}

/// The candidate zones of a number of `region` with E.164 `digits` (no `+`).
pub fn locate(region: &str, digits: &str) -> Whereabouts {
    if region == "US"
        && let Some(npa) = digits.get(1..4).and_then(|d| d.parse::<u16>().ok())
        && let Some((_, state, zones)) = NANP.iter().find(|(npas, _, _)| npas.contains(&npa))
    {
        return Whereabouts {
            zones,
            state: Some(state),
        };
    }
    Whereabouts {
        zones: REGION_ZONES
            .iter()
            .find(|(r, _)| *r == region)
            .map(|(_, zones)| *zones)
            .unwrap_or_default(),
        state: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_locate() {
        assert_eq!(locate("IT", "393331234567").zones, ["Europe/Rome"]);
        let nyc = locate("US", "12125550123");
        assert_eq!(
            (nyc.zones, nyc.state),
            (&["America/New_York"][..], Some("NY"))
        );
        let panhandle = locate("US", "18505550123");
        assert_eq!(panhandle.zones.len(), 2);
        assert_eq!(panhandle.state, Some("FL"));
        let unknown = locate("US", "16845550123");
        assert_eq!(unknown.zones.len(), 8, "unknown area code: every US zone");
        assert_eq!(unknown.state, None);
        assert!(locate("JP", "81312345678").zones.is_empty());
        for (_, zones) in REGION_ZONES {
            for zone in *zones {
                jiff::tz::TimeZone::get(zone).unwrap_or_else(|e| panic!("{zone}: {e}"));
            }
        }
        for (npas, _, zones) in NANP {
            for zone in *zones {
                jiff::tz::TimeZone::get(zone).unwrap_or_else(|e| panic!("{npas:?} {zone}: {e}"));
            }
        }
    }

    #[test]
    fn test_no_area_code_listed_twice() {
        let mut seen = std::collections::HashSet::new();
        for (npas, _, _) in NANP {
            for npa in *npas {
                assert!(seen.insert(*npa), "{npa} listed twice");
            }
        }
    }
}
