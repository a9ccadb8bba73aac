//! Where a called number is, in time: its candidate time zones from
//! libphonenumber's prefix-to-zone data (`data/libphonenumber/timezones.txt`,
//! the upstream `resources/timezones/map_data.txt`), and for NANP numbers
//! the state, from libphonenumber's area-code geocoding
//! (`data/libphonenumber/geocoding-en-1-npa.txt`), with each overlay area
//! code given the zones of the codes serving its area before it (NANPA's
//! overlay complexes, `data/nanp/overlays.txt`). A number that may be in
//! several zones gets all of them, and the calling window is their
//! intersection (the strictest). Numbers the data does not place have no
//! known local time: a calling window for them fails closed.

use std::collections::HashMap;
use std::sync::LazyLock;

const TIMEZONES: &str = include_str!("../../data/libphonenumber/timezones.txt");
const NANP_AREAS: &str = include_str!("../../data/libphonenumber/geocoding-en-1-npa.txt");
const NANP_OVERLAYS: &str = include_str!("../../data/nanp/overlays.txt");

/// Entries of the upstream data corrected here, each with its reason: the
/// zones that replace the entry's.
const CORRECTIONS: &[(&str, &str, &str)] = &[(
    "212",
    "Africa/Casablanca",
    "Morocco (and Western Sahara, on the same clock) has kept UTC+1 outside Ramadan since 28 October 2018 (decree 2.18.855; tzdb Africa/Casablanca); the data's Atlantic/Canary runs an hour behind it every winter, so a window was an hour off (found by review)",
)];

/// The zones of a data line's prefix, corrected (see [`CORRECTIONS`]).
fn corrected<'a>(prefix: &str, zones: &'a str) -> &'a str {
    CORRECTIONS
        .iter()
        .find(|(p, _, _)| *p == prefix)
        .map_or(zones, |(_, zones, _)| zones)
}

/// US states (and DC) by the names the geocoding data uses.
const STATE_NAMES: &[(&str, &str)] = &[
    ("Alabama", "AL"),
    ("Alaska", "AK"),
    ("Arizona", "AZ"),
    ("Arkansas", "AR"),
    ("California", "CA"),
    ("Colorado", "CO"),
    ("Connecticut", "CT"),
    ("Delaware", "DE"),
    ("Washington D.C.", "DC"),
    ("Florida", "FL"),
    ("Georgia", "GA"),
    ("Hawaii", "HI"),
    ("Idaho", "ID"),
    ("Illinois", "IL"),
    ("Indiana", "IN"),
    ("Iowa", "IA"),
    ("Kansas", "KS"),
    ("Kentucky", "KY"),
    ("Louisiana", "LA"),
    ("Maine", "ME"),
    ("Maryland", "MD"),
    ("Massachusetts", "MA"),
    ("Michigan", "MI"),
    ("Minnesota", "MN"),
    ("Mississippi", "MS"),
    ("Missouri", "MO"),
    ("Montana", "MT"),
    ("Nebraska", "NE"),
    ("Nevada", "NV"),
    ("New Hampshire", "NH"),
    ("New Jersey", "NJ"),
    ("New Mexico", "NM"),
    ("New York", "NY"),
    ("North Carolina", "NC"),
    ("North Dakota", "ND"),
    ("Ohio", "OH"),
    ("Oklahoma", "OK"),
    ("Oregon", "OR"),
    ("Pennsylvania", "PA"),
    ("Rhode Island", "RI"),
    ("South Carolina", "SC"),
    ("South Dakota", "SD"),
    ("Tennessee", "TN"),
    ("Texas", "TX"),
    ("Utah", "UT"),
    ("Vermont", "VT"),
    ("Virginia", "VA"),
    ("Washington State", "WA"),
    ("West Virginia", "WV"),
    ("Wisconsin", "WI"),
    ("Wyoming", "WY"),
];

/// Where a number is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Whereabouts {
    /// Candidate IANA zones (at least one), or empty when unknown.
    pub zones: &'static [&'static str],
    /// Stable id of `zones` (0 = unknown), for memo keys.
    pub zones_id: u32,
    /// The state, when the region has states and the area code is placed.
    pub state: Option<&'static str>,
}

