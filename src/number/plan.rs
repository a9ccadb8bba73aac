//! The numbering plan, from libphonenumber's metadata (the `phonenumber`
//! crate's database), with exact full-match patterns compiled once per
//! region on first use and shared lock-free afterwards.
//!
//! The patterns are compiled to fully built DFAs (ASCII only): a match is a
//! walk over at most 15 digits with no cache and no lock, which `regex`'s
//! shared cache pool could not offer to a thread that did not create it.
//!
//! Why not the crate's own parser and validator: its regex cache takes a
//! global mutex on every match, its type and region lookups drop the Italian
//! leading zero (so every Italian landline comes out of region "unknown"),
//! and its parser strips a bare leading `39` from Italian national numbers
//! (`393...` mobiles). Those are exactly the mistakes this product exists
//! to prevent; the metadata itself is what we want.

use std::sync::OnceLock;

use phonenumber::Type;
use phonenumber::metadata::{DATABASE, Metadata};
use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};

use super::Region;

/// The kinds of number the gateway distinguishes, in libphonenumber's order of precedence.
const TYPES: [Type; 10] = [
    Type::PremiumRate,
    Type::TollFree,
    Type::SharedCost,
    Type::Voip,
    Type::PersonalNumber,
    Type::Pager,
    Type::Uan,
    Type::Voicemail,
    Type::FixedLine,
    Type::Mobile,
];

/// An anchored pattern over ASCII digits, as a fully built DFA.
struct Matcher(dense::DFA<Vec<u32>>);

impl Matcher {
    /// Compiles `source`, to be matched from the start of the input (and to
    /// its end when the pattern ends with `$`).
    fn compile(source: &str) -> Result<Matcher, String> {
        dense::Builder::new()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .configure(dense::Config::new().start_kind(StartKind::Anchored))
            .build(source)
            .map(Matcher)
            .map_err(|err| format!("pattern {source:?}: {err}"))
    }

    fn is_match(&self, input: &str) -> bool {
        // A search over a fully built DFA only fails on "quit" bytes, which
        // this configuration has none of; a failure would count as no match.
        matches!(
            self.0
                .try_search_fwd(&Input::new(input).anchored(Anchored::Yes)),
            Ok(Some(_))
        )
    }
}

/// The metadata's patterns are laid out over several lines: whitespace is not part of them.
fn compact(source: &str) -> String {
    source.chars().filter(|c| !c.is_whitespace()).collect()
}

/// All type patterns of a region in one DFA: a single pass over the digits
/// says which types match (anchored at both ends).
struct TypeMatcher(dense::DFA<Vec<u32>>);

impl TypeMatcher {
    fn compile(sources: &[String]) -> Result<TypeMatcher, String> {
        dense::Builder::new()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .configure(
                dense::Config::new()
                    .start_kind(StartKind::Anchored)
                    .match_kind(MatchKind::All),
            )
            .build_many(sources)
            .map(TypeMatcher)
            .map_err(|err| format!("type patterns {sources:?}: {err}"))
    }

    /// Bit `i` set when pattern `i` matches the whole input.
    ///
    /// Every pattern ends with `$`, so only the state after the end of the
    /// input can hold matches: one transition per digit, then the end-of-input
    /// transition, whose match state lists every pattern that matches. (The
    /// overlapping search this replaces stopped at each match and resumed,
    /// which cost more than the walk itself.)
    fn matching(&self, input: &str) -> u32 {
        let dfa = &self.0;
        let Ok(mut state) = dfa.start_state_forward(&Input::new(input).anchored(Anchored::Yes))
        else {
            return 0;
        };
        for &byte in input.as_bytes() {
            state = dfa.next_state(state, byte);
            if dfa.is_special_state(state) && (dfa.is_dead_state(state) || dfa.is_quit_state(state))
            {
                // Dead: no pattern can match any more. Quit: this
                // configuration has no quit bytes; counted as no match.
                return 0;
            }
        }
        state = dfa.next_eoi_state(state);
        if !dfa.is_match_state(state) {
            return 0;
        }
        (0..dfa.match_len(state))
            .map(|i| 1u32 << dfa.match_pattern(state, i).as_usize())
            .fold(0, |bits, bit| bits | bit)
    }
}