struct ZoneData {
    /// Prefix digits (as a [`prefix_key`]) to an index into `zone_sets`.
    by_prefix: HashMap<u64, u32, foldhash::fast::FixedState>,
    /// The longest prefix starting with these 1-3 digits (a [`prefix_key`]):
    /// an Italian number needs one lookup, not one per possible length.
    longest_under: HashMap<u64, usize, foldhash::fast::FixedState>,
    /// Distinct zone lists; index 0 is the empty (unknown) list.
    zone_sets: Vec<Vec<&'static str>>,
    /// NANP area code to state code.
    states: HashMap<u16, &'static str, foldhash::fast::FixedState>,
    /// (country's zones, a prefix's zones) where the country's run a clock
    /// none of the prefix's runs (Spain's Canary Islands against Madrid;
    /// not Rome's Vatican against Rome), to both sets together: a number of
    /// that prefix that is not a fixed line gets them (see [`locate`]).
    other_clocks: HashMap<(u32, u32), u32, foldhash::fast::FixedState>,
}

impl ZoneData {
    /// The index of `zones` in `zone_sets`, added if new.
    fn intern(&mut self, zones: Vec<&'static str>) -> u32 {
        let id = match self.zone_sets.iter().position(|z| *z == zones) {
            Some(id) => id,
            None => {
                self.zone_sets.push(zones);
                self.zone_sets.len() - 1
            }
        };
        id as u32
    }
}

/// The most digits a prefix key is made of (an E.164 number has 15; 16
/// digits still leave the length its own bits).
const MAX_DIGITS: usize = 16;

fn prefix_key(digits: &str) -> Option<u64> {
    if digits.len() > MAX_DIGITS {
        return None;
    }
    Some(key_of(digits.len(), digits.parse::<u64>().ok()?))
}

/// The key of a prefix of `len` digits worth `value`.
fn key_of(len: usize, value: u64) -> u64 {
    ((len as u64) << 56) | value
}

static DATA: LazyLock<ZoneData> = LazyLock::new(|| {
    let mut data = ZoneData {
        by_prefix: HashMap::default(),
        longest_under: HashMap::default(),
        zone_sets: vec![Vec::new()],
        states: HashMap::default(),
        other_clocks: HashMap::default(),
    };
    for line in TIMEZONES.lines() {
        let Some((prefix, zones)) = line.split_once('|') else {
            continue;
        };
        let Some(key) = prefix_key(prefix) else {
            continue;
        };
        let zones: Vec<&'static str> = corrected(prefix, zones)
            .split('&')
            .filter(|z| !z.is_empty())
            .collect();
        let id = data.intern(zones);
        data.by_prefix.insert(key, id);
        for head in 1..=prefix.len().min(3) {
            if let Some(head) = prefix_key(&prefix[..head]) {
                let longest = data.longest_under.entry(head).or_insert(0);
                *longest = (*longest).max(prefix.len());
            }
        }
    }
    widen_split_area_codes(&mut data);
    give_overlays_their_areas_zones(&mut data);
    note_other_clocks(&mut data);
    for line in NANP_AREAS.lines() {
        let Some((prefix, place)) = line.split_once('|') else {
            continue;
        };
        let Some(npa) = prefix.strip_prefix('1').and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        let state = match place.rsplit_once(", ") {
            Some((_, code)) => STATE_NAMES.iter().map(|(_, c)| *c).find(|c| *c == code),
            None => STATE_NAMES
                .iter()
                .find(|(name, _)| *name == place)
                .map(|(_, c)| *c),
        };
        if let Some(state) = state {
            data.states.insert(npa, state);
        }
    }
    for (overlay, earlier) in overlays() {
        let states: Vec<&'static str> = earlier
            .iter()
            .filter_map(|npa| data.states.get(npa).copied())
            .collect();
        if let Some(&state) = states.first()
            && states.len() == earlier.len()
            && states.iter().all(|s| *s == state)
        {
            data.states.entry(overlay).or_insert(state);
        }
    }
    data
});

/// Each overlay area code with the codes that served its area before it
/// (`data/nanp/overlays.txt`; a malformed line is a test failure,
/// `test_every_overlay_line_is_read`).
fn overlays() -> Vec<(u16, Vec<u16>)> {
    overlay_lines().filter_map(overlay_line).flatten().collect()
}

/// The lines of `data/nanp/overlays.txt` that are not comments.
fn overlay_lines() -> impl Iterator<Item = &'static str> {
    NANP_OVERLAYS
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
}

/// `A&B&C` (one area, oldest first: each takes the codes before it) or
/// `X&Y|A&B` (X and Y each take A and B); `None` if malformed.
fn overlay_line(line: &str) -> Option<Vec<(u16, Vec<u16>)>> {
    let codes = |part: &str| -> Option<Vec<u16>> {
        part.split('&')
            .map(|npa| {
                (npa.len() == 3 && npa.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| npa.parse().ok())
                    .flatten()
            })
            .collect()
    };
    match line.split_once('|') {
        Some((over, under)) => {
            let under = codes(under)?;
            Some(
                codes(over)?
                    .into_iter()
                    .map(|npa| (npa, under.clone()))
                    .collect(),
            )
        }
        None => {
            let group = codes(line)?;
            (group.len() > 1).then(|| {
                (1..group.len())
                    .map(|at| (group[at], group[..at].to_vec()))
                    .collect()
            })
        }
    }
}

/// An overlay area code serves the area of the codes it overlays, but the
/// data places it by its own, single entry: 364 (over 270, western
/// Kentucky) on New York time alone, so an 08:30 call from New York rang
/// at 07:30 in Paducah; likewise 448 (over 850), 930 (over 812), 458 (over
/// 541), and 689 (Orlando) on Chicago time. Each overlay gets the zones
/// the data gives any number of the codes before it (their own entries and
/// their exchanges'), beside its own; the older codes keep theirs (689's
/// wrong entry does not spread to 407). An overlay the data does not list
/// at all (729 over 423) gets those zones instead of every North American
/// one.
fn give_overlays_their_areas_zones(data: &mut ZoneData) {
    let mut area_zones: HashMap<u16, Vec<&'static str>> = HashMap::new();
    for line in TIMEZONES.lines() {
        let Some((prefix, zones)) = line.split_once('|') else {
            continue;
        };
        if let Some(npa) = prefix
            .strip_prefix('1')
            .and_then(|rest| rest.get(..3))
            .and_then(|npa| npa.parse::<u16>().ok())
        {
            area_zones
                .entry(npa)
                .or_default()
                .extend(zones.split('&').filter(|z| !z.is_empty()));
        }
    }
    for (overlay, earlier) in overlays() {
        let Some(key) = prefix_key(&format!("1{overlay}")) else {
            continue;
        };
        let mut all: Vec<&'static str> = earlier
            .iter()
            .filter_map(|npa| area_zones.get(npa))
            .flatten()
            .copied()
            .collect();
        if all.is_empty() {
            continue;
        }
        if let Some(&own) = data.by_prefix.get(&key) {
            all.extend(data.zone_sets[own as usize].iter().copied());
        }
        all.sort_unstable();
        all.dedup();
        let id = data.intern(all);
        data.by_prefix.insert(key, id);
        for head in 1..=3 {
            let Some(head) = prefix_key(&format!("1{overlay}")[..head]) else {
                continue;
            };
            let longest = data.longest_under.entry(head).or_insert(0);
            *longest = (*longest).max(4);
        }
    }
}