/// One region's compiled patterns.
struct RegionPlan {
    region: Option<Region>,
    leading_digits: Option<Matcher>,
    /// The region's general pattern: no number outside it is valid.
    general: Option<GeneralPattern>,
    /// The region's types with their possible lengths, in [`TYPES`] order;
    /// type `i` is pattern `i` of `type_matcher`.
    types: Vec<(Type, Vec<u16>)>,
    /// The type patterns, then the general one: one pass answers both.
    type_matcher: Option<TypeMatcher>,
}

/// Where the general pattern sits in the type matcher, and its lengths.
struct GeneralPattern {
    bit: u32,
    lengths: Vec<u16>,
}

impl RegionPlan {
    /// Compiles a region's patterns. A pattern that does not compile makes
    /// the whole region unusable (its numbers are refused as invalid) rather
    /// than silently dropping, say, its premium-rate ranges.
    fn compile(meta: &'static Metadata) -> Result<RegionPlan, String> {
        let leading_digits = meta
            .leading_digits()
            .map(|ld| Matcher::compile(&format!("(?:{})", compact(ld.as_str()))))
            .transpose()?;
        let mut types = Vec::new();
        let mut sources = Vec::new();
        for kind in TYPES {
            if let Some(descriptor) = meta.descriptors().get(kind) {
                let source = compact(descriptor.national_number().as_str());
                if source.is_empty() || source == "NA" {
                    continue;
                }
                types.push((kind, descriptor.possible_length().to_vec()));
                sources.push(format!("(?:{source})$"));
            }
        }
        let descriptor = meta.descriptors().general();
        let source = compact(descriptor.national_number().as_str());
        let general = (!source.is_empty() && source != "NA").then(|| {
            sources.push(format!("(?:{source})$"));
            GeneralPattern {
                bit: 1 << (sources.len() - 1),
                lengths: descriptor.possible_length().to_vec(),
            }
        });
        let type_matcher = if sources.is_empty() {
            None
        } else {
            Some(TypeMatcher::compile(&sources)?)
        };
        Ok(RegionPlan {
            region: Region::parse(meta.id()),
            leading_digits,
            general,
            types,
            type_matcher,
        })
    }

    fn number_type(&self, national: &str) -> Type {
        let (Some(general), Some(matcher)) = (&self.general, &self.type_matcher) else {
            return Type::Unknown;
        };
        let length = national.len() as u16;
        if !(general.lengths.is_empty() || general.lengths.contains(&length)) {
            return Type::Unknown;
        }
        let bits = matcher.matching(national);
        if bits & general.bit == 0 {
            return Type::Unknown;
        }
        let matched = self
            .types
            .iter()
            .enumerate()
            .filter(|(i, (_, lengths))| {
                bits & (1 << i) != 0 && (lengths.is_empty() || lengths.contains(&length))
            })
            .map(|(_, (kind, _))| *kind);
        let (mut fixed, mut mobile) = (false, false);
        for kind in matched {
            match kind {
                Type::FixedLine => fixed = true,
                Type::Mobile => mobile = true,
                // The first special type, in order of precedence, wins.
                special => return special,
            }
        }
        match (fixed, mobile) {
            (true, true) => Type::FixedLineOrMobile,
            (true, false) => Type::FixedLine,
            (false, true) => Type::Mobile,
            (false, false) => Type::Unknown,
        }
    }
}

/// Country calling codes have at most three digits.
const CODES: usize = 1000;

/// A region's metadata and its patterns, compiled on first use.
struct PlannedRegion {
    meta: &'static Metadata,
    compiled: OnceLock<Result<RegionPlan, String>>,
}

struct Plan {
    /// Regions by country calling code (the index), the main region first.
    by_code: Vec<Vec<PlannedRegion>>,
}

fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let mut by_code: Vec<Vec<PlannedRegion>> = (0..CODES).map(|_| Vec::new()).collect();
        for meta in DATABASE.iter() {
            if let Some(regions) = by_code.get_mut(usize::from(meta.country_code())) {
                regions.push(PlannedRegion {
                    meta,
                    compiled: OnceLock::new(),
                });
            }
        }
        for regions in &mut by_code {
            regions.sort_by_key(|r| (!r.meta.is_main_country_for_code(), r.meta.id()));
        }
        Plan { by_code }
    })
}