/// A North American prefix (an area code, or a block of exchanges) whose
/// longer prefixes the data places in other zones than its own entry gets
/// them all in that entry, which the numbers the data does not list fall
/// back to: the data gives 270 (western Kentucky) New York time while 123
/// of its 124 listed exchanges are on Chicago time, so an unlisted one was
/// called at 08:30 Eastern, 07:30 where it rings; likewise `160535`
/// (Chicago) holds `1605355` (Denver). (775 already lists both zones.)
fn widen_split_area_codes(data: &mut ZoneData) {
    let mut seen: HashMap<String, Vec<&'static str>> = HashMap::new();
    for line in TIMEZONES.lines() {
        let Some((prefix, zones)) = line.split_once('|') else {
            continue;
        };
        if prefix.len() > 4 && prefix.starts_with('1') {
            for len in 4..prefix.len() {
                seen.entry(prefix[..len].to_string())
                    .or_default()
                    .extend(zones.split('&').filter(|z| !z.is_empty()));
            }
        }
    }
    for (area, zones) in seen {
        let Some(key) = prefix_key(&area) else {
            continue;
        };
        let Some(&own) = data.by_prefix.get(&key) else {
            continue;
        };
        let mut all: Vec<&'static str> = data.zone_sets[own as usize].clone();
        all.extend(zones);
        all.sort_unstable();
        all.dedup();
        if all.len() == data.zone_sets[own as usize].len() {
            continue;
        }
        let id = data.intern(all);
        data.by_prefix.insert(key, id);
    }
}

/// Notes, for each prefix outside North America, whether its country's
/// zones run a clock that none of the prefix's zones runs.
fn note_other_clocks(data: &mut ZoneData) {
    let mut same: HashMap<(&'static str, &'static str), bool> = HashMap::new();
    let entries: Vec<(u64, u32)> = data.by_prefix.iter().map(|(k, v)| (*k, *v)).collect();
    for (key, id) in entries {
        let len = (key >> 56) as usize;
        let digits = format!("{:0len$}", key & ((1u64 << 56) - 1));
        if id == 0 || digits.starts_with('1') {
            continue;
        }
        let Some(country) = (1..=len.min(3))
            .find_map(|head| prefix_key(&digits[..head]).and_then(|k| data.by_prefix.get(&k)))
            .copied()
        else {
            continue;
        };
        if country == id {
            continue;
        }
        let prefix_zones = data.zone_sets[id as usize].clone();
        let other = data.zone_sets[country as usize].iter().any(|zone| {
            !prefix_zones.iter().any(|known| {
                *same
                    .entry((zone, known))
                    .or_insert_with(|| same_clock(zone, known))
            })
        });
        if other {
            let mut both = data.zone_sets[country as usize].clone();
            both.extend(prefix_zones.iter().copied());
            both.sort_unstable();
            both.dedup();
            let union = data.intern(both);
            data.other_clocks.insert((country, id), union);
        }
    }
}

/// Whether two zones tell the same time from 2000 to 2040 (their offsets
/// agree at the start and at every transition of either).
fn same_clock(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (Ok(a), Ok(b)) = (crate::tz_data::zone(a), crate::tz_data::zone(b)) else {
        return false;
    };
    let start = jiff::Timestamp::from_second(946_684_800).expect("2000-01-01");
    let end = jiff::Timestamp::from_second(2_208_988_800).expect("2040-01-01");
    let breaks = |zone: &jiff::tz::TimeZone| -> Vec<jiff::Timestamp> {
        zone.following(start)
            .map(|t| t.timestamp())
            .take_while(|t| *t < end)
            .collect()
    };
    std::iter::once(start)
        .chain(breaks(&a))
        .chain(breaks(&b))
        .all(|t| a.to_offset(t) == b.to_offset(t))
}