/// The compiled plan of a region; `None` (every number of it is invalid)
/// when one of its patterns does not compile, which is logged once.
fn region_plan(planned: &'static PlannedRegion) -> Option<&'static RegionPlan> {
    let meta = planned.meta;
    let compiled = planned.compiled.get_or_init(|| {
        let compiled = RegionPlan::compile(meta);
        if let Err(err) = &compiled {
            tracing::error!(region = meta.id(), error = %err, "numbering plan unusable: its numbers are refused");
        }
        compiled
    });
    compiled.as_ref().ok()
}

fn regions_of(code: u16) -> &'static [PlannedRegion] {
    plan()
        .by_code
        .get(usize::from(code))
        .map_or(&[], Vec::as_slice)
}

/// Splits E.164 digits into country code and national significant number.
pub fn split_country_code(digits: &str) -> Option<(u16, &str)> {
    let bytes = digits.as_bytes();
    // No country code begins with 0: `+049 30 ...` read as Germany kept
    // its zero in the number's key and E.164, a second key for the number
    // beside `+49 30 ...` (an opt-out under one missed a check under the
    // other; found by review).
    if bytes.first() == Some(&b'0') {
        return None;
    }
    let mut code = 0u16;
    for len in 1..=3.min(bytes.len()) {
        let digit = bytes[len - 1];
        if !digit.is_ascii_digit() {
            return None;
        }
        code = code * 10 + u16::from(digit - b'0');
        if !regions_of(code).is_empty() {
            return Some((code, &digits[len..]));
        }
    }
    None
}

/// The region a national number of `code` belongs to, and its type;
/// `None` when no region of the code recognises it.
pub fn classify(code: u16, national: &str) -> Option<(Region, Type)> {
    let regions = regions_of(code);
    let typed = |plan: &RegionPlan| {
        let kind = plan.number_type(national);
        if kind == Type::Unknown {
            return None;
        }
        Some((plan.region?, kind))
    };
    for meta in regions {
        let region = region_plan(meta)?;
        if let Some(leading) = &region.leading_digits
            && leading.is_match(national)
        {
            return typed(region);
        }
    }
    regions.iter().find_map(|meta| {
        let region = region_plan(meta)?;
        if regions.len() > 1 && region.leading_digits.is_some() {
            // A shared code's region with leading digits was tried above.
            return None;
        }
        typed(region)
    })
}

/// The other regions of a shared calling code whose numbering plans
/// recognise `national` as well as `found`'s does: their patterns overlap
/// and no leading digits tell them apart (`+590 690...` is a mobile of
/// Guadeloupe, Saint-Barthélemy and Saint-Martin alike; `classify` names
/// the first). A region told by its leading digits has no others.
pub fn also_recognised_by(
    code: u16,
    national: &str,
    found: Region,
) -> smallvec::SmallVec<[Region; 2]> {
    let regions = regions_of(code);
    let mut others = smallvec::SmallVec::new();
    if regions.len() < 2 {
        return others;
    }
    for meta in regions {
        let Some(plan) = region_plan(meta) else {
            continue;
        };
        if plan.region == Some(found) && plan.leading_digits.is_some() {
            return smallvec::SmallVec::new();
        }
        if plan.leading_digits.is_some() {
            continue;
        }
        if let Some(region) = plan.region
            && region != found
            && plan.number_type(national) != Type::Unknown
        {
            others.push(region);
        }
    }
    others
}