/// The candidate zones of a number of `region` with E.164 `digits` (no `+`).
pub fn locate(region: &str, digits: &str) -> Whereabouts {
    let data = &*DATA;
    // The keys of the number's leading digits, worked out once (a prefix
    // running into a character that is not a digit has no key).
    let mut keys = [0u64; MAX_DIGITS];
    let mut known = 0;
    let mut value = 0u64;
    for (len, byte) in (1..).zip(digits.bytes().take(MAX_DIGITS)) {
        if !byte.is_ascii_digit() {
            break;
        }
        value = value * 10 + u64::from(byte - b'0');
        keys[len - 1] = key_of(len, value);
        known = len;
    }
    let longest = (1..=known.min(3))
        .rev()
        .find_map(|head| data.longest_under.get(&keys[head - 1]).copied())
        .unwrap_or(0);
    let mut zones_id = (1..=known.min(longest))
        .rev()
        .find_map(|len| data.by_prefix.get(&keys[len - 1]).copied())
        .unwrap_or(0);
    // A number that is not a fixed line (a mobile, a personal or VoIP
    // number) may be anywhere in its country: it gets every zone the
    // country's own entry names, where the data places its prefix in
    // fewer (Spain's mobiles in Madrid alone, though the Canary Islands
    // run an hour behind: 09:30 in Madrid is 08:30 there, before the 09:00
    // the law allows). North American numbers are not typed apart (fixed
    // line or mobile): their area code places them.
    if zones_id != 0
        && !digits.starts_with('1')
        && let Some(country_id) =
            (1..=known.min(3)).find_map(|len| data.by_prefix.get(&keys[len - 1]).copied())
        && let Some(&both) = data.other_clocks.get(&(country_id, zones_id))
        && !crate::number::is_fixed_line(digits)
    {
        zones_id = both;
    }
    let state = match region {
        "US" => digits
            .get(1..4)
            .and_then(|d| d.parse::<u16>().ok())
            .and_then(|npa| data.states.get(&npa).copied()),
        _ => None,
    };
    Whereabouts {
        zones: &data.zone_sets[zones_id as usize],
        zones_id,
        state,
    }
}

/// The zones of a whole region (no number known), for the status page.
pub fn region_zones(calling_code: u16) -> Whereabouts {
    locate("", &calling_code.to_string())
}

/// The one clock of every number under a calling code: its zone, when all
/// the zones the data names there tell the same time (`None` when they do
/// not, as under +1 or +7, or when the data names none).
pub fn one_clock(calling_code: u16) -> Option<&'static str> {
    let zones = region_zones(calling_code).zones;
    let first = *zones.first()?;
    zones
        .iter()
        .all(|zone| same_clock(first, zone))
        .then_some(first)
}

/// The US state codes the geocoding data can name.
pub fn us_state_codes() -> impl Iterator<Item = &'static str> {
    STATE_NAMES.iter().map(|(_, code)| *code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`same_clock`], each pair worked out once.
    fn same_clock_remembered(a: &'static str, b: &'static str) -> bool {
        static SEEN: LazyLock<std::sync::Mutex<HashMap<(&str, &str), bool>>> =
            LazyLock::new(Default::default);
        *SEEN
            .lock()
            .unwrap()
            .entry((a, b))
            .or_insert_with(|| same_clock(a, b))
    }

    /// The lookups as they were, one parse per prefix: the reference for
    /// the keys now worked out in one pass.
    fn reference_zones_id(digits: &str) -> u32 {
        let data = &*DATA;
        let longest = (1..=digits.len().min(3))
            .rev()
            .find_map(|head| {
                prefix_key(&digits[..head]).and_then(|k| data.longest_under.get(&k).copied())
            })
            .unwrap_or(0);
        let by_prefix = (1..=digits.len().min(longest))
            .rev()
            .find_map(|len| prefix_key(&digits[..len]).and_then(|k| data.by_prefix.get(&k)))
            .copied()
            .unwrap_or(0);
        // Not a fixed line, outside North America: its zones and the
        // country's together, when the country's run another clock.
        let country = (1..=digits.len().min(3))
            .find_map(|len| prefix_key(&digits[..len]).and_then(|k| data.by_prefix.get(&k)))
            .copied();
        match country {
            Some(country)
                if by_prefix != 0
                    && !digits.starts_with('1')
                    && data.zone_sets[country as usize].iter().any(|zone| {
                        !data.zone_sets[by_prefix as usize]
                            .iter()
                            .any(|known| same_clock_remembered(zone, known))
                    })
                    && !crate::number::is_fixed_line(digits) =>
            {
                let mut both = data.zone_sets[country as usize].clone();
                both.extend(data.zone_sets[by_prefix as usize].iter().copied());
                both.sort_unstable();
                both.dedup();
                data.zone_sets
                    .iter()
                    .position(|z| *z == both)
                    .expect("the union is a known zone set") as u32
            }
            _ => by_prefix,
        }
    }

    /// Moroccan numbers run on Casablanca's clock, not the data's Canary
    /// one, an hour behind it in winter (found by review); a Moroccan
    /// number at 20:30 there on a January evening was placed at 19:30.
    #[test]
    fn test_moroccan_numbers_run_on_casablancas_clock() {
        for digits in ["212612345678", "212522123456"] {
            assert_eq!(
                locate("MA", digits).zones,
                ["Africa/Casablanca"],
                "{digits}"
            );
        }
        assert_eq!(one_clock(212), Some("Africa/Casablanca"));
    }

    #[test]
    fn test_locate_finds_the_zones_the_prefix_by_prefix_lookup_finds() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut placed = 0;
        for prefix in [
            "1", "1212", "1907", "39", "33", "44", "49", "7", "61", "55", "52", "86", "",
        ] {
            for _ in 0..2000 {
                let len = 4 + (next() % 12) as usize;
                let mut digits = prefix.to_string();
                while digits.len() < len {
                    digits.push(char::from(b'0' + (next() % 10) as u8));
                }
                let expected = reference_zones_id(&digits);
                assert_eq!(locate("", &digits).zones_id, expected, "{digits}");
                placed += usize::from(expected != 0);
            }
        }
        assert!(placed > 10_000, "{placed}");
    }

    #[test]
    fn test_locate() {
        assert_eq!(
            locate("IT", "393331234567").zones,
            ["Europe/Rome", "Europe/Vatican"]
        );
        let nyc = locate("US", "12125550123");
        assert_eq!(
            (nyc.zones, nyc.state),
            (&["America/New_York"][..], Some("NY"))
        );
        let miami = locate("US", "13055550123");
        assert_eq!(miami.state, Some("FL"));
        let pensacola = locate("US", "18502000123");
        assert_eq!(pensacola.zones, ["America/Chicago"], "western panhandle");
        assert_eq!(pensacola.state, Some("FL"));
        assert_eq!(
            locate("US", "12065550123").state,
            Some("WA"),
            "Washington State"
        );
        assert!(locate("JP", "").zones.is_empty(), "no digits, no zone");
        assert_ne!(locate("FR", "33612345678").zones_id, 0);
        for zones in &DATA.zone_sets {
            for zone in zones {
                crate::tz_data::zone(zone).unwrap_or_else(|e| panic!("{zone}: {e}"));
            }
        }
    }

    /// A Spanish mobile may be held in the Canary Islands, an hour behind
    /// Madrid: the data places 6xx and 7xx in Madrid only. Mobiles get both
    /// zones; fixed lines keep the zone of their area.
    #[test]
    fn test_a_mobile_gets_every_zone_of_its_country() {
        let both = ["Atlantic/Canary", "Europe/Madrid"];
        assert_eq!(locate("ES", "34612345678").zones, both);
        assert_eq!(locate("ES", "34712345678").zones, both);
        assert_eq!(locate("ES", "34915550123").zones, ["Europe/Madrid"]);
        assert_eq!(locate("ES", "34928123456").zones, ["Atlantic/Canary"]);
        // North America is unchanged; so is a country whose other zones
        // tell the same time (Italy's Vatican).
        assert_eq!(locate("US", "17753220123").zones, ["America/Los_Angeles"]);
        assert_eq!(locate("IT", "390212345678").zones, ["Europe/Rome"]);
        assert!(same_clock("Europe/Rome", "Europe/Vatican"));
        assert!(!same_clock("Europe/Madrid", "Atlantic/Canary"));
    }

    /// Area code 270 (western Kentucky) is mostly on Central time, but the
    /// data gives the area code New York time: an exchange it does not
    /// list gets both zones; a listed one keeps its own.
    #[test]
    fn test_an_unlisted_exchange_of_a_split_area_code_gets_every_zone() {
        assert_eq!(
            locate("US", "12709990123").zones,
            ["America/Chicago", "America/New_York"]
        );
        assert_eq!(locate("US", "12702020123").zones, ["America/Chicago"]);
        // A block of exchanges too: 160535 is Chicago, 1605355 Denver.
        assert_eq!(
            locate("US", "16053500123").zones,
            ["America/Chicago", "America/Denver"]
        );
        assert_eq!(locate("US", "16053550123").zones, ["America/Denver"]);
        assert_eq!(locate("US", "12125550123").zones, ["America/New_York"]);
    }

    /// Area code 775 includes West Wendover, Nevada, on Mountain time: a
    /// zone per area code would put all of 775 on Pacific time.
    #[test]
    fn test_775_west_wendover_is_on_mountain_time() {
        let wendover = locate("US", "17756640123");
        assert_eq!(wendover.zones, ["America/Denver"]);
        assert_eq!(wendover.state, Some("NV"));
        let reno = locate("US", "17753220123");
        assert_eq!(reno.zones, ["America/Los_Angeles"]);
        let unplaced = locate("US", "17759990123");
        assert!(
            unplaced.zones.contains(&"America/Boise")
                && unplaced.zones.contains(&"America/Los_Angeles"),
            "an exchange not placed gets both zones: {:?}",
            unplaced.zones
        );
    }

    #[test]
    fn test_every_overlay_line_is_read() {
        let mut read = 0;
        for line in overlay_lines() {
            let pairs = overlay_line(line).unwrap_or_else(|| panic!("malformed: {line:?}"));
            assert!(!pairs.is_empty(), "{line:?}");
            read += 1;
        }
        assert!(read > 140, "{read} lines");
        assert!(overlay_line("364&27").is_none());
        assert!(overlay_line("270").is_none());
        assert!(overlay_line("x64|270").is_none());
        assert_eq!(overlay_line("270&364"), Some(vec![(364, vec![270])]));
        assert_eq!(
            overlay_line("564|206&360"),
            Some(vec![(564, vec![206, 360])])
        );
    }

    /// An overlay serves the area of the codes it overlays: 364 over
    /// western Kentucky (270) rings on Central time too, so an 08:30 call
    /// from New York is refused there. Only overlays take zones: 689's
    /// wrong entry (Chicago, for Orlando) does not reach 407, nor 474's
    /// (Winnipeg) Saskatchewan's 306, nor Alberta's zones Vancouver's 604.
    #[test]
    fn test_an_overlay_gets_the_zones_of_the_codes_it_overlays() {
        let central_and_eastern = ["America/Chicago", "America/New_York"];
        for overlay in ["13645550123", "14485550123", "19305550123", "16895550123"] {
            assert_eq!(
                locate("US", overlay).zones,
                central_and_eastern,
                "{overlay}"
            );
        }
        assert_eq!(
            locate("US", "14585550123").zones,
            ["America/Denver", "America/Los_Angeles"]
        );
        assert_eq!(locate("US", "13645550123").state, Some("KY"));
        assert_eq!(locate("US", "14075550123").zones, ["America/New_York"]);
        assert_eq!(locate("CA", "13065550123").zones, ["America/Regina"]);
        assert_eq!(
            locate("CA", "14745550123").zones,
            ["America/Regina", "America/Winnipeg"]
        );
        assert_eq!(locate("CA", "16045550123").zones, ["America/Vancouver"]);
        assert!(
            locate("CA", "17785550123")
                .zones
                .contains(&"America/Edmonton")
        );
        // 729 (over 423, eastern Tennessee) is not in the zone data: the
        // codes before it place it, rather than every NANP zone.
        let chattanooga = locate("US", "17295550123");
        assert_eq!(chattanooga.zones, central_and_eastern);
        assert_eq!(chattanooga.state, Some("TN"));
        assert_eq!(
            locate("US", "14235550123").zones,
            central_and_eastern,
            "423 is unchanged"
        );
    }
}