/// The metadata of a region id.
pub fn metadata(region: &str) -> Option<&'static Metadata> {
    DATABASE.by_id(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_every_region_of_the_metadata_compiles() {
        let failures: Vec<String> = DATABASE
            .iter()
            .filter_map(|meta| RegionPlan::compile(meta).err())
            .collect();
        assert!(failures.is_empty(), "{failures:?}");
    }

    /// A small deterministic random number generator for test inputs.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// The DFAs agree with the `regex` crate on the real patterns.
    #[test]
    fn test_matchers_agree_with_regex_on_the_metadata() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for id in ["IT", "US", "GB", "FR", "DE", "ES", "CA", "VA", "SM"] {
            let meta = DATABASE.by_id(id).unwrap();
            let mut descriptors = vec![meta.descriptors().general()];
            descriptors.extend(TYPES.iter().filter_map(|t| meta.descriptors().get(*t)));
            for descriptor in descriptors {
                let source = compact(descriptor.national_number().as_str());
                if source.is_empty() || source == "NA" {
                    continue;
                }
                let regex = regex::Regex::new(&format!("^(?:{source})$")).unwrap();
                let matcher = Matcher::compile(&format!("(?:{source})$")).unwrap();
                if let Some(example) = descriptor.example() {
                    assert!(
                        regex.is_match(example) && matcher.is_match(example),
                        "{id} {example}"
                    );
                }
                for _ in 0..3000 {
                    let len = 4 + (next() % 9) as usize;
                    // Bias towards the pattern's own first digits, so matches occur.
                    let mut candidate: String = (0..len)
                        .map(|_| char::from(b'0' + (next() % 10) as u8))
                        .collect();
                    if next().is_multiple_of(2) {
                        candidate.replace_range(0..1, &((next() % 4) + 2).to_string());
                    }
                    let expected = regex.is_match(&candidate);
                    assert_eq!(
                        matcher.is_match(&candidate),
                        expected,
                        "{id} {source} {candidate}"
                    );
                }
            }
        }
    }

    /// The one-pass type matcher classifies as pattern-by-pattern matching
    /// with the `regex` crate does (libphonenumber's order of precedence).
    #[test]
    fn test_number_types_agree_with_pattern_by_pattern_regex() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for id in ["IT", "US", "GB", "FR", "DE", "ES", "CA", "AU", "SM"] {
            let meta = DATABASE.by_id(id).unwrap();
            let plan = RegionPlan::compile(meta).unwrap();
            let reference: Vec<(Type, Vec<u16>, regex::Regex)> = TYPES
                .iter()
                .filter_map(|t| {
                    let descriptor = meta.descriptors().get(*t)?;
                    let source = compact(descriptor.national_number().as_str());
                    (!source.is_empty() && source != "NA").then(|| {
                        let regex = regex::Regex::new(&format!("^(?:{source})$")).unwrap();
                        (*t, descriptor.possible_length().to_vec(), regex)
                    })
                })
                .collect();
            let expected_type = |national: &str| {
                let hits: Vec<Type> = reference
                    .iter()
                    .filter(|(_, lengths, regex)| {
                        (lengths.is_empty() || lengths.contains(&(national.len() as u16)))
                            && regex.is_match(national)
                    })
                    .map(|(t, _, _)| *t)
                    .collect();
                let special = hits
                    .iter()
                    .find(|t| !matches!(t, Type::FixedLine | Type::Mobile));
                match special {
                    Some(t) => *t,
                    None => match (
                        hits.contains(&Type::FixedLine),
                        hits.contains(&Type::Mobile),
                    ) {
                        (true, true) => Type::FixedLineOrMobile,
                        (true, false) => Type::FixedLine,
                        (false, true) => Type::Mobile,
                        (false, false) => Type::Unknown,
                    },
                }
            };
            let general = {
                let descriptor = meta.descriptors().general();
                let source = compact(descriptor.national_number().as_str());
                let regex = regex::Regex::new(&format!("^(?:{source})$")).unwrap();
                let lengths = descriptor.possible_length().to_vec();
                move |national: &str| {
                    (lengths.is_empty() || lengths.contains(&(national.len() as u16)))
                        && regex.is_match(national)
                }
            };
            let mut examples: Vec<String> = TYPES
                .iter()
                .filter_map(|t| meta.descriptors().get(*t)?.example().map(String::from))
                .collect();
            for _ in 0..20_000 {
                let len = 6 + (next() % 7) as usize;
                examples.push(
                    (0..len)
                        .map(|_| char::from(b'0' + (next() % 10) as u8))
                        .collect(),
                );
            }
            for national in &examples {
                let expected = if general(national) {
                    expected_type(national)
                } else {
                    Type::Unknown
                };
                assert_eq!(plan.number_type(national), expected, "{id} {national}");
            }
        }
    }

    #[test]
    fn test_matchers_are_anchored_at_both_ends_when_asked() {
        let full = Matcher::compile("(?:3\\d{2})$").unwrap();
        assert!(full.is_match("312"));
        assert!(!full.is_match("3123"));
        assert!(!full.is_match("0312"));
        let prefix = Matcher::compile("(?:3[01])").unwrap();
        assert!(prefix.is_match("301234"));
        assert!(!prefix.is_match("0301"));
    }
}
